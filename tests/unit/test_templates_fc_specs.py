"""``template.yml`` (Function Compute 3.0, native ROS), validated offline against what Alibaba publishes.

No offline ROS validator exists, so every resource is checked against the ROS resource specs Alibaba publishes
(``deploy/ros_specs/ros-resource-specs.json``, generated from the ROS CDK packages), plus reference integrity,
TriggerConfig key sets per trigger type, FC 3.0's runtime rules, least privilege, no secret values and no fixed
artefact keys; each of these checks is shown to fail on a broken copy of the template. What the template holds for
the code (handlers, triggers, variables, grants) is checked in ``test_templates_fc.py``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from support.ros_template import (
    CODE_KEYS,
    ROOT,
    fc_template,
    policy_statements,
    resolved,
    resources_of,
    sample_values,
    sub_variables,
)

# Alibaba's published ROS resource specs, generated from the ROS CDK packages (deploy/ros_specs/README.md): every
# resource of template.yml is checked against THEM, not against a list written here.
ROS_SPECS = ROOT / "deploy" / "ros_specs" / "ros-resource-specs.json"
ROS_PSEUDO = {"ALIYUN::Region", "ALIYUN::AccountId", "ALIYUN::StackName", "ALIYUN::StackId", "ALIYUN::NoValue"}
ROS_PARAMETER_KEYS = {"Type", "Default", "Description", "AllowedValues", "AllowedPattern", "NoEcho", "MinValue"}
ROS_PARAMETER_KEYS |= {"MaxValue", "MinLength", "MaxLength", "Label", "ConstraintDescription"}
ROS_RESOURCE_KEYS = {"Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "Metadata"}
SPEC_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "boolean": bool,
    "list": list,
    "map": dict,
}
# Resource "*" only where the service defines no resource-level permission; each case named here and in
# template.yml. OSS ARNs take "*" as their region (bucket names are global): the one region exception.
STAR_RESOURCE_EXCEPTIONS = {"aliyuncvc": "CVC defines no resource ARNs: its RAM actions can only be granted on '*'"}
STAR_REGION_EXCEPTIONS = {"oss": "OSS bucket names are global: OSS ARNs carry '*' as their region"}
# Variables that look like secrets must hold a reference (kms:<secret name>) or be empty (unset) on FC.
SECRET_VARIABLE = re.compile(r"SECRET|TOKEN|KEYS|PASSWORD|ACCESS_KEY")
SECRET_PARAMETER = re.compile(r"SECRET|TOKEN|KEYS|PASSWORD|ACCESSKEY")
NOT_SECRETS = {"CVCSYNC_SECRET_TTL_SECONDS": "how long a secret read is cached, in seconds"}
SECRET_REFERENCE = re.compile(r"kms:\S+")
# FC 3.0 dropped instance concurrency for standard runtimes ("Comparison and compatibility between Function Compute
# 3.0 and Function Compute 2.0", https://www.alibabacloud.com/help/en/functioncompute/feature-updates-in-function-compute-3).
STANDARD_RUNTIME = re.compile(r"python|nodejs|java|php|dotnet|go1")


def config_keys(required: str = "", optional: str = "", **nested: Any) -> dict[str, Any]:
    """A map in the spec JSON's own shape, so one checker reads both: key names (space-separated) required and
    optional; by keyword, a nested map (another ``config_keys``) or a list of allowed values."""
    properties: dict[str, Any] = {}
    for names, required_flag in ((required, True), (optional, False)):
        for name in names.split():
            inner = nested.get(name)
            spec: dict[str, Any] = {"type": "any"} if inner is None else dict(inner) if isinstance(inner, dict) else {}
            if isinstance(inner, list):
                spec = {"type": "any", "allowed_values": inner}
            properties[name] = {**spec, "required": required_flag}
    assert set(nested) <= set(properties), set(nested) - set(properties)
    return {"type": "map", "properties": properties}


# ALIYUN::FC3::Trigger's TriggerConfig is a free map in the ROS spec: it is FC 3.0's API structure per trigger type
# (camelCase keys). Key sets and required flags from FC's API reference (2023-03-30 structs, below) and the field
# tables with required flags of Alibaba's Serverless Devs fc3 component (github.com/devsapp/fc3,
# docs/zh/yaml/triggers.md). type: (sources, properties of the trigger the type needs, TriggerConfig spec).
FC_API_STRUCT = "https://alibabacloud.com/help/en/functioncompute/api-fc-2023-03-30-struct-"
FC3_TRIGGER_CONFIG: dict[str, tuple[str, set[str], dict[str, Any]]] = {
    "oss": (
        f"{FC_API_STRUCT}key, {FC_API_STRUCT}createtriggerinput",
        {"SourceArn", "InvocationRole"},
        config_keys("events filter", filter=config_keys("key", key=config_keys("prefix suffix"))),
    ),
    "timer": (f"{FC_API_STRUCT}timertriggerconfig", set(), config_keys("cronExpression enable", "payload")),
    "http": (
        f"{FC_API_STRUCT}httptriggerconfig",
        set(),
        config_keys(
            "authType methods",
            "disableURLInternet authConfig corsConfig",
            authType=["anonymous", "function"],
        ),
    ),
    "mns_topic": (
        "https://help.aliyun.com/zh/functioncompute/api-fc-2023-03-30-struct-mnstopictriggerconfig",
        {"SourceArn", "InvocationRole"},
        config_keys(
            "",
            "filterTag notifyContentFormat notifyStrategy",
            notifyContentFormat=["JSON", "STREAM"],
            notifyStrategy=["BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY"],
        ),
    ),
    # No InvocationRole: EventBridge invokes with its service-linked role AliyunServiceRoleForEventBridgeSendToFC.
    "eventbridge": (
        "https://www.alibabacloud.com/help/en/functioncompute/fc/developer-reference/"
        f"api-fc-2023-03-30-struct-eventbridgetriggerconfig, {FC_API_STRUCT}eventsourceconfig",
        set(),
        config_keys(
            "eventSourceConfig eventRuleFilterPattern",
            "triggerEnable asyncInvocationType runOptions eventSinkConfig",
            eventSourceConfig=config_keys(
                "eventSourceType",
                "eventSourceParameters",
                eventSourceType=["Default", "MNS", "RocketMQ", "RabbitMQ", "Kafka", "DTS"],
                eventSourceParameters=config_keys(
                    "",
                    "sourceMNSParameters sourceRocketMQParameters sourceRabbitMQParameters sourceKafkaParameters "
                    "sourceDTSParameters",
                    sourceMNSParameters=config_keys("QueueName", "IsBase64Decode RegionId"),
                ),
            ),
            runOptions=config_keys(
                "mode",
                "batchWindow deadLetterQueue errorsTolerance maximumTasks retryStrategy",
                mode=["event-driven", "event-streaming"],
                errorsTolerance=["ALL", "NONE"],
                batchWindow=config_keys("", "CountBasedWindow TimeBasedWindow"),
                deadLetterQueue=config_keys("Arn"),
                retryStrategy=config_keys(
                    "PushRetryStrategy",
                    "MaximumEventAgeInSeconds MaximumRetryAttempts",
                    PushRetryStrategy=["BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY"],
                ),
            ),
        ),
    ),
}


@pytest.fixture(scope="module")
def ros() -> dict[str, Any]:
    return fc_template()


_SPECS: dict[str, Any] = {}


def ros_specs() -> dict[str, Any]:
    """``resources`` of the published spec: type -> {attributes, properties} (read once)."""
    if not _SPECS:
        _SPECS.update(json.loads(ROS_SPECS.read_text(encoding="utf-8"))["resources"])
    return _SPECS


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def is_intrinsic(value: Any) -> bool:
    """``{"Ref": ...}`` or ``{"Fn::...": ...}``: stands for any value, as ROS resolves it at deployment."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key == "Ref" or key.startswith("Fn::")


# ------------------------------------------------ the checks: each returns its problems, one line each


def value_problems(where: str, value: Any, spec: dict[str, Any]) -> list[str]:
    """One value against a property spec of the JSON: type, allowed values, range, length, pattern, then list
    items, map values or nested properties. An intrinsic function stands for any value."""
    if is_intrinsic(value):
        return []
    kind = spec.get("type", "any")
    if kind != "any" and (not isinstance(value, SPEC_TYPES[kind]) or (kind == "number" and isinstance(value, bool))):
        return [f"{where}: {type(value).__name__} {value!r:.60}, the spec wants a {kind}"]
    problems = []
    if "allowed_values" in spec and value not in spec["allowed_values"]:
        problems.append(f"{where}: {value!r} is not one of {spec['allowed_values']}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and not spec.get("min", value) <= value <= spec.get("max", value):
        problems.append(f"{where}: {value} is outside {spec.get('min', '')}..{spec.get('max', '')}")
    sized = isinstance(value, (str, list))
    if sized and not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", len(value)):
        problems.append(f"{where}: length {len(value)} outside {spec.get('min_length', 0)}..{spec.get('max_length')}")
    if isinstance(value, str) and "pattern" in spec and not re.search(spec["pattern"], value):
        problems.append(f"{where}: {value!r} does not match {spec['pattern']}")
    if isinstance(value, list) and "items" in spec:
        for index, item in enumerate(value):
            problems += value_problems(f"{where}[{index}]", item, spec["items"])
    if isinstance(value, dict) and "properties" in spec:
        problems += properties_problems(where, value, spec["properties"])
    elif isinstance(value, dict) and "values" in spec:
        for key, item in value.items():
            problems += value_problems(f"{where}.{key}", item, spec["values"])
    return problems


def properties_problems(where: str, properties: dict[str, Any], specs: dict[str, Any]) -> list[str]:
    problems = [f"{where}.{name}: not a property of the spec" for name in properties if name not in specs]
    problems += [
        f"{where}.{name}: required by the spec, missing"
        for name, spec in specs.items()
        if spec["required"] and name not in properties
    ]
    for name, value in properties.items():
        if name in specs:
            problems += value_problems(f"{where}.{name}", value, specs[name])
    return problems


def spec_problems(template: dict[str, Any]) -> list[str]:
    """Every resource against the published spec: a known type, no property outside it, the required ones, values."""
    problems = []
    for name, resource in template["Resources"].items():
        kind = resource.get("Type")
        if set(resource) - ROS_RESOURCE_KEYS:
            problems.append(f"{name}: unknown resource keys {sorted(set(resource) - ROS_RESOURCE_KEYS)}")
        if kind not in ros_specs():
            problems.append(f"{name}: {kind} is in no published ROS resource spec (see deploy/ros_specs/README.md)")
            continue
        properties = resource.get("Properties", {})
        problems += properties_problems(f"{name} ({kind})", properties, ros_specs()[kind]["properties"])
    return problems


def reference_problems(template: dict[str, Any]) -> list[str]:
    """``Ref`` targets exist, ``Fn::GetAtt`` names an attribute the spec gives the type, ``Fn::Sub`` variables,
    ``DependsOn`` targets and conditions exist, and nothing unconditional needs a conditional resource."""
    resources = template["Resources"]
    names = set(template["Parameters"]) | ROS_PSEUDO | set(resources)
    conditions = set(template.get("Conditions", {}))
    conditional = {name for name, r in resources.items() if "Condition" in r}
    problems = []
    for name, owner in [*resources.items(), ("Outputs", template.get("Outputs", {}))]:
        depends = owner.get("DependsOn", []) if name in resources else []
        used = set([depends] if isinstance(depends, str) else depends)
        problems += [f"{name}: DependsOn {target}, which is no resource" for target in sorted(used - set(resources))]
        if name in resources and owner.get("Condition", "") not in conditions | {""}:
            problems.append(f"{name}: condition {owner['Condition']} is not defined")
        for path, node in walk(owner):
            if not isinstance(node, dict):
                continue
            if "Ref" in node:
                used.add(node["Ref"])
                if node["Ref"] not in names:
                    problems.append(f"{name}.{path}: Ref {node['Ref']} names no parameter or resource")
            if "Fn::GetAtt" in node:
                target, attribute = node["Fn::GetAtt"]
                used.add(target)
                attributes = ros_specs().get(resources.get(target, {}).get("Type"), {}).get("attributes", [])
                if attribute not in attributes:
                    problems.append(f"{name}.{path}: Fn::GetAtt {target}.{attribute}, attributes are {attributes}")
            if "Fn::Sub" in node:
                for variable in sub_variables(node["Fn::Sub"]):
                    used.add(variable.split(".")[0])
                    if variable.split(".")[0] not in names:
                        problems.append(f"{name}.{path}: Fn::Sub variable {variable} is not defined")
            if "Fn::If" in node and node["Fn::If"][0] not in conditions:
                problems.append(f"{name}.{path}: Fn::If condition {node['Fn::If'][0]} is not defined")
        if name not in conditional and used & conditional:
            problems.append(f"{name}: needs {sorted(used & conditional)}, which may not be created")
    return problems


def trigger_problems(template: dict[str, Any]) -> list[str]:
    """Each FC 3.0 trigger's TriggerConfig against ``FC3_TRIGGER_CONFIG``, and the properties its type needs."""
    problems = []
    for name, resource in resources_of(template, "ALIYUN::FC3::Trigger").items():
        properties = resource.get("Properties", {})
        kind = properties.get("TriggerType")
        if kind not in FC3_TRIGGER_CONFIG:
            problems.append(f"{name}: trigger type {kind!r} has no TriggerConfig table here (FC3_TRIGGER_CONFIG)")
            continue
        _, needs, config = FC3_TRIGGER_CONFIG[kind]
        problems += value_problems(f"{name}.TriggerConfig ({kind})", properties.get("TriggerConfig"), config)
        problems += [f"{name}: a {kind} trigger needs {need}" for need in sorted(needs - set(properties))]
    return problems


def runtime_problems(template: dict[str, Any]) -> list[str]:
    """FC 3.0 rules the spec does not carry: no instance concurrency on standard runtimes; CPU a multiple of
    0.05 vCPU with 1 to 4 GB of memory per vCPU; memory a multiple of 64 MB (CreateFunction input)."""
    problems = []
    for name, resource in resources_of(template, "ALIYUN::FC3::Function").items():
        properties = resource["Properties"]
        if STANDARD_RUNTIME.match(str(properties.get("Runtime"))) and "InstanceConcurrency" in properties:
            problems.append(f"{name}.InstanceConcurrency: FC 3.0 standard runtimes do not support it; remove it")
        cpu, memory = properties.get("Cpu"), properties.get("MemorySize")
        both = isinstance(cpu, (int, float)) and isinstance(memory, int)
        if both and (round(cpu * 100) % 5 or not 1 <= memory / 1024 / cpu <= 4 or memory % 64):
            problems.append(f"{name}.Cpu/MemorySize: {cpu} vCPU with {memory} MB breaks FC 3.0's ratio rules")
    return problems


def is_reference(value: Any) -> bool:
    """Every value ``value`` can take is empty (unset) or a secret reference, ``kms:<secret name>``."""
    if isinstance(value, str):
        return value == "" or bool(SECRET_REFERENCE.fullmatch(value))
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return bool(SECRET_REFERENCE.fullmatch(value["Fn::Sub"]))
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return all(is_reference(branch) for branch in value["Fn::If"][1:])
    return False  # a Ref passes a parameter's plain value through


def secret_problems(template: dict[str, Any]) -> list[str]:
    """No parameter takes a secret value and no secret-looking variable holds one: only references (names)."""
    problems = []
    for name, parameter in template["Parameters"].items():
        if str(parameter.get("NoEcho")).lower() == "true":
            problems.append(f"parameter {name} takes a secret value (NoEcho): take the NAME of a KMS secret instead")
        elif SECRET_PARAMETER.search(name.upper()) and not name.endswith("SecretName"):
            problems.append(f"parameter {name} looks like a secret: take <Name>SecretName, a KMS secret's name")
    for kind in ("ALIYUN::FC3::Function", "ALIYUN::FC::Function"):
        for name, resource in resources_of(template, kind).items():
            for variable, value in resource["Properties"].get("EnvironmentVariables", {}).items():
                if SECRET_VARIABLE.search(variable) and variable not in NOT_SECRETS and not is_reference(value):
                    problems.append(f"{name}: {variable} holds a plain value; set kms:<secret name> or leave it out")
    return problems


def artefact_key_problems(template: dict[str, Any]) -> list[str]:
    """Every object key of code is a code key parameter without a default: keys come from the manifest."""
    problems = []
    parameters = template["Parameters"]
    for path, node in walk(template["Resources"]):
        if not isinstance(node, dict):
            continue
        for key in ("OssObjectName", "ObjectName"):
            if key not in node:
                continue
            value = node[key]
            parameter = value.get("Ref") if isinstance(value, dict) and set(value) == {"Ref"} else None
            if parameter not in CODE_KEYS or "Default" in parameters.get(parameter, {}):
                problems.append(f"{path}.{key}: {value!r:.80} is a fixed artefact key; Ref the artefact's *CodeKey")
    return problems


def too_wide(arn: str) -> str | None:
    """Why an ARN grants more than named resources, or None. ``*`` may end an OSS object prefix only."""
    parts = arn.split(":", 4)
    if len(parts) != 5 or parts[0] != "acs":
        return "not an acs: ARN"
    _, service, region, account, rest = parts
    if "*" in account:
        return "any account"
    if "*" in region and not (region == "*" and service in STAR_REGION_EXCEPTIONS):
        return "any region"
    if service == "oss":
        bucket, _, key = rest.partition("/")
        if "*" in bucket or (key and not re.fullmatch(r"[^*]+\*?", key)):
            return "any bucket or any object"
    elif "*" in rest:
        return "a wildcard resource"
    return None


def wildcard_problems(template: dict[str, Any]) -> list[str]:
    """No wildcard action; a ``*`` resource only for the services of ``STAR_RESOURCE_EXCEPTIONS``."""
    problems = []
    for name, statement in policy_statements(template):
        actions = statement.get("Action", [])
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{name}: NotAction/NotResource grant everything else")
        problems += [f"{name}: wildcard action {action}" for action in actions if "*" in action]
        for resource in statement.get("Resource", []):
            text = resource["Fn::Sub"] if isinstance(resource, dict) and "Fn::Sub" in resource else resource
            if text == "*":
                services = {action.split(":")[0] for action in actions} - set(STAR_RESOURCE_EXCEPTIONS)
                if services:
                    problems.append(f"{name}: Resource '*' for {sorted(services)}, which have resource ARNs")
            elif not isinstance(text, str) or too_wide(text):
                problems.append(f"{name}: resource {text!r} is {too_wide(str(text))}")
    return problems


def template_problems(template: dict[str, Any]) -> list[str]:
    checks = [spec_problems, reference_problems, trigger_problems, runtime_problems, secret_problems]
    checks += [artefact_key_problems, wildcard_problems]
    return [problem for check in checks for problem in check(template)]


# ------------------------------------------------ the template passes, and each check fails on a broken copy


def test_ros_format_is_native_ros_not_funcraft(ros: dict[str, Any]) -> None:
    assert ros["ROSTemplateFormatVersion"] == "2015-09-01"
    assert "Transform" not in ros, "Funcraft's Aliyun::Serverless transform knows neither FC 3.0 nor python3.10"
    assert set(ros) <= {"ROSTemplateFormatVersion", "Description", "Parameters", "Conditions", "Resources", "Outputs"}
    assert {r["Type"].split("::")[1] for r in ros["Resources"].values()} >= {"FC3"}
    assert not [name for name, r in ros["Resources"].items() if r["Type"].startswith("ALIYUN::FC::")], "FC 2.0 left"


def test_ros_template_has_no_problem_as_written_and_with_sample_parameters(ros: dict[str, Any]) -> None:
    assert template_problems(ros) == []
    assert spec_problems(resolved(ros, sample_values(ros))) == []
    assert trigger_problems(resolved(ros, sample_values(ros))) == []


DELETE = object()
INLINE = "Policies.0.PolicyDocument.Statement.0"  # first statement of a role's first inline policy
MANAGED = "PolicyDocument.Statement.0"  # first statement of a managed policy
LEGACY_FUNCTION = {
    "Type": "ALIYUN::FC::Function",
    "Properties": {"ServiceName": "s", "FunctionName": "f", "Handler": "index.handler", "Runtime": "python3.10"}
    | {"Layers": [{"Fn::GetAtt": ["Layer", "LayerVersionArn"]}]},
}
EVENT_STREAMING = {
    "Type": "ALIYUN::EventBridge::EventStreaming",
    "Properties": {"EventStreamingName": "s", "Source": {}, "Sink": {}, "FilterPattern": "{}"},
}
ALL_FUNCTIONS = "acs:fc:${ALIYUN::Region}:${ALIYUN::AccountId}:functions/*"
# id, where ("<resource>/<path in its Properties>", "<resource>", or "Parameters.<path>"), new value (DELETE:
# remove it), a problem the checks must then report. Paths are dotted; numbers index lists.
MUTATIONS = [
    ("fc2-layers", "LegacyFunction", LEGACY_FUNCTION, "LegacyFunction (ALIYUN::FC::Function).Layers: not a property"),
    ("sid", f"FunctionsPolicy/{MANAGED}.Sid", "CvcUsers", "Statement[0].Sid: not a property of the spec"),
    ("python-concurrency", "ObjectUploadFunction/InstanceConcurrency", 1, "InstanceConcurrency: FC 3.0 standard"),
    ("event-streaming", "ChangesQueueStream", EVENT_STREAMING, "EventBridge::EventStreaming is in no published"),
    ("secret-variable", "HttpApiFunction/EnvironmentVariables.CVCSYNC_HTTP_TOKENS", {"Ref": "GroupId"}, "TOKENS holds"),
    ("secret-literal", "HttpApiFunction/EnvironmentVariables.CVCSYNC_SECRET_HTTP_KEYS", "ops:0123456789", "KEYS holds"),
    ("secret-parameter", "Parameters.HttpTokens", {"Type": "String", "NoEcho": True}, "HttpTokens takes a secret"),
    ("key-parameter", "Parameters.CvcAccessKeyId", {"Type": "String"}, "parameter CvcAccessKeyId looks like a secret"),
    ("fixed-key", "Layer/Code.OssObjectName", "cvc-sync/packages/fc/layer.zip", "layer.zip' is a fixed artefact key"),
    ("fixed-key-sub", "ScheduledFunction/Code.OssObjectName", {"Fn::Sub": "fc/${NamePrefix}.zip"}, "a fixed artefact"),
    ("key-default", "Parameters.LayerCodeKey.Default", "fc/layer-0123456789abcdef.zip", "'LayerCodeKey'} is a fixed"),
    ("star-resource", f"ObjectUploadRole/{INLINE}.Resource", ["*"], "ObjectUploadRole: Resource '*' for ['oss']"),
    ("star-functions", f"OssTriggerRole/{INLINE}.Resource", [{"Fn::Sub": ALL_FUNCTIONS}], "is a wildcard resource"),
    ("star-region", f"HttpKeysSecretPolicy/{MANAGED}.Resource", ["acs:kms:*:1:secret/x"], "is any region"),
    ("star-action", f"HttpApiRole/{INLINE}.Action", ["oss:*"], "HttpApiRole: wildcard action oss:*"),
    ("timer-Enabled", "RedriveTimer/TriggerConfig.Enabled", True, "RedriveTimer.TriggerConfig (timer).Enabled: not a"),
    ("oss-no-source", "UploadTrigger/SourceArn", DELETE, "UploadTrigger: a oss trigger needs SourceArn"),
    ("http-auth", "HttpTrigger/TriggerConfig.authType", "none", "'none' is not one of ['anonymous', 'function']"),
    ("trigger-type", "HttpTrigger/TriggerType", "https", "trigger type 'https' has no TriggerConfig table"),
    ("range", "ObjectUploadFunction/MemorySize", 131072, "MemorySize: 131072 is outside 128..65536"),
    ("type", "ObjectUploadFunction/Timeout", "900", "Timeout: str '900', the spec wants a number"),
    ("required", "ObjectUploadFunction/Handler", DELETE, ".Handler: required by the spec, missing"),
    ("allowed", "Layer/Acl", "2", "Acl: '2' is not one of ['1', '0']"),
    ("pattern", "LogStore/LogstoreName", "function logs", "'function logs' does not match ^[a-zA-Z0-9_-]+$"),
    ("nested", "ObjectUploadAsyncConfig/DestinationConfig.OnFailure.Destination", DELETE, "Destination: required"),
    ("attribute", "ObjectUploadFunction/Layers.0", {"Fn::GetAtt": ["Layer", "Arn"]}, "Fn::GetAtt Layer.Arn, attrib"),
    ("ref", "ObjectUploadFunction/FunctionName", {"Ref": "ServiceName"}, "Ref ServiceName names no parameter"),
    ("conditional", "ObjectUploadFunction/Role", {"Ref": "HttpKeysSecretPolicy"}, "which may not be created"),
    ("cpu-ratio", "ObjectUploadFunction/Cpu", 4, "4 vCPU with 1024 MB breaks"),
]


def mutated(template: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """A copy of ``template`` with the value at ``where`` (see ``MUTATIONS``) replaced, added or deleted."""
    broken = copy.deepcopy(template)
    resource, slash, inner = where.partition("/")
    keys: list[Any] = [*("Resources", resource, "Properties")[: 3 if slash else 2], *inner.split(".")]
    if where.startswith("Parameters."):
        keys = where.split(".")
    keys = [int(key) if key.isdigit() else key for key in keys if key != ""]
    node = broken
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return broken


@pytest.mark.parametrize(("where", "value", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_ros_checks_fail_on_a_broken_copy(ros: dict[str, Any], where: str, value: Any, expected: str) -> None:
    problems = template_problems(mutated(ros, where, value))
    assert any(expected in problem for problem in problems), problems


def test_ros_parameters_are_well_formed_and_samples_valid(ros: dict[str, Any]) -> None:
    values = sample_values(ros)
    for name, parameter in ros["Parameters"].items():
        assert set(parameter) <= ROS_PARAMETER_KEYS, name
        assert parameter["Type"] in {"String", "Number", "CommaDelimitedList", "Json", "Boolean"}, name
        assert parameter.get("Description"), f"{name}: say what to choose"
        value = values[name]  # the default, or what a deployment passes
        if "AllowedValues" in parameter:
            assert value in parameter["AllowedValues"], name
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], str(value)), name
        if parameter["Type"] == "Number":
            assert parameter.get("MinValue", value) <= value <= parameter.get("MaxValue", value), name

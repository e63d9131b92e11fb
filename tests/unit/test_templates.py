"""The deployment templates, validated offline.

- ``deploy/sam/template.yaml`` (AWS): in ``test_template_aws.py`` (the SAM translator, cfn-lint, and the rules the
  template keeps), which shares the cross-check lists below.
- ``template.yml`` (Function Compute 3.0, native ROS): no offline ROS validator exists, so every resource is checked
  against the ROS resource specs Alibaba publishes (``deploy/ros_specs/ros-resource-specs.json``, generated from the
  ROS CDK packages), plus reference integrity, TriggerConfig key sets per trigger type, least privilege, no secret
  values and no fixed artefact keys; each of these checks is shown to fail on a broken copy of the template.
- Both: cross-checks with the code: every handler path exists, every environment variable of the README's
  Configuration table is declared (or listed below as not for deployment, with the reason), the upload trigger can
  never fire on cvc-sync's own outputs, and every permission the code needs is granted, and nothing wider.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy import deploy as deploy_script
from deploy import package

from support.deploy_dist import fake_dist

ROOT = Path(__file__).resolve().parents[2]
FC_TEMPLATE = ROOT / "template.yml"
FUNCTIONS = ["http_api", "object_upload", "queue_changes", "scheduled"]
OUTPUT_PREFIX = "cvc-sync/"

# README variables no deployed function needs, and why.
NOT_DEPLOYED = {
    "ALIBABA_CLOUD_SECURITY_TOKEN": "temporary keys expire: a template holds a RAM user's key, or none (FC role)",
    "ALIBABA_CLOUD_REGION": "the region of the local FC context of `cvcsync invoke`",
    "CVCSYNC_SQS_ENDPOINT": "local testing against moto",
    "AWS_REGION": "set by Lambda itself",
    "AWS_DEFAULT_REGION": "set by Lambda itself",
    "CVCSYNC_HTTP_ENDPOINT": "where the `cvcsync call` client sends",
    "CVC_EMULATOR_ACCESS_KEYS": "the local emulator's keys",
    "CVCSYNC_LOG_FORMAT": "the CLI's log format: functions always log JSON",
}
# README variables the FC template (template.yml) does not set either, and why.
NOT_ON_FC = {
    "CVCSYNC_FANOUT_QUEUE_URL": "Function Compute has no SQS: the FC template fans out by FC asynchronous invocation",
    "CVCSYNC_DEADLETTER_QUEUE_URL": "Function Compute has no SQS: the FC template uses the object dead-letter sink",
    "CVCSYNC_ALERT_QUEUE_URL": "Function Compute has no SQS: alerts are ERROR log lines in the logstore",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "FC sets it to the role's own STS key; a RAM user's key is a kms: secret reference",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "FC sets it to the role's own STS key; a RAM user's key is a kms: reference",
    "CVCSYNC_HTTP_KEYS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_HTTP_KEYS instead",
    "CVCSYNC_HTTP_TOKENS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_HTTP_TOKENS instead",
    "CVCSYNC_SCIM_TOKENS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_SCIM_TOKENS instead",
    "CVCSYNC_SECRETSMANAGER_ENDPOINT": "AWS Secrets Manager, local testing against moto",
    "CVCSYNC_SSM_ENDPOINT": "AWS SSM Parameter Store, local testing against moto",
    "FC_REGION": "set by Function Compute itself",
}
NEEDED_BY_EVERY_FUNCTION = {"CVC_ENDPOINT", "CVCSYNC_STATE_BUCKET", "CVCSYNC_OUTPUT_PREFIX", "CVCSYNC_LOG_LEVEL"}
NEEDED_BY_EVERY_FUNCTION |= {"CVCSYNC_SECRET_CVC_ACCESS_KEY"}
NEEDED_BY = {
    "object_upload": {"CVCSYNC_FULL_PREFIX", "CVCSYNC_DELTA_PREFIX", "CVCSYNC_MAX_DELETES", "CVCSYNC_FANOUT"},
    "http_api": {"CVCSYNC_SECRET_HTTP_KEYS", "CVCSYNC_SECRET_HTTP_TOKENS", "CVCSYNC_HTTP_SYNC_BUCKET"},
    "scheduled": {"CVCSYNC_RECONCILE_MODE", "CVCSYNC_HEARTBEAT_MAX_AGE_HOURS", "CVCSYNC_DEADLETTER_BACKLOG_LIMIT"},
    "queue_changes": {"CVCSYNC_GROUP_ID", "CVCSYNC_GROUP_NAME"},
}
TASKS = {"redrive", "reconcile", "heartbeat"}


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    assert len(names) > 40, "the README's Configuration table was not found"
    return names


# ------------------------------------------------------------------------------------------------ ROS (FC 3.0)

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
# What a deployment passes where the template has no default (deploy.py: the bucket; the manifest's code keys),
# and the pseudo parameters: the template with these substituted is checked against the spec too, so that names
# built from defaults (log project, queues, roles) are held to the spec's patterns and lengths.
SAMPLE_SHA256 = "0123456789abcdef" * 4
SAMPLE_VALUES: dict[str, Any] = {
    "ALIYUN::Region": "cn-hangzhou",
    "ALIYUN::AccountId": "1234567890123456",
    "ALIYUN::StackName": "cvc-sync",
    "ALIYUN::StackId": "3e4a7f31-5b5c-4e10-9b33-6d2f0c1a2b3c",
    "UploadBucket": "hr-exports",
    "CodeBucket": "cvc-artefacts",
}
ARTEFACTS = ["layer", *FUNCTIONS]
CODE_KEYS = {package.code_key_parameter(name): name for name in ARTEFACTS}  # LayerCodeKey -> layer, ...
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
    document = yaml.safe_load(FC_TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


_SPECS: dict[str, Any] = {}


def ros_specs() -> dict[str, Any]:
    """``resources`` of the published spec: type -> {attributes, properties} (read once)."""
    if not _SPECS:
        _SPECS.update(json.loads(ROS_SPECS.read_text(encoding="utf-8"))["resources"])
    return _SPECS


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def artefact_of(properties: dict[str, Any]) -> str:
    """The artefact (``layer`` or a function) whose code key parameter the resource's code names."""
    return CODE_KEYS[properties["Code"]["OssObjectName"]["Ref"]]


def fc_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Function properties by artefact name (``object_upload``...), whatever the deployed function is called."""
    return {
        artefact_of(r["Properties"]): r["Properties"] for r in resources_of(template, "ALIYUN::FC3::Function").values()
    }


def function_resource(template: dict[str, Any], name: str) -> str:
    found = [
        key
        for key, r in resources_of(template, "ALIYUN::FC3::Function").items()
        if artefact_of(r["Properties"]) == name
    ]
    assert len(found) == 1, (name, found)
    return found[0]


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


def sub_variables(text: str) -> list[str]:
    return re.findall(r"\$\{([^}!]+)\}", text)


def sample_values(template: dict[str, Any]) -> dict[str, Any]:
    values = {name: p["Default"] for name, p in template["Parameters"].items() if "Default" in p}
    values.update(SAMPLE_VALUES)
    for parameter, name in CODE_KEYS.items():
        values[parameter] = package.content_key("fc", package.Artefact(Path(f"{name}.zip"), 1, SAMPLE_SHA256))
    return values


def resolved(node: Any, values: dict[str, Any]) -> Any:
    """``node`` with ``Ref`` and ``Fn::Sub`` of parameters and pseudo parameters replaced by ``values``; resource
    references and conditions stay intrinsic."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        text = node.get("Fn::Sub") if set(node) == {"Fn::Sub"} else None
        if isinstance(text, str) and all(variable in values for variable in sub_variables(text)):
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(values[m.group(1)]), text)
        return {key: resolved(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value, values) for value in node]
    return node


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


def policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, statement) of every inline and managed policy the template creates."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "ALIYUN::RAM::Role":
            for policy in properties.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement
        if resource["Type"] == "ALIYUN::RAM::ManagedPolicy":
            for statement in properties.get("PolicyDocument", {}).get("Statement", []):
                yield name, statement


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


def test_ros_code_keys_are_the_manifest_keys_and_nothing_else(ros: dict[str, Any]) -> None:
    parameters = ros["Parameters"]
    for parameter, name in CODE_KEYS.items():
        assert "Default" not in parameters[parameter], f"{parameter}: a default would be a fixed key"
        pattern = parameters[parameter]["AllowedPattern"]
        key = package.content_key("fc", package.Artefact(Path(f"{name}.zip"), 1, SAMPLE_SHA256))
        assert re.fullmatch(pattern, key) and re.fullmatch(pattern, key.rsplit("/", 1)[1]), parameter
        other = "scheduled" if name != "scheduled" else "layer"
        for bad in [f"cvc-sync/packages/fc/{name}.zip", key.replace(name, other), f"/{key}", f"{key} "]:
            assert not re.fullmatch(pattern, bad), (parameter, bad)
    codes = {artefact_of(r["Properties"]) for r in ros["Resources"].values() if "Code" in r.get("Properties", {})}
    assert codes == set(ARTEFACTS)
    for resource in ros["Resources"].values():
        if "Code" in resource.get("Properties", {}):
            assert resource["Properties"]["Code"] == {
                "OssBucketName": {"Ref": "CodeBucket"},
                "OssObjectName": resource["Properties"]["Code"]["OssObjectName"],
            }


def test_ros_functions_handlers_runtimes_and_layer(ros: dict[str, Any]) -> None:
    functions = fc_functions(ros)
    assert sorted(functions) == FUNCTIONS == package.function_names()
    values = sample_values(ros)
    for name, properties in functions.items():
        module, _, attribute = properties["Handler"].partition(".")
        source = ROOT / "functions" / name / f"{module}.py"
        assert f"def {attribute}(" in source.read_text(encoding="utf-8"), name
        assert properties["Runtime"] == f"python{package.PLATFORMS['fc']}" == "python3.10"
        assert properties["Layers"] == [{"Fn::GetAtt": ["Layer", "LayerVersionArn"]}]
        assert resolved(properties["FunctionName"], values) == f"cvc-sync-{name.replace('_', '-')}"
        assert "InstanceConcurrency" not in properties
    layer = resources_of(ros, "ALIYUN::FC3::LayerVersion")["Layer"]["Properties"]
    assert layer["CompatibleRuntime"] == ["python3.10"]


def test_ros_functions_learn_their_own_name_from_the_fc3_context(ros: dict[str, Any]) -> None:
    """No variable repeats the function's name, region or account: the code reads them from FC 3.0's context."""
    from cvcsync.platform import runtime

    context = {"request_id": "r", "function": {"name": "cvc-sync-object-upload", "timeout": 900}}
    invocation = runtime.from_context({**context, "region": "cn-hangzhou", "account_id": "1234567890123456"})
    assert (invocation.function_name, invocation.region, invocation.account_id) == (
        "cvc-sync-object-upload",
        "cn-hangzhou",
        "1234567890123456",
    )
    values = sample_values(ros)
    for properties in fc_functions(ros).values():
        own_name = resolved(properties["FunctionName"], values)
        assert own_name not in json.dumps(resolved(properties["EnvironmentVariables"], values))


def test_ros_triggers_by_function(ros: dict[str, Any]) -> None:
    names = {key: artefact_of(r["Properties"]) for key, r in resources_of(ros, "ALIYUN::FC3::Function").items()}
    kinds: dict[str, set[str]] = {}
    for resource in resources_of(ros, "ALIYUN::FC3::Trigger").values():
        target = resource["Properties"]["FunctionName"]
        assert target["Fn::GetAtt"][1] == "FunctionName"
        kinds.setdefault(names[target["Fn::GetAtt"][0]], set()).add(resource["Properties"]["TriggerType"])
    assert kinds == {
        "object_upload": {"oss"},
        "queue_changes": {"mns_topic", "eventbridge"},
        "http_api": {"http"},
        "scheduled": {"timer"},
    }


def test_ros_upload_trigger_cannot_fire_on_its_own_outputs(ros: dict[str, Any]) -> None:
    config = ros["Resources"]["UploadTrigger"]["Properties"]["TriggerConfig"]
    assert all(event.startswith("oss:ObjectCreated:") for event in config["events"])
    assert config["filter"]["key"]["prefix"] == {"Ref": "UploadPrefix"}
    parameter = ros["Parameters"]["UploadPrefix"]
    assert not parameter["Default"].startswith(OUTPUT_PREFIX) and not OUTPUT_PREFIX.startswith(parameter["Default"])
    for bad in ["cvc-sync/", "cvc-sync/reports/", "", "/", "uploads"]:
        assert not re.fullmatch(parameter["AllowedPattern"], bad), bad
    for name in ["FullPrefix", "DeltaPrefix"]:
        assert ros["Parameters"][name]["Default"].startswith(parameter["Default"])
    outputs = {
        v
        for f in fc_functions(ros).values()
        for k, v in f["EnvironmentVariables"].items()
        if k.endswith("OUTPUT_PREFIX")
    }
    assert outputs == {OUTPUT_PREFIX}


def test_ros_timers_name_one_task_each(ros: dict[str, Any]) -> None:
    timers = [
        r["Properties"]["TriggerConfig"]
        for r in resources_of(ros, "ALIYUN::FC3::Trigger").values()
        if r["Properties"]["TriggerType"] == "timer"
    ]
    assert sorted(t["payload"] for t in timers) == sorted(TASKS)
    assert all(t["enable"] is True and set(t["cronExpression"]) == {"Ref"} for t in timers)


def test_ros_queue_trigger_streams_the_changes_queue_and_dead_letters_it(ros: dict[str, Any]) -> None:
    values = sample_values(ros)
    config = resolved(ros["Resources"]["ChangesQueueTrigger"]["Properties"]["TriggerConfig"], values)
    dead = resolved(ros["Resources"]["DeadLetterQueue"]["Properties"]["QueueName"], values)
    assert config["eventSourceConfig"]["eventSourceType"] == "MNS"
    assert config["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"]["QueueName"] == {
        "Fn::GetAtt": ["ChangesQueue", "QueueName"]
    }
    assert config["runOptions"]["deadLetterQueue"]["Arn"] == f"acs:mns:cn-hangzhou:1234567890123456:/queues/{dead}"
    assert config["asyncInvocationType"] is False  # EventBridge retries a failed batch, then dead-letters it


def test_ros_async_failures_go_to_the_dead_letter_queue(ros: dict[str, Any]) -> None:
    values = sample_values(ros)
    dead = resolved(ros["Resources"]["DeadLetterQueue"]["Properties"]["QueueName"], values)
    configured = {}
    for resource in resources_of(ros, "ALIYUN::FC3::AsyncInvokeConfig").values():
        properties = resolved(resource["Properties"], values)
        function = properties["FunctionName"]["Fn::GetAtt"][0]
        configured[artefact_of(ros["Resources"][function]["Properties"])] = properties
        destination = properties["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == f"acs:mns:cn-hangzhou:1234567890123456:/queues/{dead}/messages"
    assert sorted(configured) == FUNCTIONS  # OSS, topic, timers and continuations all invoke asynchronously
    assert configured["scheduled"]["MaxAsyncRetryAttempts"] == 0  # the next tick comes anyway


def test_ros_environment_declares_every_readme_variable(ros: dict[str, Any]) -> None:
    from cvcsync import config

    functions = fc_functions(ros)
    declared = set().union(*(set(p["EnvironmentVariables"]) for p in functions.values()))
    expected = readme_variables() - set(NOT_DEPLOYED) - set(NOT_ON_FC)
    assert expected - declared == set()
    read_by_code = {value for key, value in vars(config).items() if key.startswith("ENV_") and isinstance(value, str)}
    assert declared <= read_by_code, declared - read_by_code
    assert not declared & set(NOT_ON_FC)
    for name, properties in functions.items():
        assert NEEDED_BY_EVERY_FUNCTION | NEEDED_BY[name] <= set(properties["EnvironmentVariables"]), name
    assert functions["object_upload"]["EnvironmentVariables"]["CVCSYNC_FANOUT"] == "fc"


@pytest.mark.parametrize(
    ("parameter", "variable", "functions"),
    [
        ("CvcAccessKeySecretName", "CVCSYNC_SECRET_CVC_ACCESS_KEY", FUNCTIONS),
        ("HttpKeysSecretName", "CVCSYNC_SECRET_HTTP_KEYS", ["http_api"]),
        ("HttpTokensSecretName", "CVCSYNC_SECRET_HTTP_TOKENS", ["http_api"]),
        ("ScimTokensSecretName", "CVCSYNC_SECRET_SCIM_TOKENS", ["http_api"]),
    ],
)
def test_ros_a_secret_name_becomes_a_reference_and_a_grant_on_that_secret_only(
    ros: dict[str, Any], parameter: str, variable: str, functions: list[str]
) -> None:
    assert ros["Parameters"][parameter]["Default"] == "" and "NoEcho" not in ros["Parameters"][parameter]
    policies = [
        (n, r) for n, r in resources_of(ros, "ALIYUN::RAM::ManagedPolicy").items() if parameter in json.dumps(r)
    ]
    assert len(policies) == 1, policies
    name, policy = policies[0]
    condition = policy["Condition"]
    assert ros["Conditions"][condition] == {"Fn::Not": {"Fn::Equals": [{"Ref": parameter}, ""]}}
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["kms:GetSecretValue"],
            "Resource": [{"Fn::Sub": f"acs:kms:${{ALIYUN::Region}}:${{ALIYUN::AccountId}}:secret/${{{parameter}}}"}],
        }
    ]
    roles = {r["Fn::GetAtt"][0] for r in policy["Properties"]["Roles"]}
    for function, properties in fc_functions(ros).items():
        value = properties["EnvironmentVariables"].get(variable)
        if function in functions:
            assert value == {"Fn::If": [condition, {"Fn::Sub": f"kms:${{{parameter}}}"}, ""]}, function
            assert properties["Role"]["Fn::GetAtt"][0] in roles, (name, function)
        else:
            assert value is None and properties["Role"]["Fn::GetAtt"][0] not in roles, (name, function)


def role_grants(ros: dict[str, Any], function: str) -> list[tuple[str, str]]:
    """(action, resource as written) of every statement that reaches ``function``'s role, inline or managed."""
    role = fc_functions(ros)[function]["Role"]["Fn::GetAtt"][0]
    found = []
    for name, statement in policy_statements(ros):
        attached = ros["Resources"][name]["Properties"].get("Roles", [])
        if name == role or {"Fn::GetAtt": [role, "RoleName"]} in attached:
            resources = [json.dumps(r) if isinstance(r, dict) else r for r in statement["Resource"]]
            found += [(action, resource) for action in statement["Action"] for resource in resources]
    return found


def test_ros_roles_grant_what_the_code_needs_and_nothing_more(ros: dict[str, Any]) -> None:
    own = {name: f"functions/${{NamePrefix}}-{name.replace('_', '-')}" for name in FUNCTIONS}
    for name in FUNCTIONS:
        grants = role_grants(ros, name)

        def granted(action: str, fragment: str, grants: list[tuple[str, str]] = grants) -> bool:
            return any(a == action and fragment in r for a, r in grants)

        for action in ["CreateUser", "DeleteUser", "GetUser", "ListUsers", "GetAccountInfo"]:
            assert granted(f"aliyuncvc:{action}", "*"), (name, action)
        for action in ["oss:GetObject", "oss:PutObject", "oss:DeleteObject"]:
            assert granted(action, "${UploadBucket}/cvc-sync/*"), (name, action)
        assert granted("oss:ListObjects", ':${UploadBucket}"')
        assert granted("mns:SendMessage", "/queues/${NamePrefix}-dead-letters/messages"), name
        assert granted("log:PostLogStoreLogs", "logstore/functions"), name
        reads_uploads = granted("oss:GetObject", "${UploadBucket}/${UploadPrefix}*")
        assert reads_uploads == (name in {"object_upload", "http_api"}), name  # the upload, and POST /sync
        invokes = [r for a, r in grants if a == "fc:InvokeFunction"]
        if name in {"object_upload", "http_api"}:  # continuations and fan-out: the function invokes itself only
            assert len(invokes) == 1 and invokes[0].endswith(f'{own[name]}"}}'), (name, invokes)
        else:
            assert invokes == [], name
    for trigger_role, function in [("OssTriggerRole", "object_upload"), ("MnsTriggerRole", "queue_changes")]:
        statements = [s for n, s in policy_statements(ros) if n == trigger_role]
        assert [s["Action"] for s in statements] == [["fc:InvokeFunction"]]
        assert own[function] in json.dumps(statements[0]["Resource"])
    for role in resources_of(ros, "ALIYUN::RAM::Role").values():
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert len(trust) == 1 and trust[0]["Action"] == "sts:AssumeRole" and "Condition" not in trust[0]


def test_ros_functions_log_to_the_declared_store(ros: dict[str, Any]) -> None:
    for properties in fc_functions(ros).values():
        assert properties["LogConfig"]["Project"] == {"Fn::GetAtt": ["LogProject", "Name"]}
        assert properties["LogConfig"]["Logstore"] == {"Fn::GetAtt": ["LogStore", "LogstoreName"]}
    index = ros["Resources"]["LogIndex"]["Properties"]
    assert index["LogstoreName"] == {"Fn::GetAtt": ["LogStore", "LogstoreName"]} and index["FullTextIndex"]["Enable"]


# ------------------------------------------------------------------------------------------------ deploy script


@pytest.mark.parametrize("target", ["fc", "aws"])
def test_deploy_without_anything_explains_what_is_missing_and_runs_nothing(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy_script.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    monkeypatch.setattr(deploy_script.shutil, "which", lambda name: None)
    monkeypatch.setattr(deploy_script.Path, "home", lambda: tmp_path)
    assert deploy_script.main([target, "--dist", str(tmp_path / "dist")], env={}) == 2
    error = capsys.readouterr().err
    cli = "aliyun" if target == "fc" else "aws"
    for expected in ["make package", "STACK=", "ARTIFACT_BUCKET=", "REGION=", f"`{cli}`", "credentials"]:
        assert expected in error, expected
    assert "manifest" in error  # no packages: `make package` first
    required = "UploadBucket" if target == "fc" else "CvcAccessKeySecretArn"
    assert f"template parameter {required}" in error


@pytest.mark.parametrize("target", ["fc", "aws"])
def test_deploy_commands_when_everything_is_present(target: str, tmp_path: Path) -> None:
    """Content-addressed packages: each artefact goes to the key its manifest names, and the template gets the keys
    as its code-key parameters (so an update changes exactly what changed); no secret is a parameter."""
    dist = fake_dist(tmp_path, target)
    manifest = json.loads((dist / "manifest.json").read_text(encoding="utf-8"))["artefacts"]
    params = ["UploadBucket=hr"] if target == "fc" else ["UploadBucketName=hr"]
    if target == "aws":
        params += ["CvcAccessKeySecretArn=arn:aws:secretsmanager:cn-north-1:123456789012:secret:cvc-key-AbCdEf"]
    argv = [target, "--stack", "cvc", "--artifact-bucket", "art", "--region", "cn-hangzhou", "--dist", str(tmp_path)]
    args = deploy_script.argument_parser().parse_args([*argv, *[f"--param={p}" for p in params]])
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "a", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b", "AWS_PROFILE": "p"}
    missing, commands = deploy_script.plan(target, args, env, which=lambda name: f"/usr/bin/{name}", home=tmp_path)
    assert missing == []
    scheme, copy = ("oss", ["aliyun", "oss", "cp"]) if target == "fc" else ("s3", ["aws", "s3", "cp"])
    uploads = {c[3]: c[4] for c in commands if c[:3] == copy}
    assert uploads == {str(dist / a["file"]): f"{scheme}://art/{a['key']}" for a in manifest.values()}
    assert all(re.search(r"-[0-9a-f]{16}\.zip$", key) for key in uploads.values())
    last = commands[-1]
    if target == "fc":
        assert last[:3] == ["aliyun", "ros", "CreateStack"]
        given = {last[i + 1]: last[i + 3] for i, part in enumerate(last) if part.endswith(".ParameterKey")}
    else:
        assert last[:3] == ["aws", "cloudformation", "deploy"]
        overrides = last[last.index("--parameter-overrides") + 1 :]
        given = dict(item.split("=", 1) for item in overrides)
    assert given["CodeBucket"] == "art"
    assert {a["parameter"]: given[a["parameter"]] for a in manifest.values()} == {
        a["parameter"]: a["key"] for a in manifest.values()
    }


def test_a_rollback_deploys_the_previous_manifest_without_uploading(tmp_path: Path) -> None:
    """``--manifest`` of an earlier release whose zips are not at hand: its keys, already in the bucket, are deployed
    and nothing is uploaded."""
    earlier = fake_dist(tmp_path / "earlier", "fc")
    manifest = earlier / "manifest.json"
    for zipped in earlier.glob("*.zip"):
        zipped.unlink()
    argv = ["fc", "--stack", "cvc-id", "--update", "--artifact-bucket", "art", "--region", "cn-hangzhou"]
    args = deploy_script.argument_parser().parse_args([*argv, "--manifest", str(manifest), "--param=UploadBucket=hr"])
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "a", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b"}
    missing, commands = deploy_script.plan("fc", args, env, which=lambda name: f"/usr/bin/{name}", home=tmp_path)
    assert missing == []
    assert [c[:3] for c in commands] == [["aliyun", "ros", "UpdateStack"]]
    keys = json.loads(manifest.read_text(encoding="utf-8"))["artefacts"]
    assert all(a["key"] in commands[0] for a in keys.values())


def test_deploy_never_prints_secret_parameters() -> None:
    shown = deploy_script._redacted(
        ["x", "CvcAccessKeySecret=s3cr3t", "s3cr3t"], {"s3cr3t", "CvcAccessKeySecret=s3cr3t"}
    )
    assert "s3cr3t" not in shown


FC_DATA_TYPES = {"ALIYUN::MNS::Queue", "ALIYUN::SLS::Project", "ALIYUN::SLS::Logstore"}  # messages, letters, logs


def test_ros_resources_that_hold_data_are_retained(ros: dict[str, Any]) -> None:
    """Deleting or replacing the stack keeps the queues (change messages, dead letters) and the logs: ROS honours
    ``DeletionPolicy: Retain`` (help.aliyun.com, "Remove a resource from a stack"). The upload bucket is not the
    stack's: it is a parameter."""
    holding = {n: r for n, r in ros["Resources"].items() if r["Type"] in FC_DATA_TYPES}
    assert len(holding) >= 4
    assert {n: r.get("DeletionPolicy") for n, r in holding.items()} == dict.fromkeys(holding, "Retain")
    broken = copy.deepcopy(ros)
    del broken["Resources"]["DeadLetterQueue"]["DeletionPolicy"]
    assert [n for n, r in broken["Resources"].items() if r["Type"] in FC_DATA_TYPES and "DeletionPolicy" not in r] == [
        "DeadLetterQueue"
    ]

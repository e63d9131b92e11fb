"""The deployment templates, validated offline.

- ``deploy/sam/template.yaml`` (AWS): transformed by the real SAM translator (``aws-sam-translator``), then the
  CloudFormation it produced is checked by ``cfn-lint`` (run on the transformed output because cfn-lint 1.54+ no
  longer runs the translator itself and would miss errors inside SAM resources).
- ``template.yml`` (Function Compute, native ROS): no offline ROS validator exists, so a schema of each resource
  type's properties, written from the ROS resource documentation, is checked here, plus reference integrity.
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

ROOT = Path(__file__).resolve().parents[2]
FC_TEMPLATE = ROOT / "template.yml"
SAM_TEMPLATE = ROOT / "deploy" / "sam" / "template.yaml"
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
}
# Function Compute has no SQS: these name SQS queues (the FC template uses the object sink and FC fan-out).
NOT_ON_FC = {"CVCSYNC_FANOUT_QUEUE_URL", "CVCSYNC_DEADLETTER_QUEUE_URL", "CVCSYNC_ALERT_QUEUE_URL"}
NEEDED_BY_EVERY_FUNCTION = {"CVC_ENDPOINT", "CVCSYNC_STATE_BUCKET", "CVCSYNC_OUTPUT_PREFIX", "CVCSYNC_LOG_LEVEL"}
NEEDED_BY = {
    "object_upload": {"CVCSYNC_FULL_PREFIX", "CVCSYNC_DELTA_PREFIX", "CVCSYNC_MAX_DELETES", "CVCSYNC_FANOUT"},
    "http_api": {"CVCSYNC_HTTP_KEYS", "CVCSYNC_HTTP_TOKENS", "CVCSYNC_HTTP_SYNC_BUCKET", "CVCSYNC_FULL_PREFIX"},
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


# ------------------------------------------------------------------------------------------------ ROS schema

# From the ROS resource reference (help.aliyun.com/.../ros/developer-reference/aliyun-<type>): required and allowed
# properties. ALIYUN::EventBridge::EventStreaming is written from the EventBridge CreateEventStreaming API's
# shape; that its ROS resource takes exactly these names is an assumption (see docs/deploy.md).
ROS_SCHEMA: dict[str, tuple[set[str], set[str]]] = {
    "ALIYUN::FC::Service": (
        {"ServiceName"},
        {"Role", "LogConfig", "InternetAccess", "Description", "Tags", "VpcConfig", "NasConfig", "TracingConfig"},
    ),
    "ALIYUN::FC::Function": (
        {"ServiceName", "FunctionName", "Handler", "Runtime"},
        {"Code", "MemorySize", "Timeout", "EnvironmentVariables", "InstanceConcurrency", "Layers", "Description"}
        | {"AsyncConfiguration", "Initializer", "InitializationTimeout", "InstanceType", "CAPort", "DiskSize"},
    ),
    "ALIYUN::FC::Layer": ({"LayerName", "Code", "CompatibleRuntime"}, {"Description"}),
    "ALIYUN::FC::Trigger": (
        {"ServiceName", "FunctionName", "TriggerName", "TriggerType", "TriggerConfig"},
        {"InvocationRole", "SourceArn", "Qualifier"},
    ),
    "ALIYUN::RAM::Role": ({"RoleName", "AssumeRolePolicyDocument"}, {"Policies", "Description", "MaxSessionDuration"}),
    "ALIYUN::MNS::Queue": (
        {"QueueName"},
        {"VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds", "PollingWaitSeconds"}
        | {"LoggingEnabled"},
    ),
    "ALIYUN::MNS::Topic": ({"TopicName"}, {"MaximumMessageSize", "LoggingEnabled"}),
    "ALIYUN::SLS::Project": ({"Name"}, {"Description", "Tags"}),
    "ALIYUN::SLS::Logstore": ({"ProjectName", "LogstoreName"}, {"TTL", "ShardCount", "AutoSplit", "MaxSplitShard"}),
    "ALIYUN::EventBridge::EventStreaming": (
        {"EventStreamingName", "Source", "Sink", "FilterPattern"},
        {"Description", "RunOptions", "Tags"},
    ),
}
FC_TRIGGER_CONFIG: dict[str, tuple[set[str], set[str]]] = {  # TriggerType: required, allowed TriggerConfig keys
    "oss": ({"Events", "Filter"}, set()),
    "timer": ({"CronExpression", "Enable"}, {"Payload"}),
    "mns_topic": (set(), {"NotifyContentFormat", "NotifyStrategy", "FilterTag"}),
    "http": ({"AuthType", "Methods"}, set()),
}
FC_TRIGGER_TYPES = {"oss", "log", "tablestore", "timer", "mns_topic", "cdn_events", "http"}
FC_PYTHON_RUNTIMES = {"python2.7", "python3", "python3.9", "python3.10"}
ROS_PSEUDO = {"ALIYUN::Region", "ALIYUN::AccountId", "ALIYUN::StackName", "ALIYUN::StackId", "ALIYUN::NoValue"}
ROS_PARAMETER_KEYS = {"Type", "Default", "Description", "AllowedValues", "AllowedPattern", "NoEcho", "MinValue"}
ROS_PARAMETER_KEYS |= {"MaxValue", "MinLength", "MaxLength", "Label", "ConstraintDescription"}


@pytest.fixture(scope="module")
def ros() -> dict[str, Any]:
    document = yaml.safe_load(FC_TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def fc_functions(ros: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["FunctionName"]: r["Properties"] for r in resources_of(ros, "ALIYUN::FC::Function").values()
    }


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve_defaults(ros: dict[str, Any], node: Any) -> Any:
    """A value with Ref/Fn::Sub of parameters replaced by their defaults (pseudo parameters by placeholders)."""
    defaults = {name: str(p.get("Default", f"<{name}>")) for name, p in ros["Parameters"].items()}
    defaults.update({name: f"<{name}>" for name in ROS_PSEUDO})
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return defaults[node["Ref"]]
    if isinstance(node, dict) and set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: defaults[m.group(1)], node["Fn::Sub"])
    if isinstance(node, dict):
        return {key: resolve_defaults(ros, value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_defaults(ros, value) for value in node]
    return node


def test_ros_format_is_native_ros_not_funcraft(ros: dict[str, Any]) -> None:
    assert ros["ROSTemplateFormatVersion"] == "2015-09-01"
    assert "Transform" not in ros, "Funcraft's Aliyun::Serverless transform knows neither python3.10 nor EventBridge"
    assert set(ros) <= {"ROSTemplateFormatVersion", "Description", "Parameters", "Resources", "Outputs", "Conditions"}


def test_ros_resources_match_the_documented_schema(ros: dict[str, Any]) -> None:
    for name, resource in ros["Resources"].items():
        assert set(resource) <= {"Type", "Properties", "DependsOn", "Condition"}, name
        required, optional = ROS_SCHEMA[resource["Type"]]
        properties = set(resource["Properties"])
        assert required <= properties, f"{name}: missing {required - properties}"
        assert properties <= required | optional, f"{name}: unknown {properties - required - optional}"


def test_ros_parameters_are_well_formed_and_defaults_valid(ros: dict[str, Any]) -> None:
    for name, parameter in ros["Parameters"].items():
        assert set(parameter) <= ROS_PARAMETER_KEYS, name
        assert parameter["Type"] in {"String", "Number", "CommaDelimitedList", "Json", "Boolean"}, name
        assert parameter.get("Description"), f"{name}: say what to choose"
        if "Default" in parameter:
            default = parameter["Default"]
            if "AllowedValues" in parameter:
                assert default in parameter["AllowedValues"], name
            if "AllowedPattern" in parameter:
                assert re.fullmatch(parameter["AllowedPattern"], str(default)), name
            if parameter["Type"] == "Number":
                assert parameter.get("MinValue", default) <= default <= parameter.get("MaxValue", default), name


def test_ros_references_resolve(ros: dict[str, Any]) -> None:
    names = set(ros["Parameters"]) | ROS_PSEUDO
    resources = set(ros["Resources"])
    for resource in ros["Resources"].values():
        depends = resource.get("DependsOn", [])
        assert set([depends] if isinstance(depends, str) else depends) <= resources
    for node in walk(ros):
        if isinstance(node, dict) and "Ref" in node:
            assert node["Ref"] in names | resources, node
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            assert node["Fn::GetAtt"][0] in resources, node
        if isinstance(node, dict) and "Fn::Sub" in node:
            for variable in re.findall(r"\$\{([^}]+)\}", node["Fn::Sub"]):
                assert variable in names | resources, (variable, node)


def test_ros_functions_handlers_runtimes_and_packages(ros: dict[str, Any]) -> None:
    functions = fc_functions(ros)
    assert sorted(functions) == FUNCTIONS == package.function_names()
    for name, properties in functions.items():
        module, _, attribute = properties["Handler"].partition(".")
        source = ROOT / "functions" / name / f"{module}.py"
        assert f"def {attribute}(" in source.read_text(encoding="utf-8"), name
        assert properties["Runtime"] in FC_PYTHON_RUNTIMES and properties["Runtime"] == "python3.10"
        assert package.PLATFORMS["fc"] == "3.10"
        code = resolve_defaults(ros, properties["Code"])
        assert code["OssObjectName"].endswith(f"fc/{name}.zip"), name
        assert properties["Layers"] == [{"Fn::GetAtt": ["Layer", "Arn"]}]
        assert properties["MemorySize"] % 64 == 0 and 128 <= properties["MemorySize"] <= 32768
        assert 1 <= properties["Timeout"] <= 86400 and 1 <= properties["InstanceConcurrency"] <= 200
    layer = resources_of(ros, "ALIYUN::FC::Layer")["Layer"]["Properties"]
    assert layer["CompatibleRuntime"] == ["python3.10"]
    assert resolve_defaults(ros, layer["Code"])["OssObjectName"].endswith("fc/layer.zip")


def test_ros_triggers_and_their_configs(ros: dict[str, Any]) -> None:
    functions = fc_functions(ros)
    kinds: dict[str, set[str]] = {}
    for name, resource in resources_of(ros, "ALIYUN::FC::Trigger").items():
        properties = resource["Properties"]
        kind = properties["TriggerType"]
        assert kind in FC_TRIGGER_TYPES, name
        assert properties["FunctionName"] in functions, name
        required, optional = FC_TRIGGER_CONFIG[kind]
        config = set(properties["TriggerConfig"])
        assert required <= config <= required | optional, name
        if kind not in {"timer", "http"}:
            assert {"InvocationRole", "SourceArn"} <= set(properties), f"{name}: the event source needs a role"
        kinds.setdefault(properties["FunctionName"], set()).add(kind)
    assert kinds == {
        "object_upload": {"oss"},
        "queue_changes": {"mns_topic"},
        "http_api": {"http"},
        "scheduled": {"timer"},
    }


def test_ros_upload_trigger_cannot_fire_on_its_own_outputs(ros: dict[str, Any]) -> None:
    trigger = resources_of(ros, "ALIYUN::FC::Trigger")["UploadTrigger"]["Properties"]["TriggerConfig"]
    assert all(event.startswith("oss:ObjectCreated:") for event in trigger["Events"])
    assert trigger["Filter"]["Key"]["Prefix"] == {"Ref": "UploadPrefix"}
    parameter = ros["Parameters"]["UploadPrefix"]
    assert not parameter["Default"].startswith(OUTPUT_PREFIX) and not OUTPUT_PREFIX.startswith(parameter["Default"])
    for bad in ["cvc-sync/", "cvc-sync/reports/", "", "/", "uploads"]:
        assert not re.fullmatch(parameter["AllowedPattern"], bad), bad
    for name in ["FullPrefix", "DeltaPrefix"]:
        assert ros["Parameters"][name]["Default"].startswith(parameter["Default"])


def test_ros_timers_name_one_task_each(ros: dict[str, Any]) -> None:
    payloads = {
        r["Properties"]["TriggerConfig"]["Payload"]
        for r in resources_of(ros, "ALIYUN::FC::Trigger").values()
        if r["Properties"]["TriggerType"] == "timer"
    }
    assert payloads == TASKS


def test_ros_queue_trigger_is_an_event_stream_from_the_changes_queue(ros: dict[str, Any]) -> None:
    stream = resolve_defaults(ros, ros["Resources"]["ChangesQueueStream"]["Properties"])
    queue = resolve_defaults(ros, ros["Resources"]["ChangesQueue"]["Properties"])
    dead = resolve_defaults(ros, ros["Resources"]["DeadLetterQueue"]["Properties"])
    assert stream["Source"]["SourceMNSParameters"]["QueueName"] == queue["QueueName"]
    sink = stream["Sink"]["SinkFcParameters"]
    assert sink["FunctionName"]["Value"] == "queue_changes"
    assert sink["ServiceName"]["Value"] == ros["Parameters"]["ServiceName"]["Default"]
    assert stream["RunOptions"]["DeadLetterQueue"]["Arn"].endswith(f"/queues/{dead['QueueName']}")


def test_ros_async_failures_go_to_the_dead_letter_queue(ros: dict[str, Any]) -> None:
    dead = resolve_defaults(ros, ros["Resources"]["DeadLetterQueue"]["Properties"])["QueueName"]
    functions = fc_functions(ros)
    for name in ["object_upload", "queue_changes", "scheduled"]:  # invoked asynchronously by OSS, MNS, timers
        config = resolve_defaults(ros, functions[name]["AsyncConfiguration"])
        assert config["Destination"]["OnFailure"].endswith(f":/queues/{dead}/messages"), name
        assert 0 <= int(config["MaxAsyncRetryAttempts"]) <= 8, name


def test_ros_environment_declares_every_readme_variable(ros: dict[str, Any]) -> None:
    functions = fc_functions(ros)
    declared = set().union(*(set(p["EnvironmentVariables"]) for p in functions.values()))
    expected = readme_variables() - set(NOT_DEPLOYED) - NOT_ON_FC
    assert expected - declared == set()
    assert declared <= readme_variables(), declared - readme_variables()
    for name, properties in functions.items():
        variables = set(properties["EnvironmentVariables"])
        assert NEEDED_BY_EVERY_FUNCTION | NEEDED_BY[name] <= variables, name
        assert all(isinstance(value, (str, dict)) for value in properties["EnvironmentVariables"].values()), name
    assert functions["object_upload"]["EnvironmentVariables"]["CVCSYNC_FANOUT"] == "fc"


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def grants(ros: dict[str, Any], action: str, resource_suffix: str) -> bool:
    for statement in statements(ros["Resources"]["ServiceRole"]):
        resources = [json.dumps(r) for r in statement["Resource"]]
        if action in statement["Action"] and any(resource_suffix in r for r in resources):
            return True
    return False


def test_ros_service_role_grants_what_the_code_needs(ros: dict[str, Any]) -> None:
    assert grants(ros, "oss:GetObject", "${UploadBucket}/${UploadPrefix}*")
    for action in ["oss:GetObject", "oss:PutObject", "oss:DeleteObject"]:
        assert grants(ros, action, "${UploadBucket}/cvc-sync/*"), action
    assert grants(ros, "oss:ListObjects", "${UploadBucket}")
    assert grants(ros, "mns:SendMessage", "/queues/${ServiceName}-dead-letters/messages")
    assert grants(ros, "fc:InvokeFunction", "services/${ServiceName}.*/functions/*")
    assert grants(ros, "log:PostLogStoreLogs", "logstore/functions")
    for action in ["CreateUser", "DeleteUser", "GetUser", "ListUsers", "GetAccountInfo"]:
        assert grants(ros, f"aliyuncvc:{action}", "*"), action
    trust = ros["Resources"]["ServiceRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["fc.aliyuncs.com"]}}]


def test_ros_roles_are_least_privilege(ros: dict[str, Any]) -> None:
    for name, role in resources_of(ros, "ALIYUN::RAM::Role").items():
        for statement in statements(role):
            assert all("*" not in action for action in statement["Action"]), (name, statement)
            if statement["Resource"] == ["*"]:
                assert all(a.startswith("aliyuncvc:") for a in statement["Action"]), "only CVC lacks resource ARNs"
            assert not any(str(r).endswith(":*") for r in statement["Resource"]), (name, statement)
    for name in ["OssTriggerRole", "MnsTriggerRole"]:
        assert [s["Action"] for s in statements(ros["Resources"][name])] == [["fc:InvokeFunction"]]


def test_ros_service_logs_to_the_declared_store(ros: dict[str, Any]) -> None:
    service = ros["Resources"]["Service"]["Properties"]
    assert service["Role"] == {"Fn::GetAtt": ["ServiceRole", "Arn"]}
    assert service["LogConfig"]["Logstore"] == ros["Resources"]["LogStore"]["Properties"]["LogstoreName"]


# ------------------------------------------------------------------------------------------------ SAM


def sam_document() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    document = yaml_parse(SAM_TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def transform(document: dict[str, Any]) -> dict[str, Any]:
    """What `sam deploy` / `aws cloudformation package` then CloudFormation would do: code to S3, then the SAM
    transform (the real translator, offline: a fixed region and no managed-policy lookups)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    document = copy.deepcopy(document)
    for resource in document["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artefacts/{Path(resource['Properties'][key]).name}"
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    output: dict[str, Any] = translator.translate(document, parameter_values={})
    return output


def lint(template: dict[str, Any]) -> list[str]:
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    matches = cfn_lint(json.dumps(template), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    return [f"{m.rule.id} {m.message}" for m in matches]


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return sam_document()


@pytest.fixture(scope="module")
def cloudformation(sam: dict[str, Any]) -> dict[str, Any]:
    return transform(sam)


def test_sam_transforms_and_lints_clean(cloudformation: dict[str, Any]) -> None:
    assert lint(cloudformation) == []


def test_sam_validation_catches_the_errors_cfn_lint_alone_misses(cloudformation: dict[str, Any]) -> None:
    broken = copy.deepcopy(cloudformation)
    for resource in broken["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            resource["Properties"]["FunctionResponseTypes"] = ["ReportBatchItemFailure"]
        if resource["Type"] == "AWS::Events::Rule" and "cron" in resource["Properties"]["ScheduleExpression"]:
            resource["Properties"]["ScheduleExpression"] = "cron(0 18 * * * *)"
    problems = " ".join(lint(broken))
    assert "E3030" in problems and "ReportBatchItemFailure" in problems
    assert "E3027" in problems


def sam_functions(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    functions = {}
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            functions[Path(resource["Properties"]["CodeUri"]).stem] = resource["Properties"]
    return functions


def test_sam_functions_handlers_packages_and_runtime(sam: dict[str, Any]) -> None:
    functions = sam_functions(sam)
    assert sorted(functions) == FUNCTIONS
    glob = sam["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12" == f"python{package.PLATFORMS['lambda']}"
    module, _, attribute = glob["Handler"].partition(".")
    for name, properties in functions.items():
        assert properties["CodeUri"] == f"../../dist/lambda/{name}.zip"
        source = ROOT / "functions" / name / f"{module}.py"
        assert f"def {attribute}(" in source.read_text(encoding="utf-8"), name
    layer = sam["Resources"]["CvcSyncLayer"]["Properties"]
    assert layer["ContentUri"] == "../../dist/lambda/layer.zip" and layer["CompatibleRuntimes"] == ["python3.12"]


def test_sam_queue_redrive_and_partial_batch_failures(sam: dict[str, Any]) -> None:
    queue = sam["Resources"]["ChangesQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ChangesDeadLetterQueue", "Arn"]}
    event = sam_functions(sam)["queue_changes"]["Events"]["Changes"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= 6 * sam_functions(sam)["queue_changes"]["Timeout"]


def test_sam_upload_notification_cannot_fire_on_its_own_outputs(sam: dict[str, Any]) -> None:
    event = sam_functions(sam)["object_upload"]["Events"]["Upload"]["Properties"]
    assert event["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "UploadPrefix"}}]
    parameter = sam["Parameters"]["UploadPrefix"]
    assert not parameter["Default"].startswith(OUTPUT_PREFIX)
    for bad in ["cvc-sync/", "cvc-sync/x/", "", "uploads"]:
        assert not re.fullmatch(parameter["AllowedPattern"], bad), bad


def test_sam_schedules_async_destinations_and_concurrency(sam: dict[str, Any]) -> None:
    functions = sam_functions(sam)
    scheduled = functions["scheduled"]
    assert scheduled["ReservedConcurrentExecutions"] == 1
    tasks = {json.loads(e["Properties"]["Input"])["task"] for e in scheduled["Events"].values()}
    assert tasks == TASKS and all(e["Type"] == "Schedule" for e in scheduled["Events"].values())
    for name in ["object_upload", "queue_changes", "scheduled"]:
        on_failure = functions[name]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}}, name
    assert functions["http_api"]["Events"]["Api"]["Type"] == "HttpApi"


def test_sam_environment_declares_every_readme_variable(sam: dict[str, Any]) -> None:
    declared = set(sam["Globals"]["Function"]["Environment"]["Variables"])
    for properties in sam_functions(sam).values():
        declared |= set(properties.get("Environment", {}).get("Variables", {}))
    assert readme_variables() - set(NOT_DEPLOYED) - declared == set()
    assert declared <= readme_variables()


def sam_statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in properties["Policies"] for s in policy["Statement"]]


def test_sam_policies_grant_what_the_code_needs_and_no_wildcards(sam: dict[str, Any]) -> None:
    def granted(name: str, action: str, fragment: str) -> bool:
        return any(
            action in s["Action"] and fragment in json.dumps(s["Resource"])
            for s in sam_statements(sam_functions(sam)[name])
        )

    for name in FUNCTIONS:
        assert granted(name, "s3:PutObject", "${UploadBucketName}/cvc-sync/*"), name
        assert granted(name, "sqs:SendMessage", "AlertQueue"), name
        for statement in sam_statements(sam_functions(sam)[name]):
            assert all("*" not in action for action in statement["Action"]), (name, statement)
    for name in ["object_upload", "http_api"]:
        assert granted(name, "s3:GetObject", "${UploadBucketName}/${UploadPrefix}*"), name
    assert granted("object_upload", "lambda:InvokeFunction", "function:${AWS::StackName}-object-upload")
    assert sam["Resources"]["ObjectUploadFunction"]["Properties"]["FunctionName"] == {
        "Fn::Sub": "${AWS::StackName}-object-upload"
    }


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
    required = "UploadBucket" if target == "fc" else "CvcAccessKeySecret"
    assert f"template parameter {required}" in error


@pytest.mark.parametrize("target", ["fc", "aws"])
def test_deploy_commands_when_everything_is_present(target: str, tmp_path: Path) -> None:
    dist = tmp_path / ("fc" if target == "fc" else "lambda")
    dist.mkdir()
    for name in ["layer", *FUNCTIONS]:
        (dist / f"{name}.zip").write_bytes(b"zip")
    params = ["UploadBucket=hr", "CodeBucket=art"] if target == "fc" else ["UploadBucketName=hr"]
    params += ["CvcAccessKeyId=id", "CvcAccessKeySecret=secret"]
    argv = [target, "--stack", "cvc", "--artifact-bucket", "art", "--region", "cn-hangzhou", "--dist", str(tmp_path)]
    args = deploy_script.argument_parser().parse_args([*argv, *[f"--param={p}" for p in params]])
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "a", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b", "AWS_PROFILE": "p"}
    missing, commands = deploy_script.plan(target, args, env, which=lambda name: f"/usr/bin/{name}", home=tmp_path)
    assert missing == []
    if target == "fc":
        uploads = [c for c in commands if c[:3] == ["aliyun", "oss", "cp"]]
        assert [c[4].rsplit("/", 1)[1] for c in uploads] == sorted(f"{n}.zip" for n in ["layer", *FUNCTIONS])
        assert all(c[4].startswith("oss://art/cvc-sync/packages/fc/") for c in uploads)
        assert commands[-1][:3] == ["aliyun", "ros", "CreateStack"]
    else:
        assert [c[:3] for c in commands] == [["aws", "cloudformation", "package"], ["aws", "cloudformation", "deploy"]]
        assert "UploadBucketName=hr" in commands[1]


def test_deploy_never_prints_secret_parameters() -> None:
    shown = deploy_script._redacted(
        ["x", "CvcAccessKeySecret=s3cr3t", "s3cr3t"], {"s3cr3t", "CvcAccessKeySecret=s3cr3t"}
    )
    assert "s3cr3t" not in shown

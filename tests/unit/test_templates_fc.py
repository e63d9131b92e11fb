"""``template.yml`` (Function Compute 3.0, native ROS) against the code: every handler path exists, each function
has its triggers, the upload trigger can never fire on cvc-sync's own outputs, every environment variable of the
README's Configuration table is declared (or listed as not for deployment, with the reason), secrets are names that
become references and grants on that secret only, every permission the code needs is granted and nothing wider, the
resources that hold data are retained. The template's validity against the published specs is
``test_templates_fc_specs.py``'s.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from deploy import package

from support.ros_template import (
    ARTEFACTS,
    CODE_KEYS,
    FUNCTIONS,
    ROOT,
    SAMPLE_SHA256,
    artefact_of,
    fc_functions,
    fc_template,
    policy_statements,
    resolved,
    resources_of,
    sample_values,
)

from .test_templates import NOT_DEPLOYED, OUTPUT_PREFIX, TASKS, readme_variables

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


@pytest.fixture(scope="module")
def ros() -> dict[str, Any]:
    return fc_template()


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

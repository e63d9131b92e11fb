"""deploy/sam/template.yaml (AWS Lambda), validated offline, and the rules it keeps.

The real SAM translator (``aws-sam-translator``, offline: a fixed region, no managed-policy look-ups) transforms
the template, and ``cfn-lint`` checks the CloudFormation it produced (cfn-lint 1.54+ no longer runs the translator
itself and would miss errors inside SAM resources). The rules are asserted on that output, where what SAM adds by
itself (roles, managed policies, invoke permissions) is visible:

- least privilege: no AWS managed policy, no wildcard action, and every resource of every statement is one of this
  stack's (its bucket's prefixes, its queues, log groups, functions); a ``*`` only for an action AWS gives no
  resource-level permission for, named in UNSCOPED_ACTIONS with the reason (none on AWS);
- every invoke permission names its source (SourceArn), and its account where that ARN has none (S3);
- the bucket and the queues hold data: Retain on deletion and on replacement;
- code by content: every function and the layer come from CodeBucket under a key parameter that only a
  content-addressed key matches (``deploy/package.py``'s manifest fills them); no fixed key, no default;
- an asynchronous-invocation configuration only on a function that is invoked asynchronously.

Each rule is a function returning its problems; ``test_each_rule_catches_what_it_forbids`` breaks a copy of the
template in the way a rule forbids and shows that the rule reports it. The cross-checks with the code (handlers,
README variables, tasks) share their lists with ``test_templates.py``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy import package

from .test_templates import NOT_DEPLOYED, OUTPUT_PREFIX, TASKS, readme_variables

ROOT = Path(__file__).resolve().parents[2]
SAM_TEMPLATE = ROOT / "deploy" / "sam" / "template.yaml"
FUNCTIONS = package.function_names()
ARTEFACTS = ["layer", *FUNCTIONS]

# README variables of Function Compute only: Lambda never reads them.
NOT_ON_AWS = {
    "CVCSYNC_FC_ENDPOINT": "the FC 3.0 API a function invokes itself through (Lambda: the lambda client)",
    "CVCSYNC_KMS_ENDPOINT": "Alibaba Cloud KMS, read with FC STS credentials (Lambda: secretsmanager: or ssm:)",
    "FC_REGION": "set by Function Compute",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "a RAM user's key is a Secrets Manager reference, CVCSYNC_SECRET_CVC_ACCESS_KEY",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "a plain secret value: the template sets CVCSYNC_SECRET_CVC_ACCESS_KEY",
    "CVCSYNC_HTTP_KEYS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_HTTP_KEYS instead",
    "CVCSYNC_HTTP_TOKENS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_HTTP_TOKENS instead",
    "CVCSYNC_SCIM_TOKENS": "a plain secret value: the template sets the reference CVCSYNC_SECRET_SCIM_TOKENS instead",
    "CVCSYNC_SECRETSMANAGER_ENDPOINT": "an endpoint override for local testing against moto",
    "CVCSYNC_SSM_ENDPOINT": "an endpoint override for local testing against moto",
}
# Actions AWS gives no resource-level permission for, which a statement may therefore grant on "*", and why.
# None on AWS: the CVC actions (which have none) are granted to the RAM user whose key the functions hold, outside
# this template.
UNSCOPED_ACTIONS: dict[str, str] = {}
# Resource types whose ARN carries the account id: SourceArn alone then pins the account.
ARN_HAS_ACCOUNT = {"AWS::Events::Rule", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::ApiGatewayV2::Api"}
# Resources that hold data: kept when the stack is deleted or the resource would be replaced.
DATA_TYPES = {"AWS::S3::Bucket", "AWS::SQS::Queue"}
# Callers that invoke a function asynchronously (Lambda's retry policy and on-failure destination apply).
ASYNC_PRINCIPALS = {"s3.amazonaws.com", "events.amazonaws.com", "sns.amazonaws.com"}
# A resource is this stack's when its ARN names the stack, one of its resources, or a parameter that names one
# thing (its pattern refuses a wildcard: UploadBucketName, UploadPrefix).
STACK_NAMES = {"AWS::StackName"}


def sam_document() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    document = yaml_parse(SAM_TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def transform(document: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation makes of the template: the SAM transform by the real translator, offline."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    output: dict[str, Any] = translator.translate(copy.deepcopy(document), parameter_values={})
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


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def function_name(properties: dict[str, Any]) -> str:
    """``object_upload`` for FunctionName ``${AWS::StackName}-object-upload``."""
    return str(properties["FunctionName"]["Fn::Sub"]).split("}-", 1)[1].replace("-", "_")


def sam_functions(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {function_name(r["Properties"]): r["Properties"] for r in of_type(sam, "AWS::Serverless::Function").values()}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(policy holder, statement) for every identity policy in the template."""
    found = []
    for kind in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, resource in of_type(template, kind).items():
            properties = resource["Properties"]
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
            documents += [properties["PolicyDocument"]] if "PolicyDocument" in properties else []
            found += [(name, s) for document in documents for s in _branches(_as_list(document["Statement"]))]
    return found


def _branches(listed: list[Any]) -> list[dict[str, Any]]:
    """Statements, with a conditional one (``Fn::If`` [condition, statement, AWS::NoValue]) as each of its branches:
    every statement the stack may hold is checked."""
    found: list[dict[str, Any]] = []
    for item in listed:
        if isinstance(item, dict) and "Fn::If" in item:
            found += [b for b in item["Fn::If"][1:] if isinstance(b, dict) and b != {"Ref": "AWS::NoValue"}]
        else:
            found.append(item)
    return found


def role_statements(template: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for holder, s in statements(template) if holder == role]


# ------------------------------------------------------------------------------------------------ the rules


def _sub(value: Any) -> tuple[str, dict[str, Any]] | None:
    """The text of a Fn::Sub and its variables (the long form's), or None for anything else."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return (str(sub[0]), dict(sub[1])) if isinstance(sub, list) else (str(sub), {})
    return None


def _one_thing(template: dict[str, Any], parameter: str) -> bool:
    """A parameter whose value names one thing: its pattern exists and refuses a wildcard."""
    pattern = template.get("Parameters", {}).get(parameter, {}).get("AllowedPattern")
    return pattern is not None and not re.fullmatch(pattern, "*")


def _own_resource(template: dict[str, Any], resource: Any) -> str | None:
    """Why ``resource`` (a statement's) is not one of this stack's, or None if it is."""
    resources = template["Resources"]
    if resource == "*":
        return "`*` resource"
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return None if resource["Fn::GetAtt"][0] in resources else f"GetAtt of a foreign resource {resource}"
    if isinstance(resource, dict) and "Ref" in resource:
        named = resource["Ref"] in resources or _one_thing(template, resource["Ref"])
        return None if named else f"Ref of {resource['Ref']}, which may name anything"
    sub = _sub(resource)
    if sub is None:
        return f"hard-coded resource {resource!r}: not one of this stack's"
    text, variables = sub
    owned = STACK_NAMES | set(resources) | {k for k, v in variables.items() if _own_resource(template, v) is None}
    owned |= {name for name in template.get("Parameters", {}) if _one_thing(template, name)}
    if not set(re.findall(r"\$\{([^}]+)\}", text)) & owned:
        return f"{text}: names nothing of this stack (its name, a resource, a parameter naming one thing)"
    fields = re.sub(r"\$\{[^}]+\}", "x", text).split(":", 5)
    if len(fields) < 6 or "*" in "".join(fields[1:5]) or fields[5].startswith("*"):
        return f"{text}: a wildcard where the ARN names the service, region, account or resource"
    return None


def unscoped_grants(template: dict[str, Any]) -> list[str]:
    """Least privilege: no managed policy, no wildcard action, only this stack's resources (or a named exception)."""
    problems = []
    for name, role in of_type(template, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            problems.append(f"{name}: managed policy {arn}: AWS managed policies grant on `*`; write statements")
    for holder, statement in statements(template):
        actions = _as_list(statement["Action"])
        if [a for a in actions if "*" in a]:
            problems.append(f"{holder} {statement.get('Sid')}: wildcard action in {actions}")
        for resource in _as_list(statement["Resource"]):
            why = _own_resource(template, resource)
            if why == "`*` resource" and set(actions) <= set(UNSCOPED_ACTIONS):
                continue
            if why is not None:
                problems.append(f"{holder} {statement.get('Sid')} {actions}: {why}")
    return problems


def unsourced_permissions(template: dict[str, Any]) -> list[str]:
    """Every invoke permission names its source in this stack, and the account where that ARN has none."""
    problems = []
    resources = template["Resources"]
    for name, permission in of_type(template, "AWS::Lambda::Permission").items():
        properties = permission["Properties"]
        source = properties.get("SourceArn")
        if source is None:
            problems.append(f"{name}: no SourceArn: any {properties['Principal']} resource, of any account, may invoke")
            continue
        why = _own_resource(template, source)
        if why is not None:
            problems.append(f"{name}: SourceArn {why}")
            continue
        sub = _sub(source)
        if sub is not None:
            carries_account = "${AWS::AccountId}" in sub[0]
        else:
            carries_account = resources[source["Fn::GetAtt"][0]]["Type"] in ARN_HAS_ACCOUNT
        if not carries_account and properties.get("SourceAccount") != {"Ref": "AWS::AccountId"}:
            problems.append(f"{name}: SourceArn {source} has no account: SourceAccount must be AWS::AccountId")
    return problems


def unretained_data(template: dict[str, Any]) -> list[str]:
    return [
        f"{name} ({resource['Type']}): {policy} is {resource.get(policy, 'Delete')}, not Retain"
        for name, resource in template["Resources"].items()
        if resource["Type"] in DATA_TYPES
        for policy in ("DeletionPolicy", "UpdateReplacePolicy")
        if resource.get(policy) != "Retain"
    ]


def content_key_pattern_problems(parameter: str, definition: dict[str, Any], artefact: str) -> list[str]:
    problems = []
    if "Default" in definition:
        problems.append(f"{parameter}: a default key is a fixed key")
    pattern = definition.get("AllowedPattern", ".*")
    hashed = f"cvc-sync/packages/lambda/{artefact}-0123456789abcdef.zip"
    for good in [hashed, f"{artefact}-0123456789abcdef.zip"]:
        if not re.fullmatch(pattern, good):
            problems.append(f"{parameter}: refuses the content-addressed key {good}")
    for fixed in [f"cvc-sync/packages/lambda/{artefact}.zip", f"{artefact}.zip", f"{artefact}-latest.zip", "*"]:
        if re.fullmatch(pattern, fixed):
            problems.append(f"{parameter}: accepts the fixed key {fixed}")
    return problems


def fixed_code(template: dict[str, Any]) -> list[str]:
    """Every package comes from CodeBucket under its content-addressed key parameter; nothing else."""
    parameters = template["Parameters"]
    problems = []
    located = {}
    for name, resource in of_type(template, "AWS::Lambda::Function").items():
        located[function_name(resource["Properties"])] = (name, resource["Properties"]["Code"])
    for name, resource in of_type(template, "AWS::Lambda::LayerVersion").items():
        located["layer"] = (name, resource["Properties"]["Content"])
    if sorted(located) != sorted(ARTEFACTS):
        problems.append(f"packages {sorted(located)}, expected {ARTEFACTS}")
    for artefact, (name, code) in sorted(located.items()):
        parameter = package.code_key_parameter(artefact)
        if code != {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": parameter}}:
            problems.append(f"{name}: code {code}, not CodeBucket + the content-addressed key parameter {parameter}")
        elif parameter not in parameters:
            problems.append(f"{name}: no parameter {parameter}")
        else:
            problems += content_key_pattern_problems(parameter, parameters[parameter], artefact)
    return problems


def useless_async_configs(template: dict[str, Any]) -> list[str]:
    """An EventInvokeConfig applies to asynchronous invocations only: on another function it does nothing."""
    invoked_async = set()
    for permission in of_type(template, "AWS::Lambda::Permission").values():
        target = permission["Properties"]["FunctionName"]
        if permission["Properties"]["Principal"] in ASYNC_PRINCIPALS:
            invoked_async.add(target.get("Ref") or target.get("Fn::GetAtt", [None])[0])
    return [
        f"{name}: {config['Properties']['FunctionName']['Ref']} is invoked synchronously only, so it does nothing"
        for name, config in of_type(template, "AWS::Lambda::EventInvokeConfig").items()
        if config["Properties"]["FunctionName"]["Ref"] not in invoked_async
    ]


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "least privilege": unscoped_grants,
    "invoke permissions name their source": unsourced_permissions,
    "data is retained": unretained_data,
    "code by content": fixed_code,
    "asynchronous configuration only where invoked asynchronously": useless_async_configs,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_template_keeps_the_rule(rule: str, cloudformation: dict[str, Any]) -> None:
    assert RULES[rule](cloudformation) == []


# ------------------------------------------------------------------------------------------------ the rules break


def _properties(sam: dict[str, Any], resource: str) -> dict[str, Any]:
    properties: dict[str, Any] = sam["Resources"][resource]["Properties"]
    return properties


def _grant(role: str, action: str, resource: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(sam: dict[str, Any]) -> None:
        statement = {"Effect": "Allow", "Action": [action], "Resource": resource}
        _properties(sam, role)["Policies"][0]["PolicyDocument"]["Statement"].append(statement)

    return mutate


def _sam_role(sam: dict[str, Any]) -> None:  # SAM then makes the role, with AWSLambdaSQSQueueExecutionRole
    del _properties(sam, "QueueChangesFunction")["Role"]


def _sam_s3_event(sam: dict[str, Any]) -> None:  # SAM's S3 event: its permission has no SourceArn
    del sam["Resources"]["ObjectUploadInvokePermission"]
    del sam["Resources"]["UploadBucket"]["DependsOn"]
    del _properties(sam, "UploadBucket")["NotificationConfiguration"]
    event = {"Bucket": {"Ref": "UploadBucket"}, "Events": "s3:ObjectCreated:*"}
    _properties(sam, "ObjectUploadFunction")["Events"] = {"Upload": {"Type": "S3", "Properties": event}}


def _drop(resource: str, *path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(sam: dict[str, Any]) -> None:
        node = sam["Resources"][resource]
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(sam: dict[str, Any]) -> None:
        node = sam
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


_LAYER_URI = ("Resources", "CvcSyncLayer", "Properties", "ContentUri")
_ASYNC = {"MaximumRetryAttempts": 2, "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": "arn:x"}}}
_ALERTS = {"Fn::GetAtt": ["AlertQueue", "Arn"]}
_LOGS = {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"}
_ANY_BUCKET = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${GroupName}/*"}  # GroupName has no pattern: may be "*"
_PRIVILEGE, _SOURCE, _DATA, _CODE, _ASYNC_ONLY = RULES
# name: (the rule, how to break a copy of the template, what the rule must then report)
BREAKS: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "a `*` resource": (_PRIVILEGE, _grant("HttpApiRole", "s3:GetObject", "*"), "['s3:GetObject']: `*` resource"),
    "a wildcard action": (_PRIVILEGE, _grant("ScheduledRole", "sqs:*", _ALERTS), "wildcard action"),
    "another account's bucket": (_PRIVILEGE, _grant("HttpApiRole", "s3:GetObject", "arn:aws:s3:::x/*"), "hard-coded"),
    "every log group": (
        _PRIVILEGE,
        _grant("QueueChangesRole", "logs:PutLogEvents", _LOGS),
        "names nothing of this stack",
    ),
    "a bucket any value names": (
        _PRIVILEGE,
        _grant("HttpApiRole", "s3:GetObject", _ANY_BUCKET),
        "names nothing of this stack",
    ),
    "a role made by SAM": (_PRIVILEGE, _sam_role, "AWSLambdaSQSQueueExecutionRole"),
    "no SourceArn": (
        _SOURCE,
        _drop("ObjectUploadInvokePermission", "Properties", "SourceArn"),
        "ObjectUploadInvokePermission: no SourceArn",
    ),
    "no SourceAccount on S3": (
        _SOURCE,
        _drop("ObjectUploadInvokePermission", "Properties", "SourceAccount"),
        "has no account: SourceAccount must be AWS::AccountId",
    ),
    "SAM's S3 event": (_SOURCE, _sam_s3_event, "no SourceArn"),
    "a bucket deleted with the stack": (
        _DATA,
        _drop("UploadBucket", "DeletionPolicy"),
        "UploadBucket (AWS::S3::Bucket): DeletionPolicy is Delete",
    ),
    "a queue deleted on replacement": (
        _DATA,
        _drop("ChangesDeadLetterQueue", "UpdateReplacePolicy"),
        "ChangesDeadLetterQueue (AWS::SQS::Queue): UpdateReplacePolicy is Delete",
    ),
    "a fixed layer key": (
        _CODE,
        _set({"Bucket": {"Ref": "CodeBucket"}, "Key": "cvc-sync/packages/lambda/layer.zip"}, *_LAYER_URI),
        "not CodeBucket + the content-addressed key parameter LayerCodeKey",
    ),
    "a packaged code uri": (
        _CODE,
        _set("s3://artefacts/scheduled.zip", "Resources", "ScheduledFunction", "Properties", "CodeUri"),
        "not CodeBucket + the content-addressed key parameter ScheduledCodeKey",
    ),
    "a default key": (
        _CODE,
        _set("cvc-sync/packages/lambda/http_api.zip", "Parameters", "HttpApiCodeKey", "Default"),
        "HttpApiCodeKey: a default key is a fixed key",
    ),
    "a key pattern that takes any key": (
        _CODE,
        _set(".*", "Parameters", "QueueChangesCodeKey", "AllowedPattern"),
        "QueueChangesCodeKey: accepts the fixed key cvc-sync/packages/lambda/queue_changes.zip",
    ),
    "an async configuration on the queue function": (
        _ASYNC_ONLY,
        _set(_ASYNC, "Resources", "QueueChangesFunction", "Properties", "EventInvokeConfig"),
        "QueueChangesFunction is invoked synchronously only",
    ),
    "an async configuration on the HTTP function": (
        _ASYNC_ONLY,
        _set(_ASYNC, "Resources", "HttpApiFunction", "Properties", "EventInvokeConfig"),
        "HttpApiFunction is invoked synchronously only",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_rule_catches_what_it_forbids(name: str, sam: dict[str, Any]) -> None:
    rule, mutate, expected = BREAKS[name]
    broken = copy.deepcopy(sam)
    mutate(broken)
    problems = RULES[rule](transform(broken))
    assert [p for p in problems if expected in p], problems


def test_every_rule_has_a_break() -> None:
    assert {rule for rule, _, _ in BREAKS.values()} == set(RULES)


# ------------------------------------------------------------------------------------------------ the template


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


def test_sam_functions_handlers_packages_and_runtime(sam: dict[str, Any]) -> None:
    functions = sam_functions(sam)
    assert sorted(functions) == FUNCTIONS
    glob = sam["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12" == f"python{package.PLATFORMS['lambda']}"
    module, _, attribute = glob["Handler"].partition(".")
    for name, properties in functions.items():
        key = {"Ref": package.code_key_parameter(name)}
        assert properties["CodeUri"] == {"Bucket": {"Ref": "CodeBucket"}, "Key": key}, name
        source = ROOT / "functions" / name / f"{module}.py"
        assert f"def {attribute}(" in source.read_text(encoding="utf-8"), name
    layer = sam["Resources"]["CvcSyncLayer"]["Properties"]
    assert layer["ContentUri"] == {"Bucket": {"Ref": "CodeBucket"}, "Key": {"Ref": "LayerCodeKey"}}
    assert layer["CompatibleRuntimes"] == ["python3.12"]


def test_code_key_parameters_are_the_manifests(sam: dict[str, Any]) -> None:
    """The parameters deploy.py fills from dist/lambda/manifest.json are exactly the template's key parameters, and
    every key the manifest gives matches its parameter's pattern."""
    keys = {name: p for name, p in sam["Parameters"].items() if name.endswith("CodeKey")}
    assert sorted(keys) == sorted(package.code_key_parameter(name) for name in ARTEFACTS)
    for name in ARTEFACTS:
        artefact = package.Artefact(Path(f"{name}.zip"), 1, "0123456789abcdef" * 4)
        key = package.content_key("lambda", artefact)
        assert re.fullmatch(keys[package.code_key_parameter(name)]["AllowedPattern"], key), key
    assert "Default" not in sam["Parameters"]["CodeBucket"]
    assert ".zip" not in json.dumps(sam["Resources"]), "a package named in the resources: use its key parameter"


def test_sam_queue_redrive_and_partial_batch_failures(sam: dict[str, Any]) -> None:
    queue = sam["Resources"]["ChangesQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ChangesDeadLetterQueue", "Arn"]}
    event = sam_functions(sam)["queue_changes"]["Events"]["Changes"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= 6 * sam_functions(sam)["queue_changes"]["Timeout"]


def test_sam_upload_notification_cannot_fire_on_its_own_outputs(sam: dict[str, Any]) -> None:
    bucket = sam["Resources"]["UploadBucket"]
    [notification] = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "UploadPrefix"}}]
    assert notification["Function"] == {"Fn::GetAtt": ["ObjectUploadFunction", "Arn"]}
    assert bucket["DependsOn"] == "ObjectUploadInvokePermission"  # S3 checks the permission when it saves this
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
    for name in ["object_upload", "scheduled"]:  # invoked asynchronously by S3 (and itself) and EventBridge
        on_failure = functions[name]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}}, name
    for name in ["queue_changes", "http_api"]:  # invoked synchronously: by the event source mapping, by API Gateway
        assert "EventInvokeConfig" not in functions[name], name
    assert functions["http_api"]["Events"]["Api"]["Type"] == "HttpApi"


def test_sam_environment_declares_every_readme_variable(sam: dict[str, Any]) -> None:
    declared = set(sam["Globals"]["Function"]["Environment"]["Variables"])
    for properties in sam_functions(sam).values():
        declared |= set(properties.get("Environment", {}).get("Variables", {}))
    assert readme_variables() - set(NOT_DEPLOYED) - set(NOT_ON_AWS) - declared == set()
    assert declared <= readme_variables() - set(NOT_ON_AWS)


def test_each_function_has_its_own_role_for_lambda_only(cloudformation: dict[str, Any]) -> None:
    functions = of_type(cloudformation, "AWS::Lambda::Function")
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(set(roles)) == len(FUNCTIONS) and set(roles) == set(of_type(cloudformation, "AWS::IAM::Role"))
    for role in roles:
        trust = cloudformation["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]


def test_roles_grant_what_the_code_needs(cloudformation: dict[str, Any]) -> None:
    functions = {function_name(f["Properties"]): f for f in of_type(cloudformation, "AWS::Lambda::Function").values()}

    def granted(name: str, action: str, fragment: str) -> bool:
        return any(
            action in _as_list(s["Action"]) and fragment in json.dumps(s["Resource"])
            for s in role_statements(cloudformation, functions[name])
        )

    for name in FUNCTIONS:
        log_group = f"log-group:/aws/lambda/${{AWS::StackName}}-{name.replace('_', '-')}:*"
        for action in ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]:
            assert granted(name, action, log_group), (name, action)
        assert granted(name, "s3:PutObject", "${UploadBucketName}/cvc-sync/*"), name
        assert granted(name, "s3:ListBucket", "${UploadBucketName}"), name
        assert granted(name, "sqs:SendMessage", "AlertQueue"), name
    for name in ["object_upload", "http_api"]:
        assert granted(name, "s3:GetObject", "${UploadBucketName}/${UploadPrefix}*"), name
    for name in ["object_upload", "scheduled"]:  # the on-failure destination is written with the function's role
        assert granted(name, "sqs:SendMessage", "AsyncFailureQueue"), name
    assert granted("object_upload", "lambda:InvokeFunction", "function:${AWS::StackName}-object-upload")
    # POST /sync continues a run that reaches its deadline by invoking its own function (http_api.handlers).
    assert granted("http_api", "lambda:InvokeFunction", "function:${AWS::StackName}-http-api")
    for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]:
        assert granted("queue_changes", action, '"ChangesQueue"'), action
    # Nothing beyond what each function does: the queue function never sends to the async-failure queue, and only
    # the upload and HTTP functions may invoke a function (themselves, above).
    assert not granted("queue_changes", "sqs:SendMessage", "AsyncFailureQueue")
    assert [n for n in FUNCTIONS if granted(n, "lambda:InvokeFunction", "function:")] == ["http_api", "object_upload"]


SECRET_LIKE = re.compile(r"SECRET|TOKEN|PASSWORD|_KEYS$")
NOT_A_SECRET = re.compile(r"_ENDPOINT$|_TTL_SECONDS$")
REFERENCE_PREFIXES = ("secretsmanager:", "ssm:")


def plain_secrets(sam: dict[str, Any]) -> list[str]:
    """Environment variables that would hold a secret VALUE (anything but an empty string or a secret reference), and
    parameters that take one (``NoEcho``): a secret is read from a store by reference, never configured in plain."""
    problems = [f"parameter {n} is NoEcho" for n, p in sam["Parameters"].items() if p.get("NoEcho")]
    environments = {"Globals": sam["Globals"]["Function"].get("Environment", {}).get("Variables", {})}
    environments.update(
        (name, props.get("Environment", {}).get("Variables", {})) for name, props in sam_functions(sam).items()
    )

    def reference(value: Any) -> bool:
        if value == "":
            return True
        if isinstance(value, dict) and "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return str(text).startswith(REFERENCE_PREFIXES)
        if isinstance(value, dict) and "Fn::If" in value:
            return all(reference(branch) for branch in value["Fn::If"][1:])
        return False

    for where, variables in environments.items():
        for name, value in variables.items():
            if SECRET_LIKE.search(name) and not NOT_A_SECRET.search(name) and not reference(value):
                problems.append(f"{where}: {name} holds a value, not a secret reference")
    return problems


def test_no_secret_is_a_parameter_or_a_plain_environment_variable(sam: dict[str, Any]) -> None:
    assert plain_secrets(sam) == []
    assert sam["Globals"]["Function"]["Environment"]["Variables"]["CVCSYNC_SECRET_CVC_ACCESS_KEY"] == {
        "Fn::Sub": "secretsmanager:${CvcAccessKeySecretArn}"
    }


@pytest.mark.parametrize(
    ("variable", "parameter"),
    [("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "CvcAccessKey"), ("CVCSYNC_HTTP_TOKENS", "HttpTokens")],
)
def test_a_plain_secret_put_back_is_caught(sam: dict[str, Any], variable: str, parameter: str) -> None:
    broken = copy.deepcopy(sam)
    broken["Parameters"][parameter] = {"Type": "String", "NoEcho": True}
    broken["Globals"]["Function"]["Environment"]["Variables"][variable] = {"Ref": parameter}
    assert plain_secrets(broken) == [
        f"parameter {parameter} is NoEcho",
        f"Globals: {variable} holds a value, not a secret reference",
    ]

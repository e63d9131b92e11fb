"""``template.yml`` (Function Compute 3.0, native ROS) read as the FC template's tests need it: the document, its
resources by type, its functions by artefact, its policy statements, and the template as a deployment would resolve
it (sample parameter values). Shared by ``tests/unit/test_templates_fc.py`` and ``test_templates_fc_specs.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from deploy import package

ROOT = Path(__file__).resolve().parents[2]
FC_TEMPLATE = ROOT / "template.yml"
FUNCTIONS = ["http_api", "object_upload", "queue_changes", "scheduled"]

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


def fc_template() -> dict[str, Any]:
    """The FC template as a dict (each test module reads it once, in its ``ros`` fixture)."""
    document = yaml.safe_load(FC_TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


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

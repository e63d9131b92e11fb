"""The deployment templates, validated offline, and the script that deploys either.

- ``template.yml`` (Function Compute 3.0, native ROS): against Alibaba's published ROS resource specs and the checks
  written here, each shown to fail on a broken copy, in ``test_templates_fc_specs.py``; against the code (handlers,
  triggers, README variables, secrets, least privilege, retained data) in ``test_templates_fc.py``.
- ``deploy/sam/template.yaml`` (AWS): in ``test_template_aws.py`` (the SAM translator, cfn-lint, and the rules the
  template keeps).
- Here: what both templates' cross-checks with the code share (the README variables no deployed function needs, the
  output prefix the upload trigger must never fire on, the scheduled tasks), and ``deploy/deploy.py``'s commands for
  either target.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from deploy import deploy as deploy_script

from support.deploy_dist import fake_dist

ROOT = Path(__file__).resolve().parents[2]
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

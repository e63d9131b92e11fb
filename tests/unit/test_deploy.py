"""``deploy/deploy.py`` never puts a secret on a command line: secret values are refused, references pass.

The commands a deployment would run are built by ``plan`` and checked here as argv lists, without running them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from deploy import deploy as deploy_script

from support.deploy_dist import fake_dist

FUNCTIONS = ["http_api", "object_upload", "queue_changes", "scheduled"]
SECRET_VALUE = "s3cr3t-value-0123456789abcdef"
WHICH = {"aliyun": "/usr/bin/aliyun", "aws": "/usr/bin/aws"}
ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "a", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b", "AWS_PROFILE": "p"}


def arguments(target: str, tmp_path: Path, params: list[str]) -> argparse.Namespace:
    fake_dist(tmp_path, target)
    bucket = ["UploadBucket=hr"] if target == "fc" else ["UploadBucketName=hr"]
    argv = [target, "--stack", "cvc", "--artifact-bucket", "art", "--region", "cn-hangzhou", "--dist", str(tmp_path)]
    return deploy_script.argument_parser().parse_args([*argv, *[f"--param={p}" for p in [*bucket, *params]]])


def plan(target: str, tmp_path: Path, params: list[str]) -> tuple[list[str], list[list[str]]]:
    args = arguments(target, tmp_path, params)
    return deploy_script.plan(target, args, ENV, which=WHICH.get, home=tmp_path)


def carries(commands: list[list[str]], value: str) -> bool:
    return any(value in part for command in commands for part in command)


@pytest.mark.parametrize("target", ["fc", "aws"])
@pytest.mark.parametrize("name", sorted(deploy_script.LEGACY_SECRET_PARAMETERS))
def test_a_secret_value_is_refused_and_never_in_any_command(target: str, name: str, tmp_path: Path) -> None:
    missing, commands = plan(target, tmp_path, [f"{name}={SECRET_VALUE}"])
    refusals = [m for m in missing if m.startswith(f"template parameter {name} was given a secret value")]
    assert len(refusals) == 1, missing
    assert "create" in refusals[0].lower() and "reference" in refusals[0]
    assert not carries(commands, SECRET_VALUE)
    assert SECRET_VALUE not in " ".join(missing)


def test_no_echo_parameters_of_the_template_are_secret_values_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template.yml"
    template.write_text(
        "ROSTemplateFormatVersion: '2015-09-01'\n"
        "Parameters:\n"
        "  UploadBucket: {Type: String, Description: bucket}\n"
        "  ScimToken: {Type: String, Default: '', NoEcho: true, Description: a future secret}\n"
        "  ScimTokenSecretName: {Type: String, Default: '', Description: its KMS secret name}\n"
        "Resources: {}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(deploy_script, "FC_TEMPLATE", template)
    assert deploy_script.secret_parameters(deploy_script.template_parameters(template)) >= {"ScimToken"}
    missing, commands = plan("fc", tmp_path, [f"ScimToken={SECRET_VALUE}", "ScimTokenSecretName=cvc-sync-scim"])
    assert [m.split(" was given")[0] for m in missing] == ["template parameter ScimToken"]
    assert not carries(commands, SECRET_VALUE)
    ros = commands[-1]
    assert ros[ros.index("ScimTokenSecretName") + 2] == "cvc-sync-scim"  # a reference is passed on


def test_a_required_secret_parameter_asks_for_a_reference_not_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Parameters:\n"
        "  UploadBucketName: {Type: String}\n"
        "  CvcAccessKeySecret: {Type: String, NoEcho: true, Description: Its AccessKey secret.}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(deploy_script, "SAM_TEMPLATE", template)
    missing, _ = plan("aws", tmp_path, [])
    assert missing == [
        "template parameter CvcAccessKeySecret takes a secret value, which deploy-aws never passes on a command "
        "line: the template must take a secret reference instead (docs/deploy.md)"
    ]


@pytest.mark.parametrize("target", ["fc", "aws"])
def test_main_refuses_runs_nothing_and_prints_no_secret(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy_script.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    monkeypatch.setattr(deploy_script.shutil, "which", WHICH.get)
    monkeypatch.setattr(deploy_script.Path, "home", lambda: tmp_path)
    args = arguments(target, tmp_path, [])
    argv = [target, "--stack", "cvc", "--artifact-bucket", "art", "--region", "r", "--dist", str(args.dist)]
    bucket = "UploadBucket=hr" if target == "fc" else "UploadBucketName=hr"
    code = deploy_script.main([*argv, "--param", bucket, "--param", f"HttpKeys=ops:{SECRET_VALUE}"], env=ENV)
    out = capsys.readouterr()
    assert code == 2 and "HttpKeys was given a secret value" in out.err
    assert SECRET_VALUE not in out.out + out.err


def test_a_dry_run_with_references_only_prints_commands_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy_script.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    monkeypatch.setattr(deploy_script.shutil, "which", WHICH.get)
    args = arguments("fc", tmp_path, [])
    argv = ["fc", "--stack", "cvc", "--artifact-bucket", "art", "--region", "r", "--dist", str(args.dist), "--dry-run"]
    references = ["--param", "UploadBucket=hr", "--param", "HttpKeysSecretName=cvc-sync-http-keys"]
    assert deploy_script.main([*argv, *references], env=ENV) == 0
    printed = capsys.readouterr().out
    assert "aliyun ros CreateStack" in printed and "cvc-sync-http-keys" in printed and "<template.yml>" in printed

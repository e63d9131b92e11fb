"""Deploy cvc-sync: ``python deploy/deploy.py fc|aws --stack NAME --artifact-bucket BUCKET [--param Key=Value ...]``.

Run by ``make deploy-fc`` / ``make deploy-aws`` after ``make package``. Before running anything it checks what a
deployment needs (the cloud's CLI, credentials, a region, the packages, every template parameter without a default)
and, when something is missing, says what and how to provide it, and runs nothing (exit code 2). ``--dry-run``
prints the commands instead of running them. Never run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FC_TEMPLATE = ROOT / "template.yml"
SAM_TEMPLATE = ROOT / "deploy" / "sam" / "template.yaml"
DIST = ROOT / "dist"


class _AnyTagLoader(yaml.SafeLoader):
    """Reads CloudFormation short forms (``!Ref``, ``!Sub``...) as plain values: only the parameters matter here."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_AnyTagLoader.add_multi_constructor("!", _any_tag)


def template_parameters(path: Path) -> dict[str, dict[str, Any]]:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)  # noqa: S506 - SafeLoader subclass  # nosec B506
    return dict(document.get("Parameters") or {})


def _aws_credentials(env: Mapping[str, str], home: Path) -> bool:
    return bool(
        env.get("AWS_ACCESS_KEY_ID")
        or env.get("AWS_PROFILE")
        or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        or (home / ".aws" / "credentials").is_file()
        or (home / ".aws" / "config").is_file()
    )


def _alibaba_credentials(env: Mapping[str, str], home: Path) -> bool:
    keys = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID") and env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    return bool(keys or (home / ".aliyun" / "config.json").is_file())


def plan(
    target: str,
    args: argparse.Namespace,
    env: Mapping[str, str],
    which: Callable[[str], str | None] | None = None,
    home: Path | None = None,
) -> tuple[list[str], list[list[str]]]:
    """What is missing, and the commands a deployment runs (meaningful only when nothing is missing)."""
    home = Path.home() if home is None else home
    which = shutil.which if which is None else which
    missing: list[str] = []
    params = dict(args.param or [])
    region = args.region or (
        env.get("ALIBABA_CLOUD_REGION") if target == "fc" else env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    )
    dist = args.dist / ("fc" if target == "fc" else "lambda")
    packages = ["layer.zip", "http_api.zip", "object_upload.zip", "queue_changes.zip", "scheduled.zip"]
    absent = [name for name in packages if not (dist / name).is_file()]
    if absent:
        missing.append(f"packages {', '.join(absent)} in {dist}: run `make package`")
    if not args.stack:
        missing.append("a stack name: STACK=cvc-sync")
    if not args.artifact_bucket:
        where = "an OSS bucket in the deployment region" if target == "fc" else "an S3 bucket"
        missing.append(f"{where} for the packages: ARTIFACT_BUCKET=<bucket>")
    if not region:
        variable = "ALIBABA_CLOUD_REGION" if target == "fc" else "AWS_REGION"
        missing.append(f"a region: REGION=<region> (or {variable})")

    if target == "fc":
        if which("aliyun") is None:
            missing.append("the Alibaba Cloud CLI `aliyun` on PATH (https://github.com/aliyun/aliyun-cli)")
        if not _alibaba_credentials(env, home):
            missing.append(
                "Alibaba Cloud credentials: ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, "
                "or `aliyun configure`"
            )
        params.setdefault("CodeBucket", args.artifact_bucket or "")
        template = FC_TEMPLATE
    else:
        if which("aws") is None:
            missing.append("the AWS CLI `aws` on PATH (https://aws.amazon.com/cli/)")
        if not _aws_credentials(env, home):
            missing.append("AWS credentials: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or `aws configure`")
        template = SAM_TEMPLATE
    for name, definition in template_parameters(template).items():
        if "Default" not in definition and not params.get(name):
            missing.append(f"template parameter {name}: PARAMS='{name}=...' ({definition.get('Description', '')})")
    return missing, _commands(target, args, params, region or "", dist)


def _commands(
    target: str, args: argparse.Namespace, params: dict[str, str], region: str, dist: Path
) -> list[list[str]]:
    if target == "fc":
        prefix = params.get("CodePrefix", "cvc-sync/packages/")
        commands = [
            ["aliyun", "oss", "cp", str(zip_path), f"oss://{args.artifact_bucket}/{prefix}fc/{zip_path.name}", "-f"]
            for zip_path in sorted(dist.glob("*.zip"))
        ]
        ros = ["aliyun", "ros", "UpdateStack" if args.update else "CreateStack", "--RegionId", region]
        ros += ["--StackName", args.stack] if not args.update else ["--StackId", args.stack]
        ros += ["--TemplateBody", FC_TEMPLATE.read_text(encoding="utf-8"), "--TimeoutInMinutes", "30"]
        for index, (key, value) in enumerate(sorted(params.items()), start=1):
            ros += [f"--Parameters.{index}.ParameterKey", key, f"--Parameters.{index}.ParameterValue", value]
        return [*commands, ros]
    packaged = dist / "packaged.yaml"
    package = ["aws", "cloudformation", "package", "--region", region, "--template-file", str(SAM_TEMPLATE)]
    package += ["--s3-bucket", args.artifact_bucket or "", "--output-template-file", str(packaged)]
    deploy = ["aws", "cloudformation", "deploy", "--region", region, "--template-file", str(packaged)]
    deploy += ["--stack-name", args.stack or "", "--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    deploy += ["--parameter-overrides", *[f"{key}={value}" for key, value in sorted(params.items())]]
    return [package, deploy]


def _redacted(command: list[str], secrets: set[str]) -> str:
    shown = ["<template.yml>" if len(part) > 200 else ("****" if part in secrets else part) for part in command]
    return " ".join(shown)


def _key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected Key=Value, got {text!r}")
    return key, value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", choices=["fc", "aws"])
    parser.add_argument("--stack", default="")
    parser.add_argument("--artifact-bucket", default="")
    parser.add_argument("--region", default="")
    parser.add_argument("--param", type=_key_value, action="append", help="template parameter, Key=Value")
    parser.add_argument("--update", action="store_true", help="FC: update the stack (--stack is its id)")
    parser.add_argument("--dist", type=Path, default=DIST)
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    env = os.environ if env is None else env
    missing, commands = plan(args.target, args, env)
    if missing:
        print(f"deploy-{args.target}: cannot deploy, missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 2
    secret_names = {"CvcAccessKeyId", "CvcAccessKeySecret", "HttpKeys", "HttpTokens"}
    secrets = {value for key, value in (args.param or []) if key in secret_names and value}
    secrets |= {f"{key}={value}" for key, value in (args.param or []) if key in secret_names and value}
    for command in commands:
        print("+", _redacted(command, secrets), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)  # noqa: S603 - the commands above, arguments as a list
    if not args.dry_run:
        print(json.dumps({"deployed": args.target, "stack": args.stack}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

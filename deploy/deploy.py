"""Deploy cvc-sync: ``python deploy/deploy.py fc|aws --stack NAME --artifact-bucket BUCKET [--param Key=Value ...]``.

Run by ``make deploy-fc`` / ``make deploy-aws`` after ``make package``. The packages are content-addressed: each
artefact's object key carries its SHA-256 (``dist/<platform>/manifest.json``, written by ``deploy/package.py``), is
uploaded to that key, and is passed to the template as its code-key parameter, so an update changes exactly the
functions whose code changed, and a rollback is a deployment of the previous manifest (``--manifest``: its
artefacts are in the bucket already, under their keys). Before running anything it checks what a
deployment needs (the cloud's CLI, credentials, a region, the packages, every template parameter without a default)
and, when something is missing, says what and how to provide it, and runs nothing (exit code 2). ``--dry-run``
prints the commands instead of running them. Never run in CI.

No secret is ever passed on a command line (where `ps`, shell history and CI logs show it) nor as a stack parameter
(which anyone allowed to read the stack or the function's configuration reads): the stacks take secret REFERENCES
(a Secrets Manager ARN, an SSM parameter name, a KMS secret name), and the operator creates each secret once with
the cloud's own tools, from a file (docs/deploy.md). A parameter that holds a secret value (``NoEcho`` in the
template, or one of the names that used to) is refused, and never put into a command even when refused.
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

# Parameters that held secret values before the secrets moved to stores: refused whatever the template declares.
LEGACY_SECRET_PARAMETERS = frozenset({"CvcAccessKeyId", "CvcAccessKeySecret", "HttpKeys", "HttpTokens"})
CREATE_SECRET = {
    "aws": "`aws secretsmanager create-secret --name <name> --secret-string file://<file>`",
    "fc": "in the KMS console (Secrets Manager), or `aliyun kms CreateSecret` (docs/deploy.md)",
}


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


def secret_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The template parameters whose value would be a secret: ``NoEcho`` ones, and the legacy names."""
    no_echo = {name for name, definition in parameters.items() if str(definition.get("NoEcho")).lower() == "true"}
    return no_echo | LEGACY_SECRET_PARAMETERS


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


def load_manifest(path: Path) -> dict[str, Any] | None:
    """The packaging manifest (``deploy/package.py``): artefact -> file, key, template parameter, sha256, size."""
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("artefacts"), dict) else None


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
    manifest_path = args.manifest or dist / "manifest.json"
    manifest = load_manifest(manifest_path)
    if manifest is None:
        missing.append(f"the packages' manifest {manifest_path}: run `make package`")
    else:
        for artefact in manifest["artefacts"].values():
            params.setdefault(str(artefact["parameter"]), str(artefact["key"]))
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
        template = FC_TEMPLATE
    else:
        if which("aws") is None:
            missing.append("the AWS CLI `aws` on PATH (https://aws.amazon.com/cli/)")
        if not _aws_credentials(env, home):
            missing.append("AWS credentials: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or `aws configure`")
        template = SAM_TEMPLATE
    params.setdefault("CodeBucket", args.artifact_bucket or "")
    parameters = template_parameters(template)
    secrets = secret_parameters(parameters)
    for name in sorted(secrets):
        if params.pop(name, ""):  # never into a command, even a refused one
            missing.append(
                f"template parameter {name} was given a secret value, which deploy-{target} never passes on: it "
                f"would show on command lines (`ps`, shell history) and in the stack's parameters. Create the secret "
                f"once {CREATE_SECRET[target]} and pass its reference instead (docs/deploy.md)"
            )
    for name, definition in parameters.items():
        if "Default" in definition or params.get(name):
            continue
        if name in secrets:
            missing.append(
                f"template parameter {name} takes a secret value, which deploy-{target} never passes on a command "
                "line: the template must take a secret reference instead (docs/deploy.md)"
            )
        else:
            missing.append(f"template parameter {name}: PARAMS='{name}=...' ({definition.get('Description', '')})")
    uploads = _uploads(manifest, manifest_path.parent, missing) if manifest is not None else []
    return missing, _commands(target, args, params, region or "", uploads)


def _uploads(manifest: Mapping[str, Any], folder: Path, missing: list[str]) -> list[tuple[Path, str]]:
    """(file, key) of each artefact to upload: those beside the manifest, checked against its SHA-256. A manifest
    without its files (a rollback to an earlier release) uploads nothing: its keys are in the bucket already."""
    import hashlib

    found: list[tuple[Path, str]] = []
    for name, artefact in sorted(manifest["artefacts"].items()):
        path = folder / str(artefact["file"])
        if not path.is_file():
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != artefact["sha256"]:
            missing.append(f"{path} is not the {name} its manifest names (SHA-256 differs): run `make package` again")
        found.append((path, str(artefact["key"])))
    return found


def _commands(
    target: str, args: argparse.Namespace, params: dict[str, str], region: str, uploads: list[tuple[Path, str]]
) -> list[list[str]]:
    bucket = args.artifact_bucket or ""
    if target == "fc":
        commands = [["aliyun", "oss", "cp", str(path), f"oss://{bucket}/{key}", "-f"] for path, key in uploads]
        ros = ["aliyun", "ros", "UpdateStack" if args.update else "CreateStack", "--RegionId", region]
        ros += ["--StackName", args.stack] if not args.update else ["--StackId", args.stack]
        ros += ["--TemplateBody", FC_TEMPLATE.read_text(encoding="utf-8"), "--TimeoutInMinutes", "30"]
        for index, (key, value) in enumerate(sorted(params.items()), start=1):
            ros += [f"--Parameters.{index}.ParameterKey", key, f"--Parameters.{index}.ParameterValue", value]
        return [*commands, ros]
    copies = [
        ["aws", "s3", "cp", str(path), f"s3://{bucket}/{key}", "--region", region, "--only-show-errors"]
        for path, key in uploads
    ]
    deploy = ["aws", "cloudformation", "deploy", "--region", region, "--template-file", str(SAM_TEMPLATE)]
    deploy += ["--stack-name", args.stack or "", "--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    deploy += ["--no-fail-on-empty-changeset"]  # an unchanged release (same keys) is a normal, empty change set
    deploy += ["--parameter-overrides", *[f"{key}={value}" for key, value in sorted(params.items())]]
    return [*copies, deploy]


def _redacted(command: list[str], secrets: set[str] | None = None) -> str:
    """The command as printed: the template body shortened, and (defence in depth) any secret starred."""
    hidden = secrets or set()
    shown = ["<template.yml>" if len(part) > 200 else ("****" if part in hidden else part) for part in command]
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
    parser.add_argument(
        "--manifest",
        type=Path,
        help="deploy this packaging manifest's keys (default dist/<platform>/manifest.json); a manifest kept from an "
        "earlier release rolls back to it",
    )
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
    for command in commands:
        print("+", _redacted(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)  # noqa: S603 - the commands above, arguments as a list
    if not args.dry_run:
        print(json.dumps({"deployed": args.target, "stack": args.stack}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

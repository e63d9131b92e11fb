"""Write ``ros-resource-specs.json``: the ROS resource property specs Alibaba publishes, for offline template tests.

Run ``.venv/bin/python deploy/ros_specs/extract.py`` (needs PyPI; ``--wheels DIR`` reads wheels already downloaded,
``--check`` compares with the committed file instead of writing it). Never run by the tests: they read the JSON.

Why these files: ROS has no offline validator, and a schema we type in ourselves only repeats what we believe. The
ROS CDK (``@alicloud/ros-cdk-<service>``, "Generated from the AliCloud ROS Resource Specification") compiles every
resource type's property spec into code: ``lib/<service>.generated.js`` holds, per type, a template renderer (the ROS
property names, e.g. ``'FunctionName': ros.stringToRosTemplate(properties.functionName)``) and a validator (required,
ranges, lengths, allowed values, patterns), and the jsii assembly ``.jsii`` holds the same interfaces with their
documentation. The npm registry we reach serves ``@alicloud/ros-cdk-fc3`` only up to 1.11.0 (no LayerVersion) and no
``ros-cdk-mns`` or ``ros-cdk-kms`` at all, so the packages are taken from PyPI's ``ros-cdk-<service>`` wheels, which
carry the same npm package tarball (``_jsii/ros-cdk-<service>@<version>.jsii.tgz``: npm's files plus ``.jsii``).

Reading is strict: the three views of every type (renderer, validator, jsii interface) must name the same properties
and agree on which are required, and every validator line must be one this reader understands. Anything else stops
the run with the function and line, so a changed generator cannot yield a silently wrong spec.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "ros-resource-specs.json"
VERSION = "1.15.0"
# PyPI distribution -> sha256 of its wheel, as downloaded on 2026-12-06 (pip checks it: --require-hashes).
WHEELS: dict[str, str] = {
    "ros-cdk-fc3": "a8e5df77ea995e0217de5eeb68d8d178191ec6ef1ba4a5b99a3b7420bd4e40f5",
    "ros-cdk-fc": "b0cc4946f6742e0e11a9f92efdaedc0b527f02d21387a1fe1be291e7b394aaf2",
    "ros-cdk-ram": "446431357eec817af0d478f60d9b1f0b99a244ebdd7c9e7cedd9bc9a2665673a",
    "ros-cdk-oss": "a3866b3dda157ef5f5aab3cd7812928cbb591266273e4efeac4e87cc1ee1fa9d",
    "ros-cdk-mns": "cb96b81f8c056d55f9204ce72078f1697fa566ce6b092ff4717e46f157f69c32",
    "ros-cdk-kms": "a028c4678724852a3e89a0c61b96ecd8093109a4645c6858a622b936e1279c6c",
    "ros-cdk-eventbridge": "b768ffb56ed186f5a71fe8d021c68c4851d6194d91fd6fa5e7597b76d88eb41a",
    "ros-cdk-sls": "c6b4dfe7cf6b1cc5f086662e1ee0ff63c0bd68062ff262ac848451859ff77842",
}
PIP_TIMEOUT_S = 600

SCALAR_RENDERERS = {
    "ros.stringToRosTemplate": "string",
    "ros.numberToRosTemplate": "number",
    "ros.booleanToRosTemplate": "boolean",
    "ros.objectToRosTemplate": "any",
    "ros.anyDictToRosTemplate": "map",
}
SCALAR_VALIDATORS = {
    "ros.validateString": "string",
    "ros.validateNumber": "number",
    "ros.validateBoolean": "boolean",
    "ros.validateAny": "any",
    "ros.validateAnyDict": "map",
}
# Containers: (renderer wrapper, validator wrapper, spec type, key of the element spec).
CONTAINERS = (("listMapper", "listValidator", "list", "items"), ("hashMapper", "hashValidator", "map", "values"))
# Validator lines that carry no property information (the guards around the checks, the function's frame).
FRAME_LINES = [
    re.compile(r"if \(!ros\.canInspect\(properties\)\) \{"),
    re.compile(r"return ros\.VALIDATION_SUCCESS;"),
    re.compile(r"const errors = new ros\.ValidationResults\(\);"),
    re.compile(r"return errors\.wrap\('[^']*'\);"),
    re.compile(r"if \(properties\.\w+ && \(typeof properties\.\w+\) !== 'object'\) \{"),
    re.compile(
        r"if \(properties\.\w+ && "
        r"\(Array\.isArray\(properties\.\w+\) \|\| \(typeof properties\.\w+\) === 'string'\)\) \{"
    ),
    re.compile(r"data: properties\.\w+(\.length)?,"),
    re.compile(r"\}\)\);"),
    re.compile(r"\}"),
]
CHECK_CALL = re.compile(r"errors\.collect\(ros\.propertyValidator\('(\w+)', (.+)\)\((properties\.(\w+)\)\);|\{)$")
BOUND = re.compile(r"(min|max): (undefined|-?[0-9.]+(?:e-?[0-9]+)?),?")
ALLOWED = re.compile(r"allowedValues: (\[.*\]),?")
PATTERN = re.compile(r"reg: /(.*)/([a-z]*),?")
RENDER_LINE = re.compile(r"'([^']+)': (.+)\(properties\.(\w+)\),?")
FUNCTION = re.compile(r"^function (\w+)\(properties(?:, enableResourcePropertyConstraint)?\) \{$")
RESOURCE_TYPE = re.compile(r'^(Ros\w+)\.ROS_RESOURCE_TYPE_NAME = "([A-Za-z0-9:]+)";$', re.MULTILINE)
ATTRIBUTE = re.compile(r"this\.attr\w+ = this\.getAtt\('(\w+)'\);")


class ExtractError(Exception):
    """The published package does not read as this extractor expects: the spec would be unreliable."""


@dataclass(frozen=True)
class Package:
    """One ROS CDK package as published: npm name, version, files we read, and how to recognise the artifact."""

    npm_name: str
    version: str
    generated_js: str
    assembly: Mapping[str, Any]
    tarball_integrity: str  # npm's SRI form (sha512-<base64>) of the package tarball inside the wheel
    wheel: str
    wheel_sha256: str


# ------------------------------------------------------------------------------------------------ fetching


def download_wheels(dest: Path) -> list[Path]:
    """The pinned wheels, fetched by pip, which refuses any whose sha256 differs from ``WHEELS``."""
    requirements = dest / "requirements.txt"
    requirements.write_text(
        "".join(f"{name}=={VERSION} --hash=sha256:{digest}\n" for name, digest in WHEELS.items()), encoding="utf-8"
    )
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"]
    command += ["--dest", str(dest), "--requirement", str(requirements)]
    subprocess.run(command, check=True, timeout=PIP_TIMEOUT_S)  # noqa: S603 - our own argument list
    return sorted(dest.glob("*.whl"))


def read_wheel(path: Path) -> Package:
    """The npm package tarball a jsii wheel carries, opened in memory: its generated JS and its jsii assembly."""
    data = path.read_bytes()
    wheel_sha256 = hashlib.sha256(data).hexdigest()
    expected = {name.replace("-", "_"): digest for name, digest in WHEELS.items()}
    distribution = path.name.split("-", 1)[0]
    if expected.get(distribution) != wheel_sha256:
        raise ExtractError(f"{path.name}: sha256 {wheel_sha256} is not the pinned one; update WHEELS on purpose")
    with zipfile.ZipFile(path) as wheel:
        tarballs = [name for name in wheel.namelist() if "/_jsii/" in name and name.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise ExtractError(f"{path.name}: expected one _jsii/*.jsii.tgz, found {tarballs}")
        tarball = wheel.read(tarballs[0])
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode("ascii")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        files = {member.name: member for member in archive.getmembers() if member.isfile()}
        generated = [name for name in files if re.fullmatch(r"package/lib/[a-z0-9]+\.generated\.js", name)]
        if len(generated) != 1:
            raise ExtractError(f"{path.name}: expected one lib/<service>.generated.js, found {generated}")

        def text(name: str) -> str:
            handle = archive.extractfile(files[name])
            if handle is None:
                raise ExtractError(f"{path.name}: {name} is not a regular file")
            return handle.read().decode("utf-8")

        manifest = json.loads(text("package/package.json"))
        assembly = json.loads(text("package/.jsii"))
        javascript = text(generated[0])
    if assembly["name"] != manifest["name"] or assembly["version"] != manifest["version"]:
        raise ExtractError(f"{path.name}: package.json and .jsii name different packages")
    return Package(manifest["name"], manifest["version"], javascript, assembly, integrity, path.name, wheel_sha256)


# ------------------------------------------------------------------------------------------------ reading the JS


def functions(javascript: str) -> dict[str, list[str]]:
    """Top-level ``function name(properties...) { ... }`` bodies, as stripped lines (the generator's own layout)."""
    found: dict[str, list[str]] = {}
    name: str | None = None
    for line in javascript.splitlines():
        if name is None:
            match = FUNCTION.match(line)
            if match:
                name, found[match.group(1)] = match.group(1), []
        elif line == "}":
            name = None
        else:
            found[name].append(line.strip())
    return found


def rendered_names(body: list[str], where: str) -> dict[str, tuple[str, str]]:
    """From a ``...ToRosTemplate`` body: TypeScript name -> (ROS property name, renderer expression)."""
    names: dict[str, tuple[str, str]] = {}
    inside = False
    for line in body:
        if line == "return {":
            inside = True
        elif line == "};":
            inside = False
        elif inside:
            match = RENDER_LINE.fullmatch(line)
            if not match:
                raise ExtractError(f"{where}: renderer line not understood: {line}")
            names[match.group(3)] = (match.group(1), match.group(2))
    if not names:
        raise ExtractError(f"{where}: no properties rendered")
    return names


@dataclass
class Checks:
    """What one validator says about one property."""

    required: bool = False
    validator: str | None = None
    constraints: dict[str, Any] | None = None


def validator_checks(body: list[str], where: str) -> dict[str, Checks]:
    """From a ``...Validator`` body: TypeScript name -> required flag, type validator and constraints."""
    checks: dict[str, Checks] = {}
    pending: tuple[str, str] | None = None  # (property, constraint validator) whose argument lines follow
    for line in body:
        call = CHECK_CALL.fullmatch(line)
        if call:
            name, validator = call.group(1), call.group(2)
            entry = checks.setdefault(name, Checks())
            if call.group(3) == "{":
                pending = (name, validator)
                entry.constraints = entry.constraints or {}
            elif call.group(4) != name:
                raise ExtractError(f"{where}: {name} is checked with the value of {call.group(4)}")
            elif validator == "ros.requiredValidator":
                entry.required = True
            elif entry.validator is None:
                entry.validator = validator
            else:
                raise ExtractError(f"{where}: {name} has two type validators")
            continue
        if pending and _constraint(line, pending, checks, where):
            continue
        if not any(frame.fullmatch(line) for frame in FRAME_LINES):
            raise ExtractError(f"{where}: validator line not understood: {line}")
        if line == "}));":
            pending = None
    return checks


def _constraint(line: str, pending: tuple[str, str], checks: dict[str, Checks], where: str) -> bool:
    """Records one argument line of a range, length, allowed-values or pattern check; False if it is none."""
    name, validator = pending
    constraints = checks[name].constraints
    assert constraints is not None
    bound = BOUND.fullmatch(line)
    if bound and validator in ("ros.validateRange", "ros.validateLength"):
        if bound.group(2) != "undefined":
            key = bound.group(1) if validator == "ros.validateRange" else f"{bound.group(1)}_length"
            number = float(bound.group(2))
            constraints[key] = int(number) if number.is_integer() else number
        return True
    allowed = ALLOWED.fullmatch(line)
    if allowed and validator == "ros.validateAllowedValues":
        try:
            constraints["allowed_values"] = json.loads(allowed.group(1))
        except json.JSONDecodeError as exc:
            raise ExtractError(f"{where}: allowed values of {name} are not a literal list: {line}") from exc
        return True
    pattern = PATTERN.fullmatch(line)
    if pattern and validator == "ros.validateAllowedPattern":
        if pattern.group(2):
            raise ExtractError(f"{where}: pattern of {name} has flags {pattern.group(2)!r}")
        constraints["pattern"] = pattern.group(1)
        return True
    return False


def value_type(renderer: str, validator: str | None, where: str, nested: dict[str, str]) -> dict[str, Any]:
    """The spec of a value from its renderer and its validator, which must agree (nested types by validator name)."""
    if renderer in SCALAR_RENDERERS:
        kind = SCALAR_RENDERERS[renderer]
        if validator not in SCALAR_VALIDATORS or SCALAR_VALIDATORS[validator] != kind:
            raise ExtractError(f"{where}: rendered as {kind} but validated by {validator}")
        return {"type": kind}
    for mapper, checker, kind, key in CONTAINERS:
        inner = re.fullmatch(rf"ros\.{mapper}\((.+)\)", renderer)
        if inner:
            check = re.fullmatch(rf"ros\.{checker}\((.+)\)", validator or "")
            if not check:
                raise ExtractError(f"{where}: rendered as {kind} but validated by {validator}")
            return {"type": kind, key: value_type(inner.group(1), check.group(1), where, nested)}
    if validator in nested and nested[validator] == renderer:
        return {"type": "map", "$nested": validator}
    raise ExtractError(f"{where}: renderer {renderer} / validator {validator} not understood")


# ------------------------------------------------------------------------------------------------ building the spec


def jsii_interface(assembly: Mapping[str, Any], fqn: str) -> dict[str, dict[str, Any]]:
    """The properties of a jsii interface by TypeScript name (optional flag and documentation)."""
    interface = assembly["types"].get(fqn)
    if interface is None or interface.get("kind") != "interface":
        raise ExtractError(f"{assembly['name']}: no interface {fqn} in .jsii")
    return {prop["name"]: prop for prop in interface.get("properties", [])}


def describe(prop: Mapping[str, Any]) -> str:
    """The one-line documentation of a property (``@Property name: text`` in the generated code)."""
    text = str(prop.get("docs", {}).get("custom", {}).get("Property", ""))
    words = " ".join(text.split(": ", 1)[-1].split()).replace("\\/", "/")
    return "" if words == "undefined" else words  # the generator writes "undefined" where the spec has no text


def type_properties(package: Package, owner: str, stem: str, bodies: dict[str, list[str]]) -> dict[str, Any]:
    """Properties of one resource (``stem`` ``Props``) or nested type (``_<Name>Property``) of class ``owner``."""
    nested_owner = stem.startswith("_")
    validator_name = f"{owner}{stem}Validator"
    renderer_name = f"{owner[0].lower()}{owner[1:]}{stem.lstrip('_')}ToRosTemplate"
    fqn = f"{package.npm_name}.{owner}.{stem[1:]}" if nested_owner else f"{package.npm_name}.{owner}{stem}"
    where = f"{package.npm_name}@{package.version} {validator_name}"
    if validator_name not in bodies or renderer_name not in bodies:
        raise ExtractError(f"{where}: validator or renderer {renderer_name} missing")
    rendered = rendered_names(bodies[renderer_name], renderer_name)
    checks = validator_checks(bodies[validator_name], validator_name)
    declared = jsii_interface(package.assembly, fqn)
    if not (set(rendered) == set(checks) == set(declared)):
        raise ExtractError(f"{where}: renderer {sorted(rendered)}, validator {sorted(checks)}, jsii {sorted(declared)}")
    nested = {  # validator -> renderer of every nested type of this class
        name: f"{owner[0].lower()}{owner[1:]}{name[len(owner) + 1 : -len('Validator')]}ToRosTemplate"
        for name in bodies
        if name.startswith(f"{owner}_") and name.endswith("PropertyValidator")
    }
    properties: dict[str, Any] = {}
    for ts_name, (ros_name, renderer) in rendered.items():
        check = checks[ts_name]
        if check.required == bool(declared[ts_name].get("optional")):
            raise ExtractError(f"{where}: {ts_name} required={check.required} but jsii optional disagrees")
        spec: dict[str, Any] = {"required": check.required}
        value = value_type(renderer, check.validator, f"{where}.{ts_name}", nested)
        spec.update(resolve(value, package, owner, bodies))
        spec.update(check.constraints or {})
        description = describe(declared[ts_name])
        if description:
            spec["description"] = description
        properties[ros_name] = spec
    return dict(sorted(properties.items()))


def resolve(spec: dict[str, Any], package: Package, owner: str, bodies: dict[str, list[str]]) -> dict[str, Any]:
    """Replaces nested type references by their properties (recursively, inside lists and maps too)."""
    result = dict(spec)
    reference = result.pop("$nested", None)
    if reference is not None:
        stem = reference[len(owner) : -len("Validator")]
        result["properties"] = type_properties(package, owner, stem, bodies)
    for key in ("items", "values"):
        if key in result:
            result[key] = resolve(result[key], package, owner, bodies)
    return result


def resources(package: Package) -> dict[str, Any]:
    """Every resource type of one package: documentation link, properties and ``Fn::GetAtt`` attributes."""
    bodies = functions(package.generated_js)
    found: dict[str, Any] = {}
    for owner, type_name in RESOURCE_TYPE.findall(package.generated_js):
        klass = package.assembly["types"].get(f"{package.npm_name}.{owner}", {})
        docs = klass.get("docs", {})
        link = re.search(r"https://[^\s\"\\]+", json.dumps(docs.get("custom", {})))
        after_class = package.generated_js.split(f"\nclass {owner} extends ros.RosResource {{", 1)[-1]
        class_body = after_class.split("\n}\n", 1)[0]
        entry: dict[str, Any] = {"package": package.npm_name}
        if link:
            entry["documentation"] = link.group(0).rstrip(".,")
        entry["attributes"] = sorted(ATTRIBUTE.findall(class_body))
        entry["properties"] = type_properties(package, owner, "Props", bodies)
        found[type_name] = entry
    if not found:
        raise ExtractError(f"{package.npm_name}: no resource types found")
    return found


def build(packages: list[Package]) -> dict[str, Any]:
    """The whole document: where each package came from, then every resource type by name."""
    spec: dict[str, Any] = {
        "generated_by": "deploy/ros_specs/extract.py (see README.md beside it)",
        "source": {},
        "resources": {},
    }
    for package in sorted(packages, key=lambda p: p.npm_name):
        spec["source"][package.npm_name] = {
            "version": package.version,
            "integrity": package.tarball_integrity,
            "jsii_fingerprint": package.assembly.get("fingerprint"),
            "distribution": f"PyPI {package.wheel} sha256:{package.wheel_sha256}",
        }
        spec["resources"].update(resources(package))
    spec["resources"] = dict(sorted(spec["resources"].items()))
    return spec


def render(spec: Mapping[str, Any]) -> str:
    """The file's text: stable order, one property per line, so a regeneration diffs by what changed."""
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--wheels", type=Path, help="a folder holding the pinned wheels already (no download)")
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON instead of writing it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ros-specs-") as temporary:
        wheels = sorted(args.wheels.glob("*.whl")) if args.wheels else download_wheels(Path(temporary))
        packages = [read_wheel(path) for path in wheels if path.name.split("-", 1)[0].replace("_", "-") in WHEELS]
    missing = set(WHEELS) - {p.npm_name.replace("@alicloud/", "") for p in packages}
    if missing:
        print(f"missing wheels: {', '.join(sorted(missing))}", file=sys.stderr)
        return 2
    spec = build(packages)
    text = render(spec)
    if args.check:
        same = OUTPUT.exists() and OUTPUT.read_text(encoding="utf-8") == text
        print(f"{OUTPUT.name} is {'up to date' if same else 'OUT OF DATE: run without --check'}")
        return 0 if same else 1
    OUTPUT.write_text(text, encoding="utf-8")
    counts: dict[str, int] = {}
    for entry in spec["resources"].values():
        counts[entry["package"]] = counts.get(entry["package"], 0) + 1
    print(f"wrote {OUTPUT} ({len(text)} bytes): " + ", ".join(f"{n} {c}" for n, c in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the deployable artefacts of cvc-sync: per platform, a layer and one code zip per function, and their manifest.

``python deploy/package.py [--platform fc|lambda] [--out dist] [--key-prefix P]`` (``make package``) writes
``dist/<platform>/``:

- ``layer.zip``: ``python/`` holding the modules of ``cvcsync`` the handlers import (found by reading their import
  statements, lazy ones included: the command line and the development package ``cvcsync_dev`` stay out) with their
  data files, and the runtime dependencies installed by pip for Linux x86_64 and the platform's Python
  (``--platform manylinux2014_x86_64 --only-binary=:all:``), so compiled wheels such as orjson's are the ones the
  runtime loads; versions pinned by ``constraints.txt``. Of the dependencies, their own test suites and console
  scripts are dropped, and botocore keeps the models of the AWS services named in the shipped code only (a dozen
  of about 450, which made 16 of the layer's 22 MB zipped): the layer is about 6 MB;
- ``<function>.zip``: the function's ``index.py`` at the root (handler ``index.handler``);
- ``manifest.json``: for each artefact its file, size, SHA-256, the object key it is deployed under,
  ``<prefix><platform>/<name>-<sha256[:16]>.zip``, and the template parameter that takes that key. Keys name the
  content: a new build of changed code is a new key, so a stack update changes exactly what changed, an unchanged
  artefact keeps its key, and a rollback is a deployment with the previous manifest's keys.

Only the standard library and pip are needed (and ``tomli`` on Python 3.10, to read ``pyproject.toml``): ``make
package`` runs it from a virtual environment of its own, without the development tools.

Both carry the bytecode of every ``.py``, compiled by the platform's Python version (``__pycache__/*.cpython-310.pyc``
for FC, ``cpython-312`` for Lambda): the code and layer folders are read-only on both platforms, so without it every
cold start compiles cvcsync, requests and boto3 again (measured: +0.2 s for the queue and HTTP functions, +0.7 s for
the upload and scheduled ones). The ``.pyc`` files are unchecked-hash (PEP 552): their header holds a hash of the
source instead of its mtime, and the runtime does not re-check it (deployed code cannot change). That Python is found
as ``python3.10``/``python3.12`` on PATH, else in pyenv; without it the zips are built without ``.pyc`` and a warning
says what the cold starts will pay.

Reproducible: the same inputs, and the same interpreter version for the bytecode (printed), give the same bytes
(and so the same keys), wherever and in whichever environment the build runs: sorted entries, fixed timestamps and
permissions, bytecode compiled with a fixed hash seed and fixed paths, no ``RECORD`` line of a removed console script.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the packaging environment installs tomli (Makefile, `package`)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
PACKAGE_SOURCE = SHARED / "cvcsync"
DEV_PACKAGE = "cvcsync_dev"  # the emulator, the demo, local invoke and serve: never imported by a handler
FUNCTIONS_DIR = ROOT / "functions"
CONSTRAINTS = ROOT / "constraints.txt"

# Function Compute 2.0's newest Python runtime, and Lambda's runtime in deploy/sam/template.yaml.
PLATFORMS: dict[str, str] = {"fc": "3.10", "lambda": "3.12"}
PIP_PLATFORM = "manylinux2014_x86_64"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
# Where the runtime mounts the layer and the function's code. Compiled into the .pyc files as their file names, so
# that the bytes do not depend on the scratch folder (the interpreter puts the real path in their place on import).
LAYER_MOUNT = "/opt/python"
CODE_MOUNT: dict[str, str] = {"fc": "/code", "lambda": "/var/task"}
# Where the object keys of the packages start (deploy.py uploads each artefact to the key its manifest gives).
KEY_PREFIX = "cvc-sync/packages/"
MANIFEST = "manifest.json"
LAYER = "layer"
# Not shipped from cvcsync's data files: the PEP 561 marker is for type checkers.
NOT_RUNTIME_DATA = {"py.typed"}
# The service models of botocore and boto3 (one folder per service; the shared files beside them stay).
SERVICE_MODELS = ("botocore/data", "boto3/data")
_PROBE = "import platform, sys; print(sys.implementation.cache_tag, platform.python_version(), sys.executable)"


@dataclass(frozen=True)
class Artefact:
    path: Path
    size: int
    sha256: str

    @property
    def name(self) -> str:
        """``layer`` or the function's name."""
        return self.path.stem


def content_key(platform: str, artefact: Artefact, prefix: str = KEY_PREFIX) -> str:
    """The object key of an artefact, named by its content: a changed artefact is a new object, never an overwrite."""
    return f"{prefix}{platform}/{artefact.name}-{artefact.sha256[:16]}.zip"


def code_key_parameter(name: str) -> str:
    """The template parameter that takes the key of artefact ``name``: ``LayerCodeKey``, ``HttpApiCodeKey``..."""
    return "".join(part.capitalize() for part in name.split("_")) + "CodeKey"


@dataclass(frozen=True)
class Interpreter:
    """The Python that compiles a platform's bytecode: the platform's own version, as its ``.pyc`` must be."""

    executable: str
    version: str  # "3.12.1": a patch release may compile to other bytes, so it is part of the build's inputs


def cache_tag(version: str) -> str:
    """``cpython-312`` for ``3.12``: the tag in the names of the ``.pyc`` files that version loads."""
    return f"cpython-{version.replace('.', '')}"


def _release(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in folder.name.split("."))


def target_interpreter(version: str) -> Interpreter | None:
    """A working ``python<version>``: on PATH, else pyenv's newest installation of that version; None if neither."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [shutil.which(f"python{version}")]
    releases = sorted(pyenv.glob(f"versions/{version}.*"), key=_release, reverse=True)
    candidates += [str(release / "bin" / f"python{version}") for release in releases]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(  # noqa: S603 - an interpreter found above, our own code
                [candidate, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue  # a pyenv folder without that executable, or an interpreter that does not answer
        fields = probe.stdout.strip().split(maxsplit=2)
        if probe.returncode == 0 and len(fields) == 3 and fields[0] == cache_tag(version):
            return Interpreter(executable=fields[2], version=fields[1])  # the real binary, not a pyenv shim
    return None


def function_names() -> list[str]:
    """Every function under ``functions/`` (a folder holding an ``index.py``)."""
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/index.py"))


def runtime_requirements() -> list[str]:
    """The project's runtime dependencies (no extras), read from pyproject.toml: cvcsync is not installed here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return sorted(project["dependencies"])


def _imported_names(source: Path, module: str) -> set[str]:
    """What ``source`` (module ``module``) imports anywhere in its code, lazy imports included. ``from a import b``
    gives ``a`` and ``a.b``, as ``b`` may be a submodule."""
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_bytes(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _source_of(module: str) -> Path | None:
    """The file of a module under ``shared/``; None for anything else (another library, a class, a function)."""
    path = SHARED.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def shipped_modules(entries: Iterable[Path]) -> dict[str, Path]:
    """The modules of cvcsync that ``entries`` (the handlers) import, directly or through one another, and their
    packages: what the layer holds of cvcsync. A handler that reaches the development package is refused."""
    found: dict[str, Path] = {}
    pending = [(name, entry) for entry in entries for name in _imported_names(entry, "index")]
    while pending:
        name, importer = pending.pop()
        parts = name.split(".")
        if parts[0] == DEV_PACKAGE:
            raise SystemExit(f"{importer} imports {name}: development code never goes into a layer; move it")
        if parts[0] != PACKAGE_SOURCE.name:
            continue
        for depth in range(1, len(parts) + 1):
            module = ".".join(parts[:depth])
            source = found.get(module) or _source_of(module)
            if source is None:
                break
            if module not in found:
                found[module] = source
                pending.extend((imported, source) for imported in _imported_names(source, module))
    return dict(sorted(found.items()))


def package_files(modules: dict[str, Path]) -> list[Path]:
    """The modules' sources, and the data files (JSON presets, the OpenAPI document) of their packages."""
    packages = {source.parent for source in modules.values() if source.name == "__init__.py"}
    files = set(modules.values())
    for path in files_under(PACKAGE_SOURCE):
        if path.suffix in {".py", ".pyc", ".pyo"} or "__pycache__" in path.parts or path.name in NOT_RUNTIME_DATA:
            continue
        owner = path.parent
        while not (owner / "__init__.py").is_file():  # a data folder belongs to the package above it
            owner = owner.parent
        if owner in packages:
            files.add(path)
    return sorted(files, key=lambda p: p.as_posix())


def named_strings(modules: dict[str, Path]) -> set[str]:
    """Every string constant in the modules' code: what an AWS service must be named by to keep its model."""
    strings: set[str] = set()
    for source in modules.values():
        for node in ast.walk(ast.parse(source.read_bytes(), filename=str(source))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    return strings


def prune_dependencies(site: Path, modules: dict[str, Path]) -> set[str]:
    """Drop what the functions never load, and return the AWS services whose models stay.

    Console scripts (they also hold a ``#!`` path); the dependencies' own test suites (``certifi/tests``); the
    botocore and boto3 models of every AWS service whose name is not a string in the shipped code (botocore ships
    about 450: 16 of the layer's 22 MB zipped). A client is created by a written-out name (``boto3.client("sqs")``,
    ``aws_client("ssm", ...)``), so its model stays; a few words that happen to be service names (``"events"``,
    ``"health"``) keep theirs too, a small price for never missing one. Then the ``RECORD`` of each distribution
    lists only what is left.
    """
    shutil.rmtree(site / "bin", ignore_errors=True)
    for tests in sorted(path for path in site.glob("*/tests") if path.is_dir()):
        shutil.rmtree(tests)
    strings = named_strings(modules)
    kept: set[str] = set()
    for folder in SERVICE_MODELS:
        for model in sorted(path for path in (site / folder).glob("*") if path.is_dir()):
            if model.name in strings:
                kept.add(model.name)
            else:
                shutil.rmtree(model)
    for record in sorted(site.glob("*.dist-info/RECORD")):
        record.write_bytes(b"".join(line for line in record.read_bytes().splitlines(True) if _present(site, line)))
    return kept


def _present(site: Path, record_line: bytes) -> bool:
    """Whether a line of a ``RECORD`` names a file still in ``site``. The lines of removed files go: the console
    scripts' lines hold a hash of their ``#!`` line, the path of the Python that ran pip, which would make the
    layer's bytes (and so its key) depend on where it was built."""
    path = next(csv.reader([record_line.decode("utf-8")]), [""])[0]
    return bool(path) and (site / path).resolve().is_relative_to(site.resolve()) and (site / path).is_file()


def files_under(base: Path) -> list[Path]:
    return sorted((p for p in base.rglob("*") if p.is_file()), key=lambda p: p.as_posix())


def remove_bytecode(tree: Path) -> None:
    """Every ``.pyc``/``.pyo`` under ``tree``: the only bytecode shipped is the one compile_bytecode writes."""
    for cache in [p for p in tree.rglob("__pycache__") if p.is_dir()]:
        shutil.rmtree(cache)
    for stale in [*tree.rglob("*.pyc"), *tree.rglob("*.pyo")]:
        stale.unlink()


def compile_bytecode(tree: Path, python: Interpreter, mount: str) -> None:
    """``__pycache__/<module>.cpython-3XX.pyc`` beside every ``.py`` under ``tree``, where the runtime looks for it.

    Unchecked-hash, so the header holds no timestamp. The rest depends on the sources and the interpreter version
    only: a fixed hash seed (the order of frozenset constants depends on it, ``if x in {"a", "b"}``) and ``mount``,
    the folder the runtime sees ``tree`` as, for the file names the code objects hold.
    """
    command = [python.executable, "-s", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    command += ["-d", mount, str(tree)]
    # Not -I: it would ignore PYTHONHASHSEED. The other PYTHON* variables go, so that nothing else changes the output.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    subprocess.run(command, check=True, env=env, cwd=tree.parent)  # noqa: S603 - our own argument list


def write_zip(target: Path, entries: Iterable[tuple[str, Path]]) -> Artefact:
    """A zip whose bytes depend only on the entries' names, contents and executable bits."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for name, source in sorted(entries, key=lambda entry: entry[0]):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below are honoured
            executable = os.access(source, os.X_OK) and source.suffix not in {".py", ".pyc"}
            info.external_attr = (0o100000 | (0o755 if executable else 0o644)) << 16
            archive.writestr(info, source.read_bytes(), compresslevel=6)
    data = target.read_bytes()
    return Artefact(target, len(data), hashlib.sha256(data).hexdigest())


def install_dependencies(target: Path, python_version: str, cache_dir: Path | None = None) -> None:
    """pip-install the runtime dependencies for Linux x86_64 and ``python_version`` into ``target``.

    ``--no-compile``: pip would compile with the build's own Python, whatever the target; compile_bytecode does it.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--constraint",
        str(CONSTRAINTS),
    ]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    subprocess.run([*command, *runtime_requirements()], check=True)  # noqa: S603 - our own argument list


def handler_files() -> list[Path]:
    return [FUNCTIONS_DIR / name / "index.py" for name in function_names()]


def build_layer(out: Path, python_version: str, python: Interpreter | None, cache_dir: Path | None = None) -> Artefact:
    modules = shipped_modules(handler_files())
    with tempfile.TemporaryDirectory(prefix="cvcsync-layer-") as scratch:
        site = Path(scratch) / "python"
        install_dependencies(site, python_version, cache_dir)
        prune_dependencies(site, modules)
        for source in package_files(modules):
            copy = site / source.relative_to(SHARED)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
        remove_bytecode(site)
        if python is not None:
            compile_bytecode(site, python, LAYER_MOUNT)
        entries = [(f"python/{p.relative_to(site).as_posix()}", p) for p in files_under(site)]
        return write_zip(out / f"{LAYER}.zip", entries)


def build_function(out: Path, name: str, python: Interpreter | None, mount: str) -> Artefact:
    with tempfile.TemporaryDirectory(prefix="cvcsync-function-") as scratch:
        code = Path(scratch) / name
        shutil.copytree(FUNCTIONS_DIR / name, code)
        remove_bytecode(code)
        if python is not None:
            compile_bytecode(code, python, mount)
        return write_zip(out / f"{name}.zip", [(p.relative_to(code).as_posix(), p) for p in files_under(code)])


def write_manifest(
    target: Path, platform: str, artefacts: Sequence[Artefact], python: Interpreter | None, prefix: str = KEY_PREFIX
) -> Path:
    """``manifest.json``: what deploy.py uploads where, and which template parameter takes each key."""
    manifest = {
        "platform": platform,
        "runtime": f"python{PLATFORMS[platform]}",
        "bytecode": python.version if python is not None else None,
        "artefacts": {
            artefact.name: {
                "file": artefact.path.name,
                "key": content_key(platform, artefact, prefix),
                "parameter": code_key_parameter(artefact.name),
                "sha256": artefact.sha256,
                "size": artefact.size,
            }
            for artefact in artefacts
        },
    }
    path = target / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def build(
    platform: str,
    out: Path,
    *,
    python: Interpreter | None,
    cache_dir: Path | None = None,
    key_prefix: str = KEY_PREFIX,
) -> list[Artefact]:
    """``python``: the platform's Python version (target_interpreter), or None to ship no bytecode.

    Replaces whatever an earlier build left in ``out/<platform>``, so the folder holds this build's artefacts only.
    """
    target = out / platform
    for stale in [*target.glob("*.zip"), target / MANIFEST]:
        stale.unlink(missing_ok=True)
    artefacts = [build_layer(target, PLATFORMS[platform], python, cache_dir)]
    artefacts += [build_function(target, name, python, CODE_MOUNT[platform]) for name in function_names()]
    write_manifest(target, platform, artefacts, python, key_prefix)
    return artefacts


def _key_prefix(text: str) -> str:
    if text and (not text.endswith("/") or text.startswith("/") or "*" in text):
        raise argparse.ArgumentTypeError(f"a key prefix is empty or ends with '/', without a leading '/': {text!r}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), action="append", help="default: every platform")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--cache-dir", type=Path, help="pip's download cache (default: pip's own)")
    parser.add_argument(
        "--key-prefix",
        type=_key_prefix,
        default=KEY_PREFIX,
        help=f"the start of every object key (default: {KEY_PREFIX})",
    )
    args = parser.parse_args(argv)
    for platform in args.platform or sorted(PLATFORMS):
        version = PLATFORMS[platform]
        python = target_interpreter(version)
        bytecode = f"bytecode by Python {python.version}" if python else "NO bytecode"
        print(f"{platform} (python{version}, {PIP_PLATFORM}, {bytecode}):")
        if python is None:
            print(
                f"warning: python{version} not found (neither on PATH nor in pyenv): {args.out / platform} is built "
                f"without .pyc files, so every cold start will pay for compiling cvcsync and its dependencies "
                f"(about +0.2 s for the queue and HTTP functions, +0.7 s for upload and scheduled). Install Python "
                f"{version} (e.g. `pyenv install {version}`) and run `make package` again.",
                file=sys.stderr,
            )
        artefacts = build(platform, args.out, python=python, cache_dir=args.cache_dir, key_prefix=args.key_prefix)
        for artefact in artefacts:
            shown = artefact.path.relative_to(args.out) if artefact.path.is_relative_to(args.out) else artefact.path
            key = content_key(platform, artefact, args.key_prefix)
            print(f"  {shown!s:28} {artefact.size:>12,} bytes  sha256 {artefact.sha256[:16]}  key {key}")
        print(f"  {args.out / platform / MANIFEST}: the keys deploy.py uploads to and passes to the template")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the deployable artefacts of cvc-sync: per platform, a layer and one code zip per function.

``python deploy/package.py [--platform fc|lambda] [--out dist]`` (``make package``) writes ``dist/<platform>/``:

- ``layer.zip``: ``python/`` holding ``cvcsync`` (copied from ``shared/``) and its runtime dependencies, installed by
  pip for Linux x86_64 and the platform's Python (``--platform manylinux2014_x86_64 --only-binary=:all:``), so
  compiled wheels such as orjson's are the ones the runtime loads; versions pinned by ``constraints.txt``;
- ``<function>.zip``: the function's ``index.py`` at the root (handler ``index.handler``).

Both carry the bytecode of every ``.py``, compiled by the platform's Python version (``__pycache__/*.cpython-310.pyc``
for FC, ``cpython-312`` for Lambda): the code and layer folders are read-only on both platforms, so without it every
cold start compiles cvcsync, requests and boto3 again (measured: +0.2 s for the queue and HTTP functions, +0.7 s for
the upload and scheduled ones). The ``.pyc`` files are unchecked-hash (PEP 552): their header holds a hash of the
source instead of its mtime, and the runtime does not re-check it (deployed code cannot change). That Python is found
as ``python3.10``/``python3.12`` on PATH, else in pyenv; without it the zips are built without ``.pyc`` and a warning
says what the cold starts will pay.

Reproducible: the same inputs, and the same interpreter version for the bytecode (printed), give the same bytes:
sorted entries, fixed timestamps and permissions, bytecode compiled with a fixed hash seed and fixed paths.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_SOURCE = ROOT / "shared" / "cvcsync"
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
# Published as a source distribution only. It is pure Python, so a wheel built here runs on every platform; the
# build is checked to give a ``py3-none-any`` wheel before it is used.
SOURCE_ONLY = {"aliyun-fc2"}
_PROBE = "import platform, sys; print(sys.implementation.cache_tag, platform.python_version(), sys.executable)"


@dataclass(frozen=True)
class Artefact:
    path: Path
    size: int
    sha256: str


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
    """The project's runtime dependencies (no extras), as installed from pyproject.toml."""
    requirements = importlib.metadata.requires("cvcsync") or []
    return sorted(r for r in requirements if "extra ==" not in r)


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


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].strip().split("<")[0].split(">")[0].split("=")[0].split("!")[0]


def build_pure_wheels(wheels: Path, cache_dir: Path | None = None) -> None:
    """Wheels of the SOURCE_ONLY requirements, refused unless pure Python."""
    requirements = [r for r in runtime_requirements() if _name(r).strip().lower() in SOURCE_ONLY]
    if not requirements:
        return
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--wheel-dir", str(wheels), "--constraint", str(CONSTRAINTS)]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    subprocess.run([*command, *requirements], check=True)  # noqa: S603 - our own argument list
    for wheel in wheels.glob("*.whl"):
        if not wheel.name.endswith("-py3-none-any.whl") and not wheel.name.endswith("-py2.py3-none-any.whl"):
            raise SystemExit(f"{wheel.name} is not a pure-Python wheel: it cannot go into a cross-platform layer")


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
    with tempfile.TemporaryDirectory(prefix="cvcsync-wheels-") as wheels:
        build_pure_wheels(Path(wheels), cache_dir)
        command += ["--find-links", wheels]
        subprocess.run([*command, *runtime_requirements()], check=True)  # noqa: S603 - our own argument list
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: useless in a layer, and hold a #! path


def build_layer(out: Path, python_version: str, python: Interpreter | None, cache_dir: Path | None = None) -> Artefact:
    with tempfile.TemporaryDirectory(prefix="cvcsync-layer-") as scratch:
        site = Path(scratch) / "python"
        install_dependencies(site, python_version, cache_dir)
        shutil.copytree(PACKAGE_SOURCE, site / "cvcsync")
        remove_bytecode(site)
        if python is not None:
            compile_bytecode(site, python, LAYER_MOUNT)
        entries = [(f"python/{p.relative_to(site).as_posix()}", p) for p in files_under(site)]
        return write_zip(out / "layer.zip", entries)


def build_function(out: Path, name: str, python: Interpreter | None, mount: str) -> Artefact:
    with tempfile.TemporaryDirectory(prefix="cvcsync-function-") as scratch:
        code = Path(scratch) / name
        shutil.copytree(FUNCTIONS_DIR / name, code)
        remove_bytecode(code)
        if python is not None:
            compile_bytecode(code, python, mount)
        return write_zip(out / f"{name}.zip", [(p.relative_to(code).as_posix(), p) for p in files_under(code)])


def build(
    platform: str, out: Path, *, python: Interpreter | None, cache_dir: Path | None = None, layer: bool = True
) -> list[Artefact]:
    """``python``: the platform's Python version (target_interpreter), or None to ship no bytecode."""
    target = out / platform
    artefacts = [build_function(target, name, python, CODE_MOUNT[platform]) for name in function_names()]
    if layer:
        artefacts.insert(0, build_layer(target, PLATFORMS[platform], python, cache_dir))
    return artefacts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), action="append", help="default: every platform")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--cache-dir", type=Path, help="pip's download cache (default: pip's own)")
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
        for artefact in build(platform, args.out, python=python, cache_dir=args.cache_dir):
            shown = artefact.path.relative_to(args.out) if artefact.path.is_relative_to(args.out) else artefact.path
            print(f"  {shown!s:28} {artefact.size:>12,} bytes  sha256 {artefact.sha256[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

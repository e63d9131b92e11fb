"""Build the deployable artefacts of cvc-sync: per platform, a layer and one code zip per function.

``python deploy/package.py [--platform fc|lambda] [--out dist]`` (``make package``) writes ``dist/<platform>/``:

- ``layer.zip``: ``python/`` holding ``cvcsync`` (copied from ``shared/``) and its runtime dependencies, installed by
  pip for Linux x86_64 and the platform's Python (``--platform manylinux2014_x86_64 --only-binary=:all:``), so
  compiled wheels such as orjson's are the ones the runtime loads; versions pinned by ``constraints.txt``;
- ``<function>.zip``: the function's ``index.py`` at the root (handler ``index.handler``).

Reproducible: the same inputs give the same bytes (sorted entries, fixed timestamps and permissions, no ``.pyc``).
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
SKIPPED_PARTS = {"__pycache__"}
# Published as a source distribution only. It is pure Python, so a wheel built here runs on every platform; the
# build is checked to give a ``py3-none-any`` wheel before it is used.
SOURCE_ONLY = {"aliyun-fc2"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Artefact:
    path: Path
    size: int
    sha256: str


def function_names() -> list[str]:
    """Every function under ``functions/`` (a folder holding an ``index.py``)."""
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/index.py"))


def runtime_requirements() -> list[str]:
    """The project's runtime dependencies (no extras), as installed from pyproject.toml."""
    requirements = importlib.metadata.requires("cvcsync") or []
    return sorted(r for r in requirements if "extra ==" not in r)


def _included(path: Path, base: Path) -> bool:
    relative = path.relative_to(base)
    return not (SKIPPED_PARTS & set(relative.parts)) and path.suffix not in SKIPPED_SUFFIXES


def files_under(base: Path) -> list[Path]:
    return sorted((p for p in base.rglob("*") if p.is_file() and _included(p, base)), key=lambda p: p.as_posix())


def write_zip(target: Path, entries: Iterable[tuple[str, Path]]) -> Artefact:
    """A zip whose bytes depend only on the entries' names, contents and executable bits."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for name, source in sorted(entries, key=lambda entry: entry[0]):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below are honoured
            mode = 0o755 if os.access(source, os.X_OK) and source.suffix != ".py" else 0o644
            info.external_attr = (0o100000 | mode) << 16
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
    """pip-install the runtime dependencies for Linux x86_64 and ``python_version`` into ``target``."""
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


def build_layer(out: Path, python_version: str, cache_dir: Path | None = None) -> Artefact:
    with tempfile.TemporaryDirectory(prefix="cvcsync-layer-") as scratch:
        site = Path(scratch) / "python"
        install_dependencies(site, python_version, cache_dir)
        shutil.copytree(PACKAGE_SOURCE, site / "cvcsync", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        entries = [(f"python/{p.relative_to(site).as_posix()}", p) for p in files_under(site)]
        return write_zip(out / "layer.zip", entries)


def build_function(out: Path, name: str) -> Artefact:
    source = FUNCTIONS_DIR / name
    return write_zip(out / f"{name}.zip", [(p.relative_to(source).as_posix(), p) for p in files_under(source)])


def build(platform: str, out: Path, *, cache_dir: Path | None = None, layer: bool = True) -> list[Artefact]:
    target = out / platform
    artefacts = [build_function(target, name) for name in function_names()]
    if layer:
        artefacts.insert(0, build_layer(target, PLATFORMS[platform], cache_dir))
    return artefacts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), action="append", help="default: every platform")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--cache-dir", type=Path, help="pip's download cache (default: pip's own)")
    args = parser.parse_args(argv)
    for platform in args.platform or sorted(PLATFORMS):
        print(f"{platform} (python{PLATFORMS[platform]}, {PIP_PLATFORM}):")
        for artefact in build(platform, args.out, cache_dir=args.cache_dir):
            shown = artefact.path.relative_to(args.out) if artefact.path.is_relative_to(args.out) else artefact.path
            print(f"  {shown!s:28} {artefact.size:>12,} bytes  sha256 {artefact.sha256[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

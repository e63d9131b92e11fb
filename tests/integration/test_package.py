"""The deployable packages (deploy/package.py, `make package`) are complete, compiled and reproducible.

Each platform's layer is built for real (pip, from PyPI, for manylinux2014_x86_64 and the platform's Python),
unpacked into a fresh folder in the runtime's layout (``/opt/python``), and every handler is imported from it by the
platform's own Python version in an isolated interpreter (``-I -S``: no site-packages, no environment, no current
folder), so a module missing from the layer fails the test. The bytecode the packages carry is checked against that
interpreter (tag, magic number, unchecked-hash header, hash of its source), and shown to be what the runtime loads:
with every source replaced by a ``raise``, the handlers still import. A platform whose Python is not installed here
is skipped, as the build then ships no bytecode.
"""

from __future__ import annotations

import json
import posixpath
import subprocess
import zipfile
from pathlib import Path

import pytest
from deploy import package

FUNCTIONS = package.function_names()

PROBE = r"""
import importlib.util, json, sys
opt, code_root = sys.argv[1], sys.argv[2]
sys.path[:0] = [opt + "/python"]
result = {"handlers": {}, "modules": {}, "cached": []}
for name in sys.argv[3:]:
    spec = importlib.util.spec_from_file_location(f"function_{name}", f"{code_root}/{name}/index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result["handlers"][name] = callable(module.handler)
    result["cached"].append(module.__cached__)
for dependency in ["cvcsync", "boto3", "botocore", "fc2", "requests", "orjson", "cvcsync.http_api.app"]:
    module = importlib.import_module(dependency)
    result["modules"][dependency] = module.__file__
    if dependency != "orjson":  # a compiled extension: no bytecode
        result["cached"].append(module.__cached__)
import orjson
result["orjson"] = orjson.dumps({"ok": 1}).decode()
from cvcsync.platform.triggers.http import handle
captured = {}
def start_response(status, headers, exc_info=None):
    captured["status"] = status
import io
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "QUERY_STRING": "", "wsgi.input": io.BytesIO(),
           "CONTENT_LENGTH": "0", "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "https"}
body = b"".join(handle(environ, start_response))
result["healthz"] = [captured["status"], json.loads(body)["status"]]
print(json.dumps(result))
"""

# Run by the target interpreter: every .py under the folders has the .pyc that interpreter would load (its cache
# tag and magic number), unchecked-hash (PEP 552 flags 0b01: hash-based, check_source off) of that very source.
CHECK_BYTECODE = r"""
import importlib.util, json, pathlib, sys
checked, problems = [], []
for folder in sys.argv[1:]:
    for source in sorted(pathlib.Path(folder).rglob("*.py")):
        cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
        data = cached.read_bytes() if cached.is_file() else b""
        header = (data[:4], int.from_bytes(data[4:8], "little"), data[8:16])
        if header != (importlib.util.MAGIC_NUMBER, 0b01, importlib.util.source_hash(source.read_bytes())):
            problems.append([str(source), data[:16].hex()])
        checked.append(str(source))
print(json.dumps({"checked": checked, "problems": problems}))
"""


def target_python(platform: str) -> package.Interpreter:
    version = package.PLATFORMS[platform]
    python = package.target_interpreter(version)
    if python is None:
        pytest.skip(f"python{version} is not installed here: the {platform} packages carry no bytecode")
    return python


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture(scope="session", params=sorted(package.PLATFORMS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> Path:
    platform: str = request.param
    out = tmp_path_factory.mktemp(f"dist-{platform}")
    python = package.target_interpreter(package.PLATFORMS[platform])
    package.build(platform, out, python=python, cache_dir=pip_cache)
    return out / platform


def unpack(built: Path, into: Path) -> tuple[Path, Path]:
    """The layer under ``opt`` (``opt/python``, as /opt/python) and each function's code under ``code/<name>``."""
    opt = into / "opt"
    with zipfile.ZipFile(built / "layer.zip") as layer:
        layer.extractall(opt)
    code_root = into / "code"
    for name in FUNCTIONS:
        with zipfile.ZipFile(built / f"{name}.zip") as code:
            code.extractall(code_root / name)
    return opt, code_root


def run_isolated(python: package.Interpreter, script: str, args: list[str], home: Path) -> dict[str, object]:
    """``script`` in an isolated interpreter (``-I -S``) that writes no bytecode (``-B``, the read-only runtime)."""
    completed = subprocess.run(
        [python.executable, "-I", "-S", "-B", "-c", script, *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        cwd=home,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def test_layer_is_complete_for_the_target_python(built: Path, tmp_path: Path) -> None:
    platform = built.name
    version = package.PLATFORMS[platform]
    python = target_python(platform)
    opt, code_root = unpack(built, tmp_path)
    result = run_isolated(python, PROBE, [str(opt), str(code_root), *FUNCTIONS], tmp_path)
    assert result["handlers"] == dict.fromkeys(FUNCTIONS, True)
    assert isinstance(result["modules"], dict)
    for module, path in result["modules"].items():
        assert path.startswith(str(opt / "python")), (module, path)
    assert isinstance(result["cached"], list)
    for cached in result["cached"]:  # the .pyc each module was loaded with, shipped in the zips
        assert Path(cached).is_file() and Path(cached).is_relative_to(tmp_path), cached
    assert f"cpython-{version.replace('.', '')}-x86_64-linux-gnu" in "".join(
        name for name in zipfile.ZipFile(built / "layer.zip").namelist() if name.startswith("python/orjson/")
    )
    assert result["orjson"] == '{"ok":1}'
    assert result["healthz"] == ["503 Service Unavailable", "unconfigured"]


def _cached_name(source: str, tag: str) -> str:
    folder, file = posixpath.split(source)
    return posixpath.join(folder, "__pycache__", f"{file.removesuffix('.py')}.{tag}.pyc")


def test_layer_layout_is_clean(built: Path) -> None:
    platform = built.name
    tag = package.cache_tag(package.PLATFORMS[platform])
    with zipfile.ZipFile(built / "layer.zip") as layer:
        infos = layer.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert all(name.startswith("python/") for name in names)
    assert not [n for n in names if n.startswith("python/bin/")]
    assert all(info.date_time == package.FIXED_TIME for info in infos)
    for expected in [
        "python/cvcsync/inputs/presets/columns.json",
        "python/cvcsync/http_api/openapi.json",
        "python/fc2/client.py",
    ]:
        assert expected in names
    # Development-only code (the emulator, the demo, local invoke and serve) is another package, never shipped.
    assert not [n for n in names if n.startswith("python/cvcsync_dev/") or "/emulator/" in n or "demo" in n]
    bytecode = {n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))}
    compiled = package.target_interpreter(package.PLATFORMS[platform]) is not None
    # With the target Python: one .pyc per .py, for that version only, where the runtime looks; else none at all.
    assert bytecode == ({_cached_name(n, tag) for n in names if n.endswith(".py")} if compiled else set())
    if compiled:
        for expected in [
            f"python/cvcsync/__pycache__/__init__.{tag}.pyc",
            f"python/cvcsync/platform/triggers/__pycache__/queue.{tag}.pyc",
            f"python/requests/__pycache__/__init__.{tag}.pyc",
            f"python/requests/__pycache__/sessions.{tag}.pyc",
            f"python/boto3/__pycache__/session.{tag}.pyc",
        ]:
            assert expected in bytecode
    assert {(info.external_attr >> 16) & 0o777 for info in infos if info.filename in bytecode} <= {0o644}
    for name in FUNCTIONS:
        with zipfile.ZipFile(built / f"{name}.zip") as code:
            assert code.namelist() == ([f"__pycache__/index.{tag}.pyc"] if compiled else []) + ["index.py"]


def test_bytecode_is_unchecked_hash_for_the_target_python(built: Path, tmp_path: Path) -> None:
    python = target_python(built.name)
    opt, code_root = unpack(built, tmp_path)
    result = run_isolated(python, CHECK_BYTECODE, [str(opt), str(code_root)], tmp_path)
    assert result["problems"] == []
    checked = result["checked"]
    assert isinstance(checked, list)
    for source in ["python/cvcsync/engine/plan.py", "python/requests/adapters.py", "python/botocore/client.py"]:
        assert str(opt / source) in checked
    assert {str(code_root / name / "index.py") for name in FUNCTIONS} <= set(checked)


def test_handlers_import_from_the_bytecode_alone(built: Path, tmp_path: Path) -> None:
    """Every source replaced by a ``raise``: the handlers still import, so no module was compiled from source."""
    python = target_python(built.name)
    opt, code_root = unpack(built, tmp_path)
    for source in [*opt.rglob("*.py"), *code_root.rglob("*.py")]:
        source.write_text(f"raise ImportError('compiled from source, its .pyc unused: {source.name}')\n")
    before = sorted(tmp_path.rglob("*"))
    result = run_isolated(python, PROBE, [str(opt), str(code_root), *FUNCTIONS], tmp_path)
    assert result["handlers"] == dict.fromkeys(FUNCTIONS, True)
    assert result["healthz"] == ["503 Service Unavailable", "unconfigured"]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: as on the read-only code folder


def test_packages_are_reproducible(built: Path, tmp_path: Path, pip_cache: Path) -> None:
    python = package.target_interpreter(package.PLATFORMS[built.name])
    again = package.build(built.name, tmp_path, python=python, cache_dir=pip_cache)
    for artefact in again:
        assert artefact.path.read_bytes() == (built / artefact.path.name).read_bytes(), artefact.path.name


def layer_stand_in(
    out: Path, python_version: str, python: package.Interpreter | None, cache_dir: Path | None = None
) -> package.Artefact:
    """The real layer build is exercised above: a stand-in keeps the command's tests quick."""
    return package.write_zip(
        out / "layer.zip", [("python/cvcsync/__init__.py", package.PACKAGE_SOURCE / "__init__.py")]
    )


def test_make_package_prints_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package, "build_layer", layer_stand_in)
    assert package.main(["--out", str(tmp_path), "--platform", "lambda"]) == 0
    printed = capsys.readouterr().out
    for name in ["layer.zip", *(f"{n}.zip" for n in FUNCTIONS)]:
        assert f"lambda/{name}" in printed
    assert "bytes" in printed and "sha256" in printed


def test_without_the_target_python_the_build_warns_and_ships_no_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package, "build_layer", layer_stand_in)
    monkeypatch.setattr(package, "target_interpreter", lambda version: None)
    assert package.main(["--out", str(tmp_path), "--platform", "fc"]) == 0
    printed = capsys.readouterr()
    assert "warning: python3.10 not found" in printed.err and "every cold start will pay" in printed.err
    assert "NO bytecode" in printed.out
    for name in FUNCTIONS:
        with zipfile.ZipFile(tmp_path / "fc" / f"{name}.zip") as code:
            assert code.namelist() == ["index.py"]


def test_target_interpreter_is_the_version_asked_for() -> None:
    for version in package.PLATFORMS.values():
        python = package.target_interpreter(version)
        if python is not None:
            assert python.version.startswith(f"{version}.") and Path(python.executable).is_file()
    assert package.target_interpreter("2.9") is None

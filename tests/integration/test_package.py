"""The deployable packages (deploy/package.py, `make package`) are complete and reproducible.

Each platform's layer is built for real (pip, from PyPI, for manylinux2014_x86_64 and the platform's Python),
unpacked into a fresh folder in the runtime's layout (``/opt/python``), and every handler is imported from it by the
platform's own Python version in an isolated interpreter (``-I -S``: no site-packages, no environment, no current
folder), so a module missing from the layer fails the test. A platform whose Python is not installed here is skipped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
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
result = {"handlers": {}, "modules": {}}
for name in sys.argv[3:]:
    spec = importlib.util.spec_from_file_location(f"function_{name}", f"{code_root}/{name}/index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result["handlers"][name] = callable(module.handler)
for dependency in ["cvcsync", "boto3", "botocore", "fc2", "requests", "orjson", "cvcsync.http_api.app"]:
    result["modules"][dependency] = importlib.import_module(dependency).__file__
import orjson
result["orjson"] = orjson.dumps({"ok": 1}).decode()
from cvcsync.triggers.http import handle
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


def interpreter(version: str) -> str | None:
    """A working ``python<version>``: on PATH, else a pyenv installation."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-I", "-S", "-c", "pass"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture(scope="session", params=sorted(package.PLATFORMS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> Path:
    platform: str = request.param
    out = tmp_path_factory.mktemp(f"dist-{platform}")
    package.build(platform, out, cache_dir=pip_cache)
    return out / platform


def test_layer_is_complete_for_the_target_python(built: Path, tmp_path: Path) -> None:
    platform = built.name
    version = package.PLATFORMS[platform]
    python = interpreter(version)
    if python is None:
        pytest.skip(f"python{version} is not installed here: the {platform} layer cannot be imported by its runtime")
    opt = tmp_path / "opt"
    with zipfile.ZipFile(built / "layer.zip") as layer:
        layer.extractall(opt)
    code_root = tmp_path / "code"
    for name in FUNCTIONS:
        with zipfile.ZipFile(built / f"{name}.zip") as code:
            code.extractall(code_root / name)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    completed = subprocess.run(
        [python, "-I", "-S", "-c", PROBE, str(opt), str(code_root), *FUNCTIONS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["handlers"] == dict.fromkeys(FUNCTIONS, True)
    for module, path in result["modules"].items():
        assert path.startswith(str(opt / "python")), (module, path)
    assert f"cpython-{version.replace('.', '')}-x86_64-linux-gnu" in "".join(
        name for name in zipfile.ZipFile(built / "layer.zip").namelist() if name.startswith("python/orjson/")
    )
    assert result["orjson"] == '{"ok":1}'
    assert result["healthz"] == ["503 Service Unavailable", "unconfigured"]


def test_layer_layout_is_clean(built: Path) -> None:
    with zipfile.ZipFile(built / "layer.zip") as layer:
        infos = layer.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert all(name.startswith("python/") for name in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("python/bin/")]
    assert all(info.date_time == package.FIXED_TIME for info in infos)
    for expected in [
        "python/cvcsync/presets/columns.json",
        "python/cvcsync/http_api/openapi.json",
        "python/fc2/client.py",
    ]:
        assert expected in names
    for name in FUNCTIONS:
        with zipfile.ZipFile(built / f"{name}.zip") as code:
            assert code.namelist() == ["index.py"]


def test_packages_are_reproducible(built: Path, tmp_path: Path, pip_cache: Path) -> None:
    again = package.build(built.name, tmp_path, cache_dir=pip_cache)
    for artefact in again:
        assert artefact.path.read_bytes() == (built / artefact.path.name).read_bytes(), artefact.path.name


def test_make_package_prints_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's output; the real layer build is exercised above, so a stand-in layer keeps this one quick."""

    def layer_stand_in(out: Path, python_version: str, cache_dir: Path | None = None) -> package.Artefact:
        return package.write_zip(
            out / "layer.zip", [("python/cvcsync/__init__.py", package.PACKAGE_SOURCE / "__init__.py")]
        )

    monkeypatch.setattr(package, "build_layer", layer_stand_in)
    assert package.main(["--out", str(tmp_path), "--platform", "lambda"]) == 0
    printed = capsys.readouterr().out
    for name in ["layer.zip", *(f"{n}.zip" for n in FUNCTIONS)]:
        assert f"lambda/{name}" in printed
    assert "bytes" in printed and "sha256" in printed

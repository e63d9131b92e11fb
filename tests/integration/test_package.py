"""The deployable packages (deploy/package.py, `make package`) are complete, compiled and reproducible.

Each platform's layer is built for real (pip, from PyPI, for manylinux2014_x86_64 and the platform's Python),
unpacked into a fresh folder in the runtime's layout (``/opt/python``), and every handler is imported from it by the
platform's own Python version in an isolated interpreter (``-I -S``: no site-packages, no environment, no current
folder), so a module missing from the layer fails the test. The bytecode the packages carry is checked against that
interpreter (tag, magic number, unchecked-hash header, hash of its source), and shown to be what the runtime loads:
with every source replaced by a ``raise``, the handlers still import. A platform whose Python is not installed here
is skipped, as the build then ships no bytecode.

The layer holds only what the functions load: the modules of cvcsync the handlers import (never the command line or
``cvcsync_dev``), no test suites, and botocore's models of the services the code names, each of which a client can
be created of from the layer. Every artefact is named in ``manifest.json`` by its content, and the build runs in an
environment with nothing but pip (what ``make package`` gives it) to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import subprocess
import venv
import zipfile
from collections.abc import Callable
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
for dependency in ["cvcsync", "boto3", "botocore", "requests", "orjson", "openpyxl", "cvcsync.http_api.app"]:
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


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> Callable[[str], Path]:
    """``dist/<platform>`` of a real build, made once per platform for the session."""
    done: dict[str, Path] = {}

    def build(platform: str) -> Path:
        if platform not in done:
            out = tmp_path_factory.mktemp(f"dist-{platform}")
            python = package.target_interpreter(package.PLATFORMS[platform])
            package.build(platform, out, python=python, cache_dir=pip_cache)
            done[platform] = out / platform
        return done[platform]

    return build


@pytest.fixture(scope="session", params=sorted(package.PLATFORMS))
def built(request: pytest.FixtureRequest, builds: Callable[[str], Path]) -> Path:
    return builds(request.param)


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
        "python/openpyxl/reader/excel.py",
    ]:
        assert expected in names
    # Development-only code (the emulator, the demo, local invoke and serve) is another package, never shipped.
    assert not [n for n in names if n.startswith("python/cvcsync_dev/") or "/emulator/" in n or "demo" in n]
    # Of cvcsync, exactly the modules the handlers import: not the command line, not the type-checker marker.
    modules = package.shipped_modules(package.handler_files())
    imported = {f"python/{source.relative_to(package.SHARED).as_posix()}" for source in modules.values()}
    assert {n for n in names if n.startswith("python/cvcsync/") and n.endswith(".py")} == imported
    for left_out in ["cli.py", "cli_output.py", "cli_problems.py", "__main__.py", "py.typed"]:
        assert f"python/cvcsync/{left_out}" not in names
    # No test suites of the dependencies (certifi ships its own), no console scripts.
    assert not [n for n in names if "/tests/" in n or "/test/" in n]
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


def models(names: list[str], folder: str) -> set[str]:
    return {n.split("/")[3] for n in names if n.startswith(f"python/{folder}/") and n.count("/") > 3}


def test_layer_keeps_the_models_of_the_services_the_code_names(built: Path) -> None:
    with zipfile.ZipFile(built / "layer.zip") as layer:
        names = layer.namelist()
        records = {n: layer.read(n).decode() for n in names if n.endswith(".dist-info/RECORD")}
    kept = models(names, "botocore/data")
    # The clients cvcsync creates (fan-out, queues, object store, secrets), and nothing the code does not name.
    assert {"lambda", "s3", "sqs", "secretsmanager", "ssm"} <= kept
    assert kept <= package.named_strings(package.shipped_modules(package.handler_files()))
    assert len(kept) < 20  # of about 450
    assert models(names, "boto3/data") <= kept
    for shared in ["endpoints.json", "partitions.json", "sdk-default-configuration.json", "_retry.json"]:
        assert f"python/botocore/data/{shared}" in names
    # Each RECORD lists what is in the layer: the removed files' lines are gone (a console script's line holds the
    # hash of a #! path, which would make the layer depend on where it was built).
    for record, text in records.items():
        listed = [line.split(",")[0] for line in text.splitlines() if line]
        assert listed and all(f"python/{path}" in names for path in listed), record


CLIENTS = r"""
import json, sys
sys.path[:0] = [sys.argv[1] + "/python"]
import boto3
session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret",
                                region_name="eu-west-1")
names = sys.argv[2:]
clients = {name: session.client(name).meta.service_model.service_name for name in names}
url = session.client("s3").generate_presigned_url("get_object", Params={"Bucket": "hr", "Key": "a.csv"})
print(json.dumps({"clients": clients, "url": url.split("?")[0], "botocore": boto3.__file__}))
"""


def test_every_kept_model_makes_a_client_from_the_layer(built: Path, tmp_path: Path) -> None:
    """Offline: a client is built from the layer's models alone, and S3 resolves an endpoint with its rule set."""
    python = target_python(built.name)
    opt, _ = unpack(built, tmp_path)
    kept = sorted(models(zipfile.ZipFile(built / "layer.zip").namelist(), "botocore/data"))
    result = run_isolated(python, CLIENTS, [str(opt), *kept], tmp_path)
    assert result["clients"] == {name: name for name in kept}
    url = str(result["url"])  # the endpoint came from S3's rule set, a file of its model folder
    assert url.startswith("https://") and ".amazonaws.com/" in url and url.endswith("/a.csv"), url
    assert str(result["botocore"]).startswith(str(opt / "python"))


def test_manifest_names_every_artefact_by_its_content(built: Path) -> None:
    platform = built.name
    manifest = json.loads((built / package.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["platform"] == platform and manifest["runtime"] == f"python{package.PLATFORMS[platform]}"
    assert sorted(manifest["artefacts"]) == sorted(["layer", *FUNCTIONS])
    assert sorted(p.name for p in built.glob("*.zip")) == sorted(a["file"] for a in manifest["artefacts"].values())
    for name, artefact in manifest["artefacts"].items():
        data = (built / artefact["file"]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (artefact["sha256"], artefact["size"]) == (digest, len(data)), name
        assert artefact["key"] == f"cvc-sync/packages/{platform}/{name}-{digest[:16]}.zip", name
        assert artefact["parameter"] == package.code_key_parameter(name)
    assert manifest["artefacts"]["http_api"]["parameter"] == "HttpApiCodeKey"
    assert manifest["artefacts"]["layer"]["parameter"] == "LayerCodeKey"


def test_packaging_needs_nothing_but_pip(builds: Callable[[str], Path], tmp_path: Path, pip_cache: Path) -> None:
    """A fresh venv with pip only (as `make package` makes): the build runs, to the very bytes of this one."""
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    assert {p["name"].lower() for p in json.loads(listed.stdout)} <= {"pip", "setuptools", "tomli"}
    command = [python, str(package.ROOT / "deploy" / "package.py"), "--platform", "lambda"]
    command += ["--out", str(tmp_path / "dist"), "--cache-dir", str(pip_cache)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr
    ours = builds("lambda")
    theirs = tmp_path / "dist" / "lambda"
    for artefact in json.loads((ours / package.MANIFEST).read_text(encoding="utf-8"))["artefacts"].values():
        assert (theirs / artefact["file"]).read_bytes() == (ours / artefact["file"]).read_bytes(), artefact["file"]
    assert (theirs / package.MANIFEST).read_bytes() == (ours / package.MANIFEST).read_bytes()


def test_make_package_installs_no_development_tools() -> None:
    """`make package` has an environment of its own: pip (and tomli on Python 3.10), never the `dev` extra."""
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "package"],
        cwd=package.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dry_run.stdout.splitlines()
    installs = [line for line in lines if "pip install" in line]
    assert len(installs) == 2 and not [line for line in installs if "[dev]" in line or " -e " in line]
    assert installs[0].endswith("--upgrade pip")
    assert installs[1].endswith("""'tomli; python_version < "3.11"'""")
    assert lines[-1] == ".venv/package/bin/python deploy/package.py"
    assert not [line for line in lines if line.startswith(".venv/bin/")]


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
    assert (tmp_path / built.name / package.MANIFEST).read_bytes() == (built / package.MANIFEST).read_bytes()


def layer_stand_in(
    out: Path, python_version: str, python: package.Interpreter | None, cache_dir: Path | None = None
) -> package.Artefact:
    """The real layer build is exercised above: a stand-in keeps the command's tests quick."""
    return package.write_zip(
        out / "layer.zip", [("python/cvcsync/__init__.py", package.PACKAGE_SOURCE / "__init__.py")]
    )


def test_make_package_prints_sizes_and_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package, "build_layer", layer_stand_in)
    assert package.main(["--out", str(tmp_path), "--platform", "lambda", "--key-prefix", "ops/cvc/"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((tmp_path / "lambda" / "manifest.json").read_text(encoding="utf-8"))
    for name in ["layer", *FUNCTIONS]:
        artefact = manifest["artefacts"][name]
        assert artefact["key"] == f"ops/cvc/lambda/{name}-{artefact['sha256'][:16]}.zip"
        assert f"lambda/{name}.zip" in printed and f"key {artefact['key']}" in printed
    assert "bytes" in printed and "sha256" in printed and "manifest.json" in printed


@pytest.mark.parametrize("prefix", ["cvc", "/cvc/", "*/"])
def test_a_key_prefix_is_a_folder(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        package.main(["--key-prefix", prefix])
    assert "a key prefix is empty or ends with '/'" in capsys.readouterr().err


def test_a_changed_function_changes_its_key_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Content-addressed: rebuilding after one function changed gives that function a new key and keeps the others',
    so a stack update replaces exactly that code; the stale zips of a removed function do not survive a build."""
    functions = tmp_path / "functions"
    shutil.copytree(package.FUNCTIONS_DIR, functions, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(package, "FUNCTIONS_DIR", functions)
    monkeypatch.setattr(package, "build_layer", layer_stand_in)

    def keys() -> dict[str, str]:
        package.build("lambda", tmp_path / "dist", python=None)
        manifest = json.loads((tmp_path / "dist" / "lambda" / "manifest.json").read_text(encoding="utf-8"))
        return {name: artefact["key"] for name, artefact in manifest["artefacts"].items()}

    before = keys()
    assert keys() == before  # the same sources, the same keys: an update with them changes nothing
    index = functions / "queue_changes" / "index.py"
    index.write_text(index.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    after = keys()
    assert {name for name in before if before[name] != after[name]} == {"queue_changes"}
    shutil.rmtree(functions / "scheduled")
    assert "scheduled" not in keys() and not (tmp_path / "dist" / "lambda" / "scheduled.zip").exists()


def test_a_handler_reaching_development_code_is_refused(tmp_path: Path) -> None:
    handler = tmp_path / "index.py"
    handler.write_text("from cvcsync.errors import CvcSyncError\nfrom cvcsync_dev.demo import main\n")
    with pytest.raises(SystemExit, match="development code never goes into a layer"):
        package.shipped_modules([handler])


def test_shipped_modules_follow_lazy_and_relative_imports(tmp_path: Path) -> None:
    modules = package.shipped_modules(package.handler_files())
    assert "cvcsync.platform.triggers.upload" in modules and "cvcsync" in modules
    # Imported inside functions only (kept off the cold start), and still shipped.
    assert {"cvcsync.platform.dispatch", "cvcsync.inputs.xlsx_rows", "cvcsync.http_api.handlers"} <= set(modules)
    assert not [name for name in modules if name.startswith("cvcsync.cli") or name == "cvcsync.__main__"]
    module = tmp_path / "shape.py"
    module.write_text("from . import rows\nfrom ..errors import CvcSyncError\n\ndef f():\n    import openpyxl\n")
    assert package._imported_names(module, "cvcsync.inputs.shape") == {
        "cvcsync.inputs",
        "cvcsync.inputs.rows",
        "cvcsync.errors",
        "cvcsync.errors.CvcSyncError",
        "openpyxl",
    }


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

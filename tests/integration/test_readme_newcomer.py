"""The README's newcomer path, run as written: ``make emulator`` in one shell, the pasted lines in another.

The shell blocks are taken from README.md where an HTML comment marks them (``<!-- newcomer-path: shell 1 -->``,
``<!-- newcomer-path: shell 2 -->``, ``<!-- cli-examples -->``, ``<!-- invoke-path -->``); a line whose comment
says ``exit N`` must exit N, every other line 0. The emulator starts as ``make emulator`` would run it
(its recipe, from ``make -n``) with one change: port 0 instead of 8765, so the test never collides with anything;
the README's lines get the real port in place of 8765 and nothing else. Every command runs in bash, in a temporary
folder holding links to ``.venv`` and ``events`` (so the README's relative paths work and ``.cvcsync/`` and
``plan.json`` land there), against the emulator over loopback. No monkeypatching: real processes only.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_PORT = "8765"
MOTO_PORT = "5000"
NEWCOMER_USERS = {"zhangwei", "wangfang", "lina", "liuyang", "chenjing", "yanglei"}  # wecom-members.csv's 帐号


def readme_commands(marker: str) -> list[tuple[str, str]]:
    """(command, comment) of each line of the fenced block right after ``<!-- marker -->`` in README.md."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*\n```(?:sh|bash)\n(.*?)\n```", text, re.DOTALL)
    assert found, f"README.md has no shell block marked <!-- {marker} -->"
    lines = []
    for raw in found.group(1).splitlines():
        command, comment = _split_comment(raw)
        if command.strip():
            lines.append((command.strip(), comment))
    return lines


def readme_block(marker: str) -> list[str]:
    """The commands of a marked block, comments and blank lines left out."""
    return [command for command, _ in readme_commands(marker)]


def _split_comment(line: str) -> tuple[str, str]:
    """The line and its trailing ``# comment`` (a ``#`` after whitespace, outside quotes, as bash reads it)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index + 1 :].strip()
    return line, ""


def make_emulator_command(port: str) -> list[str]:
    """What ``make emulator`` runs (``make -n`` prints without running: no install, no server), with ``port``."""
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "emulator", f"EMULATOR_PORT={port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [line] = [line for line in printed.splitlines() if " emulator " in line and "cvcsync" in line]
    return shlex.split(line.lstrip("@"))


@dataclass
class Printed:
    """What the emulator printed once listening: its readiness line and the lines to paste."""

    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.lines[0].rsplit(" ", 1)[1]

    @property
    def port(self) -> str:
        return self.url.rsplit(":", 1)[1]

    @property
    def paste(self) -> list[str]:
        return [line for line in self.lines[1:] if line.startswith(("export ", "unset "))]

    def users(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/_emulator/users", timeout=10)
        answer.raise_for_status()
        return list(answer.json())


def read_printed(process: subprocess.Popen[bytes], until: str, timeout: float = 30.0) -> list[str]:
    """stdout lines up to and including the first that starts with ``until``, with a deadline (no sleeping)."""
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            lines = buffer.decode(errors="replace").splitlines()
            complete = lines if buffer.endswith(b"\n") else lines[:-1]
            if any(line.startswith(until) for line in complete):
                return complete[: next(i for i, line in enumerate(complete) if line.startswith(until)) + 1]
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the emulator did not print {until!r} in time; it printed {buffer!r}"
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"the emulator exited with {process.wait()}; it printed {buffer!r}"
                buffer += chunk


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder like the repository's for the README's relative paths, where the commands' files land."""
    for name in (".venv", "events"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp_path


@pytest.fixture
def readme_emulator(workdir: Path) -> Iterator[Printed]:
    """The emulator as shell 1 of the newcomer path starts it, on a free port (the only change)."""
    assert readme_block("newcomer-path: shell 1") == ["make emulator"]
    command = make_emulator_command("0")
    assert f"--port {README_PORT}" in " ".join(make_emulator_command(README_PORT))  # the README's port is make's
    process = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    try:
        printed = Printed(process, read_printed(process, ".venv/bin/cvcsync "))
        yield printed
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def shell_env() -> dict[str, str]:
    """The second shell's environment before pasting: none of the variables the README's lines set."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "CVC_", "CVCSYNC_"))}


def run_in_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -u\n" + script],
        cwd=cwd,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def run_block(
    lines: list[str], cwd: Path, setup: list[str], codes: dict[str, int] | None = None
) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """Each command of a block in its own bash, after the ``setup`` lines and the block's exports so far; each
    must exit with its code in ``codes`` (default 0) and without a traceback."""
    results = []
    exports = list(setup)
    for line in lines:
        if line.startswith(("export ", "unset ")):
            exports.append(line)
            continue
        result = run_in_bash("\n".join([*exports, line]), cwd)
        results.append((line, result))
        expected = (codes or {}).get(line, 0)
        assert result.returncode == expected, f"{line}\nexit {result.returncode}, not {expected}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
    return results


def test_the_emulator_prints_exactly_the_readmes_lines(readme_emulator: Printed) -> None:
    readme = [line.replace(README_PORT, readme_emulator.port) for line in readme_block("newcomer-path: shell 2")]
    pasted = [line for line in readme if line.startswith(("export ", "unset "))]
    assert pasted == readme_emulator.paste
    assert readme_emulator.url == f"http://127.0.0.1:{readme_emulator.port}"


def test_the_newcomer_path_works_as_written(readme_emulator: Printed, workdir: Path) -> None:
    lines = [line.replace(README_PORT, readme_emulator.port) for line in readme_block("newcomer-path: shell 2")]
    assert any("--dry-run" in line for line in lines) and any("--apply-plan" in line for line in lines)
    results = dict(run_block(lines, workdir, setup=[]))

    account = next(r for line, r in results.items() if line.endswith(" account"))
    assert orjson.loads(account.stdout)["AccountApplicationNumber"] == 0  # before: nobody
    dry_run = next(r for line, r in results.items() if "--dry-run" in line)
    assert "DRY-RUN" in dry_run.stdout and re.search(r"create\s+6\b", dry_run.stdout)
    assert (workdir / "plan.json").is_file()
    applied = next(r for line, r in results.items() if "--apply-plan" in line)
    assert "APPLIED" in applied.stdout and re.search(r"created\s+6\b", applied.stdout)
    got = next(r for line, r in results.items() if " get " in line)
    assert orjson.loads(got.stdout)["userName"] == "张伟"

    users = {u["userId"]: u for u in readme_emulator.users()}
    assert set(users) == NEWCOMER_USERS
    assert {u["groupId"] for u in users.values()} == {"88"} and users["zhangwei"]["departName"] == "研发部"
    assert (workdir / ".cvcsync" / "state" / "manifest.json").is_file()


def test_running_a_function_locally_works_as_written(readme_emulator: Printed, workdir: Path, moto: Any) -> None:
    """The README's invoke recipe, with the suite's moto server (on a free port) standing in for the one it starts."""
    lines = readme_block("invoke-path")
    starts_moto = [line for line in lines if "moto_server" in line]
    assert starts_moto == [f".venv/bin/moto_server -p {MOTO_PORT} &"]
    moto_port = moto.url.rsplit(":", 1)[1]
    recipe = [line.replace(f":{MOTO_PORT}", f":{moto_port}") for line in lines if line not in starts_moto]
    results = run_block(recipe, workdir, setup=readme_emulator.paste)
    line, invoked = results[-1]
    assert line.startswith(".venv/bin/cvcsync invoke object_upload ")
    [run] = orjson.loads(invoked.stdout)["runs"]
    assert run["status"] == "applied" and run["outcomes"]["created"] == 6
    assert {u["userId"] for u in readme_emulator.users()} == {f"u-100{i}" for i in range(1, 7)}


def test_the_cli_examples_work_as_written(readme_emulator: Printed, workdir: Path) -> None:
    """The command section's examples, in order, against the emulator; a line's comment names a non-zero exit."""
    commands = readme_commands("cli-examples")
    codes = {line: int(m.group(1)) for line, comment in commands if (m := re.search(r"\bexit (\d)\b", comment))}
    assert set(codes.values()) == {3, 4, 5}  # the examples show the codes a sync ends in, besides 0
    assert len({line for line, _ in commands}) == len(commands)  # each line once: codes and results are by line
    results = dict(run_block([line for line, _ in commands], workdir, setup=readme_emulator.paste, codes=codes))
    refused = next(r for line, r in results.items() if codes.get(line) == 4)
    assert "REFUSED" in refused.stdout
    [drift] = [r for line, r in results.items() if codes.get(line) == 5]
    assert orjson.loads(drift.stdout)["counts"]["onlyInCvc"] == 4  # create's six, less the two deleted
    assert {"u-1001", "u-1002"} <= {u["userId"] for u in readme_emulator.users()}


def test_the_readme_lists_the_field_limits_and_presets_there_are() -> None:
    from cvcsync.inputs.column_presets import load_presets
    from cvcsync.inputs.records import MAX_LENGTH

    text = README.read_text(encoding="utf-8")
    limits = re.search(r"<!-- field-limits: [^>]*-->\n((?:\|.*\n)+)", text)
    assert limits, "README.md has no field limits table"
    rows = [row.split("|")[1:-1] for row in limits.group(1).splitlines()[2:]]
    assert {cells[0].strip().strip("`"): int(cells[2]) for cells in rows} == MAX_LENGTH
    presets = re.search(r"<!-- presets: [^>]*-->\n((?:\|.*\n)+)", text)
    assert presets, "README.md has no presets table"
    listed = {row.split("|")[1].strip().strip("`") for row in presets.group(1).splitlines()[2:]}
    assert listed == set(load_presets().names)

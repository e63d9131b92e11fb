"""The run lifecycle's promises (issue 11): approvals approve one upload, continuations are idempotent, a fanned-out
run that fails while finishing is finished by the retry, and one status vocabulary with the README's exit codes.

Through the upload function (moto S3 and SQS, the emulator) and the ``cvcsync sync`` command.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync import clock
from cvcsync.outputs.deadletters import DeadLetterError
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.upload import handle
from cvcsync.runs import approvals
from support.events import load_event
from support.moto import drain

from .test_sync_cli import cli_env
from .test_sync_cli import export as export_file
from .test_sync_cli import sync as cli_sync
from .test_upload_function import BUCKET, FC_KEY, export, fc_context, keys, put, read_json

MARKER = f"cvc-sync/approvals/{FC_KEY}"


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    moto.s3_client().create_bucket(Bucket=BUCKET)
    return {**function_env, "CVC_BATCH_SIZE": "20"}


def upload(moto: Any, body: bytes) -> bytes:
    """Put ``body`` at FC_KEY and return the FC OSS event for it, carrying the object's real ETag."""
    put(moto, FC_KEY, body)
    etag = moto.s3_client().head_object(Bucket=BUCKET, Key=FC_KEY)["ETag"].strip('"')
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"]["eTag"] = etag
    event["events"][0]["oss"]["object"]["size"] = len(body)
    return orjson.dumps(event)


def run_upload(event: bytes, env: dict[str, str]) -> dict[str, Any]:
    [run] = orjson.loads(handle(event, fc_context(), env=env))["runs"]
    return run  # type: ignore[no-any-return]


def report_of(moto: Any, run: dict[str, Any]) -> dict[str, Any]:
    return read_json(moto, f"cvc-sync/reports/{FC_KEY}/{run['runId']}.json")  # type: ignore[no-any-return]


def etag_of(event: bytes) -> str:
    return str(orjson.loads(event)["events"][0]["oss"]["object"]["eTag"])


def approve(moto: Any, etag: str, *, hours: float = 1.0) -> None:
    body = approvals.marker_body(etag, expires_at=clock.now() + timedelta(hours=hours), by="li.lei", reason="re-org")
    moto.s3_client().put_object(Bucket=BUCKET, Key=MARKER, Body=body)


# -- approvals (defect 11) --------------------------------------------------------------------------------------


def test_an_approval_approves_one_upload_and_is_consumed(env: dict[str, str], moto: Any, emulator: Any) -> None:
    assert run_upload(upload(moto, export(range(44))), env)["status"] == "applied"
    small = upload(moto, export(range(4)))
    assert run_upload(small, env)["status"] == "refused"  # 40 of 44 deletions
    approve(moto, etag_of(small))
    run = run_upload(small, env)
    assert run["status"] == "applied" and run["outcomes"]["deleted"] == 40 and len(emulator.users()) == 4
    report = report_of(moto, run)
    assert report["approval"]["approved"] and report["approval"]["marker"] == MARKER
    assert report["approval"]["etag"] == etag_of(small) and report["approval"]["by"] == "li.lei"
    assert MARKER not in keys(moto, "cvc-sync/approvals/")  # consumed: it approves nothing else
    # The old standing-marker hole: a later, smaller file at the same key meets the gates again.
    assert run_upload(upload(moto, export(range(4, 44))), env)["status"] == "applied"
    smaller = upload(moto, export(range(40, 44)))
    assert run_upload(smaller, env)["status"] == "refused" and len(emulator.users()) == 40


@pytest.mark.parametrize(
    ("marker", "why"),
    [
        (b"", "not JSON naming the upload"),
        (b'{"etag": "0123456789abcdef0123456789abcdef", "expiresAt": "@SOON@"}', "another upload"),
        (b'{"etag": "@ETAG@", "expiresAt": "2020-01-01T00:00:00Z"}', "expired"),
        (b'{"etag": "@ETAG@"}', "no valid expiresAt"),
        (b'{"etag": "@ETAG@", "expiresAt": "2999-01-01T00:00:00Z"}', "more than 7 days"),
    ],
)
def test_a_marker_for_another_upload_or_expired_approves_nothing(
    env: dict[str, str], moto: Any, emulator: Any, marker: bytes, why: str
) -> None:
    run_upload(upload(moto, export(range(44))), env)
    small = upload(moto, export(range(4)))
    soon = clock.report_time(clock.now() + timedelta(hours=1)).encode()
    body = marker.replace(b"@ETAG@", etag_of(small).encode()).replace(b"@SOON@", soon)
    moto.s3_client().put_object(Bucket=BUCKET, Key=MARKER, Body=body)
    run = run_upload(small, env)
    assert run["status"] == "refused" and len(emulator.users()) == 44
    report = report_of(moto, run)
    assert not report["approval"]["approved"] and why in report["approval"]["detail"]
    assert any(why in m for m in report["messages"])
    assert MARKER in keys(moto, "cvc-sync/approvals/")  # not used, so not consumed


# -- continuations (idempotent; defect 4) ---------------------------------------------------------------------------


def test_a_resume_delivered_twice_writes_once(env: dict[str, str], moto: Any, emulator: Any) -> None:
    queue_url = moto.sqs_client().create_queue(QueueName="cvc-sync-continue")["QueueUrl"]
    emulator.set_faults(latency_ms=150, seed=2)
    settings = {
        **env,
        "CVC_BATCH_SIZE": "5",
        "CVCSYNC_CONCURRENCY": "1",
        "CVCSYNC_DEADLINE_MARGIN": "1.5",
        "CVCSYNC_FANOUT": "sqs",
        "CVCSYNC_FANOUT_QUEUE_URL": queue_url,
        "CVCSYNC_FANOUT_THRESHOLD": "100000",
    }
    first = orjson.loads(handle(upload(moto, export(range(60))), fc_context(timeout=3), env=settings))["runs"][0]
    assert first["status"] == "checkpointed"
    emulator.set_faults(latency_ms=0, seed=2)
    [resume] = drain(moto.sqs_client(), queue_url)
    assert resume["cvcsync"]["step"] == "resume-1"
    done = handle(copy.deepcopy(resume), LocalLambdaContext("worker"), env=settings)
    assert done["runs"][0]["status"] == "applied" and done["runs"][0]["outcomes"]["created"] == 60
    sent = sum(emulator.stats()["createBatchSizes"])
    again = handle(copy.deepcopy(resume), LocalLambdaContext("worker"), env=settings)  # at-least-once delivery
    assert again["runs"] == [] and sum(emulator.stats()["createBatchSizes"]) == sent == 60


def test_a_fanned_out_run_that_fails_while_finishing_is_finished_by_the_retry(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    sqs = moto.sqs_client()
    chunks_url = sqs.create_queue(QueueName="cvc-sync-chunks")["QueueUrl"]
    letters_url = chunks_url.replace("cvc-sync-chunks", "cvc-dead-letters")  # not created yet: the sink fails
    settings = {
        **env,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_FANOUT": "sqs",
        "CVCSYNC_FANOUT_QUEUE_URL": chunks_url,
        "CVCSYNC_FANOUT_THRESHOLD": "50",
        "CVCSYNC_FANOUT_CHUNK": "40",
        "CVCSYNC_DEADLETTER_SINK": "queue",
        "CVCSYNC_DEADLETTER_QUEUE_URL": letters_url,
    }
    run_id = run_upload(upload(moto, export(range(130))), settings)["runId"]
    emulator.set_faults(error_rate=1.0, seed=4)  # every write fails: the finish has 130 letters to put
    bodies = drain(moto.sqs_client(), chunks_url)
    for body in bodies[:-1]:
        assert handle(copy.deepcopy(body), LocalLambdaContext("worker"), env=settings)["runs"] == []
    with pytest.raises(DeadLetterError):
        handle(copy.deepcopy(bodies[-1]), LocalLambdaContext("worker"), env=settings)
    assert f"cvc-sync/runs/{run_id}/finished" not in keys(moto, f"cvc-sync/runs/{run_id}/")
    sqs.create_queue(QueueName="cvc-dead-letters")
    sent = sum(emulator.stats()["createBatchSizes"])
    retried = handle(copy.deepcopy(bodies[-1]), LocalLambdaContext("worker"), env=settings)  # the platform's retry
    [run] = retried["runs"]
    assert run["runId"] == run_id and run["status"] == "failed" and run["deadLetters"] == 130
    assert sum(emulator.stats()["createBatchSizes"]) == sent  # the chunk's results were saved: nothing resent
    report = read_json(moto, f"cvc-sync/reports/{FC_KEY}/{run_id}.json")
    assert report["status"] == "failed" and report["outcomes"]["deadLettered"] == 130
    assert f"cvc-sync/runs/{run_id}/finished" in keys(moto, f"cvc-sync/runs/{run_id}/")
    again = handle(copy.deepcopy(bodies[0]), LocalLambdaContext("worker"), env=settings)  # a late duplicate
    assert again["runs"] == []


# -- one status vocabulary and the README's exit codes (defect 12) ----------------------------------------------


def test_every_record_dead_lettered_is_failed_and_exits_1(emulator: Any, tmp_path: Path) -> None:
    emulator.set_faults(error_rate=1.0, seed=4)
    code, report, _ = cli_sync(
        emulator, tmp_path / "state", str(export_file(tmp_path / "a.csv", range(5))), env={"CVC_MAX_ATTEMPTS": "1"}
    )
    assert report["status"] == "failed" and report["outcomes"]["deadLettered"] == 5 and code == 1


def test_a_refused_saved_plan_stays_refused_and_a_stale_one_exits_4(emulator: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    cli_sync(emulator, state, str(export_file(tmp_path / "a.csv", range(20))))
    plan_file = tmp_path / "plan.json"
    code, dry, _ = cli_sync(
        emulator, state, str(export_file(tmp_path / "b.csv", range(2))), "--plan-out", str(plan_file)
    )
    assert dry["status"] == "dry-run" and dry["refused"] and code == 4
    code, applied, _ = cli_sync(emulator, state, "--apply-plan", str(plan_file))
    assert applied["status"] == "refused" and applied["outcomes"]["deleted"] == 0 and code == 4
    assert len(emulator.users()) == 20
    cli_sync(emulator, state, str(export_file(tmp_path / "c.csv", range(21))))  # the state moves on
    result = subprocess.run(
        [sys.executable, "-m", "cvcsync", "sync", "--state", str(state), "--apply-plan", str(plan_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=cli_env(emulator),
    )
    assert result.returncode == 4 and "plan again" in result.stderr


def test_reconcile_exits_5_on_drift_and_0_once_rebuilt(emulator: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    cli_sync(emulator, state, str(export_file(tmp_path / "a.csv", range(5))))
    code, drift, _ = cli_sync(emulator, state, "--reconcile")
    assert drift["inSync"] and code == 0
    emulator.reset()  # CVC loses everyone behind our back
    code, drift, _ = cli_sync(emulator, state, "--reconcile")
    assert not drift["inSync"] and code == 5
    code, rebuilt, _ = cli_sync(emulator, state, "--reconcile", "--rebuild-state")
    assert rebuilt["generationAfter"] and code == 0


# -- an outage: stop, checkpoint, come back (the upload path's circuit) -------------------------------------------


def test_an_outage_pauses_the_upload_and_it_comes_back(env: dict[str, str], moto: Any, emulator: Any) -> None:
    queue_url = moto.sqs_client().create_queue(QueueName="cvc-sync-continue")["QueueUrl"]
    settings = {
        **env,
        "CVC_MAX_ATTEMPTS": "1",
        "CVC_BATCH_SIZE": "5",
        "CVCSYNC_CONCURRENCY": "1",
        "CVCSYNC_FANOUT": "sqs",
        "CVCSYNC_FANOUT_QUEUE_URL": queue_url,
        "CVCSYNC_FANOUT_THRESHOLD": "100000",
        "CVCSYNC_CIRCUIT_PAUSE_SECONDS": "0.2",
    }
    emulator.set_faults(error_rate=1.0, seed=4)
    first = run_upload(upload(moto, export(range(60))), settings)
    # Five failures in a row open the circuit: the four batches before it are dead-lettered (retryable), the rest
    # is not tried at all, and not dead-lettered either: it waits for CVC.
    assert first["status"] == "checkpointed" and first["outcomes"]["deadLettered"] == 20
    assert emulator.stats()["calls"]["CreateUser"] == 5
    assert "cvc-sync/alerts/circuit-open" in keys(moto, "cvc-sync/alerts/")
    [resume] = drain(moto.sqs_client(), queue_url)
    assert resume["cvcsync"]["step"] == "resume-1" and resume["cvcsync"]["notBefore"] > 0
    emulator.set_faults()  # CVC is back
    [run] = handle(copy.deepcopy(resume), LocalLambdaContext("worker"), env=settings)["runs"]
    assert run["status"] == "partial" and run["outcomes"]["created"] == 40 and run["deadLetters"] == 20
    report = report_of(moto, run)
    assert any("circuit open" in m and "paused" in m for m in report["messages"])
    assert len(emulator.users()) == 40

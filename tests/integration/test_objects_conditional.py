"""Create-only writes against a small S3 stand-in over real HTTP on loopback: what moto cannot be made to do.

S3 answers a conditional PutObject with 412 PreconditionFailed when the key exists and with 409
ConditionalRequestConflict while a concurrent conditional write to the key is in progress ("retry the upload").
OSS honours ``x-oss-forbid-overwrite: true`` instead (409 FileAlreadyExists). The stand-in below keeps objects in
a dict with those rules, records what it was sent, and plays scripted faults one per object write: a conflict,
a conflict during which another writer's object lands, or an answer lost after the write landed. The client is
the real one ``s3_client`` builds, talking HTTP to it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cvcsync.adapters.objects import ObjectStoreError
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.adapters.s3 import MULTIPART_THRESHOLD, S3ObjectStore, s3_client
from cvcsync.config import ENV_OBJECT_STORE_FLAVOR, ENV_S3_ADDRESSING_STYLE, ENV_S3_ENDPOINT, ENV_S3_REGION

BUCKET = "cvc-sync-out"
OTHER_WRITER = "another-writer"
CONFLICT, OTHER_WINS, LOST_ANSWER = "conflict", "conflict-while-another-writer-wins", "lost-answer"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, rng=random.Random(7))


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class S3StandIn:
    """Objects by path with S3's create-only rules; ``faults`` are consumed one per object write (PUT or
    multipart completion)."""

    faults: list[str] = field(default_factory=list)
    objects: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    uploads: dict[str, dict[int, bytes]] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def object_writes(self) -> list[Seen]:
        return [
            s
            for s in self.seen
            if (s.method == "PUT" and "partNumber" not in s.query) or (s.method == "POST" and "uploadId" in s.query)
        ]

    def writes_of(self, method: str, query: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and query in s.query]


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>{code}</Message><RequestId>stand-in</RequestId></Error>".encode()


def _handler(state: S3StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _seen(self) -> tuple[str, dict[str, list[str]], dict[str, str]]:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.seen.append(Seen(self.command, unquote(parts.path), query, headers))
            return unquote(parts.path), query, headers

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _create(self, path: str, body: bytes, headers: dict[str, str]) -> None:
            """One object write under the create-only rules, after the next scripted fault (if any)."""
            with state.lock:
                fault = state.faults.pop(0) if state.faults else None
                create_only = headers.get("if-none-match") == "*" or headers.get("x-oss-forbid-overwrite") == "true"
                if fault == OTHER_WINS:
                    state.objects[path] = (b"theirs", {"x-amz-meta-cvcsync-write-id": OTHER_WRITER})
                if fault in (CONFLICT, OTHER_WINS):
                    status, answer = 409, _error("ConditionalRequestConflict")
                elif create_only and path in state.objects:
                    status, answer = 412, _error("PreconditionFailed")
                else:
                    meta = {k: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
                    state.objects[path] = (body, meta)
                    status, answer = 200, b""
            if fault == LOST_ANSWER:
                self.close_connection = True  # done (or refused) as asked; the answer never arrives
                return
            self._answer(status, answer, {"ETag": '"e"'} if status == 200 else {})

        def do_PUT(self) -> None:
            path, query, headers = self._seen()
            body = self._body()
            if "partNumber" in query:
                with state.lock:
                    state.uploads[query["uploadId"][0]][int(query["partNumber"][0])] = body
                self._answer(200, b"", {"ETag": f'"p{query["partNumber"][0]}"'})
                return
            self._create(path, body, headers)

        def do_POST(self) -> None:
            path, query, headers = self._seen()
            self._body()
            if "uploads" in query:
                with state.lock:
                    upload_id = f"u{len(state.uploads) + 1}"
                    state.uploads[upload_id] = {}
                key = path.split("/", 2)[2]
                result = (
                    f"<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}</Key>"
                    f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
                )
                self._answer(200, result.encode())
                return
            upload_id = query["uploadId"][0]
            with state.lock:
                if upload_id in state.completed:  # S3's answer to a completion sent again
                    self._answer(404, _error("NoSuchUpload"))
                    return
                state.completed.add(upload_id)
                parts = state.uploads[upload_id]
                body = b"".join(parts[n] for n in sorted(parts))
            initiated = next(s for s in state.seen if s.method == "POST" and "uploads" in s.query and s.path == path)
            self._create(path, body, {**initiated.headers, **headers})

        def do_HEAD(self) -> None:
            path, _, _ = self._seen()
            with state.lock:
                found = state.objects.get(path)
            if found is None:
                self._answer(404)
                return
            self._answer(200, found[0], {"ETag": '"e"', **found[1]})

        def do_GET(self) -> None:
            path, _, _ = self._seen()
            with state.lock:
                found = state.objects.get(path)
            if found is None:
                self._answer(404, _error("NoSuchKey"))
                return
            self._answer(200, found[0], {"ETag": '"e"', **found[1]})

        def do_DELETE(self) -> None:
            self._seen()
            self._answer(204)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def running(stand_in: S3StandIn) -> Iterator[S3StandIn]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def store_for(stand_in: S3StandIn, **env: str) -> S3ObjectStore:
    settings = {ENV_S3_ENDPOINT: stand_in.url, ENV_S3_REGION: "us-east-1", ENV_S3_ADDRESSING_STYLE: "path", **env}
    return S3ObjectStore(s3_client(settings), conflict_retry=FAST)


def stored(stand_in: S3StandIn, key: str) -> bytes | None:
    found = stand_in.objects.get(f"/{BUCKET}/{key}")
    return None if found is None else found[0]


# --- 409 ConditionalRequestConflict ------------------------------------------------------------------------------


def test_conflict_is_retried_until_the_write_goes_through() -> None:
    with running(S3StandIn(faults=[CONFLICT, CONFLICT])) as stand_in:
        assert store_for(stand_in).put_bytes(BUCKET, "state/0000000002.json", b"mine", if_absent=True) is True
    assert len(stand_in.object_writes()) == 3
    assert stored(stand_in, "state/0000000002.json") == b"mine"


def test_conflict_while_another_writer_wins_is_a_lost_race_not_an_error() -> None:
    with running(S3StandIn(faults=[OTHER_WINS])) as stand_in:
        assert store_for(stand_in).put_bytes(BUCKET, "state/0000000002.json", b"mine", if_absent=True) is False
    statuses = [s.method for s in stand_in.seen]
    assert statuses == ["PUT", "PUT", "HEAD"]  # 409, then 412, then who holds it
    assert stored(stand_in, "state/0000000002.json") == b"theirs"


def test_conflict_that_never_settles_is_a_retryable_error_after_bounded_attempts() -> None:
    with running(S3StandIn(faults=[CONFLICT] * 10)) as stand_in, pytest.raises(ObjectStoreError) as info:
        store_for(stand_in).put_bytes(BUCKET, "lock", b"mine", if_absent=True)
    assert (info.value.code, info.value.http_status, info.value.retryable) == ("ConditionalRequestConflict", 409, True)
    assert len(stand_in.object_writes()) == FAST.max_attempts
    assert stored(stand_in, "lock") is None


def test_create_only_file_upload_retries_a_conflict(tmp_path: Path) -> None:
    source = tmp_path / "state.sqlite.gz"
    source.write_bytes(b"generation 2")
    with running(S3StandIn(faults=[CONFLICT])) as stand_in:
        assert store_for(stand_in).put_file(BUCKET, "state/2.sqlite.gz", source, if_absent=True) is True
    assert stored(stand_in, "state/2.sqlite.gz") == b"generation 2"


def test_create_only_multipart_upload_starts_again_after_a_conflict(tmp_path: Path) -> None:
    """S3: "On a 409 failure you should re-initiate the multipart upload ... and re-upload each part"."""
    source = tmp_path / "state.sqlite.gz"
    source.write_bytes(bytes(range(256)) * (MULTIPART_THRESHOLD // 256 + 1))
    with running(S3StandIn(faults=[CONFLICT])) as stand_in:
        assert store_for(stand_in).put_file(BUCKET, "state/2.sqlite.gz", source, if_absent=True) is True
    assert len(stand_in.writes_of("POST", "uploads")) == 2  # initiated twice
    assert len(stand_in.writes_of("DELETE", "uploadId")) == 1  # the conflicted upload was aborted
    assert stored(stand_in, "state/2.sqlite.gz") == source.read_bytes()


# --- whose write is it ---------------------------------------------------------------------------------------------


def test_a_write_whose_answer_was_lost_is_still_ours() -> None:
    """botocore resends a PUT whose answer never came; the resend meets our own object (412). That is a success,
    not a lost race: a claim or a "finished" marker read as lost would leave its work undone forever."""
    with running(S3StandIn(faults=[LOST_ANSWER])) as stand_in:
        assert store_for(stand_in).put_bytes(BUCKET, "runs/r1/finished", b"", if_absent=True) is True
    assert [s.method for s in stand_in.seen] == ["PUT", "PUT", "HEAD"]


def test_a_multipart_completion_whose_answer_was_lost_is_still_ours(tmp_path: Path) -> None:
    """The resent completion is answered NoSuchUpload (the upload is done); the object says it is ours."""
    source = tmp_path / "state.sqlite.gz"
    source.write_bytes(bytes(range(256)) * (MULTIPART_THRESHOLD // 256 + 1))
    with running(S3StandIn(faults=[LOST_ANSWER])) as stand_in:
        assert store_for(stand_in).put_file(BUCKET, "state/2.sqlite.gz", source, if_absent=True) is True
    assert len(stand_in.writes_of("POST", "uploadId")) == 2  # the completion and its resend
    assert stored(stand_in, "state/2.sqlite.gz") == source.read_bytes()


def test_a_lost_answer_when_another_writer_holds_the_key_is_still_a_lost_race() -> None:
    with running(S3StandIn()) as stand_in:
        store = store_for(stand_in)
        assert store.put_bytes(BUCKET, "runs/r1/claims/chunk-3.json", b"theirs", if_absent=True) is True
        stand_in.faults.append(LOST_ANSWER)  # refused (412) and the refusal never arrives; the resend is refused too
        assert store.put_bytes(BUCKET, "runs/r1/claims/chunk-3.json", b"mine", if_absent=True) is False
    assert stored(stand_in, "runs/r1/claims/chunk-3.json") == b"theirs"


# --- the flavour: which create-only header each store honours -------------------------------------------------------


def test_cname_oss_endpoint_with_the_oss_flavour_sends_the_oss_header() -> None:
    """A custom domain does not look like OSS; the setting says it is, and OSS's own header goes out, signed."""
    with running(S3StandIn()) as stand_in:
        store = store_for(stand_in, **{ENV_OBJECT_STORE_FLAVOR: "oss"})
        assert store.put_bytes(BUCKET, "lock", b"x", if_absent=True) is True
        assert store.put_bytes(BUCKET, "report.json", b"x") is True
    create_only, plain = stand_in.object_writes()
    assert create_only.headers.get("x-oss-forbid-overwrite") == "true"
    assert create_only.headers.get("if-none-match") == "*"
    assert "x-oss-forbid-overwrite" in create_only.headers["authorization"]
    assert "x-oss-forbid-overwrite" not in plain.headers


def test_an_endpoint_auto_cannot_place_gets_both_headers() -> None:
    """Unknown endpoint: S3 and S3-compatible stores ignore the OSS header, OSS honours it; one of the two holds."""
    with running(S3StandIn()) as stand_in:
        assert store_for(stand_in).put_bytes(BUCKET, "lock", b"x", if_absent=True) is True
    (write,) = stand_in.object_writes()
    assert (write.headers.get("if-none-match"), write.headers.get("x-oss-forbid-overwrite")) == ("*", "true")


def test_the_s3_flavour_sends_only_if_none_match(tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(b"\0" * (MULTIPART_THRESHOLD + 1))
    with running(S3StandIn()) as stand_in:
        store = store_for(stand_in, **{ENV_OBJECT_STORE_FLAVOR: "s3"})
        assert store.put_bytes(BUCKET, "lock", b"x", if_absent=True) is True
        assert store.put_file(BUCKET, "big", source, if_absent=True) is True
    writes = stand_in.object_writes()
    assert [w.headers.get("if-none-match") for w in writes] == ["*", "*"]
    assert all("x-oss-forbid-overwrite" not in w.headers for w in writes)

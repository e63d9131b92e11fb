"""The HTTP API fed hostile requests, in process: through the WSGI app and through every platform's adapter.

Properties: never a 500 for bad input (a 5xx only as the documented 502/503 carrying CVC's or the store's side);
every answer is the JSON error shape; every 4xx but 429 names the field, parameter or header at fault; a request
the app cannot even read (a URL or header that is not UTF-8, a body that is not base64) is answered in the platform's
shape rather than crashing the function; ``POST /sync`` never reads an object outside the configured prefixes and
never writes outside cvc-sync's output prefix, whatever the key.

CVC is the emulator in process (``support.inprocess_cvc``) and the object store a ``MemoryObjectStore`` that records
every key touched, both put in place of the clients ``services`` would build, so no example opens a socket.
``tests/integration/test_http_schemathesis.py`` checks the documented operations over loopback; this file goes
where a schema does not: raw bytes, CR/LF and NUL in headers, lone surrogates, malformed platform events.
"""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.config import SyncSettings
from cvcsync.errors import InvalidInputError
from cvcsync.http_api import adapters
from cvcsync.http_api.adapters import handle_event, run_wsgi, wsgi_environ
from cvcsync.http_api.app import HttpApi
from cvcsync.platform import services
from support.events import load_event, sample_paths
from support.hostile import HOSTILE_STRINGS, hostile_text, json_ish, mutated
from support.http_api import AUTH_ENV, TOKEN, call
from support.inprocess_cvc import ENDPOINT, KEY, InProcessCvc, inprocess_cvc

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
UPLOADS = "hr-uploads"
STATE = "cvc-sync-state"
CSV = b"userId,userName,groupId,groupName\nu-1,Ann,88,Acme\n"
ENV = {
    **AUTH_ENV,
    "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY.id,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY.secret,
    "CVC_ENDPOINT": ENDPOINT,
    "CVCSYNC_HTTP_SYNC_BUCKET": UPLOADS,
    "CVCSYNC_STATE_BUCKET": STATE,
    "CVCSYNC_HTTP_MAX_BODY": "65536",
    "CVCSYNC_HTTP_MAX_BATCH": "20",
    "CVCSYNC_LOG_LEVEL": "CRITICAL",
}
SYNC = SyncSettings.from_env(ENV)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class RecordingStore(MemoryObjectStore):
    """The memory store, remembering every (action, bucket, key) asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: list[tuple[str, str, str]] = []

    def open(self, bucket: str, key: str) -> Any:
        self.touched.append(("read", bucket, key))
        return super().open(bucket, key)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        self.touched.append(("read", bucket, key))
        return super().get_bytes(bucket, key)

    def head(self, bucket: str, key: str) -> Any:
        self.touched.append(("read", bucket, key))
        return super().head(bucket, key)

    def put_bytes(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
        self.touched.append(("write", bucket, key))
        return super().put_bytes(bucket, key, data, **options)


@pytest.fixture(scope="module")
def cvc() -> InProcessCvc:
    return inprocess_cvc(max_attempts=1)


@pytest.fixture
def store(cvc: InProcessCvc, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingStore]:
    recording = RecordingStore()
    recording.put_bytes(UPLOADS, SYNC.full_prefix + "hr.csv", CSV)
    recording.put_bytes(UPLOADS, SYNC.delta_prefix + "d.csv", CSV)
    recording.touched.clear()
    monkeypatch.setattr(services, "cvc_client", lambda invocation, env: cvc.client)
    monkeypatch.setattr(services, "object_store", lambda invocation, env: recording)
    yield recording


@pytest.fixture
def api(store: RecordingStore) -> HttpApi:
    return HttpApi(ENV)


def checked(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The answer's JSON, with the error-shape properties checked."""
    assert headers.get("Content-Type") == "application/json"
    document = orjson.loads(body)
    assert isinstance(document, dict)
    if status >= 500:
        error = document["error"]
        assert status in (502, 503) and ("cvc" in error or "store" in error or error["code"] == "NotConfigured"), body
    if status >= 400:
        error = document["error"]
        assert error["code"] and error["message"] and error["requestId"], body
        if status != 429:
            assert error.get("field"), body
    return document


def send(api: HttpApi, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = run_wsgi(api, environ)
    headers = dict(answer.headers)
    assert int(headers["Content-Length"]) == len(answer.body)
    return answer.status, checked(answer.status, headers, answer.body)


def raw_environ(method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """An environ as a WSGI server builds it: URL parts as latin-1 strings of whatever bytes came (any bytes)."""
    environ = wsgi_environ(method="GET", path="/", query_string="", headers=[], body=body)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path.encode("utf-8", "surrogatepass").decode("latin-1"),
        QUERY_STRING=query.encode("utf-8", "surrogatepass").decode("latin-1"),
    )
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value.encode("utf-8", "surrogatepass").decode("latin-1")
    return environ


ROUTES = ["/users", "/users:delete", "/users/u-1", "/sync", "/runs/r-1", "/healthz", "/openapi.json", "/"]
paths = st.one_of(
    st.sampled_from(ROUTES),
    st.builds(lambda route, tail: route + tail, st.sampled_from(ROUTES), hostile_text),
    st.builds(lambda text: "/users/" + text, hostile_text),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "get", "G\r\nET", "", "\x00"])
header_values = st.one_of(hostile_text, st.sampled_from(["application/json", "text/plain", "Bearer " + TOKEN]))
headers = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "Authorization", "X-Cvcsync-Nonce", "X-Cvcsync-Timestamp", "X-A"]),
        header_values,
    ),
    max_size=4,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_ish(["users", "userIds", "key", "bucket", "dryRun", "userId", "userName"], ["../x", "/etc/passwd"]).map(
        lambda value: (
            orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
            if _encodable(value)
            else repr(value).encode("utf-8", "surrogatepass")
        )
    ),
    st.sampled_from([b"", b"{", b"[" * 5000, b"\xff\xfe", b'{"users": [' + b"[" * 2000 + b"]}", b"null"]),
)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return False
    return True


# --- the WSGI app --------------------------------------------------------------------------------------------------


@FUZZ
@given(method=methods, path=paths, query=hostile_text, header_list=headers, body=bodies)
def test_any_request_is_answered_with_the_json_error_shape(
    api: HttpApi, method: str, path: str, query: str, header_list: list[tuple[str, str]], body: bytes
) -> None:
    send(api, raw_environ(method, path, query, header_list, body))


@FUZZ
@given(
    route=st.sampled_from([("POST", "/users"), ("POST", "/users:delete"), ("PUT", "/users/u-1"), ("POST", "/sync")]),
    body=bodies,
    content_type=st.sampled_from(["application/json", "application/problem+json; charset=utf-8", "text/csv", ""]),
)
def test_any_authenticated_body_is_answered_without_a_server_error(
    api: HttpApi, route: tuple[str, str], body: bytes, content_type: str
) -> None:
    answer = call(api, *route, body=body, headers=BEARER, signed=False, content_type=content_type or None)
    document = checked(answer.status, answer.headers, answer.body)
    if answer.status in (200, 207) and "results" in document:
        assert all(
            result["status"] in ("upserted", "deleted", "rejected", "superseded") for result in document["results"]
        )


@FUZZ
@given(
    users=st.lists(
        json_ish(["userId", "userName", "groupId", "groupName", "userMobile"], ["u-1", "Ann"], 8), max_size=5
    )
)
def test_any_users_batch_gets_one_result_per_record(api: HttpApi, users: list[Any]) -> None:
    if not _encodable(users):
        return
    answer = call(api, "POST", "/users", body={"users": users}, headers=BEARER, signed=False)
    document = checked(answer.status, answer.headers, answer.body)
    if answer.status in (200, 207):
        assert [result["index"] for result in document["results"]] == list(range(len(users)))
        for result in document["results"]:
            if result["status"] == "rejected":
                assert result["errors"] and all(error["field"] and error["reason"] for error in result["errors"])


SYNC_KEYS = [
    "../../etc/passwd",
    SYNC.full_prefix + "../../cvc-sync/state/manifest.json",
    SYNC.full_prefix + "..",
    "/" + SYNC.full_prefix + "hr.csv",
    SYNC.full_prefix + "hr.csv\x00.txt",
    SYNC.full_prefix + "a\r\nb.csv",
    SYNC.full_prefix + "x" * 2000,
    SYNC.full_prefix,
    "cvc-sync/state/manifest.json",
    "",
    "\ud800",
]


@FUZZ
@given(
    key=st.one_of(
        st.sampled_from(SYNC_KEYS),
        st.builds(
            lambda prefix, tail: prefix + tail, st.sampled_from([SYNC.full_prefix, SYNC.delta_prefix, ""]), hostile_text
        ),
    ),
    bucket=st.one_of(
        st.none(), st.sampled_from([UPLOADS, STATE, "other", "", "../x", "hr-uploads/../x"]), hostile_text
    ),
    dry_run=st.one_of(st.just(True), json_ish(max_leaves=2)),
)
def test_sync_never_reads_outside_its_prefixes_nor_writes_outside_its_output(
    api: HttpApi, store: RecordingStore, key: Any, bucket: Any, dry_run: Any
) -> None:
    body: dict[str, Any] = {"key": key, "dryRun": dry_run}
    if bucket is not None:
        body["bucket"] = bucket
    encodable = _encodable(body)
    raw = orjson.dumps(body) if encodable else repr(body).encode("utf-8", "surrogatepass")
    store.touched.clear()
    answer = call(api, "POST", "/sync", body=raw, headers=BEARER, signed=False)
    checked(answer.status, answer.headers, answer.body)
    for action, touched_bucket, touched_key in store.touched:
        assert ".." not in touched_key.split("/") and not touched_key.startswith("/")
        if action == "write":
            assert touched_key.startswith(SYNC.output_prefix), touched_key
        elif not touched_key.startswith(SYNC.output_prefix):
            assert touched_bucket == UPLOADS and touched_key.startswith((SYNC.full_prefix, SYNC.delta_prefix))
    if encodable and isinstance(key, str) and (".." in key.split("/") or "\x00" in key or key.startswith("/")):
        assert answer.status == 400 and answer.error["field"] == "key"


def test_a_good_sync_reads_its_upload_and_writes_only_under_the_output_prefix(
    api: HttpApi, store: RecordingStore
) -> None:
    """The property above is not vacuous: a good request does read the upload and write a report and a plan."""
    answer = call(api, "POST", "/sync", body={"key": SYNC.full_prefix + "hr.csv", "dryRun": True}, headers=BEARER)
    assert answer.status == 200, answer.body
    writes = [key for action, _, key in store.touched if action == "write"]
    assert writes and all(key.startswith(SYNC.output_prefix) for key in writes)
    assert ("read", UPLOADS, SYNC.full_prefix + "hr.csv") in store.touched


# --- the platform adapters ---------------------------------------------------------------------------------------

HTTP_SAMPLES = [path for path in sample_paths("http") if "fc2" not in path]


def _answer(event: Any) -> dict[str, Any] | None:
    try:
        answer = handle_event(HttpApi(ENV), event, None)
    except InvalidInputError as exc:  # not an HTTP event at all: there is no shape to answer in
        assert isinstance(exc, adapters.UnsupportedHttpEvent) and exc.message
        return None
    assert set(answer) >= {"statusCode", "headers", "isBase64Encoded", "body"}
    assert answer["isBase64Encoded"] is False
    checked(answer["statusCode"], answer["headers"], answer["body"].encode())
    return answer


@FUZZ
@given(event=st.sampled_from(HTTP_SAMPLES).flatmap(lambda path: mutated(load_event(path))))
def test_mutated_platform_events(store: RecordingStore, event: Any) -> None:
    _answer(event)


@FUZZ
@given(
    sample=st.sampled_from(HTTP_SAMPLES),
    method=methods,
    path=hostile_text,
    header_list=headers,
    query=st.dictionaries(hostile_text, st.one_of(hostile_text, st.lists(hostile_text, max_size=2)), max_size=3),
    body=st.one_of(bodies.map(lambda raw: base64.b64encode(raw).decode()), hostile_text),
    encoded=st.booleans(),
)
def test_hostile_pieces_in_every_platform_event(
    store: RecordingStore,
    sample: str,
    method: str,
    path: str,
    header_list: list[tuple[str, str]],
    query: dict[str, Any],
    body: str,
    encoded: bool,
) -> None:
    event = copy.deepcopy(load_event(sample))
    event["headers"] = dict(header_list)
    event.pop("multiValueHeaders", None)
    event["body"], event["isBase64Encoded"] = body, encoded
    if "httpMethod" in event:
        event.update(httpMethod=method, path=path, queryStringParameters=query, multiValueQueryStringParameters=None)
        event["pathParameters"] = {"proxy": path}
    else:
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["queryParameters" if "queryParameters" in event else "rawQueryString"] = (
            query if "queryParameters" in event else "&".join(f"{k}={v}" for k, v in query.items())
        )
    assert _answer(event) is not None


def _retarget(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The sample event, sent to another route."""
    if "httpMethod" in event:
        event.update(httpMethod=method, path=path, pathParameters={"proxy": path.lstrip("/")})
    else:
        event["rawPath"] = path
        event["requestContext"]["http"].update(method=method, path=path)
    return event


@pytest.mark.parametrize("sample", HTTP_SAMPLES)
@pytest.mark.parametrize(
    ("body", "encoded"),
    [
        ("%%% not base64", True),
        ("\ud800", False),
        (base64.b64encode(b"\xff\xfe{").decode(), True),
        ("x" * 100_000, False),
        ({"users": []}, False),
    ],
    ids=["bad-base64", "lone-surrogate", "not-utf8", "huge", "not-a-string"],
)
def test_unreadable_bodies_are_answered_in_the_platforms_shape(
    store: RecordingStore, sample: str, body: Any, encoded: bool
) -> None:
    event = _retarget(load_event(sample), "POST", "/users")
    event["body"], event["isBase64Encoded"] = body, encoded
    event["headers"] = {**BEARER, "Content-Type": "application/json"}
    event.pop("multiValueHeaders", None)
    answer = _answer(event)
    assert answer is not None and 400 <= answer["statusCode"] < 500
    assert orjson.loads(answer["body"])["error"]["field"] in ("(body)", "users")


@pytest.mark.parametrize("sample", HTTP_SAMPLES)
@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("header", "a\r\nX-Injected: 1"),
        ("header", "\x00"),
        ("header", "\ud800"),
        ("path", "/users/\ud800"),
        ("path", "/users/%ff"),
        ("query", "\ud800"),
        ("context", "not a mapping"),
    ],
)
def test_hostile_request_parts_are_answered_not_raised(
    store: RecordingStore, sample: str, where: str, value: str
) -> None:
    event = load_event(sample)
    event.pop("multiValueHeaders", None)
    if where == "header":
        event["headers"] = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": value, "Content-Type": value}
    elif where == "path":
        event["rawPath" if "rawPath" in event else "path"] = value
        event.pop("pathParameters", None)
    elif where == "query":
        event["queryParameters" if "queryParameters" in event else "queryStringParameters"] = {"deep": value}
        event["rawQueryString"] = f"deep={value}"
    else:
        for name in ("http", "identity", "stage"):
            event["requestContext"][name] = value
    answer = _answer(event)
    if where == "context" and "httpMethod" not in event and event.get("version") != "2.0":
        return  # an FC 3.0 event is told by its requestContext.http: without one it is no HTTP event
    assert answer is not None
    headers = answer["headers"]
    assert all("\r" not in v and "\n" not in v and "\x00" not in v for v in headers.values())
    assert "X-Injected" not in headers


def test_an_fc2_wsgi_call_with_a_hostile_environ_is_answered(api: HttpApi) -> None:
    sample = load_event("http/fc2-wsgi-environ.json")
    for changes in (
        {"CONTENT_LENGTH": "-1"},
        {"CONTENT_LENGTH": "1e3"},
        {"CONTENT_LENGTH": "99999999999999999999"},
        {"CONTENT_LENGTH": "\u0661\u0662"},  # Arabic-Indic digits: isdigit() says yes, int() agrees, HTTP does not
        {"REQUEST_METHOD": "P\x00ST"},
        {"PATH_INFO": "/users\xff"},
        {"QUERY_STRING": "a=%ff"},
        {"CONTENT_TYPE": "\xff"},
        {"HTTP_AUTHORIZATION": "Bearer \xff"},
    ):
        environ = {k: v for k, v in sample.items() if not k.startswith(("fc.", "wsgi."))}
        body = sample["wsgi.input"].encode()
        environ.update({"CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"})
        environ.update(changes)
        environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
        status, answer = send(api, environ)
        assert status < 500, (changes, answer)


@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_each_hostile_string_as_a_user_id_in_the_path(api: HttpApi, value: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        environ = raw_environ(method, "/users/" + value, "", [("Authorization", f"Bearer {TOKEN}")], b"{}")
        environ["CONTENT_TYPE"] = "application/json"
        status, _ = send(api, environ)
        assert status < 500

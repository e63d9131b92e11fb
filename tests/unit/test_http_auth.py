"""Authentication: signatures (missing, wrong, expired, replayed, rotated keys), bearer tokens, settings."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cvcsync.errors import ConfigurationError
from cvcsync.http_api.auth import Authenticator, ReplayMemory
from cvcsync.http_api.errors import ApiError
from cvcsync.http_api.settings import HttpSettings, parse_keys, parse_tokens
from cvcsync.http_api.signing import sign

NOW = 1_714_528_805
OLD_SECRET = "old-secret-0123456789abcdef"
NEW_SECRET = "new-secret-0123456789abcdef"
TOKEN = "bearer-token-0123456789abcdef"
BODY = b'{"userName":"x"}'


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(**overrides: object) -> HttpSettings:
    base = {
        "keys": parse_keys(f"ops:{OLD_SECRET},ops:{NEW_SECRET},ci:{NEW_SECRET}"),
        "tokens": parse_tokens(TOKEN),
    }
    return HttpSettings(**{**base, **overrides})  # type: ignore[arg-type]


def signed(
    *, key_id: str = "ops", secret: str = NEW_SECRET, timestamp: int = NOW, nonce: str = "a" * 32, body: bytes = BODY
) -> dict[str, str]:
    headers = sign("PUT", "/users/u-1", "x=1", body, key_id=key_id, secret=secret, timestamp=timestamp, nonce=nonce)
    return {name.lower(): value for name, value in headers.items()}


def check(
    auth: Authenticator, headers: Mapping[str, str], *, config: HttpSettings | None = None, body: bytes = BODY
) -> str:
    caller = auth.authenticate(
        config or settings(), method="PUT", path="/users/u-1", query_string="x=1", headers=headers, body=body
    )
    return f"{caller.scheme}:{caller.id}"


def refused(auth: Authenticator, headers: Mapping[str, str], **options: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check(auth, headers, **options)  # type: ignore[arg-type]
    return caught.value


def test_a_signed_request_is_accepted() -> None:
    assert check(Authenticator(clock=Clock()), signed()) == "hmac:ops"


def test_rotation_both_secrets_of_an_id_and_several_ids_verify() -> None:
    auth = Authenticator(clock=Clock())
    assert check(auth, signed(secret=OLD_SECRET, nonce="b" * 32)) == "hmac:ops"
    assert check(auth, signed(secret=NEW_SECRET, nonce="c" * 32)) == "hmac:ops"
    assert check(auth, signed(key_id="ci", nonce="d" * 32)) == "hmac:ci"
    retired = settings(keys=parse_keys(f"ops:{NEW_SECRET}"))
    error = refused(auth, signed(secret=OLD_SECRET, nonce="e" * 32), config=retired)
    assert (error.status, error.code) == (401, "InvalidSignature")


def test_missing_authentication_says_how_to_authenticate() -> None:
    error = refused(Authenticator(clock=Clock()), {})
    assert (error.status, error.code) == (401, "MissingAuthentication")
    assert dict(error.headers)["WWW-Authenticate"] == 'CVCSYNC-HMAC-SHA256, Bearer realm="cvcsync"'


@pytest.mark.parametrize(
    "header", ["x-cvcsync-key-id", "x-cvcsync-timestamp", "x-cvcsync-nonce", "x-cvcsync-signature"]
)
def test_a_missing_signature_header_is_named(header: str) -> None:
    headers = signed()
    del headers[header]
    error = refused(Authenticator(clock=Clock()), headers)
    assert (error.status, error.code, error.field.lower()) == (401, "IncompleteSignature", header)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-cvcsync-timestamp", "2024-05-01T02:00:05Z"),
        ("x-cvcsync-nonce", "short"),
        ("x-cvcsync-signature", "not-hex"),
        ("x-cvcsync-key-id", "bad id"),
    ],
)
def test_malformed_signature_headers_are_refused(header: str, value: str) -> None:
    error = refused(Authenticator(clock=Clock()), {**signed(), header: value})
    assert (error.status, error.code) == (401, "IncompleteSignature")


def test_a_wrong_secret_an_unknown_key_or_a_changed_body_is_refused() -> None:
    auth = Authenticator(clock=Clock())
    for headers, body in (
        (signed(secret="wrong-secret-0123456789"), BODY),
        (signed(key_id="nobody"), BODY),
        (signed(), BODY + b" "),
    ):
        error = refused(auth, headers, body=body)
        assert (error.status, error.code) == (401, "InvalidSignature")


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_a_timestamp_outside_the_window_is_expired(skew: int) -> None:
    error = refused(Authenticator(clock=Clock()), signed(timestamp=NOW + skew))
    assert (error.status, error.code, error.field) == (401, "RequestExpired", "X-Cvcsync-Timestamp")


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_a_timestamp_inside_the_window_is_accepted(skew: int) -> None:
    assert check(Authenticator(clock=Clock()), signed(timestamp=NOW + skew)) == "hmac:ops"


def test_a_replayed_request_is_refused_until_its_timestamp_has_expired() -> None:
    clock = Clock()
    auth = Authenticator(clock=clock)
    headers = signed()
    check(auth, headers)
    error = refused(auth, headers)
    assert (error.status, error.code) == (401, "ReplayedRequest")
    clock.now = NOW + 301  # the nonce is forgotten, and the timestamp refuses the replay instead
    assert refused(auth, headers).code == "RequestExpired"
    check(auth, signed(timestamp=NOW + 301, nonce="f" * 32))
    assert len(auth.memory) == 1  # the old pair was swept: memory is bounded by the window


def test_replay_memory_is_bounded() -> None:
    memory = ReplayMemory(capacity=2)
    assert memory.remember("k", "1", expires_at=10, now=0)
    assert memory.remember("k", "2", expires_at=20, now=0)
    with pytest.raises(ApiError) as caught:
        memory.remember("k", "3", expires_at=30, now=5)
    assert caught.value.status == 429 and dict(caught.value.headers)["Retry-After"] == "5"
    with pytest.raises(ApiError):  # at its expiry instant the first pair is still remembered (its window is closed)
        memory.remember("k", "3", expires_at=30, now=10)
    assert memory.remember("k", "3", expires_at=30, now=10.5)  # the first pair expired
    assert not memory.remember("k", "2", expires_at=20, now=10.5)


def test_a_replay_at_exactly_timestamp_plus_skew_is_refused() -> None:
    """The last instant a timestamp is accepted (|now - timestamp| == skew) must still know its nonce."""
    clock = Clock(NOW + 300)
    auth = Authenticator(clock=clock)
    headers = signed()
    assert check(auth, headers) == "hmac:ops"
    error = refused(auth, headers)
    assert (error.status, error.code) == (401, "ReplayedRequest")
    clock.now = NOW + 300.5  # just past the window: the timestamp refuses it
    assert refused(auth, headers).code == "RequestExpired"


def test_bearer_tokens_are_accepted_and_wrong_ones_refused() -> None:
    auth = Authenticator(clock=Clock())
    assert check(auth, {"authorization": f"Bearer {TOKEN}"}) == "bearer:token#1"
    for value in ("Bearer nope", f"Bearer {TOKEN}x", "Bearer "):
        error = refused(auth, {"authorization": value})
        assert (error.status, error.code) == (401, "InvalidToken")
    no_tokens = settings(tokens=())
    assert refused(auth, {"authorization": f"Bearer {TOKEN}"}, config=no_tokens).code == "InvalidToken"


def test_signatures_are_refused_when_only_tokens_are_configured() -> None:
    only_tokens = settings(keys={})
    error = refused(Authenticator(clock=Clock()), signed(), config=only_tokens)
    assert error.code == "InvalidSignature" and dict(error.headers)["WWW-Authenticate"] == 'Bearer realm="cvcsync"'


def test_nothing_configured_refuses_everything() -> None:
    error = refused(Authenticator(clock=Clock()), signed(), config=HttpSettings())
    assert (error.status, error.code) == (503, "AuthNotConfigured")


def test_settings_errors_never_show_a_secret() -> None:
    for bad in ("ops", "bad id:0123456789abcdef", "ops:short-secret"):
        with pytest.raises(ConfigurationError) as caught:
            parse_keys(bad)
        assert "short-secret" not in caught.value.message and "0123456789abcdef" not in caught.value.message
    with pytest.raises(ConfigurationError) as token_error:
        parse_tokens("tiny-token")
    assert "tiny-token" not in token_error.value.message
    assert "secret" not in repr(settings()) and TOKEN not in repr(settings())


def test_settings_from_env() -> None:
    config = HttpSettings.from_env(
        {
            "CVCSYNC_HTTP_KEYS": f" ops:{NEW_SECRET} , ci:{OLD_SECRET} ",
            "CVCSYNC_HTTP_TOKENS": TOKEN,
            "CVCSYNC_HTTP_CLOCK_SKEW": "60",
            "CVCSYNC_HTTP_MAX_BODY": "2048",
            "CVCSYNC_HTTP_MAX_BATCH": "10",
            "CVCSYNC_HTTP_SYNC_BUCKET": "uploads",
            "CVCSYNC_STATE_BUCKET": "state",
            "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "5",
        }
    )
    assert config.keys == {"ops": (NEW_SECRET,), "ci": (OLD_SECRET,)} and config.tokens == (TOKEN,)
    assert (config.clock_skew, config.max_body, config.max_batch, config.circuit_cooldown) == (60, 2048, 10, 5.0)
    assert config.default_bucket == "uploads" and config.reports_bucket == "state"
    assert config.sync_buckets == {"uploads", "state"}
    defaults = HttpSettings.from_env({})
    assert (defaults.clock_skew, defaults.max_body, defaults.max_batch) == (300, 1024 * 1024, 1000)
    assert not defaults.auth_configured and defaults.default_bucket is None

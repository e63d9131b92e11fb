"""Secret references, the per-container cache, the stores' refusals as errors, and the HTTP settings' wiring.

No network here: stores are the ``env:`` source or a counting fake beside the ``SecretSource`` interface; the
stores over real HTTP (moto, a KMS stand-in) are in ``tests/integration/test_secrets_stores.py``.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import orjson
import pytest

from cvcsync.adapters import signature
from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.secret_stores import KmsSecrets, _aws_failure, _kms_failure
from cvcsync.adapters.secrets import (
    ACCESS_DENIED,
    INVALID_REFERENCE,
    NOT_FOUND,
    UNAVAILABLE,
    UNUSABLE,
    SecretCache,
    SecretError,
    SecretReader,
    parse_reference,
)
from cvcsync.errors import ConfigurationError
from cvcsync.http_api.settings import HttpSettings

HTTP_SECRET = "http-secret-0123456789abcdef"
TOKEN = "bearer-token-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    """A store that counts its reads; ``failure`` makes the next reads fail with that code."""

    def __init__(self, values: dict[str, str], *, delay: float = 0.0) -> None:
        self.values = values
        self.reads: list[str] = []
        self.failure: str | None = None
        self.delay = delay
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        with self._lock:
            self.reads.append(name)
        time.sleep(self.delay)
        if self.failure is not None:
            raise SecretError("cannot be read: the fake store fails", code=self.failure)
        if name not in self.values:
            raise SecretError("does not exist in the fake store", code=NOT_FOUND)
        return self.values[name]


def reader(env: dict[str, str], source: CountingSource, clock: Clock) -> SecretReader:
    return SecretReader(env, cache=SecretCache(clock), sources={"kms": source, "secretsmanager": source})


# ------------------------------------------------------------------------------------------------ references


@pytest.mark.parametrize(
    ("text", "scheme", "name"),
    [
        ("secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:cvc-key-AbCdEf", "secretsmanager", None),
        ("ssm:/cvc-sync/http-keys", "ssm", "/cvc-sync/http-keys"),
        ("kms:cvc-sync-http-keys", "kms", "cvc-sync-http-keys"),
        (
            "kms:acs:kms:cn-hangzhou:123:secret/cvc-sync-http-keys",
            "kms",
            "acs:kms:cn-hangzhou:123:secret/cvc-sync-http-keys",
        ),
        (" env:LOCAL_KEYS ", "env", "LOCAL_KEYS"),
    ],
)
def test_references_name_a_store_and_a_name_there(text: str, scheme: str, name: str | None) -> None:
    found = parse_reference(text, variable="CVCSYNC_SECRET_HTTP_KEYS")
    assert found.scheme == scheme and found.name == (name or text.split(":", 1)[1])
    assert str(found) == text.strip()


@pytest.mark.parametrize("text", [f"ops:{HTTP_SECRET}", HTTP_SECRET, "kms:", "vault:x"])
def test_a_value_that_is_no_reference_is_refused_without_being_shown(text: str) -> None:
    with pytest.raises(SecretError) as info:
        parse_reference(text, variable="CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == INVALID_REFERENCE and isinstance(info.value, ConfigurationError)
    assert "CVCSYNC_SECRET_HTTP_KEYS" in info.value.message and "kms:<secret name>" in info.value.message
    assert HTTP_SECRET not in info.value.message and "vault" not in info.value.message


# ------------------------------------------------------------------------------------------------ the cache


def test_one_store_read_per_ttl_and_a_rotation_is_seen_after_it() -> None:
    clock, source = Clock(), CountingSource({"keys": "first"})
    env = {"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys", "CVCSYNC_SECRET_TTL_SECONDS": "60"}
    secrets = reader(env, source, clock)
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "first"
    clock.now += 59
    source.values["keys"] = "rotated"
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "first"
    assert source.reads == ["keys"]  # two reads within the TTL: one store call
    clock.now += 1
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "rotated"
    assert source.reads == ["keys", "keys"]


def test_default_ttl_is_five_minutes() -> None:
    clock, source = Clock(), CountingSource({"keys": "v"})
    secrets = reader({"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys"}, source, clock)
    secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    clock.now += 299.9
    secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    clock.now += 0.1
    secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert len(source.reads) == 2


def test_many_threads_asking_at_once_cost_one_store_read() -> None:
    source = CountingSource({"keys": "v"}, delay=0.05)
    secrets = reader({"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys"}, source, Clock())
    values: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: values.append(secrets.read("CVCSYNC_SECRET_HTTP_KEYS"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values == ["v"] * 8 and source.reads == ["keys"]


def test_a_store_outage_keeps_the_last_value_and_asks_again_soon(caplog: pytest.LogCaptureFixture) -> None:
    clock, source = Clock(), CountingSource({"keys": "v"})
    secrets = reader({"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys"}, source, clock)
    secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    clock.now += 300
    source.failure = UNAVAILABLE
    with caplog.at_level(logging.WARNING, logger="cvcsync.adapters.secrets"):
        assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "v"
    assert "last value" in caplog.text and "v" not in [r.getMessage() for r in caplog.records]
    clock.now += 29
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "v" and len(source.reads) == 2  # no hammering
    clock.now += 1
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "v" and len(source.reads) == 3


def test_a_secret_gone_or_denied_after_expiry_is_raised_not_served_stale() -> None:
    clock, source = Clock(), CountingSource({"keys": "v"})
    secrets = reader({"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys"}, source, clock)
    secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    clock.now += 300
    source.failure = ACCESS_DENIED
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == ACCESS_DENIED and not info.value.retryable
    assert info.value.message.startswith("CVCSYNC_SECRET_HTTP_KEYS names the secret kms:keys, which cannot be read")


def test_unavailable_without_a_last_value_is_a_retryable_configuration_error() -> None:
    source = CountingSource({})
    source.failure = UNAVAILABLE
    with pytest.raises(ConfigurationError) as info:
        reader({"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys"}, source, Clock()).read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == UNAVAILABLE and info.value.retryable


def test_env_references_are_read_every_time_and_missing_ones_say_so() -> None:
    env = {"CVCSYNC_SECRET_HTTP_KEYS": "env:LOCAL_KEYS", "LOCAL_KEYS": "a"}
    secrets = SecretReader(env, cache=SecretCache(Clock()))
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "a"
    env["LOCAL_KEYS"] = "b"
    assert secrets.read("CVCSYNC_SECRET_HTTP_KEYS") == "b"
    del env["LOCAL_KEYS"]
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == NOT_FOUND
    assert (
        info.value.message
        == "CVCSYNC_SECRET_HTTP_KEYS names the secret env:LOCAL_KEYS, which is not set in the environment"
    )
    assert SecretReader({}).read("CVCSYNC_SECRET_HTTP_KEYS") is None


def test_the_stores_module_is_loaded_by_the_first_reference_to_a_store_and_never_for_env() -> None:
    """A fresh interpreter, as a cold start: ``env:`` secrets and unset ones must not import the remote stores."""
    code = """
import sys
from cvcsync.adapters.secrets import SecretReader
env = {
    "CVCSYNC_SECRET_HTTP_KEYS": "env:LOCAL_KEYS",
    "LOCAL_KEYS": "a",
    "CVCSYNC_KMS_ENDPOINT": "http://127.0.0.1:9",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "local-key-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "local-key-secret",
}
secrets = SecretReader(env)
print(secrets.read("CVCSYNC_SECRET_HTTP_KEYS"), secrets.read("CVCSYNC_SECRET_HTTP_TOKENS"))
print(sorted(m for m in ("cvcsync.adapters.secret_stores", "cvcsync.adapters.http_session") if m in sys.modules))
print(type(secrets.source("kms")).__module__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["a None", "[]", "cvcsync.adapters.secret_stores"]


# ------------------------------------------------------------------------------------------------ KMS, offline

ROLE = Credentials("STS.role-key", "role-secret-do-not-use", "role-token+with/odd=chars", "fc-context")
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_kms_request_is_signed_over_every_parameter_with_the_roles_token_in_the_body() -> None:
    kms = KmsSecrets("https://kms.cn-hangzhou.aliyuncs.com", ROLE, now=lambda: NOW, nonce=lambda: "nonce-1")
    pairs = signature.parse_form(kms.request_body("cvc-sync-http-keys"))
    params = dict(pairs)
    assert params["Action"] == "GetSecretValue" and params["Version"] == "2016-01-20"
    assert params["SecretName"] == "cvc-sync-http-keys" and params["AccessKeyId"] == "STS.role-key"
    assert params["SecurityToken"] == ROLE.security_token and params["Timestamp"] == "2030-01-01T00:00:00Z"
    expected = signature.signature(ROLE.access_key_secret, signature.string_to_sign("POST", pairs))
    assert params["Signature"] == expected
    assert kms.endpoint == "https://kms.cn-hangzhou.aliyuncs.com"


def test_kms_answers_text_and_binary_values() -> None:
    kms = KmsSecrets("http://127.0.0.1:9", ROLE)
    assert kms._value(200, orjson.dumps({"SecretData": "v", "SecretDataType": "text"})) == "v"
    binary = base64.b64encode(b"ops:value").decode()
    assert kms._value(200, orjson.dumps({"SecretData": binary, "SecretDataType": "binary"})) == "ops:value"
    with pytest.raises(SecretError) as info:
        kms._value(200, orjson.dumps({"RequestId": "r"}))
    assert info.value.code == UNUSABLE


@pytest.mark.parametrize(
    ("status", "code", "why"),
    [
        (404, "Forbidden.ResourceNotFound", NOT_FOUND),
        (403, "Forbidden.NoPermission", ACCESS_DENIED),
        (403, "Forbidden.RAM", ACCESS_DENIED),
        (404, "InvalidAccessKeyId.NotFound", ACCESS_DENIED),
        (400, "InvalidSecurityToken.Expired", ACCESS_DENIED),
        (400, "SignatureDoesNotMatch", ACCESS_DENIED),
        (400, "Throttling.User", UNAVAILABLE),
        (503, "ServiceUnavailable", UNAVAILABLE),
        (400, "InvalidParameter", UNUSABLE),
    ],
)
def test_kms_refusals_say_why_with_code_and_request_id_never_kms_message(status: int, code: str, why: str) -> None:
    body = {
        "Code": code,
        "Message": f"server string to sign is: ...SecurityToken%3D{ROLE.security_token}",
        "RequestId": "R-1",
    }
    with pytest.raises(SecretError) as info:
        KmsSecrets("http://127.0.0.1:9", ROLE)._value(status, orjson.dumps(body))
    assert info.value.code == why and info.value.retryable == (why == UNAVAILABLE)
    assert code in info.value.message and "R-1" in info.value.message
    assert "string to sign" not in info.value.message and str(ROLE.security_token) not in info.value.message
    assert _kms_failure("e", code, status, "R-1").code == why


def test_aws_refusals_say_why_with_code_and_request_id_never_aws_message() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    def client_error(code: str, status: int) -> ClientError:
        response = {
            "Error": {"Code": code, "Message": "User arn:aws:sts::1:assumed-role/x is not authorized"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "R-2"},
        }
        return ClientError(response, "GetSecretValue")

    cases = [
        (client_error("ResourceNotFoundException", 400), NOT_FOUND),
        (client_error("ParameterNotFound", 400), NOT_FOUND),
        (client_error("AccessDeniedException", 400), ACCESS_DENIED),
        (client_error("DecryptionFailure", 400), ACCESS_DENIED),
        (client_error("InternalServiceError", 500), UNAVAILABLE),
        (client_error("InvalidRequestException", 400), UNUSABLE),
        (EndpointConnectionError(endpoint_url="https://secretsmanager"), UNAVAILABLE),
        (NoCredentialsError(), ACCESS_DENIED),
    ]
    for exc, why in cases:
        error = _aws_failure("AWS Secrets Manager", "secretsmanager:GetSecretValue", "name", exc)
        assert error.code == why, exc
        assert "not authorized" not in error.message
    denied = _aws_failure("AWS Secrets Manager", "secretsmanager:GetSecretValue", "n", cases[2][0])
    assert "AccessDeniedException" in denied.message and "R-2" in denied.message
    assert "grant the function's role secretsmanager:GetSecretValue" in denied.message
    assert "kms:Decrypt" in _aws_failure("S", "a", "n", cases[3][0]).message


def test_kms_endpoint_from_setting_context_or_fc_region() -> None:
    assert SecretReader({"CVCSYNC_KMS_ENDPOINT": "https://kms-vpc.cn-shanghai.aliyuncs.com/"}).kms_endpoint() == (
        "https://kms-vpc.cn-shanghai.aliyuncs.com"
    )
    context = SimpleNamespace(region="cn-beijing")
    assert SecretReader({}, fc_context=context).kms_endpoint() == "https://kms.cn-beijing.aliyuncs.com"
    assert SecretReader({"FC_REGION": "cn-shenzhen"}).kms_endpoint() == "https://kms.cn-shenzhen.aliyuncs.com"
    for env in ({}, {"CVCSYNC_KMS_ENDPOINT": "kms.cn-hangzhou.aliyuncs.com"}):
        with pytest.raises(SecretError, match="CVCSYNC_KMS_ENDPOINT"):
            SecretReader(env).kms_endpoint()


def test_kms_without_any_credentials_to_sign_with_says_how_to_get_them() -> None:
    env = {"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys", "CVCSYNC_KMS_ENDPOINT": "http://127.0.0.1:9"}
    with pytest.raises(SecretError) as info:
        SecretReader(env, cache=SecretCache(Clock())).read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == ACCESS_DENIED and "give the function a role" in info.value.message


# ------------------------------------------------------------------------------------------------ HTTP settings


def test_http_settings_read_keys_and_tokens_from_the_secrets_named() -> None:
    source = CountingSource({"keys": f"ops:{HTTP_SECRET}", "tokens": TOKEN})
    env = {"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys", "CVCSYNC_SECRET_HTTP_TOKENS": "secretsmanager:tokens"}
    secrets = reader(env, source, Clock())
    settings = HttpSettings.from_env(env, secrets=secrets)
    assert settings.keys == {"ops": (HTTP_SECRET,)} and settings.tokens == (TOKEN,)
    HttpSettings.from_env(env, secrets=secrets)  # the next request: from the cache
    assert sorted(source.reads) == ["keys", "tokens"]


def test_http_settings_plain_variables_still_work_locally() -> None:
    settings = HttpSettings.from_env({"CVCSYNC_HTTP_KEYS": f"ops:{HTTP_SECRET}", "CVCSYNC_HTTP_TOKENS": TOKEN})
    assert settings.keys == {"ops": (HTTP_SECRET,)} and settings.tokens == (TOKEN,)


@pytest.mark.parametrize("kind", ["KEYS", "TOKENS"])
def test_http_settings_refuse_both_a_plain_value_and_a_secret(kind: str) -> None:
    plain = f"ops:{HTTP_SECRET}" if kind == "KEYS" else TOKEN
    env = {f"CVCSYNC_HTTP_{kind}": plain, f"CVCSYNC_SECRET_HTTP_{kind}": "kms:x"}
    with pytest.raises(ConfigurationError) as info:
        HttpSettings.from_env(env, secrets=reader(env, CountingSource({}), Clock()))
    assert info.value.code == "AmbiguousSecret"
    assert f"CVCSYNC_HTTP_{kind}" in info.value.message and f"CVCSYNC_SECRET_HTTP_{kind}" in info.value.message
    assert plain not in info.value.message


def test_http_settings_parse_errors_name_the_secret_never_its_value() -> None:
    source = CountingSource({"keys": "ops:short", "tokens": "tiny"})
    env = {"CVCSYNC_SECRET_HTTP_KEYS": "kms:keys", "CVCSYNC_SECRET_HTTP_TOKENS": "kms:tokens"}
    with pytest.raises(ConfigurationError) as keys_error:
        HttpSettings.from_env(env, secrets=reader(env, source, Clock()))
    assert keys_error.value.message.startswith("the secret kms:keys (CVCSYNC_SECRET_HTTP_KEYS)")
    assert "short" not in keys_error.value.message.replace("shorter", "")
    source.values["keys"] = f"ops:{HTTP_SECRET}"
    with pytest.raises(ConfigurationError) as tokens_error:
        HttpSettings.from_env(env, secrets=reader(env, source, Clock()))
    assert "the secret kms:tokens (CVCSYNC_SECRET_HTTP_TOKENS)" in tokens_error.value.message
    assert "tiny" not in tokens_error.value.message

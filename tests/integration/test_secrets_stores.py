"""The secret stores over real HTTP on loopback: AWS Secrets Manager and SSM Parameter Store (moto in server mode),
and Alibaba Cloud KMS ``GetSecretValue`` (``support.kms_standin``, which verifies the RPC signature and the STS token).

The end-to-end case of the pairing rule runs against the CVC emulator, which refuses a token sent with a long-term
key (``InvalidSecurityToken.MismatchWithAccessKey``): a RAM user's key read from KMS, the FC runtime's role triple in
the environment, and a call that succeeds only because the key goes without the role's token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cvcsync.adapters.credentials import default_credentials
from cvcsync.adapters.secrets import (
    ACCESS_DENIED,
    NOT_FOUND,
    UNAVAILABLE,
    UNUSABLE,
    SecretCache,
    SecretError,
    SecretReader,
)
from cvcsync.http_api.settings import HttpSettings
from cvcsync.platform import services
from cvcsync.platform.runtime import from_context, local_fc_context
from cvcsync_dev.emulator.keys import AccessKey
from support.kms_standin import KmsStandIn, served
from support.moto import REGION

HTTP_SECRET = "http-secret-0123456789abcdef"
TOKEN = "bearer-token-0123456789abcdef"
ROLE_ID, ROLE_SECRET, ROLE_TOKEN = "STS.fc-role", "fc-role-secret-do-not-use", "fc-role-token+odd/chars= do-not-use"
ROLE = {"access_key_id": ROLE_ID, "access_key_secret": ROLE_SECRET, "security_token": ROLE_TOKEN}
RUNTIME_ENV = {  # what FC's runtime puts in the environment: the role's triple
    "ALIBABA_CLOUD_ACCESS_KEY_ID": ROLE_ID,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ROLE_SECRET,
    "ALIBABA_CLOUD_SECURITY_TOKEN": ROLE_TOKEN,
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------------ AWS (moto)


@pytest.fixture
def aws_env(moto: Any) -> dict[str, str]:
    return {"CVCSYNC_SECRETSMANAGER_ENDPOINT": moto.url, "CVCSYNC_SSM_ENDPOINT": moto.url, "AWS_REGION": REGION}


def test_secrets_manager_holds_the_cvc_key_used_without_any_token(moto: Any, aws_env: dict[str, str]) -> None:
    key = {"accessKeyId": "LTAI-lambda-user", "accessKeySecret": "lambda-user-secret-do-not-use"}
    arn = moto._client("secretsmanager").create_secret(Name="cvc-sync/cvc-key", SecretString=orjson.dumps(key).decode())
    env = {**aws_env, **RUNTIME_ENV, "CVCSYNC_SECRET_CVC_ACCESS_KEY": f"secretsmanager:{arn['ARN']}"}
    creds = default_credentials(env=env, secrets=SecretReader(env, cache=SecretCache()))
    assert (creds.access_key_id, creds.access_key_secret) == (key["accessKeyId"], key["accessKeySecret"])
    assert creds.security_token is None and creds.source == f"secret secretsmanager:{arn['ARN']}"


def test_secrets_manager_rotation_is_seen_after_the_ttl(moto: Any, aws_env: dict[str, str]) -> None:
    client = moto._client("secretsmanager")
    client.create_secret(Name="cvc-sync/http-tokens", SecretString=TOKEN)
    env = {**aws_env, "CVCSYNC_SECRET_HTTP_TOKENS": "secretsmanager:cvc-sync/http-tokens"}
    clock = Clock()
    secrets = SecretReader(env, cache=SecretCache(clock))
    assert HttpSettings.from_env(env, secrets=secrets).tokens == (TOKEN,)
    rotated = "rotated-token-0123456789abcdef"
    client.put_secret_value(SecretId="cvc-sync/http-tokens", SecretString=rotated)
    assert HttpSettings.from_env(env, secrets=secrets).tokens == (TOKEN,)  # within the TTL: the cached value
    clock.now += 300
    assert HttpSettings.from_env(env, secrets=secrets).tokens == (rotated,)


def test_ssm_secure_string_holds_the_http_keys(moto: Any, aws_env: dict[str, str]) -> None:
    moto._client("ssm").put_parameter(Name="/cvc-sync/http-keys", Value=f"ops:{HTTP_SECRET}", Type="SecureString")
    env = {**aws_env, "CVCSYNC_SECRET_HTTP_KEYS": "ssm:/cvc-sync/http-keys"}
    settings = HttpSettings.from_env(env, secrets=SecretReader(env, cache=SecretCache()))
    assert settings.keys == {"ops": (HTTP_SECRET,)}


def test_ssm_refuses_a_plain_string_parameter(moto: Any, aws_env: dict[str, str]) -> None:
    moto._client("ssm").put_parameter(Name="/cvc-sync/plain", Value=f"ops:{HTTP_SECRET}", Type="String")
    env = {**aws_env, "CVCSYNC_SECRET_HTTP_KEYS": "ssm:/cvc-sync/plain"}
    with pytest.raises(SecretError) as info:
        SecretReader(env, cache=SecretCache()).read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == UNUSABLE and "SecureString" in info.value.message
    assert HTTP_SECRET not in info.value.message


@pytest.mark.parametrize("reference", ["secretsmanager:cvc-sync/absent", "ssm:/cvc-sync/absent"])
def test_an_absent_secret_names_the_variable_and_the_reference(
    reference: str, moto: Any, aws_env: dict[str, str]
) -> None:
    env = {**aws_env, "CVCSYNC_SECRET_HTTP_KEYS": reference}
    with pytest.raises(SecretError) as info:
        SecretReader(env, cache=SecretCache()).read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == NOT_FOUND and info.value.reference == reference
    assert info.value.message.startswith(f"CVCSYNC_SECRET_HTTP_KEYS names the secret {reference}, which does not exist")


def test_an_unreachable_aws_store_is_unavailable_and_retryable() -> None:
    env = {"CVCSYNC_SECRETSMANAGER_ENDPOINT": "http://127.0.0.1:9", "AWS_REGION": REGION}
    env["CVCSYNC_SECRET_HTTP_KEYS"] = "secretsmanager:cvc-sync/http-keys"
    with pytest.raises(SecretError) as info:
        SecretReader(env, cache=SecretCache()).read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == UNAVAILABLE and info.value.retryable


# ------------------------------------------------------------------------------------------------ Alibaba KMS


@pytest.fixture
def kms() -> Iterator[tuple[KmsStandIn, str]]:
    stand_in = KmsStandIn(
        [AccessKey(ROLE_ID, ROLE_SECRET, ROLE_TOKEN)],
        {"cvc-sync-http-keys": f"ops:{HTTP_SECRET}", "cvc-sync-http-tokens": TOKEN},
        denied_secrets={"someone-elses-secret"},
    )
    with served(stand_in) as url:
        yield stand_in, url


def fc_reader(url: str, clock: Clock | None = None, credentials: dict[str, str] | None = None, **env: str) -> Any:
    environment = {**RUNTIME_ENV, "CVCSYNC_KMS_ENDPOINT": url, **env}
    context = local_fc_context("http_api", credentials=ROLE if credentials is None else credentials)
    return environment, SecretReader(environment, fc_context=context, cache=SecretCache(clock or Clock()))


def test_kms_get_secret_value_signed_with_the_roles_sts_token(kms: tuple[KmsStandIn, str]) -> None:
    stand_in, url = kms
    env, secrets = fc_reader(
        url, CVCSYNC_SECRET_HTTP_KEYS="kms:cvc-sync-http-keys", CVCSYNC_SECRET_HTTP_TOKENS="kms:cvc-sync-http-tokens"
    )
    settings = HttpSettings.from_env(env, secrets=secrets)
    assert settings.keys == {"ops": (HTTP_SECRET,)} and settings.tokens == (TOKEN,)
    assert [(c.access_key_id, c.security_token) for c in stand_in.calls] == [(ROLE_ID, ROLE_TOKEN)] * 2
    assert sorted(c.secret_name for c in stand_in.calls) == ["cvc-sync-http-keys", "cvc-sync-http-tokens"]


def test_kms_reads_are_cached_for_the_ttl(kms: tuple[KmsStandIn, str]) -> None:
    stand_in, url = kms
    clock = Clock()
    env, secrets = fc_reader(url, clock, CVCSYNC_SECRET_HTTP_KEYS="kms:cvc-sync-http-keys")
    for _ in range(2):
        assert HttpSettings.from_env(env, secrets=secrets).keys == {"ops": (HTTP_SECRET,)}
    assert len(stand_in.calls) == 1  # two reads within the TTL: one GetSecretValue
    clock.now += 300
    HttpSettings.from_env(env, secrets=secrets)
    assert len(stand_in.calls) == 2


def test_kms_refuses_a_token_that_is_not_the_keys_and_the_error_holds_no_token(kms: tuple[KmsStandIn, str]) -> None:
    stand_in, url = kms
    wrong = {**ROLE, "security_token": "another-roles-token-do-not-use"}
    _, secrets = fc_reader(url, credentials=wrong, CVCSYNC_SECRET_HTTP_KEYS="kms:cvc-sync-http-keys")
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == ACCESS_DENIED and "InvalidSecurityToken.MismatchWithAccessKey" in info.value.message
    assert "another-roles-token-do-not-use" not in info.value.message and stand_in.calls == []


def test_kms_refuses_a_wrong_signature_and_the_error_withholds_the_string_to_sign(kms: tuple[KmsStandIn, str]) -> None:
    _, url = kms
    wrong = {**ROLE, "access_key_secret": "not-the-role-secret"}
    _, secrets = fc_reader(url, credentials=wrong, CVCSYNC_SECRET_HTTP_KEYS="kms:cvc-sync-http-keys")
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == ACCESS_DENIED and "SignatureDoesNotMatch" in info.value.message
    assert ROLE_TOKEN not in info.value.message and "string to sign" not in info.value.message


@pytest.mark.parametrize(("name", "why"), [("absent", NOT_FOUND), ("someone-elses-secret", ACCESS_DENIED)])
def test_kms_absent_or_denied_secrets_say_so(name: str, why: str, kms: tuple[KmsStandIn, str]) -> None:
    _, url = kms
    _, secrets = fc_reader(url, CVCSYNC_SECRET_HTTP_KEYS=f"kms:{name}")
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == why and f"kms:{name}" in info.value.message


def test_kms_unreachable_is_retried_then_unavailable() -> None:
    _, secrets = fc_reader("http://127.0.0.1:9", CVCSYNC_SECRET_HTTP_KEYS="kms:cvc-sync-http-keys")
    started = time.monotonic()
    with pytest.raises(SecretError) as info:
        secrets.read("CVCSYNC_SECRET_HTTP_KEYS")
    assert info.value.code == UNAVAILABLE and info.value.retryable
    assert time.monotonic() - started >= 0.6  # three attempts, 0.2 s then 0.4 s apart


def test_a_ram_users_key_from_kms_calls_cvc_without_the_roles_token(emulator: Any) -> None:
    """On FC, with the runtime's role triple in the environment: the stored long-term key goes without a token, and
    the emulator (which refuses a token sent with a long-term key) accepts the call. The KMS read itself carried the
    role's token."""
    stored = {"accessKeyId": emulator.access_key_id, "accessKeySecret": emulator.access_key_secret}
    stand_in = KmsStandIn(
        [AccessKey(ROLE_ID, ROLE_SECRET, ROLE_TOKEN)], {"cvc-sync-cvc-key": orjson.dumps(stored).decode()}
    )
    services.clear_cache()
    try:
        with served(stand_in) as url:
            env = {
                **RUNTIME_ENV,
                "CVCSYNC_KMS_ENDPOINT": url,
                "CVCSYNC_SECRET_CVC_ACCESS_KEY": "kms:cvc-sync-cvc-key",
                "CVC_ENDPOINT": emulator.url,
            }
            invocation = from_context(local_fc_context("upload", credentials=ROLE))
            client = services.cvc_client(invocation, env)
            assert (client.credentials.access_key_id, client.credentials.security_token) == (
                stored["accessKeyId"],
                None,
            )
            assert isinstance(client.get_account_info(deadline=time.monotonic() + 10), dict)
            services.cvc_client(invocation, env)  # the next invocation: the key from the container's cache
        assert [(c.access_key_id, c.security_token) for c in stand_in.calls] == [(ROLE_ID, ROLE_TOKEN)]
    finally:
        services.clear_cache()

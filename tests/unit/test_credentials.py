"""The credentials chain, and the rule that a key is never sent with a security token that is not its own.

FC (2.0 and 3.0) puts the role's temporary triple into the environment (``ALIBABA_CLOUD_ACCESS_KEY_ID``/``SECRET``/
``SECURITY_TOKEN``) and hands the same role's current triple to each invocation on ``context.credentials``:
``FC_RUNTIME_ENV`` and ``FC_CONTEXT`` below are that pair.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import orjson
import pytest

from cvcsync.adapters.credentials import Credentials, default_credentials, is_temporary
from cvcsync.adapters.secrets import NOT_FOUND, UNUSABLE, SecretError
from cvcsync.errors import ConfigurationError

ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}
FC_CONTEXT = SimpleNamespace(
    credentials=SimpleNamespace(access_key_id="STS.fc", access_key_secret="fc-secret", security_token="fc-token")
)
FC_RUNTIME_ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.fc",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "fc-secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "fc-token",
    "FC_REGION": "cn-hangzhou",
}
STORED_KEY = {"accessKeyId": "LTAI-ram-user", "accessKeySecret": "ram-user-secret-do-not-show"}
SECRET_ENV = {"CVCSYNC_SECRET_CVC_ACCESS_KEY": "env:CVC_KEY_JSON", "CVC_KEY_JSON": orjson.dumps(STORED_KEY).decode()}


def test_explicit_arguments_win_over_everything() -> None:
    env = {**ENV, **SECRET_ENV}
    creds = default_credentials(access_key_id="arg-id", access_key_secret="arg-secret", env=env, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.source) == ("arg-id", "arguments")


def test_fc_default_is_the_roles_sts_credentials_from_the_context() -> None:
    creds = default_credentials(env=FC_RUNTIME_ENV, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("STS.fc", "fc-token", "fc-context")


def test_fc_context_wins_over_the_runtimes_older_copy_in_the_environment() -> None:
    stale = {**FC_RUNTIME_ENV, "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.at-start", "ALIBABA_CLOUD_SECURITY_TOKEN": "old"}
    creds = default_credentials(env=stale, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("STS.fc", "fc-token", "fc-context")


def test_fc_context_sts_credentials_as_attributes_or_dict() -> None:
    creds = default_credentials(env={}, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("STS.fc", "fc-token", "fc-context")
    local = {"credentials": {"accessKeyId": "STS.local", "accessKeySecret": "s", "securityToken": "t"}}
    assert default_credentials(env={}, fc_context=local).access_key_id == "STS.local"


def test_a_secret_key_is_used_with_no_token_beside_the_runtimes_token() -> None:
    """The dangerous case: a configured key and FC's role token in the same environment."""
    creds = default_credentials(env={**FC_RUNTIME_ENV, **SECRET_ENV}, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.access_key_secret) == ("LTAI-ram-user", "ram-user-secret-do-not-show")
    assert creds.security_token is None and creds.source == "secret env:CVC_KEY_JSON"
    assert default_credentials(env={**FC_RUNTIME_ENV, **SECRET_ENV}).security_token is None  # no context either


def test_a_long_term_key_in_the_environment_never_takes_the_runtimes_token(caplog: pytest.LogCaptureFixture) -> None:
    env = {**FC_RUNTIME_ENV, **ENV, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-configured"}
    with caplog.at_level(logging.WARNING, logger="cvcsync.adapters.credentials"):
        creds = default_credentials(env=env, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("LTAI-configured", None, "environment")
    assert "used without it" in caplog.text
    assert "fc-token" not in caplog.text and "env-secret" not in caplog.text


def test_an_sts_triple_in_the_environment_is_one_triple_off_fc() -> None:
    env = {**ENV, "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.local", "ALIBABA_CLOUD_SECURITY_TOKEN": "local-token"}
    creds = default_credentials(env=env)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("STS.local", "local-token", "environment")


def test_a_long_term_key_in_the_environment_wins_over_the_fc_context() -> None:
    creds = default_credentials(env=ENV, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("env-id", None, "environment")


def test_the_secret_wins_over_the_environment() -> None:
    creds = default_credentials(env={**ENV, **SECRET_ENV})
    assert creds.access_key_id == "LTAI-ram-user"


def test_kms_ram_credential_secrets_are_accepted() -> None:
    value = {"AccessKeyId": "LTAI-rotated", "AccessKeySecret": "s", "GenerateTimestamp": "2030-01-01 00:00:00"}
    env = {**SECRET_ENV, "CVC_KEY_JSON": orjson.dumps(value).decode()}
    assert default_credentials(env=env).access_key_id == "LTAI-rotated"


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("LTAI-ram-user:ram-user-secret-do-not-show", "is not JSON"),
        ('["ram-user-secret-do-not-show"]', "not an object"),
        ('{"accessKeyId": "LTAI-ram-user", "secret": "ram-user-secret-do-not-show"}', "lacks accessKeyId or"),
        ('{"accessKeyId": "STS.x", "accessKeySecret": "ram-user-secret-do-not-show"}', "temporary (STS) key"),
        (
            '{"accessKeyId": "LTAI-x", "accessKeySecret": "ram-user-secret-do-not-show", "securityToken": "t"}',
            "temporary (STS) key",
        ),
    ],
)
def test_an_unusable_secret_says_why_and_names_the_reference_not_the_value(stored: str, why: str) -> None:
    env = {**FC_RUNTIME_ENV, **SECRET_ENV, "CVC_KEY_JSON": stored}
    with pytest.raises(SecretError) as info:
        default_credentials(env=env, fc_context=FC_CONTEXT)
    assert info.value.code == UNUSABLE and why in info.value.message
    assert info.value.message.startswith("CVCSYNC_SECRET_CVC_ACCESS_KEY names the secret env:CVC_KEY_JSON, which ")
    assert "ram-user-secret-do-not-show" not in info.value.message


def test_an_unreadable_secret_never_falls_back_to_another_identity() -> None:
    env = {**FC_RUNTIME_ENV, "CVCSYNC_SECRET_CVC_ACCESS_KEY": "env:NOT_SET"}
    with pytest.raises(SecretError) as info:
        default_credentials(env=env, fc_context=FC_CONTEXT)
    assert info.value.code == NOT_FOUND and isinstance(info.value, ConfigurationError)


def test_no_credentials_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ALIBABA_CLOUD_ACCESS_KEY_ID") as info:
        default_credentials(env={})
    assert info.value.code == "NoCredentials" and "CVCSYNC_SECRET_CVC_ACCESS_KEY" in info.value.message


def test_half_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="environment"):
        default_credentials(env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "only-id"})


def test_temporary_keys_are_told_by_their_id() -> None:
    assert is_temporary("STS.NUgYrLnoC37mZZCNnAbez") and not is_temporary("LTAI5tExample")


def test_repr_hides_secret_and_token() -> None:
    creds = Credentials("id-1", "very-secret-value", "token-value")
    assert "very-secret-value" not in repr(creds)
    assert "token-value" not in repr(creds)
    assert "id-1" in repr(creds)

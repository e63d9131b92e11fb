from __future__ import annotations

from types import SimpleNamespace

import pytest

from cvcsync.adapters.credentials import Credentials, default_credentials
from cvcsync.errors import ConfigurationError

ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}
FC_CONTEXT = SimpleNamespace(
    credentials=SimpleNamespace(access_key_id="STS.fc", access_key_secret="fc-secret", security_token="fc-token")
)


def test_explicit_arguments_win_over_everything() -> None:
    creds = default_credentials(access_key_id="arg-id", access_key_secret="arg-secret", env=ENV, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.source) == ("arg-id", "arguments")


def test_environment_wins_over_fc_context() -> None:
    env = {**ENV, "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token"}
    creds = default_credentials(env=env, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("env-id", "env-token", "environment")


def test_fc_context_sts_credentials_as_attributes_or_dict() -> None:
    creds = default_credentials(env={}, fc_context=FC_CONTEXT)
    assert (creds.access_key_id, creds.security_token, creds.source) == ("STS.fc", "fc-token", "fc-context")
    local = {"credentials": {"accessKeyId": "STS.local", "accessKeySecret": "s", "securityToken": "t"}}
    assert default_credentials(env={}, fc_context=local).access_key_id == "STS.local"


def test_no_credentials_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ALIBABA_CLOUD_ACCESS_KEY_ID") as info:
        default_credentials(env={})
    assert info.value.code == "NoCredentials"


def test_half_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="environment"):
        default_credentials(env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "only-id"})


def test_repr_hides_secret_and_token() -> None:
    creds = Credentials("id-1", "very-secret-value", "token-value")
    assert "very-secret-value" not in repr(creds)
    assert "token-value" not in repr(creds)
    assert "id-1" in repr(creds)

"""Property: whatever Unicode a parameter holds, the client's signature verifies in the emulator."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.config import CvcSettings
from cvcsync.errors import CvcBusinessError, CvcGatewayError

# Any code point but surrogates (not encodable as UTF-8), including spaces, '+', '&', '=', '%', emoji and CJK.
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def signing_client(emulator_process: Any) -> CvcClient:
    emulator_process.reset()  # no faults left over from an earlier test: only the signature is under test here
    return CvcClient(
        Credentials(emulator_process.access_key_id, emulator_process.access_key_secret),
        settings=CvcSettings(endpoint=emulator_process.url),
        retry_policy=RetryPolicy(max_attempts=1, rng=random.Random(0)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_id=unicode_text)
def test_query_values_verify(signing_client: CvcClient, user_id: str) -> None:
    try:
        info = signing_client.get_user(user_id)
    except CvcBusinessError as exc:  # signed correctly, and the user simply is not there
        assert exc.http_status == 200
    except CvcGatewayError as exc:
        pytest.fail(f"gateway refused a correctly signed request: {exc}")
    else:
        assert info["UserId"] == user_id.strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=unicode_text, depart=unicode_text)
def test_form_body_values_verify(signing_client: CvcClient, name: str, depart: str) -> None:
    user = {"userId": "prop-1", "userName": name, "groupId": "g", "groupName": "G", "departName": depart}
    try:
        signing_client.create_batch([user])
    except CvcBusinessError as exc:  # the emulator may dislike the content, never the signature
        assert exc.http_status == 200
    except CvcGatewayError as exc:
        pytest.fail(f"gateway refused a correctly signed request: {exc}")

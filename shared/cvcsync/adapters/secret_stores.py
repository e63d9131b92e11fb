"""The remote secret stores: AWS Secrets Manager, AWS SSM Parameter Store and Alibaba Cloud KMS secrets manager.

A module of its own because most functions never need it: ``cvcsync.adapters.secrets`` (the references and what
they mean, the errors, the cache, the reader) is on every function's path, and imports this module only when a
reference names ``secretsmanager:``, ``ssm:`` or ``kms:``. A cold start whose secrets are ``env:`` variables, or that
has none, so loads none of the stores' code, nor the RPC signer and the HTTP session the KMS store uses.

Each store is a ``SecretSource`` that translates its refusals into a ``SecretError`` (not found, access denied,
unavailable, not usable) with the store's code, HTTP status and request id, never the store's message nor a value.
boto3 and requests are imported inside the calls that use them.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync.adapters import signature
from cvcsync.adapters.http_session import signed_call_session
from cvcsync.adapters.secrets import ACCESS_DENIED, NOT_FOUND, UNAVAILABLE, UNUSABLE, SecretError

if TYPE_CHECKING:
    import requests

    from cvcsync.adapters.credentials import Credentials

KMS_API_VERSION = "2016-01-20"
KMS_ATTEMPTS = 3
KMS_TIMEOUT = (3.05, 5.0)  # three attempts stay well inside a function's timeout
AWS_TIMEOUT = (3.05, 5.0)

# ------------------------------------------------------------------------------------------------ AWS

_AWS_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
_AWS_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "KMSAccessDeniedException",
}
_AWS_NO_KEY = {"DecryptionFailure", "InvalidKeyId", "KMSDisabledException", "KMSInvalidStateException"}
_AWS_UNAVAILABLE = {"InternalServiceError", "InternalServerError", "ThrottlingException", "ServiceUnavailable"}


def _aws_failure(store: str, action: str, name: str, exc: Exception) -> SecretError:
    """botocore's exception as a SecretError: the error code, HTTP status and request id, never AWS's message."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return SecretError(f"cannot be read: there are no AWS credentials to read {store} with", code=ACCESS_DENIED)
    if not isinstance(exc, ClientError):
        return SecretError(f"cannot be read: {store} did not answer ({type(exc).__name__})", code=UNAVAILABLE)
    code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
    meta = exc.response.get("ResponseMetadata", {})
    status = meta.get("HTTPStatusCode")
    detail = f"{code}, HTTP {status}, request id {meta.get('RequestId')}"
    if code in _AWS_NOT_FOUND:
        return SecretError(f"does not exist in {store} ({detail})", code=NOT_FOUND)
    if code in _AWS_DENIED or status == 403:
        return SecretError(
            f"cannot be read: {store} denied access ({detail}); grant the function's role {action} on it",
            code=ACCESS_DENIED,
        )
    if code in _AWS_NO_KEY:
        return SecretError(
            f"cannot be decrypted ({detail}); grant the function's role kms:Decrypt on the KMS key that encrypts it",
            code=ACCESS_DENIED,
        )
    if code in _AWS_UNAVAILABLE or (isinstance(status, int) and status >= 500):
        return SecretError(f"cannot be read: {store} is unavailable ({detail})", code=UNAVAILABLE)
    return SecretError(f"cannot be read: {store} refused ({detail})", code=UNUSABLE)


def aws_client(service: str, *, endpoint: str | None, region: str | None) -> Any:
    """A boto3 client with explicit timeouts and botocore's standard retries (the role's credentials)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=AWS_TIMEOUT[0],
        read_timeout=AWS_TIMEOUT[1],
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=region, config=config)


class SecretsManagerSecrets:
    """AWS Secrets Manager: ``GetSecretValue`` of the current version."""

    STORE = "AWS Secrets Manager"

    def __init__(self, client: Any) -> None:
        self._client = client

    def get(self, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_secret_value(SecretId=name)
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(self.STORE, "secretsmanager:GetSecretValue", name, exc) from exc
        if isinstance(answer.get("SecretString"), str):
            return str(answer["SecretString"])
        binary = answer.get("SecretBinary")
        if isinstance(binary, (bytes, bytearray)):
            try:
                return bytes(binary).decode("utf-8")
            except UnicodeDecodeError:
                raise SecretError("is binary, not UTF-8 text", code=UNUSABLE) from None
        raise SecretError(f"has no value in {self.STORE}", code=UNUSABLE)


class ParameterStoreSecrets:
    """AWS SSM Parameter Store: ``GetParameter`` with decryption, of ``SecureString`` parameters only."""

    STORE = "AWS SSM Parameter Store"

    def __init__(self, client: Any) -> None:
        self._client = client

    def get(self, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            parameter = self._client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(self.STORE, "ssm:GetParameter", name, exc) from exc
        if parameter.get("Type") != "SecureString":
            raise SecretError(
                f"is a {parameter.get('Type')} parameter, readable as plain text by anyone allowed to read "
                "parameters: store it again with --type SecureString",
                code=UNUSABLE,
            )
        return str(parameter.get("Value", ""))


# ------------------------------------------------------------------------------------------------ Alibaba KMS

_KMS_CREDENTIAL_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "MissingSecurityToken",
)


def _kms_failure(endpoint: str, code: str, status: int, request_id: str | None) -> SecretError:
    """KMS's refusal as a SecretError: its code, status and request id. Never its message: a signature mismatch
    echoes the string to sign, which holds the STS token."""
    detail = f"{code}, HTTP {status}, request id {request_id}"
    if code.startswith(_KMS_CREDENTIAL_CODES):
        return SecretError(
            f"cannot be read: KMS at {endpoint} refused the function's credentials ({detail})", code=ACCESS_DENIED
        )
    if status == 404 or "NotFound" in code:
        return SecretError(f"does not exist in KMS at {endpoint} ({detail})", code=NOT_FOUND)
    if status == 403 or code.startswith("Forbidden"):
        return SecretError(
            f"cannot be read: KMS denied access ({detail}); grant the function's role kms:GetSecretValue on it "
            "(and kms:Decrypt on the key that encrypts it)",
            code=ACCESS_DENIED,
        )
    if status >= 500 or "Throttling" in code or code.startswith("ServiceUnavailable"):
        return SecretError(f"cannot be read: KMS at {endpoint} is unavailable ({detail})", code=UNAVAILABLE)
    return SecretError(f"cannot be read: KMS at {endpoint} refused ({detail})", code=UNUSABLE)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _new_nonce() -> str:
    return str(uuid.uuid4())


def new_kms_session() -> requests.Session:
    """One session per warm container (``adapters.http_session``: no adapter retries, each attempt signed anew)."""
    return signed_call_session()


class KmsSecrets:
    """Alibaba Cloud KMS secrets manager: ``GetSecretValue``, every attempt signed anew (Timestamp, nonce).

    Every parameter goes in the form body, none in the URL: an exception of requests, which names the URL, then
    carries neither the key id nor the STS token.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        session: requests.Session | None = None,
        now: Callable[[], datetime] = _utc_now,
        nonce: Callable[[], str] = _new_nonce,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = KMS_ATTEMPTS,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._credentials = credentials
        self._session = session
        self._now = now
        self._nonce = nonce
        self._sleep = sleep
        self._attempts = attempts

    def get(self, name: str) -> str:
        attempt = 1
        while True:
            try:
                return self._attempt(name)
            except SecretError as error:
                if not error.retryable or attempt >= self._attempts:
                    raise
            self._sleep(0.2 * attempt)
            attempt += 1

    def request_body(self, name: str) -> bytes:
        """The signed form body of one ``GetSecretValue`` attempt."""
        creds = self._credentials
        params = signature.common_params(
            action="GetSecretValue",
            version=KMS_API_VERSION,
            access_key_id=creds.access_key_id,
            now=self._now(),
            nonce=self._nonce(),
            security_token=creds.security_token,
        )
        params["SecretName"] = name
        params["Signature"] = signature.sign("POST", {}, params, creds.access_key_secret)
        return signature.encode_form(signature.encode_values(params)).encode("ascii")

    def _attempt(self, name: str) -> str:
        import requests

        if self._session is None:
            self._session = new_kms_session()
        try:
            response = self._session.post(
                self.endpoint + "/",
                data=self.request_body(name),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                timeout=KMS_TIMEOUT,
                allow_redirects=False,
            )
            content = response.content
        except requests.RequestException as exc:
            raise SecretError(
                f"cannot be read: KMS at {self.endpoint} did not answer ({type(exc).__name__})", code=UNAVAILABLE
            ) from None
        return self._value(response.status_code, content)

    def _value(self, status: int, content: bytes) -> str:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            code = UNAVAILABLE if status >= 500 else UNUSABLE
            raise SecretError(f"cannot be read: KMS answered HTTP {status}, not with JSON", code=code) from None
        if not isinstance(data, dict):
            raise SecretError(
                f"cannot be read: KMS answered HTTP {status} with JSON that is not an object", code=UNUSABLE
            )
        if status >= 400 or ("Code" in data and "SecretData" not in data):
            code = str(data.get("Code") or f"HTTP{status}")
            raise _kms_failure(self.endpoint, code, status, data.get("RequestId"))
        value = data.get("SecretData")
        if not isinstance(value, str):
            raise SecretError("has no SecretData in KMS's answer", code=UNUSABLE)
        if data.get("SecretDataType") == "binary":
            try:
                return base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise SecretError("is binary, not UTF-8 text", code=UNUSABLE) from None
        return value

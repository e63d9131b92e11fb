"""The answers the emulator refuses with: gateway errors (HTTP 4xx/5xx) and business errors (HTTP 200).

Gateway codes and statuses are the real gateway's (see ``shared/reference/cvc-api.md``). CVC's business
``ErrorCode`` values are not published, so the integers below are the emulator's own choice: a client must treat
any ``Success: false`` as an error, whatever its code. ``docs/emulator.md`` lists them.
"""

from __future__ import annotations

HOST_ID = "aliyuncvc.cn-hangzhou.aliyuncs.com"
RECOMMEND_URL = "https://error-center.aliyun.com/status/search?Keyword={code}&source=PopGw"
SIGNATURE_MISMATCH_PREFIX = "Specified signature is not matched with our calculation. server string to sign is:"

# Business errors: HTTP 200, {"Success": false, "ErrorCode": <one of these>, "Message": ...}.
ERROR_INVALID_USER = 10001  # a UserInfo entry is not an object, or lacks / mistypes a field; the batch is refused
ERROR_COUNT_MISMATCH = 10002  # Count differs from the number of entries in UserInfo
ERROR_BATCH_TOO_LARGE = 10003  # more entries than the per-call limit (--max-batch)
ERROR_CAPACITY_EXCEEDED = 10004  # the new users would take the account past its licensed number (--capacity)
ERROR_USER_NOT_FOUND = 10005  # GetUser of a user CVC does not hold

BUSINESS_ERROR_CODES: dict[str, int] = {
    "ERROR_INVALID_USER": ERROR_INVALID_USER,
    "ERROR_COUNT_MISMATCH": ERROR_COUNT_MISMATCH,
    "ERROR_BATCH_TOO_LARGE": ERROR_BATCH_TOO_LARGE,
    "ERROR_CAPACITY_EXCEEDED": ERROR_CAPACITY_EXCEEDED,
    "ERROR_USER_NOT_FOUND": ERROR_USER_NOT_FOUND,
}


class GatewayError(Exception):
    """A refusal by the API gateway: ``{"RequestId","HostId","Code","Message","Recommend"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class BusinessError(Exception):
    """CVC understood the call and declined it: HTTP 200 with ``Success: false``."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


def missing_parameter(name: str) -> GatewayError:
    return GatewayError(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


def invalid_parameter(name: str, why: str = "") -> GatewayError:
    detail = f" {why}" if why else ""
    return GatewayError(400, "InvalidParameter", f'The specified parameter "{name}" is not valid.{detail}')


def incomplete_signature(why: str) -> GatewayError:
    return GatewayError(
        400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards. {why}"
    )


def api_not_found() -> GatewayError:
    return GatewayError(404, "InvalidApi.NotFound", "Specified api is not found, please check your url and method.")


def access_key_not_found() -> GatewayError:
    return GatewayError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")


def access_key_inactive() -> GatewayError:
    return GatewayError(400, "InvalidAccessKeyId.Inactive", "Specified access key is disabled.")


def security_token_missing() -> GatewayError:
    return GatewayError(400, "MissingSecurityToken", "SecurityToken is mandatory for this action.")


def security_token_mismatch() -> GatewayError:
    return GatewayError(
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
        "The security token you provided does not match with the access key.",
    )


def timestamp_format() -> GatewayError:
    return GatewayError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")


def timestamp_expired() -> GatewayError:
    return GatewayError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")


def nonce_used() -> GatewayError:
    return GatewayError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")


def forbidden_ram() -> GatewayError:
    return GatewayError(
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    )


def unsupported_method() -> GatewayError:
    return GatewayError(405, "UnsupportedHTTPMethod", "This http method is not supported.")


def throttling(retry_after_ms: int | None) -> GatewayError:
    headers = (("x-acs-retry-after", str(retry_after_ms)),) if retry_after_ms is not None else ()
    return GatewayError(400, "Throttling", "Request was denied due to request throttling.", headers=headers)


def user_flow_control(retry_after_ms: int | None) -> GatewayError:
    """The account asked more than its limit allows (the emulator's ``--max-concurrency`` / ``--max-qps``)."""
    headers = (("x-acs-retry-after", str(retry_after_ms)),) if retry_after_ms is not None else ()
    return GatewayError(400, "Throttling.User", "Request was denied due to user flow control.", headers=headers)


def internal_error() -> GatewayError:
    return GatewayError(
        500, "InternalError", "The request processing has failed due to some unknown error, exception or failure."
    )


def service_unavailable() -> GatewayError:
    return GatewayError(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")

from __future__ import annotations

import io
import logging

import orjson

from cvcsync.logs import JsonFormatter, mask_email, mask_mobile, request_id_var, scrub


def test_masks() -> None:
    assert mask_mobile("13812341234") == "138****1234"
    assert mask_mobile("+86-138-1234-1234") == "861****1234"
    assert mask_mobile("123") == "***"
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_email("nonsense") == "***"


def test_scrub_masks_personal_data_in_free_text_and_drops_secret_keys() -> None:
    value = scrub({"msg": "call 13812341234 or bob@example.com", "AccessKeySecret": "s3cr3t", "nested": [{"token": 1}]})
    assert value == {
        "msg": "call 138****1234 or b***@example.com",
        "AccessKeySecret": "[redacted]",
        "nested": [{"token": "[redacted]"}],
    }


def test_json_formatter_carries_extra_fields_and_request_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = request_id_var.set("req-1")
    try:
        logger.info("cvc call ok", extra={"action": "CreateUser", "signature": "abc", "mobile": "13812341234"})
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert line["message"] == "cvc call ok"
    assert line["requestId"] == "req-1"
    assert line["action"] == "CreateUser"
    assert line["signature"] == "[redacted]"
    assert line["mobile"] == "138****1234"
    assert line["time"].endswith("Z")


def test_secrets_inside_free_text_are_redacted() -> None:
    line = (
        "POST /?Action=GetUser&SecurityToken=tok123&Signature=abc%3D&UserId=u1 "
        "{'X-Amz-Security-Token': 'sess', 'Authorization': 'AWS4 sig'} access_key_secret=s3cr3t"
    )
    scrubbed = scrub(line)
    for secret in ("tok123", "abc%3D", "sess", "AWS4", "s3cr3t"):
        assert secret not in scrubbed
    assert "UserId=u1" in scrubbed and "SecurityToken=[redacted]" in scrubbed


def test_the_text_line_for_a_terminal_is_scrubbed_as_the_json_line_is() -> None:
    from cvcsync.logs import TextFormatter

    record = logging.makeLogRecord(
        {"msg": "refused for %s", "args": ("13800138001",), "levelname": "ERROR", "levelno": logging.ERROR}
    )
    record.__dict__.update({"guard": "deletionLimit", "accessKeySecret": "s3cr3t", "email": "alice@example.com"})
    line = TextFormatter().format(record)
    assert line == (
        "cvcsync: error: refused for 138****8001 (guard: deletionLimit, accessKeySecret: [redacted], "
        "email: a***@example.com)"
    )

"""JSON log lines that are safe to ship: no secrets, no signatures, masked personal data.

``mask_mobile`` / ``mask_email`` are used where a record is described in a log or report; the formatter is a
safety net on top (keys that smell of secrets are dropped, digit runs that look like mobiles and e-mails are
masked) so that a careless ``extra=`` cannot leak what a careful call site would not.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("cvcsync_request_id", default=None)

_SECRET_KEY = re.compile(r"secret|signature|token|password|authorization|credential", re.IGNORECASE)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_MOBILE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1\d{2})\d{4}(\d{4})(?!\d)")
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def mask_email(value: str | None) -> str | None:
    """``alice@example.com`` -> ``a***@example.com``."""
    if not value:
        return value
    local, sep, domain = value.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_mobile(value: str | None) -> str | None:
    """Keep the first three and last four digits, as Chinese apps do: ``138****1234``."""
    if not value:
        return value
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return "***"
    return f"{digits[:3]}****{digits[-4:]}"


# A secret inside free text: a query parameter (``SecurityToken=...&``), a header in a repr (``'X-Amz-Security-Token':
# '...'``), a JSON field. Its value is redacted whatever logged it (urllib3 and botocore log URLs and headers at DEBUG).
_SECRET_IN_TEXT = re.compile(
    r"(?i)((?:SecurityToken|Signature|AccessKeySecret|access_key_secret|security_token|x-amz-security-token|"
    r"authorization|x-cvcsync-signature|aws_secret_access_key|aws_session_token)[\"']?\s*[:=]\s*[\"']?)"
    r"([^&\s\"',}]+)"
)
THIRD_PARTY_LOGGERS = ("urllib3", "botocore", "boto3", "s3transfer", "waitress")


def scrub_text(text: str) -> str:
    text = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(3)}", text)


def scrub(value: Any) -> Any:
    """Recursively drop secret-named keys and mask personal data in strings."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: ("[redacted]" if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the record's ``extra`` fields."""

    converter = time.gmtime  # type: ignore[assignment]  # stdlib types it loosely; UTC is the point

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            line["requestId"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(scrub(line), default=str).decode()


class TextFormatter(JsonFormatter):
    """One line for a person at a terminal (the CLI): ``cvcsync: error: <message> (key: value, ...)``, scrubbed as
    the JSON line is."""

    def format(self, record: logging.LogRecord) -> str:
        line = orjson.loads(super().format(record))
        level, message = str(line.pop("level")).lower(), line.pop("message")
        for key in ("time", "logger", "requestId"):
            line.pop(key, None)
        exception = line.pop("exception", None)
        fields = ", ".join(f"{key}: {value}" for key, value in line.items())
        text = f"cvcsync: {level}: {message}" + (f" ({fields})" if fields else "")
        return text + (f"\n{exception}" if exception else "")


def configure_logging(level: str | int = "INFO", stream: Any = None, *, text: bool = False) -> None:
    """Install the JSON formatter (``text``: ``TextFormatter``, for a person) on the root logger; idempotent (FC and
    Lambda keep warm processes), but the level is set every time, so each invocation runs at the level its
    configuration asks for."""
    root = logging.getLogger()
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in THIRD_PARTY_LOGGERS:  # their DEBUG lines carry URLs and headers; ours say what matters
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    kind = TextFormatter if text else JsonFormatter
    if any(type(handler.formatter) is kind for handler in root.handlers):
        return
    if root.handlers:
        # Lambda and FC pre-install a handler that carries their own request id; reuse it, re-format it.
        for existing in root.handlers:
            existing.setFormatter(kind())
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(kind())
    root.addHandler(handler)

"""Approval markers: a person's word that one refused upload may go through the safety gates.

An approval approves *one upload*, never a key: the marker at ``<output prefix>approvals/<upload key>`` is JSON
naming the object's ETag it approves and when it expires, for example
``{"etag": "9b2cf535f27731c974343645a3985328", "expiresAt": "2026-12-07T10:00:00Z", "by": "li.lei",
"reason": "re-org"}``. A later file uploaded to the same key has another ETag and meets the gates again (issue 11,
defect 11: a standing marker let a file holding 10% of the users delete the rest). The run that uses an approval
names it in its report and consumes it (removes the marker) after its state commit: markers after what they mark,
so a run killed mid-way and retried on the same upload still finds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync import clock

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore

log = logging.getLogger(__name__)

MAX_VALIDITY = timedelta(days=7)  # an approval is for a change someone is looking at now, not for next quarter


@dataclass(frozen=True)
class ApprovalCheck:
    """What the marker for an upload says: ``approved`` only when it names this very object and has not expired."""

    marker_key: str
    approved: bool
    detail: str
    marker: dict[str, Any] | None = None

    def to_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"marker": self.marker_key, "approved": self.approved, "detail": self.detail}
        if self.marker:
            out.update({k: self.marker[k] for k in ("etag", "expiresAt", "by", "reason") if k in self.marker})
        return out


def _bare(etag: Any) -> str:
    return str(etag or "").strip().strip('"').lower()


def marker_body(upload_etag: str, *, expires_at: datetime, by: str = "", reason: str = "") -> bytes:
    """The marker that approves the upload with ``upload_etag`` until ``expires_at`` (for tools and tests)."""
    body: dict[str, Any] = {"etag": _bare(upload_etag), "expiresAt": clock.report_time(expires_at)}
    if by:
        body["by"] = by
    if reason:
        body["reason"] = reason
    return orjson.dumps(body)


def check(
    store: ObjectStore, bucket: str, marker_key: str, etag: str | None, *, now: datetime | None = None
) -> ApprovalCheck | None:
    """The approval for ``upload``, or None when there is no marker. Never raises on a bad marker: says why."""
    raw = store.get_bytes(bucket, marker_key)
    if raw is None:
        return None
    try:
        marker = orjson.loads(raw)
    except orjson.JSONDecodeError:
        marker = None
    if not isinstance(marker, dict):
        return ApprovalCheck(
            marker_key,
            False,
            'the marker is not JSON naming the upload it approves: write {"etag": "<the upload\'s ETag>", '
            '"expiresAt": "<ISO time>"}',
        )
    moment = now or clock.now()
    expires = clock.parse(marker.get("expiresAt"))
    if expires is None:
        return ApprovalCheck(marker_key, False, "the marker has no valid expiresAt (an ISO-8601 time)", marker)
    if expires <= moment:
        return ApprovalCheck(marker_key, False, f"the approval expired at {marker.get('expiresAt')}", marker)
    if expires - moment > MAX_VALIDITY:
        return ApprovalCheck(
            marker_key, False, "the approval is valid for more than 7 days: give a nearer expiresAt", marker
        )
    if _bare(etag) and _bare(marker.get("etag")) == _bare(etag):
        return ApprovalCheck(marker_key, True, f"approves ETag {_bare(etag)}", marker)
    return ApprovalCheck(
        marker_key,
        False,
        f"the marker approves another upload (ETag {_bare(marker.get('etag')) or '-'}), not this one "
        f"(ETag {_bare(etag) or '-'})",
        marker,
    )


def consume(store: ObjectStore, bucket: str, marker_key: str) -> None:
    """Remove a used approval, so that it approves nothing else."""
    store.delete(bucket, marker_key)
    log.info("approval consumed", extra={"marker": marker_key})

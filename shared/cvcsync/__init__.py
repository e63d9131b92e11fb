"""cvc-sync: keep Alibaba Cloud Video Conferencing (CVC) users in step with an HR or identity system."""

from __future__ import annotations

__version__ = "0.1.0"

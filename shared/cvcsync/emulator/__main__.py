"""``python -m cvcsync.emulator``: run the CVC emulator (see ``docs/emulator.md``)."""

from __future__ import annotations

from .server import main

raise SystemExit(main())

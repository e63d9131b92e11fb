"""``python -m cvcsync_dev.emulator``: run the CVC emulator (see ``docs/emulator.md``)."""

from __future__ import annotations

from cvcsync_dev.emulator.server import main

raise SystemExit(main())

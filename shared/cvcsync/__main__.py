"""``python -m cvcsync`` is the ``cvcsync`` command."""

from __future__ import annotations

import sys

from cvcsync.cli import main

sys.exit(main())

"""A handler's imports on a cold start, without the cyclic garbage collector walking them.

Importing a trigger allocates the objects of some sixty modules (functions, classes, the methods dataclasses
generate) and frees almost none of them; the collections those allocations set off walk them all for nothing. Each
``functions/<name>/index.py`` imports its trigger inside ``cold_imports()``: the collector waits, and what the
imports made is then frozen (``gc.freeze``: module-level objects live as long as the process anyway), so neither
the imports nor the first events' collections walk it: some 10 ms of CPU on a queue or HTTP cold start, 20 to 40 ms
where the first event builds a boto3 client (``bench/bench_cold_start.py``). Nothing else changes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cold_imports() -> Iterator[None]:
    """Pause the collector for the block, then freeze what it made; a collector the runtime disabled stays so."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

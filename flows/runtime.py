"""Process settings for running the engine (the shell's concern, not the core's)."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

# Customer, model and recommender state are millions of long-lived objects. With CPython's
# default thresholds (700, 10, 10) the cyclic collector runs thousands of times per million events
# and its full passes walk all of that state: 15% of a replay's time, and stalls of hundreds of ms
# live. Young collections stay frequent enough to bound memory; old ones become rare.
THRESHOLDS = (50_000, 50, 1000)


@contextmanager
def engine_gc() -> Iterator[None]:
    """Freeze what exists (imports, settings, warm models) out of the collector's way and collect
    rarely while the flow runs; restore the previous thresholds afterwards."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()

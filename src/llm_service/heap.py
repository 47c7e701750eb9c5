"""Long-lived objects kept out of the garbage collector's full collections.

A full collection walks every object the collector tracks. After start-up a serving process has
some 200,000 (modules, classes, the app), and under load a full collection took 110-190 ms, every
request on the process waiting: at 16 concurrent streams the time to first delta's p99 went from
about 60 ms to 190-230 ms in the runs where one happened (`bench/run --quick --scenarios
stream-ttfd`, a `gc.callbacks` probe showing each pause at the same moment). `gc.freeze()` moves
every object alive at that moment into a permanent generation that collections skip; garbage
among them is never collected (reference counting still frees what is not in a cycle), so it is
done once when serving starts, after a collection, and once after each vendor SDK imported on
first use (`providers.base.imported`), without a collection (requests are in flight then).
"""

from __future__ import annotations

import gc


def freeze_long_lived(*, collect_first: bool) -> None:
    """Every object alive now out of the collector's full collections."""
    if collect_first:
        gc.collect()
    gc.freeze()

"""The garbage collector's settings for a serving process.

A started service holds about 72,000 objects the collector tracks, and a full
collection walks them all (39 ms). Nearly all of them live as long as the process
(modules, the app, its routes and models), and a request's own objects are freed by
reference counting long before a collection could find them. So once a service has
started, what start-up built is moved out of the collector's sight (`gc.freeze`),
and the youngest generation is collected less often than CPython's default of every
700 new container objects.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

# New container objects between collections of the youngest generation (CPython: 700).
YOUNG_OBJECTS_PER_COLLECTION = 20_000


@asynccontextmanager
async def settled_heap(app: Litestar) -> AsyncIterator[None]:
    """The last step of start-up: everything built so far is kept out of collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, *gc.get_threshold()[1:])
    yield

"""A started service keeps what start-up built out of the garbage collector's walks,
and collects its youngest generation less often (services.common.runtime.heap; the saving is
measured by bench/cpu_versus.py)."""

from __future__ import annotations

import gc
from pathlib import Path

from litestar.testing import TestClient

from services.common.runtime.heap import YOUNG_OBJECTS_PER_COLLECTION
from tests.common.apps import make_app


def test_a_started_service_keeps_its_start_up_objects_out_of_collections(
    tmp_path: Path,
) -> None:
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        app = make_app(tmp_path)
        assert gc.get_freeze_count() == 0
        with TestClient(app):
            assert gc.get_freeze_count() > 10_000  # the modules, the app, its routes
            assert gc.get_threshold()[0] == YOUNG_OBJECTS_PER_COLLECTION
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)

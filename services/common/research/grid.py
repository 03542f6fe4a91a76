"""Coarsened GPS: fixes moved to a grid of a study's chosen size, so that a viewer of
a study with a grid never receives an exact place (services.common.research.privacy applies it).
Pure functions; owned by no service."""

from __future__ import annotations

import math

# Grid sizes a study may choose, in metres.
SMALLEST_GRID_M, LARGEST_GRID_M = 10, 100_000
METRES_PER_DEGREE = 111_320.0


def grid_steps(grid_m: int, latitude: float) -> tuple[float, float]:
    """The grid's cell in degrees (latitude, longitude) at a latitude: square in metres,
    so a longitude step widens towards the poles (capped where cos(latitude) vanishes)."""
    lat_step = grid_m / METRES_PER_DEGREE
    return lat_step, min(360.0, lat_step / max(math.cos(math.radians(latitude)), 1e-6))


def coarsened(latitude: float, longitude: float, grid_m: int) -> tuple[float, float]:
    """A fix moved to the nearest point of a `grid_m` metre grid: latitude to a
    multiple of the latitude step, longitude to a multiple of the longitude step at
    the rounded latitude. Everything inside a cell reads as the same point."""
    lat_step, _ = grid_steps(grid_m, latitude)
    rounded_lat = max(-90.0, min(90.0, round(latitude / lat_step) * lat_step))
    _, lon_step = grid_steps(grid_m, rounded_lat)
    steps = round(longitude / lon_step)
    # Near the antimeridian the nearest grid point may lie past ±180: take the one inside.
    if steps * lon_step > 180.0:
        steps -= 1
    elif steps * lon_step < -180.0:
        steps += 1
    rounded_lon = steps * lon_step
    return round(rounded_lat, 7), round(rounded_lon, 7)

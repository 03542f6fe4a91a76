"""Realistic, deterministic telemetry: participants who live, study and eat at a few
places around a campus, and report how they feel a few times a day.

The same seed gives the same records, each with a client id, so pushing them again
stores nothing twice.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# National Taiwan University, Taipei.
DEFAULT_CENTRE = (25.0173, 121.5397)
EMOTIONS = ("happy", "calm", "excited", "neutral", "tired", "anxious", "sad", "angry")
CONTEXTS = ("school", "work", "leisure", "social", "personal")
PLACES = ("home", "lab", "cafeteria", "library", "gym")
FIX_EVERY_MINUTES = 10
# The namespace of the generated records' client ids (uuid5 of the record's place).
CLIENT_IDS = uuid.UUID("5d0b1c1e-6f0e-4c8a-9a57-0e1f6a2b7c3d")
METRES_PER_DEGREE = 111_320


@dataclass(frozen=True)
class Participant:
    user_id: str
    places: dict[str, tuple[float, float]]
    # How this person tends to feel: weights over EMOTIONS, and a typical intensity.
    tendencies: tuple[float, ...]
    intensity: float
    reports_per_day: int


def _offset(
    centre: tuple[float, float], rng: random.Random, radius_m: float
) -> tuple[float, float]:
    distance = radius_m * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    lat = centre[0] + distance * math.cos(angle) / METRES_PER_DEGREE
    lon = centre[1] + distance * math.sin(angle) / (
        METRES_PER_DEGREE * math.cos(math.radians(centre[0]))
    )
    return lat, lon


def participants(count: int, seed: int, centre: tuple[float, float]) -> list[Participant]:
    people = []
    for n in range(count):
        rng = random.Random(f"{seed}:participant:{n}")
        places = {"home": _offset(centre, rng, 2500)}
        places.update({place: _offset(centre, rng, 700) for place in PLACES[1:]})
        weights = [rng.random() ** 2 for _ in EMOTIONS]
        weights[rng.randrange(len(EMOTIONS))] += 1.5  # everyone has a dominant mood
        people.append(
            Participant(
                user_id=f"S{seed:03d}-P{n + 1:02d}"[:128],
                places=places,
                tendencies=tuple(weights),
                intensity=rng.uniform(0.3, 0.8),
                reports_per_day=rng.randint(3, 5),
            )
        )
    return people


def _where(person: Participant, rng: random.Random, minute: int) -> str:
    """A weekday routine: home at night, lab by day, lunch, an evening out."""
    hour = minute / 60
    if hour < 8.5 or hour >= 22:
        return "home"
    if 12 <= hour < 13:
        return "cafeteria"
    if 18 <= hour < 19.5:
        return rng.choice(("gym", "library", "cafeteria"))
    return "lab" if hour < 18 else "home"


def gps_fixes(person: Participant, day: date, seed: int) -> list[dict]:
    """A fix every 10 minutes from 7:00 to 23:00, dwelling at places and walking
    between them, with GPS noise."""
    rng = random.Random(f"{seed}:gps:{person.user_id}:{day.isoformat()}")
    fixes = []
    previous = person.places["home"]
    for step, minute in enumerate(range(7 * 60, 23 * 60, FIX_EVERY_MINUTES)):
        place = _where(person, rng, minute)
        target = person.places[place]
        # Half way there on the first fix after a change of place: walking.
        lat = (previous[0] + target[0]) / 2 if target != previous else target[0]
        lon = (previous[1] + target[1]) / 2 if target != previous else target[1]
        accuracy = rng.uniform(4, 25)
        jitter = _offset((lat, lon), rng, accuracy)
        previous = target
        instant = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minute)
        fixes.append(
            {
                "user_id": person.user_id,
                "latitude": round(jitter[0], 6),
                "longitude": round(jitter[1], 6),
                "accuracy": round(accuracy, 1),
                "altitude": round(rng.uniform(8, 40), 1),
                "location_name": place,
                "timestamp": instant.isoformat().replace("+00:00", "Z"),
                "client_id": record_id(seed, person, day, f"gps-{step}"),
            }
        )
    return fixes


def record_id(seed: int, person: Participant, day: date, which: str) -> str:
    """A record's client id as a phone makes one: stable (a resent record keeps it, so
    it is stored once) and opaque (a UUID; never built from the participant's id, which
    a pseudonymous study hides from its viewers)."""
    return str(uuid.uuid5(CLIENT_IDS, f"{seed}:{person.user_id}:{day.isoformat()}:{which}"))


def sentiments(person: Participant, day: date, seed: int) -> list[dict]:
    """A few reports a day around fixed moments, coloured by the person's tendencies
    and the time of day (tired late, calmer in the morning)."""
    rng = random.Random(f"{seed}:sentiment:{person.user_id}:{day.isoformat()}")
    moments = sorted(rng.sample((9, 11, 13, 16, 19, 21, 22), person.reports_per_day))
    reports = []
    for n, hour in enumerate(moments):
        weights = list(person.tendencies)
        if hour >= 21:
            weights[EMOTIONS.index("tired")] += 1.0
        if hour <= 11:
            weights[EMOTIONS.index("calm")] += 0.6
        emotion = rng.choices(EMOTIONS, weights)[0]
        intensity = min(1.0, max(0.0, rng.gauss(person.intensity, 0.15)))
        instant = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(
            minutes=rng.randint(-40, 40)
        )
        reports.append(
            {
                "user_id": person.user_id,
                "emotion": emotion,
                "intensity": round(intensity, 3),
                "context": rng.choice(CONTEXTS),
                "timestamp": instant.isoformat().replace("+00:00", "Z"),
                "client_id": record_id(seed, person, day, f"mood-{n}"),
            }
        )
    return reports


def dataset(
    count: int, days: int, seed: int, start: date, centre: tuple[float, float] = DEFAULT_CENTRE
) -> tuple[list[dict], list[dict]]:
    """(sentiments, GPS fixes) of `count` participants over `days` days from `start`."""
    moods: list[dict] = []
    fixes: list[dict] = []
    for person in participants(count, seed, centre):
        for offset in range(days):
            day = start + timedelta(days=offset)
            moods.extend(sentiments(person, day, seed))
            fixes.extend(gps_fixes(person, day, seed))
    return moods, fixes

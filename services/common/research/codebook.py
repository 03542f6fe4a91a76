"""The codebook: what every column of every export means, with its type, unit, range,
whether it may be empty and how its times are to be read.

Exports are built from these definitions (their columns, in this order; Parquet
types), and the ranges come from the value types the services validate records with
(services.common.research.values), so the codebook, the exports and the validation cannot
drift apart. Each record kind has a schema version: a change to a kind's columns
changes its version (minor for an added column, major for a removed or changed one).

Owned by the gateway's exports, which publish it (services.gateway.exports.codebook_documents);
kept here because privacy reads each field's treatment and ingest's daily features their
declarations.
"""

from __future__ import annotations

from datetime import date, datetime

from services.common.research.columns import RecordKind, Treatment, Variable
from services.common.research.values import (
    Accuracy,
    Emotion,
    Heading,
    Intensity,
    Label,
    Latitude,
    Longitude,
    Metres,
    Note,
    PlaceName,
    Speed,
)
from services.common.web.schemas import ParticipantId

UTC_INSTANT = "UTC, ISO 8601 with Z; when the phone recorded it"
RECEIVED = "UTC, ISO 8601 with Z; when the server stored it"
LOCAL_DAY = "the calendar day in the study's time zone (the manifest lists each study's zone)"

# The published methods the daily features follow.
SOURCES = {
    "saeb2015": "Saeb S, Zhang M, Karr CJ, et al. Mobile phone sensor correlates of "
    "depressive symptom severity in daily-life behavior: an exploratory study. J Med "
    "Internet Res 2015;17(7):e175. doi:10.2196/jmir.4273",
    "gonzalez2008": "González MC, Hidalgo CA, Barabási A-L. Understanding individual human "
    "mobility patterns. Nature 2008;453:779-782. doi:10.1038/nature06958",
    "li2008": "Li Q, Zheng Y, Xie X, Chen Y, Liu W, Ma W-Y. Mining user similarity based on "
    "location history. Proc. ACM SIGSPATIAL GIS 2008:34. doi:10.1145/1463434.1463477",
}


ID = Variable("_id", str, "The record's id: 24 hexadecimal characters, unique in its kind.")
STUDY = Variable(
    "study_id",
    str,
    "The study the record belongs to (`default`: the global tokens').",
    category=True,
)
PARTICIPANT = Variable(
    "user_id",
    ParticipantId,
    "The participant's id within the study; in a pseudonymous study, to viewers, the "
    "study's pseudonym of it (anon-...).",
    category=True,
)
RECORDED = Variable("timestamp", datetime, "When it was recorded.", time=UTC_INSTANT)
LOCAL_DATE = Variable("local_date", date, "The day it was recorded on.", time=LOCAL_DAY)
CLIENT_ID = Variable(
    "client_id",
    str,
    "The phone's own id of the record; a resent record with the same one is stored once.",
    optional=True,
)
RECEIVED_AT = Variable("received_at", datetime, "When the server stored it.", time=RECEIVED)

SENTIMENTS = RecordKind(
    "sentiments",
    "1.0",
    "A self-reported emotion and its intensity.",
    (
        ID,
        STUDY,
        PARTICIPANT,
        RECORDED,
        LOCAL_DATE,
        Variable("emotion", Emotion, "The emotion reported, lower-case.", category=True),
        Variable("intensity", Intensity, "How strongly it was felt.", unit="1"),
        Variable("note", Note, "What the participant wrote with it.", optional=True),
        Variable("context", Label, "Where or with whom, as the app labels it.", optional=True),
        CLIENT_ID,
        RECEIVED_AT,
    ),
    {
        "_id": Treatment.KEPT,
        "study_id": Treatment.KEPT,
        "user_id": Treatment.PSEUDONYM,
        "timestamp": Treatment.KEPT,
        "local_date": Treatment.KEPT,
        "emotion": Treatment.KEPT,
        "intensity": Treatment.KEPT,
        "note": Treatment.DISGUISED,
        "context": Treatment.DISGUISED,
        "client_id": Treatment.DIGESTED,
        "received_at": Treatment.KEPT,
    },
)
GPS = RecordKind(
    "gps",
    "1.0",
    "A GPS fix (WGS 84). To viewers of a study with a GPS grid, rounded to the grid and "
    "without accuracy and altitude.",
    (
        ID,
        STUDY,
        PARTICIPANT,
        RECORDED,
        LOCAL_DATE,
        Variable("latitude", Latitude, "Latitude, WGS 84.", unit="degree"),
        Variable("longitude", Longitude, "Longitude, WGS 84.", unit="degree"),
        Variable("altitude", Metres, "Height above the WGS 84 ellipsoid.", unit="m", optional=True),
        Variable("accuracy", Accuracy, "Horizontal accuracy (radius).", unit="m", optional=True),
        Variable("speed", Speed, "Ground speed; empty when unknown.", unit="m/s", optional=True),
        Variable(
            "heading", Heading, "Direction of travel from true north.", unit="degree", optional=True
        ),
        Variable("location_name", PlaceName, "A name the phone gave the place.", optional=True),
        CLIENT_ID,
        RECEIVED_AT,
    ),
    {
        "_id": Treatment.KEPT,
        "study_id": Treatment.KEPT,
        "user_id": Treatment.PSEUDONYM,
        "timestamp": Treatment.KEPT,
        "local_date": Treatment.KEPT,
        "latitude": Treatment.COARSENED,
        "longitude": Treatment.COARSENED,
        "altitude": Treatment.DROPPED,
        "accuracy": Treatment.DROPPED,
        "speed": Treatment.KEPT,
        "heading": Treatment.KEPT,
        "location_name": Treatment.DISGUISED,
        "client_id": Treatment.DIGESTED,
        "received_at": Treatment.KEPT,
    },
)
VLOGS = RecordKind(
    "vlogs",
    "1.0",
    "A video diary: its details; the video itself is in the ZIP under `zip_path`.",
    (
        ID,
        STUDY,
        PARTICIPANT,
        RECORDED,
        LOCAL_DATE,
        Variable("title", str, "The title the participant gave it."),
        Variable("description", str, "The participant's description."),
        Variable("duration", float, "Length of the video.", unit="s", optional=True),
        Variable("width", int, "Frame width.", unit="px", optional=True),
        Variable("height", int, "Frame height.", unit="px", optional=True),
        Variable("fps", float, "Frames per second.", unit="1/s", optional=True),
        Variable("codec", str, "Video codec (h264, hevc, vp9, ...).", optional=True, category=True),
        Variable(
            "container", str, "File format (mp4, mov, webm, ...).", optional=True, category=True
        ),
        Variable("file_size", int, "Size of the original file.", unit="byte", optional=True),
        Variable("sha256", str, "SHA-256 of the original file, hexadecimal.", optional=True),
        Variable("crc32", int, "CRC-32 of the original file.", optional=True),
        Variable("original_name", str, "The file name it was uploaded with.", optional=True),
        Variable("content_type", str, "Media type of the original file.", optional=True),
        Variable("has_file", bool, "Whether the server stores the video (else it is a link)."),
        Variable("state", str, "ready, or uploading for an unfinished upload.", category=True),
        Variable(
            "video_url", str, "Where the video is: a path on the server, or a link.", optional=True
        ),
        Variable("download_url", str, "The server path that downloads it.", optional=True),
        Variable("play_url", str, "The server path a player streams.", optional=True),
        Variable("thumbnail_url", str, "The server path of a JPEG frame.", optional=True),
        Variable("browser_playable", bool, "Whether browsers play it (or its H.264 preview)."),
        Variable(
            "preview_state",
            str,
            "not_needed, pending, ready or failed: the H.264 copy made for browsers.",
            category=True,
        ),
        Variable("uploaded_at", datetime, "When the upload completed.", time=RECEIVED),
        Variable(
            "zip_path",
            str,
            "Where the video is inside the ZIP.",
            optional=True,
            only_in=("zip",),
        ),
    ),
    {
        "_id": Treatment.KEPT,
        "study_id": Treatment.KEPT,
        "user_id": Treatment.PSEUDONYM,
        "timestamp": Treatment.KEPT,
        "local_date": Treatment.KEPT,
        "duration": Treatment.KEPT,
        "width": Treatment.KEPT,
        "height": Treatment.KEPT,
        "fps": Treatment.KEPT,
        "codec": Treatment.KEPT,
        "container": Treatment.KEPT,
        "file_size": Treatment.KEPT,
        "sha256": Treatment.KEPT,
        "crc32": Treatment.KEPT,
        "content_type": Treatment.KEPT,
        "has_file": Treatment.KEPT,
        "state": Treatment.KEPT,
        "download_url": Treatment.KEPT,
        "play_url": Treatment.KEPT,
        "thumbnail_url": Treatment.KEPT,
        "browser_playable": Treatment.KEPT,
        "preview_state": Treatment.KEPT,
        "uploaded_at": Treatment.KEPT,
        "zip_path": Treatment.KEPT,
        "title": Treatment.DISGUISED,
        "description": Treatment.DISGUISED,
        "original_name": Treatment.DISGUISED,
        "video_url": Treatment.DISGUISED,
    },
)
DAILY = RecordKind(
    "daily",
    "1.0",
    "One row per participant and local day with any record: what they reported and how "
    "they moved. Distances and places are computed from the exact fixes, also for "
    "viewers of a study whose fixes they see rounded.",
    (
        STUDY,
        PARTICIPANT,
        Variable("local_date", date, "The day.", time=LOCAL_DAY),
        Variable("sentiments", int, "Sentiments reported that day.", unit="1"),
        Variable(
            "mean_intensity",
            Intensity,
            "Mean intensity of that day's sentiments.",
            unit="1",
            optional=True,
        ),
        Variable(
            "emotion_{emotion}_count",
            int,
            "Sentiments with this emotion that day (one column per emotion in the export).",
            unit="1",
            pattern="emotion",
        ),
        Variable(
            "emotion_{emotion}_mean_intensity",
            Intensity,
            "Mean intensity of that emotion that day; empty without one.",
            unit="1",
            optional=True,
            pattern="emotion",
        ),
        Variable("gps_fixes", int, "GPS fixes that day.", unit="1"),
        Variable(
            "gps_coverage_hours",
            int,
            "Hours of the local day (0-24) with at least one fix.",
            unit="h",
        ),
        Variable(
            "distance_km",
            float,
            "Distance travelled: the great-circle (haversine) distances between "
            "consecutive fixes of the day, summed.",
            unit="km",
            source="saeb2015",
        ),
        Variable(
            "radius_of_gyration_m",
            float,
            "Radius of gyration of the day's fixes: the root mean square of their "
            "distances from their centre of mass.",
            unit="m",
            optional=True,
            source="gonzalez2008",
        ),
        Variable(
            "distinct_places",
            int,
            "Places visited that day. A stay is a run of consecutive fixes within 200 m "
            "of its first fix lasting at least 10 minutes (from its first to its last "
            "fix); stays within 200 m of a place's first stay (over the export's whole "
            "time) are one place.",
            unit="1",
            source="li2008",
        ),
        Variable(
            "time_at_home_hours",
            float,
            "Time that day in stays at home: the place with the most stay time between "
            "00:00 and 06:00 local time over the export's whole time (else the place "
            "with the most stay time).",
            unit="h",
            source="saeb2015",
        ),
        Variable("vlogs", int, "Vlogs recorded that day.", unit="1"),
        Variable("vlog_seconds", float, "Their total length.", unit="s"),
    ),
    {
        "study_id": Treatment.KEPT,
        "user_id": Treatment.PSEUDONYM,
        "local_date": Treatment.KEPT,
        "sentiments": Treatment.KEPT,
        "mean_intensity": Treatment.KEPT,
        "emotion_{emotion}_count": Treatment.KEPT,
        "emotion_{emotion}_mean_intensity": Treatment.KEPT,
        "gps_fixes": Treatment.KEPT,
        "gps_coverage_hours": Treatment.KEPT,
        "distance_km": Treatment.KEPT,
        "radius_of_gyration_m": Treatment.KEPT,
        "distinct_places": Treatment.KEPT,
        "time_at_home_hours": Treatment.KEPT,
        "vlogs": Treatment.KEPT,
        "vlog_seconds": Treatment.KEPT,
    },
)
KINDS = {kind.name: kind for kind in (SENTIMENTS, GPS, VLOGS, DAILY)}

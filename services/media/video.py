"""What the media service knows about video files: their type by signature, their
metadata and a thumbnail (OpenCV), and an H.264 preview rendition (PyAV).

Everything here is CPU-bound and synchronous; callers run it off the event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2

# Bytes needed to recognise every supported container.
SIGNATURE_BYTES = 64
THUMBNAIL_WIDTH = 320
# Containers by their first bytes: ISO base media (MP4, MOV, M4V, 3GP), Matroska
# (MKV, WebM) and RIFF AVI. Name, content type, file extension.
MP4 = ("mp4", "video/mp4", ".mp4")
MOV = ("mov", "video/quicktime", ".mov")
WEBM = ("webm", "video/webm", ".webm")
MKV = ("mkv", "video/x-matroska", ".mkv")
AVI = ("avi", "video/x-msvideo", ".avi")
ISO_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# What browsers play: H.264 or AV1 in MP4; VP8, VP9 or AV1 in WebM.
BROWSER_PLAYABLE = {
    ("mp4", "h264"),
    ("mp4", "av1"),
    ("webm", "vp8"),
    ("webm", "vp9"),
    ("webm", "av1"),
}
FOURCC_CODECS = {
    "avc1": "h264",
    "avc3": "h264",
    "h264": "h264",
    "x264": "h264",
    "mp4v": "mpeg4",
    "fmp4": "mpeg4",
    "xvid": "mpeg4",
    "divx": "mpeg4",
    "dx50": "mpeg4",
    "hvc1": "hevc",
    "hev1": "hevc",
    "hevc": "hevc",
    "h265": "hevc",
    "vp80": "vp8",
    "vp08": "vp8",
    "vp90": "vp9",
    "vp09": "vp9",
    "av01": "av1",
    "mjpg": "mjpeg",
}


def container_of(head: bytes) -> tuple[str, str, str] | None:
    """(name, content type, extension) of the container `head` starts, or None."""
    if len(head) >= 12 and head[4:8] in ISO_BOX_TYPES:
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        return MOV if brand == b"qt  " else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM if b"webm" in head[:SIGNATURE_BYTES] else MKV
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    return None


@dataclass(frozen=True)
class VideoFacts:
    duration: float
    width: int
    height: int
    fps: float
    codec: str
    thumbnail: bytes


class UndecodableVideo(ValueError):
    """The file has a video signature but its frames cannot be decoded."""


# How far short of its declared length a video's last frame may end (rounding of
# time stamps, a last frame's duration), in seconds and as a share of the whole.
DURATION_SLACK_SECONDS = 0.5
DURATION_SLACK_SHARE = 0.02


def check_complete(path: Path) -> None:
    """Refuses a file whose index promises more video than its bytes hold: a phone's
    upload cut off part-way still opens (MP4s with the index at the front, WebM), and
    would be stored with the full duration but play only its beginning.

    Reads every video packet without decoding it: the number of frames the index
    declares (MP4) or the declared duration (WebM, MKV) must all be there, and every
    packet's bytes must lie inside the file."""
    size = path.stat().st_size
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UndecodableVideo("the file has no video stream")
            stream = container.streams.video[0]
            declared_frames = stream.frames
            time_base = stream.time_base or Fraction(1, 1000)
            declared = (
                float(stream.duration * time_base)
                if stream.duration
                else (container.duration or 0) / av.time_base
            )
            packets = 0
            last_end = 0.0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                    raise UndecodableVideo("the file ends inside a video frame")
                packets += 1
                if packet.pts is not None:
                    end = packet.pts + (packet.duration or 0)
                    last_end = max(last_end, float(end * time_base))
    except av.error.FFmpegError as problem:
        raise UndecodableVideo(f"the video cannot be read to its end ({problem})") from None
    if packets == 0:
        raise UndecodableVideo("no video frame is present")
    if declared_frames > 0 and packets < declared_frames:
        raise UndecodableVideo(
            f"the file is incomplete: {packets} of the {declared_frames} frames its index "
            "declares are present (was the upload cut off?)"
        )
    start = float((stream.start_time or 0) * time_base)
    slack = max(DURATION_SLACK_SECONDS, DURATION_SLACK_SHARE * declared)
    if declared > 0 and last_end - start < declared - slack:
        raise UndecodableVideo(
            f"the file is incomplete: its frames end at {last_end - start:.2f} s of the "
            f"{declared:.2f} s it declares (was the upload cut off?)"
        )


def probe(path: Path) -> VideoFacts:
    """Duration, size, frame rate and codec read by OpenCV, and a JPEG thumbnail of a
    frame a little way in (the first is often black). Incomplete files are refused
    first (`check_complete`)."""
    check_complete(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UndecodableVideo("no video stream could be opened")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        tag = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ").lower()
        ok, frame = capture.read()
        if not ok or frame is None or width <= 0 or height <= 0:
            raise UndecodableVideo("no frame could be decoded")
        if frames > 10:
            capture.set(cv2.CAP_PROP_POS_FRAMES, min(frames / 10, 30))
            later_ok, later = capture.read()
            if later_ok and later is not None:
                frame = later
    finally:
        capture.release()
    if not (math.isfinite(fps) and fps > 0):
        fps = 0.0
    duration = frames / fps if fps and frames > 0 else 0.0
    scale = THUMBNAIL_WIDTH / width
    small = cv2.resize(frame, (THUMBNAIL_WIDTH, max(2, round(height * scale))))
    encoded, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not encoded:
        raise UndecodableVideo("no thumbnail could be made")
    return VideoFacts(
        duration=round(duration, 3),
        width=width,
        height=height,
        fps=round(fps, 3),
        codec=FOURCC_CODECS.get(tag, tag or "unknown"),
        thumbnail=jpeg.tobytes(),
    )


def is_browser_playable(container: str, codec: str) -> bool:
    return (container, codec) in BROWSER_PLAYABLE


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def make_preview(source: Path, target: Path, max_height: int) -> None:
    """An H.264/AAC MP4 of `source`, at most `max_height` tall, with the index at the
    front (`+faststart`) so playback starts before the whole file has arrived."""
    with (
        av.open(str(source)) as reading,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as writing,
    ):
        video_in = reading.streams.video[0]
        video_in.thread_type = "AUTO"
        height = _even(min(max_height, video_in.codec_context.height))
        width = _even(video_in.codec_context.width * height / video_in.codec_context.height)
        rate = video_in.average_rate or Fraction(30)
        video_out = writing.add_stream("libx264", rate=rate)
        video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
        video_out.options = {"preset": "veryfast", "crf": "23"}
        audio_in = reading.streams.audio[0] if reading.streams.audio else None
        audio_out = resampler = None
        if audio_in is not None:
            audio_out = writing.add_stream("aac", rate=48000)
            audio_out.layout = "stereo"
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
        streams = [video_in, *([audio_in] if audio_in is not None else [])]
        for packet in reading.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    writing.mux(video_out.encode(scaled))
                elif isinstance(frame, av.AudioFrame) and audio_out and resampler:
                    for resampled in resampler.resample(frame):
                        writing.mux(audio_out.encode(resampled))
        writing.mux(video_out.encode(None))
        if audio_out is not None:
            writing.mux(audio_out.encode(None))

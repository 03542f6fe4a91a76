"""Real vlog videos like the seed's: a coloured background, a title, a running timer
and a pulsing circle, drawn with Pillow, NumPy and OpenCV.

They are encoded as H.264 MP4 with PyAV (FFmpeg's encoder; OpenCV's wheels cannot
write H.264 and browsers do not play the MPEG-4 Part 2 it writes). `codec="mpeg4"`
writes the seed's kind with OpenCV, to exercise the media service's previews. Every
file is decoded once before it is used.
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class VideoSpec:
    title: str
    seconds: float = 3.0
    width: int = 640
    height: int = 480
    fps: int = 30
    seed: int = 0

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)


class BrokenVideo(RuntimeError):
    """A generated file did not decode as expected."""


def frames(spec: VideoSpec):
    rng = random.Random(f"video:{spec.seed}:{spec.title}")
    red, green, blue = colorsys.hsv_to_rgb(rng.random(), 0.45, 0.85)
    background = (int(blue * 255), int(green * 255), int(red * 255))
    font = ImageFont.load_default(size=max(12, spec.height // 14))
    small = ImageFont.load_default(size=max(10, spec.height // 20))
    for n in range(spec.frames):
        canvas = Image.new("RGB", (spec.width, spec.height), background[::-1])
        draw = ImageDraw.Draw(canvas)
        draw.text((spec.width * 0.05, spec.height * 0.06), spec.title, font=font, fill="white")
        draw.text(
            (spec.width * 0.05, spec.height * 0.86),
            f"{n / spec.fps:05.2f} s",
            font=small,
            fill="white",
        )
        frame = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
        pulse = 0.5 + 0.5 * np.sin(2 * np.pi * n / spec.fps)
        radius = int(min(spec.width, spec.height) * (0.08 + 0.08 * pulse))
        cv2.circle(frame, (spec.width // 2, spec.height // 2), radius, (40, 40, 220), -1)
        yield frame


def write_h264(spec: VideoSpec, path: Path) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as output:
        stream = output.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        # A fixed thread count keeps the bytes the same on every machine: a re-run
        # uploads identical files, which the media service recognises.
        stream.options = {"preset": "veryfast", "crf": "26", "threads": "2"}
        for frame in frames(spec):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        output.mux(stream.encode(None))


def write_mpeg4(spec: VideoSpec, path: Path) -> None:
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"mp4v"), spec.fps, (spec.width, spec.height)
    )
    for frame in frames(spec):
        writer.write(frame)
    writer.release()


def check(spec: VideoSpec, path: Path, codec: str) -> None:
    """Decodes the file: the codec, size and number of frames must be what was asked."""
    with av.open(str(path)) as container:
        name = container.streams.video[0].codec_context.name
    capture = cv2.VideoCapture(str(path))
    decoded = 0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    while capture.read()[0]:
        decoded += 1
    capture.release()
    expected = "h264" if codec == "h264" else "mpeg4"
    if (name, width, height, decoded) != (expected, spec.width, spec.height, spec.frames):
        raise BrokenVideo(
            f"{path.name}: {name} {width}x{height}, {decoded} frames; wanted {expected} "
            f"{spec.width}x{spec.height}, {spec.frames} frames"
        )


def make_video(spec: VideoSpec, path: Path, codec: str = "h264") -> Path:
    (write_h264 if codec == "h264" else write_mpeg4)(spec, path)
    check(spec, path, codec)
    return path

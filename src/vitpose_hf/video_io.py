"""Reading and writing videos frame by frame with PyAV (ffmpeg), so a video of any length never sits in memory.

`iter_frames(source)` decodes a file, or any stream ffmpeg opens (rtsp://, http://, a device), into RGB PIL images
with their index and presentation time; `VideoWriter` encodes frames as they come (H.264 in MP4 where the codec is
available, else MPEG-4 Part 2) at a given frame rate, one output frame per input frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DEFAULT_FPS = Fraction(25)


def _av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError('Video input needs PyAV: pip install "vitpose_hf[video]" (or pip install av).') from error
    return av


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether `path` names a video by its extension (case-insensitive), or is a stream URL ffmpeg reads."""
    text = os.fspath(path)
    if text.startswith(("rtsp://", "rtmp://", "udp://", "srt://")):
        return True
    return Path(text.split("?")[0]).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream. `num_frames` is None where it is not stored (streams,
    some containers); the frame count is then only known after decoding."""

    width: int
    height: int
    fps: Fraction
    num_frames: int | None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width


def _open(source: str | os.PathLike):
    av = _av()
    text = os.fspath(source)
    if "://" not in text and not os.path.isfile(text):
        raise FileNotFoundError(f"No such video file {text!r}.")
    try:
        container = av.open(text)
    except av.FFmpegError as error:
        raise ValueError(f"Cannot open {text!r} as a video ({error}).") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{text!r} has no video stream.")
    return container


def _stream_fps(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else DEFAULT_FPS


def read_video_info(source: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and (where stored) frame count of the first video stream, without decoding it."""
    container = _open(source)
    try:
        stream = container.streams.video[0]
        frames = int(stream.frames or 0)
        return VideoInfo(int(stream.width), int(stream.height), _stream_fps(stream), frames if frames > 0 else None)
    finally:
        container.close()


def iter_frames(source: str | os.PathLike) -> Iterator[tuple[int, float, Image.Image]]:
    """(index, time in seconds, RGB image) of every decoded frame, in presentation order, one at a time.

    The time is the frame's presentation timestamp relative to the first frame where the container has one, else
    index / fps.
    """
    container = _open(source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        first_time = None
        for index, frame in enumerate(container.decode(stream)):
            time = frame.time
            if time is None:
                time = index / fps
            if first_time is None:
                first_time = time
            yield index, float(time - first_time), frame.to_image()
    except _av().FFmpegError as error:
        raise ValueError(f"Cannot decode {os.fspath(source)!r} ({error}).") from error
    finally:
        container.close()


class VideoWriter:
    """Encode RGB frames one at a time into a video file at `fps` frames per second.

        with VideoWriter("out.mp4", fps=25) as writer:
            for image in images:
                writer.write(image)

    The size is taken from the first frame; every later frame must have the same size. `quality` is the x264
    CRF (lower is better; 18 is visually lossless). Odd sizes are encoded 4:4:4 (4:2:0 needs even sides).
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction = DEFAULT_FPS, codec: str | None = None,
                 quality: int = 18) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001000) if not isinstance(fps, Fraction) else fps
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}.")
        self.codec = codec
        self.quality = quality
        self.frames_written = 0
        self._container = None
        self._stream = None

    def _start(self, width: int, height: int) -> None:
        av = _av()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = self.codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height = width, height
        even = width % 2 == 0 and height % 2 == 0
        self._stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
        if codec == "libx264":
            self._stream.options = {"crf": str(self.quality), "preset": "veryfast"}

    def write(self, image: Image.Image | np.ndarray) -> None:
        """Append one frame (RGB PIL image or (H, W, 3) uint8 array)."""
        av = _av()
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"Frame {self.frames_written} must be RGB uint8 (H, W, 3), got {array.shape} {array.dtype}.")
        height, width = array.shape[:2]
        if self._container is None:
            self._start(width, height)
        elif (width, height) != (self._stream.width, self._stream.height):
            raise ValueError(f"Frame {self.frames_written} is {width}x{height}; the video is "
                             f"{self._stream.width}x{self._stream.height}.")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame.pts = self.frames_written  # one tick of 1/fps per frame: every frame kept, none duplicated
        frame.time_base = 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (a writer that got no frame writes nothing)."""
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()


__all__ = ["DEFAULT_FPS", "VIDEO_EXTENSIONS", "VideoInfo", "VideoWriter", "is_video_path", "iter_frames",
           "read_video_info"]

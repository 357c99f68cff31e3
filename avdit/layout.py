"""Seconds <-> video frames <-> latent frames <-> time segments, for both modalities.

Every time a user gives is in seconds. This module is the one place that turns seconds into
latent frames and segments, from the codec strides, fps, sample rate and segment length in a
checkpoint's config.

Rules (the contract the tests check):
- Video latent frames. A causal codec encodes frame 0 alone and then groups of `temporal_stride`
  frames: latent 0 covers frame 0, latent k >= 1 covers frames 1 + (k-1)s .. ks (17 frames at
  s = 4 give 5 latent frames). A non-causal codec encodes groups of s frames. Frame i spans
  [i / fps, (i + 1) / fps) seconds, so each latent frame spans a half-open interval in seconds.
- Audio latent frame j spans [j * hop, (j + 1) * hop) samples, in seconds [j*hop/sr, (j+1)*hop/sr).
  The hop need not divide a segment.
- Segments. With a causal video codec the first segment is the first video frame, [0, 1/fps),
  because that frame is its own latent; after it come segments of `segment_seconds` each
  (0.125 s, then 0.5 s each at 8 fps). Without a causal codec segments start at 0. A latent frame
  of either modality belongs to the segment holding the midpoint of its span (the last segment
  takes any tail past the clip's end).
- A time span [a, b) "covers" a latent frame when the frame's whole span (cut at the clip's end)
  lies inside it (up to 1 microsecond): task masks keep a latent frame only when every moment it
  encodes was given.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from avdit.config import AVDiTConfig, LayoutConfig

_EPS = 1e-6  # seconds; float slack when comparing span ends


def _check_seconds(name: str, value: float, *, allow_zero: bool = True) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        accepted = "a finite number of seconds >= 0" if allow_zero else "a finite number of seconds > 0"
        raise ValueError(f"{name} is {value!r}; expected {accepted}")
    return value


@dataclass(frozen=True)
class Layout:
    """Where every latent frame of a clip of `num_frames` video frames sits in time."""

    fps: float
    sample_rate: int
    temporal_stride: int
    causal: bool
    hop: int
    segment_seconds: float
    num_frames: int  # video frames
    num_samples: int  # audio samples

    @classmethod
    def from_config(cls, config: AVDiTConfig, duration: float | None = None, num_frames: int | None = None) -> "Layout":
        """The layout of a clip `duration` seconds long (or `num_frames` video frames; default one window)."""
        lay = config.layout
        if num_frames is None:
            if duration is None:
                num_frames = lay.window_frames
            else:
                duration = _check_seconds("duration", duration, allow_zero=False)
                num_frames = max(1, round(duration * lay.fps))
                if config.video_codec.causal:
                    # a causal codec needs 1 + k*s frames: round up so the whole duration is covered
                    s = config.video_codec.temporal_stride
                    num_frames = 1 + s * math.ceil((num_frames - 1) / s)
        if num_frames < 1:
            raise ValueError(f"num_frames is {num_frames}; expected at least 1 video frame")
        num_samples = round(num_frames / lay.fps * lay.sample_rate)
        return cls(
            fps=float(lay.fps),
            sample_rate=int(lay.sample_rate),
            temporal_stride=config.video_codec.temporal_stride,
            causal=config.video_codec.causal,
            hop=config.audio_codec.hop,
            segment_seconds=float(lay.segment_seconds),
            num_frames=int(num_frames),
            num_samples=int(num_samples),
        )

    # --- sizes -------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def video_latent_frames(self) -> int:
        s = self.temporal_stride
        if self.causal:
            return 1 + math.ceil((self.num_frames - 1) / s)
        return math.ceil(self.num_frames / s)

    @property
    def audio_latent_frames(self) -> int:
        return math.ceil(self.num_samples / self.hop)

    @property
    def head_seconds(self) -> float:
        """Length of the first segment: one video frame for a causal codec, else a whole segment."""
        return 1.0 / self.fps if self.causal else self.segment_seconds

    @property
    def num_segments(self) -> int:
        return int(max(self.video_segments.max(), self.audio_segments.max())) + 1

    # --- spans in seconds ----------------------------------------------------------------
    @property
    def video_spans(self) -> torch.Tensor:
        """(Tv, 2) float64: [start, end) seconds of each video latent frame."""
        s, n = self.temporal_stride, self.video_latent_frames
        k = torch.arange(n, dtype=torch.float64)
        if self.causal:
            first = torch.where(k == 0, 0.0, 1 + (k - 1) * s)
            last = torch.where(k == 0, 1.0, 1 + k * s)
        else:
            first, last = k * s, (k + 1) * s
        return torch.stack([first, last], dim=1) / self.fps

    @property
    def audio_spans(self) -> torch.Tensor:
        """(Ta, 2) float64: [start, end) seconds of each audio latent frame."""
        j = torch.arange(self.audio_latent_frames, dtype=torch.float64)
        return torch.stack([j, j + 1], dim=1) * self.hop / self.sample_rate

    @property
    def video_times(self) -> torch.Tensor:
        """(Tv,) midpoint of each video latent frame in seconds: its position on the shared time axis."""
        return self.video_spans.mean(dim=1)

    @property
    def audio_times(self) -> torch.Tensor:
        """(Ta,) midpoint of each audio latent frame in seconds."""
        return self.audio_spans.mean(dim=1)

    # --- segments ------------------------------------------------------------------------
    def segment_of(self, seconds: torch.Tensor) -> torch.Tensor:
        """Index of the segment holding each time (long tensor, same shape)."""
        head = self.head_seconds
        later = 1 + torch.floor((seconds - head) / self.segment_seconds + _EPS).long()
        return torch.where(seconds < head - _EPS, torch.zeros_like(later), later)

    @property
    def video_segments(self) -> torch.Tensor:
        """(Tv,) segment index of each video latent frame."""
        return self._clamped_segments(self.video_times)

    @property
    def audio_segments(self) -> torch.Tensor:
        """(Ta,) segment index of each audio latent frame."""
        return self._clamped_segments(self.audio_times)

    def _clamped_segments(self, times: torch.Tensor) -> torch.Tensor:
        # the clip's last segment takes any latent frame whose midpoint lies past the clip's end
        last = int(self.segment_of(torch.tensor([self.duration - _EPS], dtype=torch.float64))[0])
        return self.segment_of(times).clamp(max=last)

    def segment_spans(self) -> torch.Tensor:
        """(N, 2) [start, end) seconds of each segment (the last one ends at the clip's end)."""
        n = self.num_segments
        starts = torch.tensor([0.0] + [self.head_seconds + (i - 1) * self.segment_seconds for i in range(1, n)], dtype=torch.float64)
        ends = torch.cat([starts[1:], torch.tensor([self.duration], dtype=torch.float64)])
        return torch.stack([starts, ends], dim=1)

    # --- seconds -> latent frames ------------------------------------------------------------
    def covered(self, spans: list[tuple[float, float]], modality: str) -> torch.Tensor:
        """(T,) bool: latent frames of `modality` ('video' or 'audio') wholly inside any of `spans` (seconds)."""
        frames = {"video": self.video_spans, "audio": self.audio_spans}
        if modality not in frames:
            raise ValueError(f"modality is {modality!r}; expected 'video' or 'audio'")
        latent = frames[modality].clamp(max=self.duration)  # padding past the clip's end is not content
        checked = []
        for start, end in spans:
            start = _check_seconds("span start", start)
            end = _check_seconds("span end", end)
            if end < start:
                raise ValueError(f"span ({start}, {end}) ends before it starts; give (start, end) with start <= end seconds")
            checked.append((start, end))
        merged = []  # touching or overlapping spans are one span: a frame across their join is covered
        for start, end in sorted(checked):
            if merged and start <= merged[-1][1] + _EPS:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        inside = torch.zeros(latent.shape[0], dtype=torch.bool)
        for start, end in merged:
            inside |= (latent[:, 0] >= start - _EPS) & (latent[:, 1] <= end + _EPS)
        return inside


# --- the layout on the command line ------------------------------------------------------------
# train-codec records a layout in the codecs' checkpoint; train takes it from there. Both take the
# same four options: the frame size, frame rate, sample rate and training window.

LAYOUT_OPTIONS = {"size": "--size", "fps": "--fps", "sample_rate": "--sample-rate", "window_frames": "--window-frames"}
MAX_SIZE = 4096
SIZE_ACCEPTED = f"WIDTHxHEIGHT, or one number for a square, in whole pixels from 1 to {MAX_SIZE} (e.g. 128 or 128x96)"


def parse_size(text: str) -> tuple[int, int]:
    """'128' -> (128, 128); '128x96' -> (width 128, height 96). Raises ValueError saying what is accepted."""
    try:
        values = [int(part) for part in str(text).lower().split("x")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(1 <= v <= MAX_SIZE for v in values):
        raise ValueError(f"size is {text!r}; expected {SIZE_ACCEPTED}")
    return values[0], values[-1]


def add_layout_arguments(parser, where_from: str) -> None:
    """--size, --fps, --sample-rate and --window-frames, each None when left out (then `where_from` says whose)."""
    default = LayoutConfig()
    parser.add_argument("--size", default=None, metavar="WxH",
                        help=f"frame size in pixels: WIDTHxHEIGHT, or one number for a square (e.g. 128 or 128x96); "
                             f"footage is centre-cropped and resized to it (default: {where_from}; "
                             f"{default.width}x{default.height} by default)")
    parser.add_argument("--fps", type=float, default=None,
                        help=f"video frames per second (default: {where_from}; {default.fps:g} by default)")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help=f"audio samples per second (default: {where_from}; {default.sample_rate} by default)")
    parser.add_argument("--window-frames", type=int, default=None,
                        help=f"video frames in one training window, 1 + 4k (default: {where_from}; "
                             f"{default.window_frames} by default, {default.window_frames / default.fps:g} s)")


def size_text(layout: LayoutConfig) -> str:
    """The frame size as the options write it: WIDTHxHEIGHT."""
    return f"{layout.width}x{layout.height}"


def _option_value(layout: LayoutConfig, name: str) -> str:
    return size_text(layout) if name == "size" else f"{getattr(layout, name):g}"


def with_layout_options(base: LayoutConfig, options: dict, fixed=()) -> tuple[LayoutConfig, list[str]]:
    """`base` with the layout options given in `options` ({name: value or None} for the names of
    LAYOUT_OPTIONS; None keeps base's), and the options in `fixed` that ask for other than base's,
    each as '--fps 12 (it has 8)'."""
    changes = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "size":
            changes["width"], changes["height"] = parse_size(value) if isinstance(value, str) else value
        else:
            changes[name] = type(getattr(base, name))(value)
    layout = dataclasses.replace(base, **changes)
    differ = [f"{LAYOUT_OPTIONS[name]} {_option_value(layout, name)} (it has {_option_value(base, name)})"
              for name in fixed if options.get(name) is not None and _option_value(layout, name) != _option_value(base, name)]
    return layout, differ


def grid_problem(config: AVDiTConfig) -> str | None:
    """Why the frame size of `config` cannot be cut into the video latent grid (and the model's
    patches, when it has a model), or None: each side must be a multiple of the codec's spatial
    stride, and the grid a multiple of the patch."""
    lay, stride = config.layout, config.video_codec.spatial_stride
    if lay.width % stride or lay.height % stride:
        near = f"{max(stride, lay.width // stride * stride)}x{max(stride, lay.height // stride * stride)}"
        return (f"the frame size {size_text(lay)} is not a multiple of the video codec's spatial stride {stride} "
                f"in both sides; expected e.g. {near}")
    patch, rows, columns = config.model.video_patch, lay.height // stride, lay.width // stride
    if rows % patch or columns % patch:
        return (f"the frame size {size_text(lay)} at spatial stride {stride} gives a {columns} x {rows} latent grid, "
                f"which the model's {patch} x {patch} patches do not tile; expected a grid that is a multiple of {patch}")
    return None

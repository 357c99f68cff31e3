"""Data: the ToneShapes v1 generator and scorer, and data sets for training.

ToneShapes (see TONESHAPES.md) is a procedural audio-video data set whose two streams are tied by
exact rules: one coloured disc moves on a 64 x 64 frame and makes a tone whose pitch follows its
height, loudness its radius and timbre its colour. The scorer reads those quantities back with
plain signal processing, so every task (V2A, A2V, continuation, joint) is checkable without a
learned metric.

Conventions used throughout:
- video is (F, 64, 64, 3) float in 0..1, channels last; audio is mono 16 kHz, 2000 samples per
  video frame. Batched forms put a batch axis in front.
- Pixel (row i, column j) covers [j, j+1) x [i, i+1) in pixel coordinates, so its centre is
  (j + 0.5, i + 0.5); y is measured from the top. The ranges [12, 52] are then symmetric.
- "Peak-equivalent level" L dBFS means the waveform's peak amplitude is 10 ** (L / 20): every
  timbre is normalised so its harmonic set peaks at 1 before it is scaled.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------
# Contract constants (TONESHAPES.md)
# ---------------------------------------------------------------------------------------------

FPS = 8
SAMPLE_RATE = 16000
SIZE = 64
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 2000
FRAMES = 17  # the paper's clip length: 2.125 s
BACKGROUND = (20, 20, 20)
COLORS = ((230, 60, 60), (60, 200, 80), (70, 110, 240))  # red, green, blue
COLOR_NAMES = ("red", "green", "blue")
Y_RANGE = (12.0, 52.0)
X_RANGE = (12.0, 52.0)
R_RANGE = (3.0, 12.0)
STEP_STD = {"x": 2.0, "y": 3.0, "r": 0.8}  # random-walk step standard deviations, pixels
GAP_LENGTHS = (1, 3)  # a vanished disc stays away for 1 to 3 frames
# Gaps start frame by frame with this hazard, so that about half of the 17-frame clips have one
# and longer clips follow the same rule: 1 - (1 - p) ** 17 = 0.5.
GAP_HAZARD = 1.0 - 0.5 ** (1.0 / FRAMES)
FADE_SAMPLES = 80  # 5 ms at 16 kHz
LEVEL_AT_R = ((3.0, -30.0), (12.0, -6.0))  # (radius, dBFS): loudness is linear in dB between
HARMONICS = (  # (harmonic numbers, amplitudes) per colour class
    (np.array([1]), np.array([1.0])),
    (np.array([1, 3, 5, 7]), 1.0 / np.array([1.0, 3.0, 5.0, 7.0])),
    (np.arange(1, 8), 1.0 / np.arange(1.0, 8.0)),
)


def _peak_of(numbers: np.ndarray, amplitudes: np.ndarray) -> float:
    """Peak of sum_k a_k sin(k phase) over a period (all harmonics start in phase)."""
    phase = np.linspace(0.0, 2.0 * np.pi, 1 << 16, endpoint=False)
    return float(np.abs(np.sin(np.outer(phase, numbers)) @ amplitudes).max())


# Each harmonic set is normalised so its waveform peaks at exactly 1 (peak-equivalent level).
_PEAKS = np.array([_peak_of(n, a) for n, a in HARMONICS])
# Crest factor (peak / RMS) per timbre: the scorer turns a measured RMS back into a peak level.
_CREST = _PEAKS / np.array([math.sqrt(float((a**2).sum()) / 2.0) for _, a in HARMONICS])


def pitch_from_height(y):
    """f0 in Hz implied by disc height y (pixels from the top): 220 Hz at 52, 880 Hz at 12."""
    return 220.0 * 2.0 ** (2.0 * (52.0 - np.asarray(y, dtype=np.float64)) / 40.0)


def height_from_pitch(f0):
    """Inverse of `pitch_from_height`: the disc height in pixels that sounds at f0 Hz."""
    return 52.0 - 20.0 * np.log2(np.asarray(f0, dtype=np.float64) / 220.0)


def level_from_radius(r):
    """Peak-equivalent level in dBFS implied by radius r: -30 at r = 3, -6 at r = 12, linear."""
    (r0, l0), (r1, l1) = LEVEL_AT_R
    return l0 + (np.asarray(r, dtype=np.float64) - r0) * (l1 - l0) / (r1 - r0)


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


@dataclass
class ToneShapesClip:
    """One clip (or a batch, with a leading batch axis on every field) and its ground truth.

    x, y, r are defined on every frame, also where the disc has vanished (it keeps moving,
    unseen and unheard); `present` says where it can be seen and heard.
    """

    video: np.ndarray  # (F, 64, 64, 3) float32 in 0..1
    audio: np.ndarray  # (F * 2000,) float32, mono 16 kHz
    color: int | np.ndarray  # class 0 red, 1 green, 2 blue
    x: np.ndarray  # (F,) float, pixels from the left
    y: np.ndarray  # (F,) float, pixels from the top
    r: np.ndarray  # (F,) float, pixels
    present: np.ndarray  # (F,) bool

    @property
    def frames(self) -> int:
        return self.video.shape[-4]


def _check_count(value, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} is {value!r}; give a whole number of {what}, at least 1")
    return int(value)


def _check_frames(frames) -> int:
    return _check_count(frames, "frames", f"video frames (ToneShapes clips are {FRAMES} frames "
                                          f"= {FRAMES / FPS} s at {FPS} fps)")


def _check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} is {seed!r}; give a whole number >= 0")
    return int(seed)


def generate_clip(seed: int, frames: int = FRAMES, noise_floor_db: float | None = None
                  ) -> ToneShapesClip:
    """Generate ToneShapes v1 clip number `seed` with `frames` video frames.

    The same seed always gives the same clip; a longer clip with the same seed starts with a
    different path (its random draws are laid out per length). `noise_floor_db` adds white noise
    at that RMS level (e.g. -80) drawn after everything else, so the clip is otherwise unchanged.
    """
    seed, frames = _check_seed(seed), _check_frames(frames)
    rng = np.random.default_rng(seed)
    color = int(rng.integers(3))
    low = np.array([X_RANGE[0], Y_RANGE[0], R_RANGE[0]])
    high = np.array([X_RANGE[1], Y_RANGE[1], R_RANGE[1]])
    steps = rng.normal(size=(frames - 1, 3)) * np.array([STEP_STD["x"], STEP_STD["y"],
                                                         STEP_STD["r"]])
    # Clipping happens step by step (a walk that hits a wall stays near it, it does not bounce).
    path = np.empty((frames, 3))
    path[0] = rng.uniform(low, high)
    for f in range(1, frames):
        path[f] = np.minimum(np.maximum(path[f - 1] + steps[f - 1], low), high)
    present = _draw_gaps(rng, frames)
    return render_clip(color, path[:, 0], path[:, 1], path[:, 2], present,
                       noise_floor_db=noise_floor_db, rng=rng)


def _draw_gaps(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Presence per frame: gaps of 1..3 frames start with GAP_HAZARD, one visible frame apart."""
    starts = rng.random(frames) < GAP_HAZARD
    lengths = rng.integers(GAP_LENGTHS[0], GAP_LENGTHS[1] + 1, size=frames)
    present = np.ones(frames, dtype=bool)
    f = 0
    while f < frames:
        if starts[f]:
            present[f:f + lengths[f]] = False
            f += lengths[f] + 1  # the frame after a gap is visible, so gaps never merge
        else:
            f += 1
    return present


def generate_batch(seeds: Sequence[int], frames: int = FRAMES,
                   noise_floor_db: float | None = None) -> ToneShapesClip:
    """Clips for several seeds, stacked: video (B, F, 64, 64, 3), audio (B, F*2000), color (B,)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed (whole numbers >= 0)")
    clips = [generate_clip(s, frames, noise_floor_db) for s in seeds]
    return ToneShapesClip(
        video=np.stack([c.video for c in clips]), audio=np.stack([c.audio for c in clips]),
        color=np.array([c.color for c in clips]), x=np.stack([c.x for c in clips]),
        y=np.stack([c.y for c in clips]), r=np.stack([c.r for c in clips]),
        present=np.stack([c.present for c in clips]))


def render_clip(color: int, x, y, r, present, noise_floor_db: float | None = None,
                rng: np.random.Generator | None = None) -> ToneShapesClip:
    """Draw the video and synthesise the audio of a given disc path (arrays of length F)."""
    if isinstance(color, bool) or color not in (0, 1, 2):
        raise ValueError(f"color is {color!r}; give a class 0 (red), 1 (green) or 2 (blue)")
    x, y, r = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y, r))
    present = np.asarray(present, dtype=bool).reshape(-1)
    if not (len(x) == len(y) == len(r) == len(present)) or len(x) == 0:
        raise ValueError(f"x, y, r, present have lengths {len(x)}, {len(y)}, {len(r)}, "
                         f"{len(present)}; give one value per frame, the same number for all")
    video = _render_video(color, x, y, r, present)
    audio = _render_audio(color, y, r, present)
    if noise_floor_db is not None:
        rng = rng if rng is not None else np.random.default_rng(0)
        audio += rng.standard_normal(audio.shape) * 10.0 ** (noise_floor_db / 20.0)
    return ToneShapesClip(video=video, audio=audio.astype(np.float32), color=int(color),
                          x=x, y=y, r=r, present=present)


_CENTRES = np.arange(SIZE, dtype=np.float32) + 0.5  # pixel centres


def _render_video(color: int, x, y, r, present) -> np.ndarray:
    """Anti-aliased discs: coverage = clip(r + 0.5 - distance, 0, 1) at pixel centres."""
    dx = _CENTRES[None, None, :] - x.astype(np.float32)[:, None, None]  # (F, 1, W)
    dy = _CENTRES[None, :, None] - y.astype(np.float32)[:, None, None]  # (F, H, 1)
    distance = np.sqrt(dx * dx + dy * dy)  # (F, H, W)
    coverage = np.clip(r.astype(np.float32)[:, None, None] + 0.5 - distance, 0.0, 1.0)
    coverage *= present[:, None, None]
    background = np.array(BACKGROUND, dtype=np.float32) / 255.0
    ink = np.array(COLORS[color], dtype=np.float32) / 255.0
    return background + coverage[..., None] * (ink - background)  # (F, H, W, 3)


def _render_audio(color: int, y, r, present) -> np.ndarray:
    """Tone with pitch from y, level from r, timbre from colour; silent where the disc is gone."""
    frames = len(y)
    n = np.arange(frames * SAMPLES_PER_FRAME, dtype=np.float64)
    centres = (np.arange(frames) + 0.5) * SAMPLES_PER_FRAME - 0.5
    # Interpolating height and radius linearly means log-pitch and dB are linear between frame
    # centres: glides sound even, and each frame's centre carries exactly that frame's values.
    f0 = pitch_from_height(np.interp(n, centres, y))
    peak = 10.0 ** (level_from_radius(np.interp(n, centres, r)) / 20.0)
    phase = 2.0 * np.pi * (np.cumsum(f0) - f0) / SAMPLE_RATE  # continuous, 0 at the first sample
    numbers, amplitudes = HARMONICS[color]
    tone = np.zeros_like(phase)
    for k, a in zip(numbers, amplitudes):
        tone += a * np.sin(k * phase)
    return tone * (peak / _PEAKS[color]) * _presence_gate(present)


def _presence_gate(present: np.ndarray) -> np.ndarray:
    """1 where the disc is present, 0 where it vanished, with 5 ms ramps inside the visible side.

    The ramps sit in the visible frames so vanished frames are exact silence; the clip's own
    start and end are cuts from a longer stream and get no ramp.
    """
    gate = np.repeat(present.astype(np.float64), SAMPLES_PER_FRAME)
    ramp = (np.arange(FADE_SAMPLES) + 0.5) / FADE_SAMPLES  # rising, never exactly 0 or 1
    for f in np.flatnonzero(present[1:] != present[:-1]) + 1:  # first frame after a change
        edge = f * SAMPLES_PER_FRAME
        if present[f]:  # fade in at the start of frame f
            gate[edge:edge + FADE_SAMPLES] = ramp
        else:  # fade out at the end of frame f - 1
            gate[edge - FADE_SAMPLES:edge] = ramp[::-1]
    return gate


# ---------------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------------

STRONG_DIFFERENCE = 0.2  # max channel difference from the background that counts as "disc"
MIN_DISC_PIXELS = 6  # more than this many strong pixels: the disc is present
SILENCE_DB = -40.0  # a frame is sounding above this peak-equivalent level
PITCH_BAND = (150.0, 1100.0)
PITCH_TOLERANCE = 1.0  # semitones
LEVEL_TOLERANCE = 3.0  # dB
_FFT_SIZE = 8192  # zero-padded: 2 Hz bins, and parabolic interpolation refines further
_HANN = np.hanning(SAMPLES_PER_FRAME + 2)[1:-1]  # no zero end points
# Timbre templates: amplitude of harmonics 2 and 3 relative to the fundamental.
_TIMBRE_TEMPLATES = np.array([[0.0, 0.0], [0.0, 1.0 / 3.0], [0.5, 1.0 / 3.0]])


def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(array)
    if array.dtype == np.uint8:  # 8-bit frames: bring to 0..1 like everything else
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} has dtype {array.dtype}; give a float numpy array or tensor")
    return array.astype(np.float32, copy=False)


def video_features(video) -> dict:
    """Per-frame disc features of video (..., F, H, W, 3) in 0..1 (numpy or torch).

    Returns numpy arrays of shape (..., F): `present` bool, `x`, `y` (coverage-weighted centroid,
    pixels), `r` = sqrt(area / pi) with area the summed coverage, `color` class (-1 if absent).
    x, y, r are NaN where the disc is absent.
    """
    video = _as_numpy(video, "video")
    if video.ndim < 4 or video.shape[-1] != 3:
        raise ValueError(f"video has shape {tuple(video.shape)}; give (frames, height, width, 3) "
                         f"or (batch, frames, height, width, 3), RGB channels last, in 0..1")
    height, width = video.shape[-3:-1]
    diff = video - np.array(BACKGROUND, dtype=np.float32) / 255.0  # (..., F, H, W, 3)
    strong = np.abs(diff).max(axis=-1) > STRONG_DIFFERENCE  # (..., F, H, W)
    count = strong.sum(axis=(-2, -1))
    present = count > MIN_DISC_PIXELS
    mean = (diff * strong[..., None]).sum(axis=(-3, -2)) / np.maximum(count, 1)[..., None]
    # Nearest class: distance from the mean difference to the segment background -> class colour,
    # so anti-aliased edge pixels (ink mixed with background) do not pull towards another class.
    inks = (np.array(COLORS, dtype=np.float32) - np.array(BACKGROUND)) / 255.0  # (3, 3)
    along = np.clip(mean @ inks.T / (inks**2).sum(-1), 0.0, 1.0)  # (..., F, 3)
    residual = ((mean[..., None, :] - along[..., None] * inks) ** 2).sum(-1)
    color = residual.argmin(-1)  # (..., F)
    # Coverage of each pixel by the chosen ink: exact for a clean anti-aliased disc.
    ink = inks[color]  # (..., F, 3)
    coverage = np.einsum("...hwc,...c->...hw", diff, ink) / (ink**2).sum(-1)[..., None, None]
    coverage = np.clip(coverage, 0.0, 1.0)
    coverage = np.where(coverage >= 0.1, coverage, 0.0)  # ignore faint noise far from the disc
    area = coverage.sum(axis=(-2, -1))
    safe = np.maximum(area, 1e-9)
    rows = np.arange(height, dtype=np.float32) + 0.5
    cols = np.arange(width, dtype=np.float32) + 0.5
    y = (coverage.sum(-1) * rows).sum(-1) / safe
    x = (coverage.sum(-2) * cols).sum(-1) / safe
    r = np.sqrt(area / np.pi)
    nan = np.float64("nan")
    return {"present": present, "x": np.where(present, x, nan), "y": np.where(present, y, nan),
            "r": np.where(present, r, nan), "color": np.where(present, color, -1)}


def audio_features(audio, frames: int | None = None) -> dict:
    """Per-video-frame tone features of mono 16 kHz audio (..., S) (numpy or torch).

    Each frame's 2000 samples are Hann-windowed. Returns numpy arrays (..., frames): `present`
    (level above -40 dBFS), `f0` Hz (strongest peak in 150..1100 Hz, parabolic-refined),
    `level_db` (peak-equivalent dBFS: windowed RMS times the timbre's crest factor), `timbre`
    class from harmonics 2 and 3 (-1 if silent). f0 is NaN on silent frames.
    `frames` defaults to every whole frame in the audio.
    """
    audio = _as_numpy(audio, "audio")
    if audio.ndim < 1 or audio.shape[-1] < SAMPLES_PER_FRAME:
        raise ValueError(f"audio has shape {tuple(audio.shape)}; give mono 16 kHz samples "
                         f"(samples,) or (batch, samples), at least {SAMPLES_PER_FRAME} "
                         f"(one video frame)")
    available = audio.shape[-1] // SAMPLES_PER_FRAME
    frames = available if frames is None else _check_frames(frames)
    if frames > available:
        raise ValueError(f"audio has {audio.shape[-1]} samples; frames={frames} needs "
                         f"{frames * SAMPLES_PER_FRAME} (2000 per video frame at 16 kHz); give "
                         f"frames <= {available} or longer audio")
    lead = audio.shape[:-1]
    chunks = audio[..., :frames * SAMPLES_PER_FRAME].reshape(-1, SAMPLES_PER_FRAME)
    chunks = chunks.astype(np.float64) * _HANN  # (N, 2000)
    power = np.abs(np.fft.rfft(chunks, n=_FFT_SIZE, axis=-1)) ** 2  # (N, bins)
    bin_hz = SAMPLE_RATE / _FFT_SIZE
    lo, hi = int(math.ceil(PITCH_BAND[0] / bin_hz)), int(PITCH_BAND[1] / bin_hz)
    peak = lo + power[:, lo:hi + 1].argmax(-1)  # (N,)
    # Parabolic interpolation of the log spectrum around the peak bin: well under a cent here.
    rows = np.arange(len(peak))
    a, b, c = (np.log(power[rows, peak + d] + 1e-30) for d in (-1, 0, 1))
    denominator = a - 2.0 * b + c
    offset = np.where(np.abs(denominator) > 1e-12, 0.5 * (a - c) / np.where(
        denominator == 0, 1.0, denominator), 0.0)
    f0 = (peak + np.clip(offset, -0.5, 0.5)) * bin_hz
    # Harmonic energies: sums over bands around k * f0, wide enough for the window's main lobe
    # (about 16 Hz) and a glide within the frame (a few percent).
    cumulative = np.concatenate([np.zeros((len(peak), 1)), np.cumsum(power, -1)], -1)

    def band_energy(k):
        low = np.clip(np.round((k * f0 * 0.96 - 16.0) / bin_hz), 0, power.shape[-1]).astype(int)
        high = np.clip(np.round((k * f0 * 1.04 + 16.0) / bin_hz) + 1, 0,
                       power.shape[-1]).astype(int)
        return cumulative[rows, high] - cumulative[rows, low]

    e1, e2, e3 = band_energy(1), band_energy(2), band_energy(3)
    ratios = np.sqrt(np.stack([e2, e3], -1) / np.maximum(e1, 1e-30)[:, None])  # (N, 2)
    timbre = ((ratios[:, None, :] - _TIMBRE_TEMPLATES) ** 2).sum(-1).argmin(-1)
    rms = np.sqrt((chunks**2).sum(-1) / (_HANN**2).sum())
    level_db = 20.0 * np.log10(np.maximum(rms * _CREST[timbre], 1e-12))
    present = level_db > SILENCE_DB
    shape = lead + (frames,)
    return {"present": present.reshape(shape), "f0": np.where(present, f0, np.nan).reshape(shape),
            "level_db": level_db.reshape(shape),
            "timbre": np.where(present, timbre, -1).reshape(shape)}


def agreement(video, audio) -> dict:
    """How well audio matches video by the ToneShapes rules; numpy or torch, one clip or a batch.

    video (..., F, 64, 64, 3), audio (..., F * 2000) mono 16 kHz with the same leading axes.
    Returns fractions in [0, 1], pooled over all frames of all clips:
    `pitch` (audio f0 within 1 semitone of the height's pitch), `level` (within 3 dB of the
    radius's level), `timbre` (class equal to the colour class) on frames where both show the
    disc (NaN if there are none), and `presence` (presence agrees) on all frames; plus the frame
    counts `frames` and `both_present`.
    """
    seen = video_features(video)
    frames = seen["present"].shape[-1]
    audio_shape = tuple(np.shape(audio))
    if audio_shape[:-1] != seen["present"].shape[:-1]:
        raise ValueError(f"audio has shape {audio_shape} and video {tuple(np.shape(video))}; "
                         f"give audio with the video's leading (batch) axes: "
                         f"{seen['present'].shape[:-1] + (frames * SAMPLES_PER_FRAME,)}")
    heard = audio_features(audio, frames)
    both = seen["present"] & heard["present"]
    count = int(both.sum())

    def fraction(hit):
        return float((hit & both).sum() / count) if count else float("nan")

    with np.errstate(invalid="ignore"):  # NaN features on absent frames compare False
        semitones = 12.0 * np.log2(heard["f0"] / pitch_from_height(seen["y"]))
        pitch = fraction(np.abs(semitones) <= PITCH_TOLERANCE)
        level = fraction(np.abs(heard["level_db"] - level_from_radius(seen["r"]))
                         <= LEVEL_TOLERANCE)
    return {"pitch": pitch, "level": level, "timbre": fraction(heard["timbre"] == seen["color"]),
            "presence": float((seen["present"] == heard["present"]).mean()),
            "frames": int(both.size), "both_present": count}


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


class ToneShapesDataset(torch.utils.data.Dataset):
    """ToneShapes clips `seed_offset + index` for index in range(length), made on the fly.

    Items are dicts: `video` (F, 64, 64, 3) float32 in 0..1, `audio` (1, F*2000) float32, and the
    ground truth `color` (), `x`, `y`, `r` (F,) float32, `present` (F,) bool. Held-out sets use a
    different `seed_offset` (e.g. 10**9) so they never overlap the training seeds.
    """

    fps = FPS
    sample_rate = SAMPLE_RATE

    def __init__(self, length: int, frames: int = FRAMES, seed_offset: int = 0,
                 noise_floor_db: float | None = None):
        self.length = _check_count(length, "length", "clips")
        self.frames = _check_frames(frames)
        self.seed_offset = _check_seed(seed_offset, "seed_offset")
        self.noise_floor_db = noise_floor_db

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} is outside this data set of {self.length} clips")
        clip = generate_clip(self.seed_offset + index % self.length, self.frames,
                             self.noise_floor_db)
        return {"video": torch.from_numpy(clip.video), "audio": torch.from_numpy(clip.audio)[None],
                "color": torch.tensor(clip.color),
                **{k: torch.from_numpy(getattr(clip, k).astype(np.float32)) for k in "xyr"},
                "present": torch.from_numpy(clip.present)}


VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
AUDIO_EXTENSIONS = (".wav", ".ogg", ".oga", ".opus", ".mp3", ".flac", ".m4a", ".aac")
STREAMS = {  # what a folder's files must hold, and which files are looked at, for each kind of data set
    "both": VIDEO_EXTENSIONS,
    "video": VIDEO_EXTENSIONS + PHOTO_EXTENSIONS,
    "audio": VIDEO_EXTENSIONS + AUDIO_EXTENSIONS,
}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + PHOTO_EXTENSIONS + AUDIO_EXTENSIONS
PHOTO_CLIPS = 8  # clips a photograph gives with streams="video", each with its own camera path


class VideoFolderDataset(torch.utils.data.Dataset):
    """Clips of `clip_seconds` cut back to back from every media file in a folder.

    Items are dicts: `video` (F, H, W, 3) float32 in 0..1 at `fps` and `size` (centre crop and
    area resize), `audio` (channels, S) float32 at `sample_rate`, `path` and `start` (seconds).
    F = round(clip_seconds * fps) and S = round(clip_seconds * sample_rate) exactly. Files are
    probed once here (headers only); frames are decoded per item, only the clip's time range.

    `streams`: "both" (the default) reads video files with sound and gives both; "video" gives
    only `video`, from video files with or without sound and from photographs (PHOTO_EXTENSIONS),
    each of which gives PHOTO_CLIPS clips of a camera panning and zooming across it (`start` is
    the clip's number then); "audio" gives only `audio`, from audio files and the sound of video
    files, a sound shorter than one clip giving one clip padded with silence. Files without the
    streams asked for, or (with video) shorter than one clip, are skipped and listed in `skipped`
    as (path, reason).

    `cache_bytes`: keep decoded clips in memory, up to this many bytes of tensors (0, the default: none),
    so that later reads of a clip decode nothing. Codec training reads every clip many times, and
    decoding a window of HD video or a large photograph costs more than a training step.
    """

    def __init__(self, folder: str | os.PathLike, clip_seconds: float = FRAMES / FPS,
                 fps: float = FPS, sample_rate: int = SAMPLE_RATE,
                 size: tuple[int, int] | int = (SIZE, SIZE), channels: int = 1,
                 recursive: bool = True, extensions: Sequence[str] | None = None, streams: str = "both",
                 cache_bytes: int = 0):
        from avdit import media  # lazy: data sets of ToneShapes must not need the media layer

        if streams not in STREAMS:
            raise ValueError(f"streams is {streams!r}; expected one of {sorted(STREAMS)}")
        extensions = STREAMS[streams] if extensions is None else extensions
        self.streams = streams
        self._media = media
        self.folder = os.fspath(folder)
        if not os.path.isdir(self.folder):
            raise ValueError(f"folder is {self.folder!r}, which is not a directory; give a folder "
                             f"holding video files ({', '.join(extensions)})")
        for name, value in (("clip_seconds", clip_seconds), ("fps", fps),
                            ("sample_rate", sample_rate)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} is {value!r}; give a finite number > 0")
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and 1 <= s <= 4096 for s in size):
            raise ValueError(f"size is {size!r}; give (height, width) in pixels, 1..4096 each")
        if channels not in (1, 2):
            raise ValueError(f"channels is {channels!r}; give 1 (mono) or 2 (stereo)")
        self.clip_seconds, self.fps, self.sample_rate = float(clip_seconds), fps, int(sample_rate)
        self.size, self.channels = size, channels
        self.frames = max(1, round(clip_seconds * fps))
        self.samples = max(1, round(clip_seconds * sample_rate))
        self.clips: list[tuple[str, float]] = []
        self.skipped: list[tuple[str, str]] = []
        self._unreadable: set[str] = set()  # files that failed to decode (see `readable`)
        if not isinstance(cache_bytes, int) or isinstance(cache_bytes, bool) or cache_bytes < 0:
            raise ValueError(f"cache_bytes is {cache_bytes!r}; give a whole number of bytes, 0 (no cache) or more")
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self._cache: dict[int, dict] = {}
        for path in self._find(self.folder, recursive, tuple(e.lower() for e in extensions)):
            if streams == "video" and path.lower().endswith(PHOTO_EXTENSIONS):
                self.clips += [(path, float(k)) for k in range(PHOTO_CLIPS)]
                continue
            duration, reason = _probe(path, streams)
            if streams == "audio" and reason is None and 0 < duration < self.clip_seconds:
                self.clips.append((path, 0.0))  # a short sound (a word, an effect): one clip, padded with silence
                continue
            if reason is None and duration < self.clip_seconds:
                reason = f"{duration:.3f} s is shorter than one clip ({self.clip_seconds} s)"
            if reason is not None:
                self.skipped.append((path, reason))
                continue
            # Streams often end a frame early or late: a file up to half a frame short of n clips gives n.
            count = int((duration + 0.5 / fps) // self.clip_seconds) or 1  # up to half a frame short is a whole clip
            self.clips += [(path, i * self.clip_seconds) for i in range(count)]
        if not self.clips:
            wanted = {"both": "video clips of {s} s with sound", "video": "video clips of {s} s or photographs",
                      "audio": "sound of {s} s or more"}[streams].format(s=self.clip_seconds)
            given = {"both": "files with a video and an audio stream", "video": "video files or photographs",
                     "audio": "audio files, or video files with sound"}[streams]
            raise ValueError(f"folder {self.folder!r} has no usable {wanted} (skipped: "
                             f"{self.skipped or 'no files found'}); give {given} ({', '.join(extensions)})")

    @staticmethod
    def _find(folder: str, recursive: bool, extensions: tuple[str, ...]) -> list[str]:
        if recursive:
            paths = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
        else:
            paths = [os.path.join(folder, f) for f in os.listdir(folder)]
        return sorted(p for p in paths if p.lower().endswith(extensions) and os.path.isfile(p))

    def __len__(self) -> int:
        return len(self.clips)

    def readable(self, indices) -> list[dict]:
        """The items of `indices` whose files decode. A file that fails (probing reads headers only, so a
        broken stream shows up here) is listed in `skipped` with FFmpeg's reason, named once on stderr, and
        its clips are left out from then on, so one bad file among thousands does not stop training."""
        import sys

        items = []
        for index in indices:
            path = self.clips[int(index)][0]
            if path in self._unreadable:
                continue
            try:
                items.append(self[int(index)])
            except self._media.MediaError as error:
                self._unreadable.add(path)
                self.skipped.append((path, str(error)))
                print(f"skipping {path} from now on: {error}", file=sys.stderr, flush=True)
        return items

    def unreadable_clips(self, indices) -> int:
        """How many of `indices` are clips of files that failed to decode."""
        return sum(self.clips[int(i)][0] in self._unreadable for i in indices)

    def __getitem__(self, index: int) -> dict:
        cached = self._cache.get(index)
        if cached is None:
            item = self._load(index)
            size = sum(v.numel() * v.element_size() for v in item.values() if isinstance(v, torch.Tensor))
            if self.cached_bytes + size > self.cache_bytes:
                return item
            self._cache[index] = cached = item
            self.cached_bytes += size
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in cached.items()}

    def _load(self, index: int) -> dict:
        path, start = self.clips[index]
        item = {"path": path, "start": start}
        if self.streams == "video" and path.lower().endswith(PHOTO_EXTENSIONS):
            photo = self._media.decode(path, video=True, audio=False).frames[0]  # (H, W, 3)
            item["video"] = camera_path_clip(photo, self.frames, self.size, seed=(path, int(start)))
            return item
        want = {"both": (True, True), "video": (True, False), "audio": (False, True)}[self.streams]
        decoded = self._media.decode(path, start=start, duration=self.clip_seconds, video=want[0], audio=want[1])
        if want[0]:  # num_frames holds the last frame if the file ends a frame early.
            item["video"] = self._media.conform_video(decoded.frames, decoded.fps, self.fps, size=self.size,
                                                      mode="crop", num_frames=self.frames).float()
        if want[1]:
            audio = self._media.conform_audio(decoded.waveform, decoded.sample_rate, self.sample_rate, self.channels)
            item["audio"] = _fit_samples(audio.float(), self.samples)
        return item


def camera_path_clip(photo: torch.Tensor, frames: int, size: tuple[int, int], seed) -> torch.Tensor:
    """A clip (frames, H, W, 3) in 0..1 of a camera moving over a photograph (h, w, 3) in 0..1: a window of
    the clip's aspect ratio, between 45 % and 90 % of the photo's largest such window, pans in a straight
    line between two random places and zooms between two random sizes. `seed` (any hashable made of str
    and int) picks the path, the same every time."""
    import hashlib

    height, width = size
    digest = hashlib.sha256(repr(seed).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    h, w = photo.shape[:2]
    # shrunk (area) so that the smallest window, 45 % of the largest, spans at most twice the clip's
    # pixels: bilinear sampling below then never skips more than every other pixel
    largest = min(h / height, w / width)  # largest window is (largest * height, largest * width) pixels
    shrink = min(1.0, 2.0 / (largest * 0.45))
    image = photo.permute(2, 0, 1)[None].float()  # (1, 3, h, w)
    if shrink < 1.0:
        image = torch.nn.functional.interpolate(image, size=(max(1, round(h * shrink)), max(1, round(w * shrink))),
                                                mode="area")
    scales = rng.uniform(0.45, 0.9, size=2) * largest  # window height / clip height, at the start and the end
    t = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)[:, None]
    scale = scales[0] + (scales[1] - scales[0]) * t  # (F, 1) in photo pixels per clip pixel
    half_h, half_w = scale * height / 2, scale * width / 2
    # window centres in photo pixels; a centre keeps the whole window inside the photo
    starts, ends = rng.uniform(0.0, 1.0, size=2), rng.uniform(0.0, 1.0, size=2)
    cy = half_h + (h - 2 * half_h) * (starts[0] + (ends[0] - starts[0]) * t)
    cx = half_w + (w - 2 * half_w) * (starts[1] + (ends[1] - starts[1]) * t)
    # sampling grid in grid_sample's -1..1 coordinates of the photo (pixel centres, align_corners=False)
    ys = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2) / height  # -0.5..0.5 of the window
    xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2) / width
    gy = (cy[:, :, None] + ys[None, :, None] * 2 * half_h[:, :, None]) / h * 2 - 1  # (F, H, 1)
    gx = (cx[:, None, :] + xs[None, None, :] * 2 * half_w[:, None, :]) / w * 2 - 1  # (F, 1, W)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).float()  # (F, H, W, 2) as (x, y)
    clip = torch.nn.functional.grid_sample(image.expand(frames, -1, -1, -1), grid, mode="bilinear",
                                           padding_mode="border", align_corners=False)
    return clip.permute(0, 2, 3, 1).clamp(0.0, 1.0).contiguous()  # (F, H, W, 3)


# ---------------------------------------------------------------------------------------------
# Tonal sounds: procedural training material for audio codecs
# ---------------------------------------------------------------------------------------------

TONAL_KINDS = ("sine", "harmonic", "bell", "sweep", "fm")


def _procedural_sound_start(seed, seconds, sample_rate) -> tuple[np.random.Generator, int, np.ndarray]:
    """The checked arguments of a procedural sound: its generator, sample count and sample times (s)."""
    seed = _check_seed(seed)
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds is {seconds!r}; give a positive number of seconds")
    if not (isinstance(sample_rate, int) and sample_rate >= 8000):
        raise ValueError(f"sample_rate is {sample_rate!r}; give a whole number of Hz, at least 8000")
    n = int(round(seconds * sample_rate))
    return np.random.default_rng(seed), n, np.arange(n) / sample_rate


def _noise_floor(rng: np.random.Generator, u: float, n: int, noisy: float) -> np.ndarray | float:
    """What lies under a procedural sound, by the uniform draw `u`: noise at -90..-50 dB (u < 0.3), at
    -50..-30 dB (0.3 <= u < `noisy`), else digital silence (0)."""
    if u < 0.3:
        return 10 ** (rng.uniform(-90, -50) / 20) * rng.standard_normal(n)
    if u < noisy:
        return 10 ** (rng.uniform(-50, -30) / 20) * rng.standard_normal(n)
    return 0.0


def _at_most_099(out: np.ndarray) -> np.ndarray:
    """`out` scaled down to peak at 0.99 where it peaks above, as float32."""
    peak = np.abs(out).max()
    return (out * (0.99 / peak) if peak > 0.99 else out).astype(np.float32)


def tonal_sound(seed: int, seconds: float = 4.25, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A procedural sound of sustained and decaying tones, (S,) float32 peaking at most 0.99.

    What speech and music rarely hold and synthetic test sounds (beeps, chimes, sweeps) are made
    of: 1 to 4 events, each a sine, a harmonic stack (2-15 partials, spectral tilt 0-2.5, odd
    partials only in 30 %), a bell (inharmonic partials), a sweep (40 Hz-4 kHz) or an FM tone, at a
    fundamental log-uniform in 40 Hz-3 kHz, a peak of 0.03-0.9, a 1-80 ms attack and an exponential
    decay (0.05-3 s) or a hold and release; vibrato on 30 %. Under them digital silence (55 %), noise
    at -90..-50 dB (30 %) or -50..-30 dB (15 %), and a DC offset on 10 %. Partials stay below 94 % of
    the Nyquist frequency. The same seed gives the same samples."""
    rng, n, t = _procedural_sound_start(seed, seconds, sample_rate)
    out = np.zeros(n)
    highest = sample_rate / 2 * 0.94
    for _ in range(rng.integers(1, 5)):
        kind = rng.choice(TONAL_KINDS, p=[0.25, 0.3, 0.2, 0.15, 0.1])
        f0 = float(np.exp(rng.uniform(np.log(40), np.log(3000))))
        start = rng.uniform(-0.3, seconds * 0.8)
        attack = np.exp(rng.uniform(np.log(0.001), np.log(0.08)))
        local = t - start
        envelope = np.clip(local / attack, 0, 1) * (local >= 0)
        if rng.random() < 0.5:  # struck: exponential decay
            envelope *= np.exp(-np.clip(local - attack, 0, None) / np.exp(rng.uniform(np.log(0.05), np.log(3.0))))
        else:  # held, then released
            hold, release = rng.uniform(0.1, 2.5), np.exp(rng.uniform(np.log(0.005), np.log(0.2)))
            envelope *= np.clip(1 - (local - hold) / release, 0, 1)
        frequency = np.full(n, f0)
        if kind == "sweep":
            f1 = float(np.exp(rng.uniform(np.log(40), np.log(4000))))
            frequency = f0 * (f1 / f0) ** np.clip(local / rng.uniform(0.2, 3.0), 0, 1)
        if rng.random() < 0.3:  # vibrato
            frequency = frequency * (1 + rng.uniform(0.002, 0.02) * np.sin(2 * np.pi * rng.uniform(3, 8) * t))
        phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
        if kind in ("sine", "sweep"):
            ratios, amplitudes = [1.0], [1.0]
        elif kind == "harmonic":
            count, tilt = rng.integers(2, 16), rng.uniform(0, 2.5)
            ratios = list(range(1, count + 1))
            amplitudes = [r ** -tilt for r in ratios]
            if rng.random() < 0.3:
                amplitudes = [a if r % 2 else 0.0 for r, a in zip(ratios, amplitudes)]
        elif kind == "bell":
            count = rng.integers(2, 7)
            ratios = [1.0] + sorted(rng.uniform(1.2, 7.0, count - 1).tolist())
            amplitudes = rng.uniform(0.1, 1, count).tolist()
        else:  # fm
            ratios, amplitudes = [1.0], [1.0]
            phase = phase + rng.uniform(0.5, 5) * np.sin(2 * np.pi * f0 * rng.choice([0.5, 1, 2, 3.5]) * t)
        sound, top = np.zeros(n), frequency.max()
        for ratio, amplitude in zip(ratios, amplitudes):
            if ratio * top < highest:
                sound += amplitude * np.sin(ratio * phase + rng.uniform(0, 2 * np.pi))
        peak = np.abs(sound).max()
        if peak > 0:
            out += np.exp(rng.uniform(np.log(0.03), np.log(0.9))) * envelope * sound / peak
    out = out + _noise_floor(rng, rng.random(), n, 0.45)
    if rng.random() < 0.1:
        out += rng.uniform(-0.05, 0.05)
    return _at_most_099(out)


EFFECT_KINDS = ("burst", "impact", "crackle", "whoosh")


def _band_noise(rng, n: int, sample_rate: int, low: float, high: float) -> np.ndarray:
    """White noise band-limited to `low`..`high` Hz (cosine edges an octave wide), RMS 1."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    octaves_below, octaves_above = np.log2(np.maximum(f, 1.0) / low), np.log2(np.maximum(f, 1.0) / high)
    gain = np.clip(1 + octaves_below, 0, 1) * np.clip(1 - octaves_above, 0, 1)
    x = np.fft.irfft(spectrum * np.sin(gain * np.pi / 2) ** 2, n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def effect_sound(seed: int, seconds: float = 4.25, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A procedural sound effect, (S,) float32 peaking at most 0.99: what `tonal_sound` is to beeps, this
    is to bangs, knocks, crackles and whooshes, broadband and often loud.

    1 to 4 events, each a noise burst (band 50 Hz-1 kHz up to 2-7.5 kHz, a 0.5-10 ms attack and a
    20 ms-1 s decay), an impact (a 5-40 ms burst over a 40-200 Hz thump falling in pitch, decaying in
    50-500 ms), a crackle (2-5 ms clicks at 5-200 a second for 0.2-2 s) or a whoosh (band noise swelling
    and fading over 0.3-2 s), at a peak of 0.05-0.99; a quarter of the sounds are driven 1.5-4 x into
    clipping at 0.99 (noise and all). Under them digital silence (50 %), noise at -90..-50 dB (30 %) or
    -50..-30 dB (20 %). The same seed gives the same samples."""
    rng, n, t = _procedural_sound_start(seed, seconds, sample_rate)
    top = sample_rate / 2 * 0.94
    out = np.zeros(n)
    for _ in range(rng.integers(1, 5)):
        kind = rng.choice(EFFECT_KINDS, p=[0.35, 0.3, 0.15, 0.2])
        start = rng.uniform(-0.1, seconds * 0.8)
        local = t - start
        on = local >= 0
        noise = _band_noise(rng, n, sample_rate, float(np.exp(rng.uniform(np.log(50), np.log(1000)))),
                            min(top, float(rng.uniform(2000, 7500))))
        if kind == "burst":
            attack = np.exp(rng.uniform(np.log(0.0005), np.log(0.01)))
            envelope = np.clip(local / attack, 0, 1) * np.exp(-np.clip(local - attack, 0, None)
                                                               / np.exp(rng.uniform(np.log(0.02), np.log(1.0))))
            sound = noise * envelope * on
        elif kind == "impact":
            f0, drop = rng.uniform(40, 200), rng.uniform(0.3, 1.0)
            frequency = f0 * (1 - drop * (1 - np.exp(-np.clip(local, 0, None) / 0.05)))
            thump = np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate) * np.exp(-np.clip(local, 0, None)
                                                                                    / rng.uniform(0.05, 0.5))
            burst = noise * np.exp(-np.clip(local, 0, None) / rng.uniform(0.005, 0.04))
            sound = (rng.uniform(0.3, 1.0) * burst + thump) * on
        elif kind == "crackle":
            length, rate = rng.uniform(0.2, 2.0), rng.uniform(5, 200)
            clicks = np.zeros(n)
            times = rng.uniform(0, length, rng.poisson(rate * length) + 1) + start
            index = np.round(times * sample_rate).astype(int)
            index = index[(index >= 0) & (index < n)]
            clicks[index] = rng.choice([-1.0, 1.0], len(index)) * rng.uniform(0.2, 1.0, len(index))
            width = max(2, int(rng.uniform(0.002, 0.005) * sample_rate))
            sound = np.convolve(clicks, noise[:width] * np.exp(-np.arange(width) / (width / 4)), mode="same")
        else:  # whoosh
            length = rng.uniform(0.3, 2.0)
            sound = noise * np.sin(np.pi * np.clip(local / length, 0, 1)) ** 2
        peak = np.abs(sound).max()
        if peak > 0:
            out += np.exp(rng.uniform(np.log(0.05), np.log(0.99))) * sound / peak
    u, drive = rng.random(), rng.random() < 0.25
    out = out + _noise_floor(rng, u, n, 0.5)
    if drive and np.abs(out).max() > 0:  # driven past full scale, as a loud recording clips
        out = np.clip(out / np.abs(out).max() * 0.99 * rng.uniform(1.5, 4.0), -0.99, 0.99)
    return _at_most_099(out)


def _fit_samples(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad (C, S) to exactly `length` samples: a clip's audio may end a few samples
    early or late after resampling."""
    have = waveform.shape[-1]
    if have >= length:
        return waveform[..., :length]
    return torch.cat([waveform, waveform.new_zeros(*waveform.shape[:-1], length - have)], -1)


def _probe(path: str, streams: str = "both") -> tuple[float, str | None]:
    """Duration in seconds of the shorter of the first video and audio streams (of the one asked for,
    with `streams` "video" or "audio"), or a reason to skip the file. Reads headers only."""
    import av  # PyAV; only needed for user folders

    try:
        with av.open(path) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            if video is None and streams != "audio":
                return 0.0, "no video stream"
            if audio is None and streams != "video":
                return 0.0, "no audio stream"
            used = {"both": (video, audio), "video": (video,), "audio": (audio,)}[streams]
            durations = [float(s.duration * s.time_base) for s in used
                         if s.duration is not None and s.time_base is not None]
            if not durations and container.duration is not None:
                durations = [container.duration / av.time_base]
            if not durations:
                return 0.0, "duration unknown"
            return min(durations), None
    except (av.error.FFmpegError, OSError) as error:
        return 0.0, f"cannot be read: {error}"

"""Mixture of Noise Levels: training draws of noise-level matrices, and inference task masks.

A noise-level matrix has one level in [0, 1] per (modality, time segment) block: row 0 is video,
row 1 is audio, N columns are the layout's segments. Training draws one per sample from a mixture
of strategies; inference builds one from a task and times in seconds.

Inference masks are per latent frame (finer than a segment, so any time in seconds is honoured):
- level 0: given. The block is fed clean at every model call and comes out bit-identical.
- level 1: generated from pure noise.
- level l strictly between 0 and 1: "keep this much", like img2img denoise strength. Let t* be the
  largest level on the sampler's schedule that does not exceed l. The given content is noised to
  t* once (with noise from the seed) and held there, fed to the model at level t*, while the
  sampler is above t*; from step t* on it is denoised with the generated blocks. So l = 0.3 keeps
  the given content's coarse structure and re-draws its detail; the smaller l, the more is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from avdit.config import MonlConfig
from avdit.layout import Layout

STRATEGIES = ("vanilla", "per_modality", "per_segment", "per_modality_segment")
TASKS = ("joint", "a2v", "v2a", "continue", "inpaint", "interpolate", "custom")
MODALITIES = ("video", "audio")


# --- training ------------------------------------------------------------------------------
def draw_levels(
    batch: int, num_segments: int, config: MonlConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a (batch, 2, num_segments) level matrix per sample, and which strategy made each.

    Each sample picks a strategy with probability proportional to `config.weights`, then:
    vanilla one level for everything; per_modality one per row; per_segment one per column;
    per_modality_segment every entry independent. Levels come from `config.level_sampling`
    (uniform on [0, 1), or logit-normal: sigmoid of a standard normal). With
    `config.clean_probability`, each drawn row or column (or entry) of a non-vanilla strategy is
    set to 0 (given) instead: how often a sample then conditions on a whole modality depends on
    the strategy. With `config.task_probability`, whatever its strategy, a sample gets the given
    blocks of one of CONDITIONAL_TASKS (picked uniformly; `task_given`) set to 0: the same
    conditioning exposure for every strategy. A task-specific config (`config.task`) always
    returns that task's mask with one drawn level for its generated blocks.
    Returns (levels, strategy index into STRATEGIES, -1 for a task).
    """
    if config.task is not None:
        return _draw_task_levels(batch, num_segments, config, generator), torch.full((batch,), -1)
    names = [n for n in STRATEGIES if config.weights.get(n, 0) > 0]
    unknown = sorted(set(config.weights) - set(STRATEGIES))
    if unknown or not names:
        raise ValueError(f"MoNL weights {config.weights} must give a positive weight to at least one of {STRATEGIES}")
    weights = torch.tensor([float(config.weights.get(n, 0)) for n in STRATEGIES])
    strategy = torch.multinomial(weights / weights.sum(), batch, replacement=True, generator=generator)
    shapes = {0: (1, 1), 1: (2, 1), 2: (1, num_segments), 3: (2, num_segments)}
    levels = torch.empty(batch, 2, num_segments)
    for index, (rows, cols) in shapes.items():
        chosen = strategy == index
        count = int(chosen.sum())
        if count == 0:
            continue
        draw = _levels((count, rows, cols), config.level_sampling, generator)
        if index > 0 and config.clean_probability > 0:
            clean = torch.rand(count, rows, cols, generator=generator) < config.clean_probability
            draw = draw.masked_fill(clean, 0.0)
        levels[chosen] = draw.expand(count, 2, num_segments)
    if config.task_probability > 0:
        patterns = torch.stack([task_given(t, num_segments) for t in CONDITIONAL_TASKS])  # (K, 2, N)
        conditioned = torch.rand(batch, generator=generator) < config.task_probability
        picked = torch.randint(len(CONDITIONAL_TASKS), (batch,), generator=generator)
        given = patterns[picked] & conditioned[:, None, None]
        levels = levels.masked_fill(given, 0.0)
    return levels, strategy


LEVEL_SAMPLING = ("uniform", "logit_normal")


def _levels(shape: tuple[int, ...], sampling: str, generator: torch.Generator | None) -> torch.Tensor:
    """Noise levels in [0, 1): uniform, or logit-normal (sigmoid of N(0, 1): more draws mid-way, fewer at the ends)."""
    if sampling == "uniform":
        return torch.rand(shape, generator=generator)
    if sampling == "logit_normal":
        return torch.sigmoid(torch.randn(shape, generator=generator))
    raise ValueError(f"level sampling is {sampling!r}; expected one of {LEVEL_SAMPLING}")


# The tasks whose given blocks a training draw can hold (MonlConfig.task_probability) and that
# `avdit eval` scores; joint gives nothing.
CONDITIONAL_TASKS = ("a2v", "v2a", "continue", "inpaint")


def task_given(task: str, num_segments: int) -> torch.Tensor:
    """(2, N) bool: the (modality, segment) blocks `task` gives, row 0 video, row 1 audio.

    The one definition of each task's blocks that task-specific training, the MoNL mixture's task
    draws and `avdit eval`'s scoring share. a2v: the audio; v2a: the video; continue: the first
    ceil(N / 2) segments (the first 1.125 s of a 2.125 s, five-segment clip); inpaint: all but
    segments N // 2 .. N - 2 (five segments: 0, 1 and 4 given, 0.625 .. 1.625 s generated);
    interpolate: the first and the last segment; joint: nothing.
    """
    given = torch.zeros(2, num_segments, dtype=torch.bool)
    least = {"continue": 2, "inpaint": 3, "interpolate": 3}.get(task, 1)
    if num_segments < least:
        raise ValueError(f"task {task!r} needs at least {least} time segments to give some and generate others; the clip has {num_segments}")
    if task == "a2v":
        given[1] = True
    elif task == "v2a":
        given[0] = True
    elif task == "continue":
        given[:, : (num_segments + 1) // 2] = True
    elif task == "inpaint":
        given[:, : num_segments // 2] = given[:, -1] = True
    elif task == "interpolate":
        given[:, 0] = given[:, -1] = True
    elif task != "joint":
        raise ValueError(f"task is {task!r}; expected one of joint, a2v, v2a, continue, inpaint, interpolate")
    return given


def _draw_task_levels(batch: int, num_segments: int, config: MonlConfig, generator: torch.Generator | None) -> torch.Tensor:
    """A task-specific baseline's draw: the task's given blocks at 0, one level for the rest."""
    given = task_given(config.task, num_segments)
    level = _levels((batch, 1, 1), config.level_sampling, generator).expand(batch, 2, num_segments)
    return torch.where(given, torch.zeros(()), level)


def per_frame_levels(levels: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, N) block levels -> (B, Tv) video and (B, Ta) audio levels per latent frame."""
    return levels[:, 0, layout.video_segments], levels[:, 1, layout.audio_segments]


# --- inference ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseLevelMask:
    """Levels per latent frame: (Tv,) for video, (Ta,) for audio; 0 given, 1 generated."""

    video: torch.Tensor
    audio: torch.Tensor

    @property
    def anything_given(self) -> bool:
        return bool((self.video < 1).any() or (self.audio < 1).any())


def given_spans_mask(layout: Layout, spans: dict[str, list[tuple[float, float]]], given_level: float = 0.0) -> NoiseLevelMask:
    """Level `given_level` on the latent frames each modality's spans (seconds) cover, 1 elsewhere."""
    unknown = sorted(set(spans) - set(MODALITIES))
    if unknown:
        raise ValueError(f"spans are given for {unknown}; expected modalities among {MODALITIES}")
    levels = []
    for m in MODALITIES:
        given = layout.covered(spans.get(m, []), m)
        levels.append(torch.where(given, torch.tensor(float(given_level)), torch.tensor(1.0)))
    return NoiseLevelMask(*levels)


def task_mask(
    task: str,
    layout: Layout,
    *,
    given_seconds: float | None = None,
    start: float | None = None,
    end: float | None = None,
    head_seconds: float | None = None,
    tail_seconds: float | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    levels: torch.Tensor | list | None = None,
    given_level: float = 0.0,
) -> NoiseLevelMask:
    """The noise-level mask of a task, with every time in seconds.

    joint: nothing given. a2v: audio given. v2a: video given. continue: [0, given_seconds) given.
    inpaint: everything outside [start, end] given. interpolate: [0, head_seconds) and the last
    tail_seconds given. custom: `levels`, a (2, N) per-(modality, segment) matrix (row 0 video).
    For continue / inpaint / interpolate, `modalities` says which modalities the given spans hold
    (e.g. ('audio',) continues a clip's audio and generates all of its video); `given_level`
    is the level put on given blocks (0 keeps them exactly; see the module doc for 0 < l < 1).
    """
    duration = layout.duration

    def spans_mask(spans: list[tuple[float, float]]) -> NoiseLevelMask:
        bad = [m for m in modalities if m not in MODALITIES]
        if bad or not modalities:
            raise ValueError(f"modalities is {modalities!r}; expected a non-empty subset of {MODALITIES}")
        return given_spans_mask(layout, {m: spans for m in modalities}, given_level)

    def need(name: str, value: float | None) -> float:
        if value is None:
            raise ValueError(f"task '{task}' needs {name} (seconds)")
        value = float(value)
        if not (0 <= value <= duration + 1e-6):
            raise ValueError(f"{name} is {value} s; the clip is {duration:g} s long: give 0 <= {name} <= {duration:g}")
        return value

    if not 0 <= given_level < 1:
        raise ValueError(f"given_level is {given_level}; expected 0 <= given_level < 1 (1 would generate the block)")
    tv, ta = layout.video_latent_frames, layout.audio_latent_frames
    if task == "joint":
        return NoiseLevelMask(torch.ones(tv), torch.ones(ta))
    if task == "a2v":
        return NoiseLevelMask(torch.ones(tv), torch.full((ta,), float(given_level)))
    if task == "v2a":
        return NoiseLevelMask(torch.full((tv,), float(given_level)), torch.ones(ta))
    if task == "continue":
        return spans_mask([(0.0, need("given_seconds", given_seconds))])
    if task == "inpaint":
        a, b = need("start", start), need("end", end)
        if b < a:
            raise ValueError(f"inpaint end ({b} s) is before start ({a} s); give start <= end")
        return spans_mask([(0.0, a), (b, duration)])
    if task == "interpolate":
        head, tail = need("head_seconds", head_seconds), need("tail_seconds", tail_seconds)
        return spans_mask([(0.0, head), (duration - tail, duration)])
    if task == "custom":
        if levels is None:
            raise ValueError("task 'custom' needs levels: a (2, N) matrix, row 0 video, row 1 audio, one column per segment")
        matrix = torch.as_tensor(levels, dtype=torch.float32)
        n = layout.num_segments
        if matrix.shape != (2, n):
            raise ValueError(f"custom levels have shape {tuple(matrix.shape)}; this {duration:g} s clip needs (2, {n}): 2 modalities x {n} segments")
        if not bool(((matrix >= 0) & (matrix <= 1)).all()):
            raise ValueError(f"custom levels must lie in [0, 1]; got {matrix.tolist()}")
        return NoiseLevelMask(matrix[0, layout.video_segments], matrix[1, layout.audio_segments])
    raise ValueError(f"task is {task!r}; expected one of {TASKS}")

"""The whole model behind one object: media in, latents, task masks, sampling, media out.

The ComfyUI nodes and the command line both use this, so a clip made either way is made the same:

    pipe = AVDiTPipeline.load()                       # the bundled demo model
    latent = pipe.encode(frames=f, fps=25, waveform=w, sample_rate=44100, duration=4.0)
    latent = with_task(latent, "continue", given_seconds=1.0)
    frames, waveform, fps, rate = pipe.decode(pipe.sample(latent, steps=25, seed=1))

Every time is in seconds of the input. Inputs at any fps / sample rate are converted to the
checkpoint's native rates (`avdit.media`); what the inputs do not cover (a missing modality, or
the time after they end) is marked as not available and is generated whatever the task says.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from avdit import media
from avdit.checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from avdit.codecs import (SHIPPED_CODECS, AudioCodec, VideoCodec, analytic_audio_config, analytic_video_config,
                          build_codecs)
from avdit.config import AVDiTConfig
from avdit.layout import Layout
from avdit.model import AVDiT, model_config
from avdit.monl import MODALITIES, NoiseLevelMask, given_spans_mask, task_mask
from avdit.sampling import DEFAULT_GUIDANCE, Guidance, sample
from avdit.schedule import Schedule

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "avdit-toneshapes-demo.safetensors"


@dataclass(frozen=True)
class AVLatent:
    """Video (B, Cv, Tv, h, w) and audio (B, Ca, Ta) latents of one clip, where they sit in time,
    which latent frames hold real input (`available`: 0 = from the input, 1 = nothing there), and
    the task's noise-level mask, if one was set. Immutable: `dataclasses.replace` to change."""

    video: torch.Tensor
    audio: torch.Tensor
    layout: Layout
    available: NoiseLevelMask
    mask: NoiseLevelMask | None = None
    seconds: float | None = None  # the duration asked for; the layout rounds up to the codec's frame grid

    @property
    def duration(self) -> float:
        return self.layout.duration

    @property
    def output_frames(self) -> int:
        """Video frames a decode returns: the asked duration in whole frames, within the layout."""
        if self.seconds is None:
            return self.layout.num_frames
        return min(self.layout.num_frames, max(1, round(self.seconds * self.layout.fps)))

    def effective_mask(self) -> NoiseLevelMask:
        """The mask sampling uses: the task's, but never 'given' where no input was available."""
        mask = self.mask if self.mask is not None else self.available
        return NoiseLevelMask(torch.maximum(mask.video, self.available.video), torch.maximum(mask.audio, self.available.audio))


def with_task(latent: AVLatent, task: str, **seconds) -> AVLatent:
    """`latent` with the noise-level mask of `task` (see `avdit.monl.task_mask` for the arguments)."""
    return dataclasses.replace(latent, mask=task_mask(task, latent.layout, **seconds))


class AVDiTPipeline:
    """A denoiser, its two codecs and its config."""

    def __init__(self, config: AVDiTConfig, denoiser: AVDiT, video_codec: VideoCodec, audio_codec: AudioCodec):
        self.config, self.denoiser = config, denoiser.eval().requires_grad_(False)
        self.video_codec = video_codec.eval().requires_grad_(False)
        self.audio_codec = audio_codec.eval().requires_grad_(False)
        self.schedule = Schedule(config.schedule)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device="cpu", dtype: torch.dtype = torch.float32) -> "AVDiTPipeline":
        """Load a checkpoint (default: the bundled demo model). Codecs stay in float32."""
        path = Path(path) if path is not None else DEMO_MODEL
        if path == DEMO_MODEL and not path.is_file():
            raise CheckpointError(
                f"{path}: the bundled demo model is missing from this install (a partial copy of the "
                "repository?); reinstall the package, or pass a checkpoint (e.g. one made by `python -m avdit train`)"
            )
        config, tensors = load_checkpoint(path)
        if not any(k.startswith("denoiser.") for k in tensors):
            raise CheckpointError(f"{path}: holds no denoiser (no 'denoiser.' tensors); it may be a codecs-only file")
        denoiser = AVDiT(config)
        load_state(denoiser, tensors, "denoiser.", path)
        return cls(config, denoiser, *build_codecs(config, tensors, path)).to(device, dtype)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "AVDiTPipeline":
        """Move the denoiser to `device` / `dtype` and the codecs to `device` (they stay float32)."""
        self.denoiser.to(device=device, dtype=dtype)
        self.video_codec.to(device=device)
        self.audio_codec.to(device=device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def native_fps(self) -> float:
        return self.config.layout.fps

    @property
    def native_sample_rate(self) -> int:
        return self.config.layout.sample_rate

    # --- media <-> latents ----------------------------------------------------------------------
    def encode(self, frames: torch.Tensor | None = None, fps: float | None = None, waveform: torch.Tensor | None = None,
               sample_rate: int | None = None, duration: float | None = None, resize: str = "crop") -> AVLatent:
        """Encode frames (F, H, W, 3) in 0..1 at `fps` and/or a waveform (C, S) at `sample_rate`.

        `duration` (seconds) defaults to the longer input; the time past an input's end, and a
        missing modality, are marked not available (to be generated).
        """
        lay = self.config.layout
        lengths = []
        if frames is not None:
            if fps is None:
                raise ValueError("encode: frames were given without fps; give the frames' frame rate")
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
                raise ValueError(f"encode: frames have shape {tuple(frames.shape)}; expected (frames, height, width, 3)")
            lengths.append(frames.shape[0] / float(fps))
        if waveform is not None:
            if sample_rate is None:
                raise ValueError("encode: a waveform was given without sample_rate")
            if waveform.ndim != 2 or waveform.shape[1] < 1:
                raise ValueError(f"encode: waveform has shape {tuple(waveform.shape)}; expected (channels, samples)")
            lengths.append(waveform.shape[1] / float(sample_rate))
        if duration is None:
            if not lengths:
                raise ValueError("encode: give frames, a waveform or a duration")
            duration = max(lengths)
        layout = Layout.from_config(self.config, duration=duration)
        latent = self.empty_latent(duration, layout=layout)
        video, audio = latent.video, latent.audio
        spans = {"video": [], "audio": []}
        if frames is not None:
            native = media.conform_video(frames, fps, lay.fps, size=(lay.height, lay.width), mode=resize)
            native = native[: layout.num_frames]
            spans["video"] = [(0.0, min(native.shape[0] / lay.fps, frames.shape[0] / float(fps)))]
            padded = torch.cat([native, native[-1:].expand(layout.num_frames - native.shape[0], -1, -1, -1)])
            video = self.video_codec.encode(padded[None].to(self.device)).to(video)
        if waveform is not None:
            native = media.conform_audio(waveform, sample_rate, lay.sample_rate, self.config.audio_codec.channels)
            native = native[:, : layout.num_samples]
            spans["audio"] = [(0.0, native.shape[1] / lay.sample_rate)]
            padded = torch.nn.functional.pad(native, (0, layout.num_samples - native.shape[1]))
            audio = self.audio_codec.encode(padded[None].to(self.device)).to(audio)
        available = NoiseLevelMask(*(torch.where(layout.covered(spans[m], m), 0.0, 1.0) for m in ("video", "audio")))
        return AVLatent(video, audio, layout, available, seconds=latent.seconds)

    def empty_latent(self, duration: float, batch: int = 1, layout: Layout | None = None) -> AVLatent:
        """A latent of `duration` seconds with nothing given."""
        layout = layout or Layout.from_config(self.config, duration=duration)
        lay = self.config.layout
        s = self.config.video_codec.spatial_stride
        device = self.device
        video = torch.zeros(batch, self.config.video_codec.latent_channels, layout.video_latent_frames,
                            lay.height // s, lay.width // s, device=device)
        audio = torch.zeros(batch, self.config.audio_codec.latent_channels, layout.audio_latent_frames, device=device)
        nothing = NoiseLevelMask(torch.ones(layout.video_latent_frames), torch.ones(layout.audio_latent_frames))
        return AVLatent(video, audio, layout, nothing, seconds=float(duration))

    def decode(self, latent: AVLatent) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """-> frames (B, F, H, W, 3) in 0..1, waveform (B, C, S), fps, sample rate, cut to the
        duration asked for (in whole frames; audio to exactly those frames' length)."""
        num_frames = latent.output_frames
        frames = self.video_codec.decode(latent.video.float())[:, :num_frames]
        num_samples = round(num_frames / latent.layout.fps * latent.layout.sample_rate)
        waveform = self.audio_codec.decode(latent.audio.float())[:, :, :num_samples]
        return frames.cpu(), waveform.cpu(), self.native_fps, self.native_sample_rate

    # --- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, latent: AVLatent, steps: int = 25, sampler: str = "euler", scheduler: str = "simple",
               seed: int = 0, video_guidance: float = DEFAULT_GUIDANCE, audio_guidance: float = DEFAULT_GUIDANCE, guidance_drop: str = "all",
               shift: float = 1.0, callback=None) -> AVLatent:
        """Generate what the latent's mask (and missing input) asks for; given blocks come back exactly."""
        mask = latent.effective_mask()
        video, audio = sample(
            self.denoiser, self.schedule, mask, latent.video.to(self.device), latent.audio.to(self.device),
            steps=steps, sampler=sampler, scheduler=scheduler, shift=shift, seed=seed,
            guidance=Guidance(video_guidance, audio_guidance, guidance_drop), callback=callback,
        )
        everything = NoiseLevelMask(torch.zeros_like(mask.video), torch.zeros_like(mask.audio))
        return AVLatent(video, audio, latent.layout, everything, seconds=latent.seconds)


    @torch.no_grad()
    def generate(self, frames: torch.Tensor | None, fps: float | None, waveform: torch.Tensor | None,
                 sample_rate: int | None, given: dict[str, list[tuple[float, float]]], duration: float,
                 context_seconds: float | None = None, progress=None, **sampling) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate `duration` seconds, keeping the `given` spans (seconds, per modality) of the input.

        Up to one training window is made in one pass. Longer outputs are made window by window:
        each window after the first is given the last `context_seconds` (default: the first two
        segments' worth, 5 frames at 8 fps) of the previous window's audio and video, plus any
        given input that falls inside it. Returns frames (F, H, W, 3) and waveform (C, S) at the
        model's native fps and sample rate, `duration` long (rounded to whole frames).
        `sampling` goes to `sample` (steps, sampler, seed, ...); `progress(window, windows, info)`
        is called at every step.
        """
        lay = self.config.layout
        total = Layout.from_config(self.config, duration=duration)
        window = Layout.from_config(self.config, num_frames=min(lay.window_frames, total.num_frames))
        if context_seconds is None:
            context_seconds = window.video_spans[min(1, window.video_latent_frames - 1), 1].item()
        context_frames = max(1, round(context_seconds * lay.fps))
        hop = window.num_frames - context_frames
        if total.num_frames > window.num_frames and hop < 1:
            raise ValueError(f"context_seconds {context_seconds} leaves no new frames in a {window.duration} s window")
        starts = [0]
        while starts[-1] + window.num_frames < total.num_frames:
            starts.append(starts[-1] + hop)
        canvas_frames = starts[-1] + window.num_frames
        samples_per_frame = lay.sample_rate / lay.fps
        canvas_v = torch.zeros(canvas_frames, lay.height, lay.width, 3)
        canvas_a = torch.zeros(self.config.audio_codec.channels, round(canvas_frames * samples_per_frame))
        if frames is not None:
            native = media.conform_video(frames, fps, lay.fps, size=(lay.height, lay.width))[:canvas_frames]
            canvas_v[: native.shape[0]] = native
        if waveform is not None:
            native = media.conform_audio(waveform, sample_rate, lay.sample_rate, self.config.audio_codec.channels)
            native = native[:, : canvas_a.shape[1]]
            canvas_a[:, : native.shape[1]] = native
        for index, first in enumerate(starts):
            begin, end = first / lay.fps, (first + window.num_frames) / lay.fps
            spans = {m: _shift_spans(given.get(m, []), begin, end) for m in MODALITIES}
            if index > 0:
                for m in MODALITIES:
                    spans[m].append((0.0, context_frames / lay.fps))
            a0, a1 = round(first * samples_per_frame), round(first * samples_per_frame) + window.num_samples
            latent = self.encode(canvas_v[first : first + window.num_frames], lay.fps, canvas_a[:, a0:a1], lay.sample_rate,
                                 duration=window.duration)
            latent = dataclasses.replace(latent, mask=given_spans_mask(latent.layout, spans))
            callback = None if progress is None else (lambda info, i=index: progress(i, len(starts), info))
            out_v, out_a, _, _ = self.decode(self.sample(latent, callback=callback, **sampling))
            canvas_v[first : first + window.num_frames] = out_v[0]
            canvas_a[:, a0:a1] = out_a[0]
        num_frames = max(1, round(duration * lay.fps))
        return canvas_v[:num_frames], canvas_a[:, : round(num_frames * samples_per_frame)]


def _shift_spans(spans: list[tuple[float, float]], begin: float, end: float) -> list[tuple[float, float]]:
    """The parts of `spans` inside [begin, end), in seconds from `begin`."""
    return [(max(a, begin) - begin, min(b, end) - begin) for a, b in spans if min(b, end) > max(a, begin)]


def load_codec_config_and_tensors(codecs: str | os.PathLike | None = None) -> tuple[AVDiTConfig, dict, tuple[VideoCodec, AudioCodec]]:
    """Codecs to build a model on: the shipped ones (None), those of another checkpoint (a path),
    or the weight-free exactly invertible ones ("analytic"). Returns the config they come with,
    their tensors (prefixed, ready to save beside a denoiser) and the two codecs."""
    if codecs == "analytic":
        video_cfg = dataclasses.replace(analytic_video_config(), latent_shift=0.5, latent_scale=4.0)  # frames 0..1 -> about +-2
        audio_cfg = dataclasses.replace(analytic_audio_config(), latent_scale=4.0)
        config, tensors, path = AVDiTConfig(video_codec=video_cfg, audio_codec=audio_cfg), {}, "analytic codecs"
    else:
        path = Path(codecs) if codecs is not None else SHIPPED_CODECS
        config, tensors = load_checkpoint(path)
        tensors = {k: v for k, v in tensors.items() if k.startswith(("video_codec.", "audio_codec."))}
    return config, tensors, build_codecs(config, tensors, path)


def make_untrained_checkpoint(path: str | os.PathLike, preset: str = "tiny", seed: int = 0,
                              codecs: str | os.PathLike | None = None) -> Path:
    """A checkpoint with a randomly initialised denoiser over the shipped codecs, the codecs of
    another checkpoint, or (codecs="analytic") the weight-free exactly invertible ones: for tests
    and for wiring up workflows before a trained model is at hand. Its output is noise."""
    codec_config, tensors, _ = load_codec_config_and_tensors(codecs)
    config = dataclasses.replace(codec_config, model=model_config(preset),
                                 training={"note": "untrained: random weights, for tests only"})
    torch.manual_seed(seed)
    denoiser = AVDiT(config)
    with torch.no_grad():  # adaLN-Zero starts at exactly 0; perturb so outputs depend on inputs
        for p in denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    tensors = dict(tensors)
    tensors.update({f"denoiser.{k}": v for k, v in denoiser.state_dict().items()})
    return save_checkpoint(path, config, tensors)

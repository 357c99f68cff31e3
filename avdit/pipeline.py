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
from avdit.codecs import (codecs_path, AudioCodec, VideoCodec, analytic_audio_config, analytic_video_config,
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


# audio codec options that change how spectra become sound, not the latents (train-codec --which vocoder sets them)
DECODER_OPTIONS = ("decoder", "vocoder_refine", "vocoder_width", "vocoder_blocks")


def latent_mismatch(model: AVDiTConfig, model_tensors: dict, codecs: AVDiTConfig, codec_tensors: dict) -> str | None:
    """Why `codecs` (a config and a checkpoint's tensors) would not give `model`'s latents, or None when they
    would: the same layout, the same codec settings apart from DECODER_OPTIONS, and every codec weight of the
    model but a neural audio decoder's present and equal (a neural audio decoder may be added or replaced)."""
    if model.layout != codecs.layout:
        return f"layout {codecs.layout.width}x{codecs.layout.height} at {codecs.layout.fps:g} fps and " \
               f"{codecs.layout.sample_rate} Hz, not {model.layout.width}x{model.layout.height} at " \
               f"{model.layout.fps:g} fps and {model.layout.sample_rate} Hz"
    def latent_settings(codec):
        return dataclasses.replace(codec, options={k: v for k, v in codec.options.items() if k not in DECODER_OPTIONS})

    for name in ("video_codec", "audio_codec"):
        if latent_settings(getattr(model, name)) != latent_settings(getattr(codecs, name)):
            return f"the {name.replace('_', ' ')} has other settings"
        for key, tensor in model_tensors.items():
            if key.startswith("audio_codec.vocoder."):  # a decoder of spectra; another one is the point
                continue
            if key.startswith(name + ".") and not (key in codec_tensors and torch.equal(codec_tensors[key], tensor)):
                return f"the {name.replace('_', ' ')}'s weights differ"
    return None


class AVDiTPipeline:
    """A denoiser, its two codecs and its config."""

    def __init__(self, config: AVDiTConfig, denoiser: AVDiT, video_codec: VideoCodec, audio_codec: AudioCodec):
        self.config, self.denoiser = config, denoiser.eval().requires_grad_(False)
        self.video_codec = video_codec.eval().requires_grad_(False)
        self.audio_codec = audio_codec.eval().requires_grad_(False)
        self.schedule = Schedule(config.schedule)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device="cpu", dtype: torch.dtype = torch.float32,
             codecs: str | os.PathLike | None = None) -> "AVDiTPipeline":
        """Load a checkpoint (default: the bundled demo model). Codecs stay in float32. `codecs` (a name or a
        checkpoint, see `codecs_path`) replaces the model's own codecs with ones that give the same latents:
        its codecs with a neural audio decoder added (`train-codec --which vocoder --base MODEL`); any others
        are refused (`latent_mismatch`), since their latents would mean something else to the denoiser."""
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
        source = path
        if codecs is not None:
            source = codecs_path(codecs)
            codec_config, codec_tensors = load_checkpoint(source)
            problem = latent_mismatch(config, tensors, codec_config, codec_tensors)
            if problem:
                raise CheckpointError(
                    f"{source}: not the codecs {path.name} was trained on ({problem}): their latents would mean "
                    f"something else to its denoiser; give the model's own codecs with a neural audio decoder added "
                    f"(python -m avdit train-codec --which vocoder --base {path}), or train a model on these codecs "
                    f"(python -m avdit train --codecs ...)")
            config = dataclasses.replace(config, video_codec=codec_config.video_codec, audio_codec=codec_config.audio_codec)
            tensors = {k: v for k, v in codec_tensors.items() if k.startswith(("video_codec.", "audio_codec."))}
        return cls(config, denoiser, *build_codecs(config, tensors, source)).to(device, dtype)

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
    def codec_device(self) -> torch.device:
        """Where the codecs run (weight-free codecs: with the denoiser)."""
        return next(self.video_codec.parameters(), next(self.denoiser.parameters())).device

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
            video = self.video_codec.encode(padded[None].to(self.codec_device)).to(video)
        if waveform is not None:
            native = media.conform_audio(waveform, sample_rate, lay.sample_rate, self.config.audio_codec.channels)
            native = native[:, : layout.num_samples]
            spans["audio"] = [(0.0, native.shape[1] / lay.sample_rate)]
            padded = torch.nn.functional.pad(native, (0, layout.num_samples - native.shape[1]))
            audio = self.audio_codec.encode(padded[None].to(self.codec_device)).to(audio)
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
        frames = self.video_codec.decode(latent.video.float().to(self.codec_device))[:, :num_frames]
        num_samples = round(num_frames / latent.layout.fps * latent.layout.sample_rate)
        waveform = self.audio_codec.decode(latent.audio.float().to(self.codec_device))[:, :, :num_samples]
        return frames.cpu(), waveform.cpu(), self.native_fps, self.native_sample_rate

    # --- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, latent: AVLatent, steps: int = 25, sampler: str = "euler", scheduler: str = "simple",
               seed: int = 0, video_guidance: float = DEFAULT_GUIDANCE, audio_guidance: float = DEFAULT_GUIDANCE, guidance_drop: str = "all",
               shift: float = 1.0, callback=None, windowed: bool = False, context_seconds: float | None = None) -> AVLatent:
        """Generate what the latent's mask (and missing input) asks for; given blocks come back exactly.

        A latent longer than one training window is sampled in one pass, unless `windowed`: then
        it is made one training window at a time, as `generate` makes long outputs: each window
        is given the last `context_seconds` (default 0.625 s) of what the windows before made,
        and whatever the mask gives inside it; a window with nothing to make is skipped (see
        `_sample_windowed`). `callback(info)` is called at every step; windowed, info also holds
        "window" and "windows" (0-based index, count).
        """
        if windowed:
            sampling = dict(steps=steps, sampler=sampler, scheduler=scheduler, seed=seed, video_guidance=video_guidance,
                            audio_guidance=audio_guidance, guidance_drop=guidance_drop, shift=shift)
            return self.sample_windowed(latent, lambda window, step: self.sample(window, callback=step, **sampling),
                                        context_seconds, callback)
        mask = latent.effective_mask()
        video, audio = sample(
            self.denoiser, self.schedule, mask, latent.video.to(self.device), latent.audio.to(self.device),
            steps=steps, sampler=sampler, scheduler=scheduler, shift=shift, seed=seed,
            guidance=Guidance(video_guidance, audio_guidance, guidance_drop), callback=callback,
        )
        everything = NoiseLevelMask(torch.zeros_like(mask.video), torch.zeros_like(mask.audio))
        return AVLatent(video, audio, latent.layout, everything, seconds=latent.seconds)

    def sample_windowed(self, latent: AVLatent, sample_window, context_seconds: float | None = None,
                        callback=None) -> AVLatent:
        """Sample a latent longer than one training window one window at a time, in latent space
        (a latent of at most one window is sampled whole): each window is cut from the latent (its
        first video latent frame, a frame of its own in a causal codec, is encoded afresh from the
        decoded frame), sampled by `sample_window(window_latent, step_callback) -> AVLatent` with
        what the mask gives and what earlier windows made as its given blocks, and what it makes is
        written back. Nothing already there is re-encoded, so the given blocks and earlier windows'
        output stay exactly as they are. `callback(info)` gets each step's info with "window" and
        "windows" added. The pipeline's own sampler and ComfyUI's both sample through this."""
        lay, layout = self.config.layout, latent.layout
        if layout.num_frames <= lay.window_frames:
            step = None if callback is None else (lambda info: callback({**info, "window": 0, "windows": 1}))
            return sample_window(latent, step)
        window = Layout.from_config(self.config, num_frames=lay.window_frames)
        stride, samples_per_frame = layout.temporal_stride, lay.sample_rate / lay.fps
        hop = window_hop(self.config, context_seconds)
        mask = latent.effective_mask()
        video, audio = latent.video.to(self.device).clone(), latent.audio.to(self.device).clone()
        todo_v, todo_a = mask.video.float().clone(), mask.audio.float().clone()  # levels still to sample; 0 once made
        starts = [0]
        while starts[-1] + window.num_frames < layout.num_frames:
            starts.append(starts[-1] + hop)
        for index, first in enumerate(starts):
            # window latent k is long latent first/stride + k (causal: k >= 1; its latent 0, frame `first`
            # alone, lies inside long latent first/stride, whose level it takes)
            rows_v = first // stride + torch.arange(window.video_latent_frames)
            rows_a = round(first * samples_per_frame) // layout.hop + torch.arange(window.audio_latent_frames)
            in_v, in_a = rows_v < video.shape[2], rows_a < audio.shape[2]  # inside the clip; past it: padding
            levels_v = torch.where(in_v, todo_v[rows_v.clamp(max=video.shape[2] - 1)], 1.0)
            levels_a = torch.where(in_a, todo_a[rows_a.clamp(max=audio.shape[2] - 1)], 1.0)
            # an audio frame reaching past the window's end is the window's padding: made, not kept
            # (unless the clip ends there too)
            kept_a = in_a & ((window.audio_spans[:, 1] <= window.duration + 1e-6) | (rows_a == audio.shape[2] - 1))
            made_v, made_a = (levels_v > 0) & in_v, (levels_a > 0) & kept_a
            if layout.causal and first > 0:
                made_v[0] = False  # frame `first` alone: made by the window before (it overlaps this one)
            if not bool(made_v.any() or made_a.any()):
                continue  # nothing to make here
            cut_v = video.new_zeros(video.shape[0], video.shape[1], window.video_latent_frames, *video.shape[3:])
            cut_a = audio.new_zeros(audio.shape[0], audio.shape[1], window.audio_latent_frames)
            cut_v[:, :, in_v] = video[:, :, rows_v[in_v]]
            cut_a[:, :, in_a] = audio[:, :, rows_a[in_a]]
            if layout.causal and first > 0:
                frame = self.video_codec.decode(video[:, :, : first // stride + 1].float().to(self.codec_device))[:, first : first + 1]
                cut_v[:, :, :1] = self.video_codec.encode(frame).to(cut_v)
            step = None if callback is None else (lambda info, i=index: callback({**info, "window": i, "windows": len(starts)}))
            window_latent = AVLatent(cut_v, cut_a, window, NoiseLevelMask(levels_v, levels_a), seconds=window.duration)
            out = sample_window(window_latent, step)
            video[:, :, rows_v[made_v]] = out.video[:, :, made_v].to(video)
            audio[:, :, rows_a[made_a]] = out.audio[:, :, made_a].to(audio)
            todo_v[rows_v[made_v]], todo_a[rows_a[made_a]] = 0.0, 0.0
        everything = NoiseLevelMask(torch.zeros_like(mask.video), torch.zeros_like(mask.audio))
        return AVLatent(video, audio, layout, everything, seconds=latent.seconds)

    @torch.no_grad()
    def generate(self, frames: torch.Tensor | None, fps: float | None, waveform: torch.Tensor | None,
                 sample_rate: int | None, given: dict[str, list[tuple[float, float]]], duration: float,
                 context_seconds: float | None = None, progress=None, **sampling) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate `duration` seconds, keeping the `given` spans (seconds, per modality) of the input.

        The input is encoded, masked to keep the given spans, sampled (`sample` with `windowed`:
        up to one training window in one pass, longer outputs window by window, each window given
        the last `context_seconds` of what came before) and decoded. Returns frames (F, H, W, 3)
        and waveform (C, S) at the model's native fps and sample rate, `duration` long (rounded
        to whole frames). `sampling` goes to `sample` (steps, sampler, seed, ...);
        `progress(window, windows, info)` is called at every step.
        """
        latent = self.encode(frames, fps, waveform, sample_rate, duration=duration)
        latent = dataclasses.replace(latent, mask=given_spans_mask(latent.layout, {m: given.get(m, []) for m in MODALITIES}))
        callback = None if progress is None else (lambda info: progress(info.get("window", 0), info.get("windows", 1), info))
        out = self.sample(latent, callback=callback, windowed=True, context_seconds=context_seconds, **sampling)
        out_frames, out_waveform, _, _ = self.decode(out)
        return out_frames[0], out_waveform[0]


def window_hop(config: AVDiTConfig, context_seconds: float | None = None) -> int:
    """Video frames from one window's start to the next's when a clip longer than one training window
    is sampled window by window: the most that keeps `context_seconds` of overlap (default: up to the end
    of the window's second video latent frame, 0.625 s at 8 fps) and starts each window where both
    latents can be cut (a whole video group and a whole audio latent frame). ValueError when none does."""
    window = Layout.from_config(config, num_frames=config.layout.window_frames)
    stride, samples_per_frame = window.temporal_stride, config.layout.sample_rate / config.layout.fps
    if context_seconds is None:
        context_seconds = window.video_spans[min(1, window.video_latent_frames - 1), 1].item()
    context_frames = max(1, round(context_seconds * config.layout.fps))
    # windows start on frames where both latents can be cut: a whole video group and a whole audio frame
    hops = [h for h in range(window.num_frames - context_frames, 0, -1)
            if h % stride == 0 and (h * samples_per_frame) % window.hop == 0]
    if not hops:
        raise ValueError(f"sample: windowed sampling with context_seconds {context_seconds:g} finds no window start where "
                         f"both latents can be cut (video groups of {stride} frames, audio frames of {window.hop} samples, "
                         f"{samples_per_frame:g} samples a frame, windows of {window.num_frames} frames); "
                         "give less context or sample in one pass")
    return hops[0]


def load_codec_config_and_tensors(codecs: str | os.PathLike | None = None) -> tuple[AVDiTConfig, dict, tuple[VideoCodec, AudioCodec]]:
    """Codecs to build a model on: the shipped ToneShapes ones (None), shipped ones by name ("general"),
    those of another checkpoint (a path), or the weight-free exactly invertible ones ("analytic"). Returns the config they come with,
    their tensors (prefixed, ready to save beside a denoiser) and the two codecs."""
    if codecs == "analytic":
        video_cfg = dataclasses.replace(analytic_video_config(), latent_shift=0.5, latent_scale=4.0)  # frames 0..1 -> about +-2
        audio_cfg = dataclasses.replace(analytic_audio_config(), latent_scale=4.0)
        config, tensors, path = AVDiTConfig(video_codec=video_cfg, audio_codec=audio_cfg), {}, "analytic codecs"
    else:
        path = codecs_path(codecs)
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

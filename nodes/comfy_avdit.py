"""AVDiT inside ComfyUI's own machinery: the denoiser as a `MODEL` under ComfyUI's model
management, its latents as ComfyUI's native audio-video `LATENT`, and the MoNL guider.

- `AVDiTComfyModel` is a `comfy.model_base.BaseModel` around the AVDiT denoiser. Its sampler
  coordinate sigma is the rectified-flow one (x = (1 - sigma) x0 + sigma noise, ComfyUI's CONST),
  and, as in ComfyUI's LTXAV, each token's timestep is its noise mask times sigma. So core
  samplers, schedulers, SamplerCustomAdvanced and the model patcher (loading, offloading, partial
  loading under --lowvram: the Linear layers are ComfyUI's cast-on-demand ones) all work on it.
- A native AV latent is {"samples": NestedTensor((video, audio)), "noise_mask": NestedTensor(...)}
  (the form core Concat AV Latent makes) plus an "avdit" entry that records the clip's frames,
  its asked duration and which latent frames hold input, so masks can map seconds to frames.
- `MonlGuider` gives noise-mask levels MoNL's meaning on any AV model that takes per-token
  timesteps from its noise mask (AVDiT, LTX-2): a level l is the given content noised to l and
  held there until the sampler comes down to it, and guidance replaces the given blocks by noise
  at the top level in its unconditional pass, with separate video and audio scales, batched with
  the conditional pass (and the negative prompt's, when text guidance is on) in one model call.
"""
from __future__ import annotations

import dataclasses
import math

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.model_sampling
import comfy.nested_tensor
import comfy.ops
import comfy.samplers
import comfy.supported_models_base
import comfy.utils

from avdit.layout import Layout
from avdit.monl import NoiseLevelMask
from avdit.pipeline import AVDiTPipeline, AVLatent
from avdit.sampling import denoise_flow, held_mask, snap_levels

LATENT_KEY = "avdit"  # the native LATENT's entry with what AVDiT's masks need to know
MODALITY_DROPS = ("all", "video", "audio")


# --- the model -------------------------------------------------------------------------------------
class AVDiTLatentFormat(comfy.latent_formats.LatentFormat):
    """Previews through ComfyUI's own previewer: the 'reshape' decodes the middle video latent frame
    of the current x0 with the checkpoint's codec, so the RGB factors are the identity."""

    latent_dimensions = 3
    latent_rgb_factors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    def __init__(self, model: "AVDiTComfyModel"):
        self.model = model
        self.latent_channels = model.pipeline.config.video_codec.latent_channels
        self.latent_rgb_factors_reshape = self.preview_frame

    def preview_frame(self, x0: torch.Tensor) -> torch.Tensor:
        """Packed x0 (B, 1, N) -> the first clip's middle frame as (1, 3, 1, H, W) in -1..1."""
        shapes = self.model.latent_shapes
        if getattr(x0, "is_nested", False):  # ComfyUI 0.33 unpacks the latent before its callbacks
            video = x0.unbind()[0]
        else:  # 0.9.1 hands over the packed (B, 1, N) latent
            video = comfy.utils.unpack_latents(x0, shapes)[0] if shapes is not None and len(shapes) > 1 else x0
        codec = self.model.pipeline.video_codec
        device = next(codec.parameters(), torch.empty(0)).device
        middle = video.shape[2] // 2
        with torch.no_grad():
            frames = codec.decode(video[:1, :, middle:middle + 1].float().to(device))  # (1, f, H, W, 3)
        frame = frames[0, frames.shape[1] // 2].clamp(0, 1).movedim(-1, 0)  # (3, H, W)
        scale = max(1, 256 // max(frame.shape[1:]))  # enlarged to about 256 px: 64 px is small on the page
        frame = frame.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
        return (frame * 2 - 1)[None, :, None].to(x0.device)


class AVDiTModelConfig(comfy.supported_models_base.BASE):
    sampling_settings = {"shift": 1.0, "multiplier": 1000}
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 0.1


def schedule_model_sampling(schedule):
    """ComfyUI's flow model sampling (CONST: x = (1 - sigma) x0 + sigma noise) over the levels of a
    non-flow checkpoint schedule: sigma is the schedule's flow coordinate `Schedule.flow_sigma`."""

    class AVDiTModelSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        def set_parameters(self, shift=1.0, timesteps=1000, multiplier=1000):
            self.shift, self.multiplier = shift, multiplier
            levels = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps * schedule.max_level
            self.register_buffer("sigmas", schedule.flow_sigma(levels).float())

        def sigma(self, timestep):
            return timestep / self.multiplier

        def percent_to_sigma(self, percent):
            return float(self.sigmas[-1]) * min(max(1.0 - percent, 0.0), 1.0)

    return AVDiTModelSampling(AVDiTModelConfig({"disable_unet_model_creation": True}))


def use_comfy_linear_layers(module: torch.nn.Module) -> None:
    """Make every Linear layer ComfyUI's cast-on-demand one (same parameters, same maths), so the
    model patcher can keep part of the weights off the GPU under --lowvram."""
    for m in module.modules():
        if type(m) is torch.nn.Linear:
            m.__class__ = comfy.ops.disable_weight_init.Linear


class AVDiTComfyModel(comfy.model_base.BaseModel):
    """The AVDiT denoiser as a ComfyUI model: packed native AV latents in, x0 out."""

    def __init__(self, pipeline: AVDiTPipeline, device=None):
        config = AVDiTModelConfig({"disable_unet_model_creation": True})
        self.pipeline = pipeline  # a plain object: its codecs are not part of the model ComfyUI loads
        config.latent_format = AVDiTLatentFormat(self)
        super().__init__(config, comfy.model_base.ModelType.FLOW, device=device)
        self.diffusion_model = pipeline.denoiser
        self.schedule = pipeline.schedule
        if self.schedule.kind != "flow":
            self.model_sampling = schedule_model_sampling(self.schedule)
        self.latent_shapes = None  # of the latent being sampled, for previews

    def get_dtype(self):
        return next(self.diffusion_model.parameters()).dtype

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        # as LTXAV: a block the mask holds is fed its given content at the timestep mask * sigma,
        # so ComfyUI's blend x * mask + given * (1 - mask) is that content noised to mask * sigma
        return latent_image

    def extra_conds(self, **kwargs):
        out = {}
        shapes = kwargs.get("latent_shapes")
        mask = kwargs.get("denoise_mask")
        if shapes is not None:
            out["latent_shapes"] = comfy.conds.CONDConstant(shapes)
            if mask is not None and len(shapes) > 1:
                video_mask, audio_mask = comfy.utils.unpack_latents(mask, shapes)
                out["denoise_mask"] = comfy.conds.CONDRegular(video_mask)
                out["audio_denoise_mask"] = comfy.conds.CONDRegular(audio_mask)
        return out

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        shapes = kwargs.get("latent_shapes")
        if shapes is None or len(shapes) != 2:
            raise ValueError(f"AVDiT samples audio-video latents (from AVDiT Encode, AVDiT Empty Latent or core "
                             f"Concat AV Latent); this latent has shapes {shapes or [tuple(x.shape)]}")
        self.latent_shapes = shapes
        video, audio = comfy.utils.unpack_latents(x, shapes)  # (B, Cv, Tv, h, w), (B, Ca, Ta)
        sigma = t.float().reshape(x.shape[0])
        video_sigmas = frame_sigmas(kwargs.get("denoise_mask"), sigma, video.shape[2])  # (B, Tv)
        audio_sigmas = frame_sigmas(kwargs.get("audio_denoise_mask"), sigma, audio.shape[2])  # (B, Ta)
        x0_video, x0_audio = denoise_flow(self.diffusion_model, self.schedule, video, audio,
                                          self.schedule.level_of_flow_sigma(video_sigmas),
                                          self.schedule.level_of_flow_sigma(audio_sigmas))
        return comfy.utils.pack_latents([x0_video, x0_audio])[0]


def frame_sigmas(mask: torch.Tensor | None, sigma: torch.Tensor, frames: int) -> torch.Tensor:
    """Per latent frame flow sigma (B, T): the noise mask (B, C, T, ...) times sigma, the largest over
    a frame's channels and positions (AVDiT takes one level per latent frame); no mask: sigma."""
    if mask is None:
        return sigma[:, None].expand(-1, frames)
    mask = mask.to(sigma.device, torch.float32)
    per_frame = mask.movedim(2, -1).flatten(1, -2).amax(dim=1) if mask.ndim > 3 else mask.amax(dim=1)  # (B|1, T)
    return per_frame.expand(sigma.shape[0], -1) * sigma[:, None]


def model_patcher(pipeline: AVDiTPipeline, load_device: torch.device, offload_device: torch.device):
    """The pipeline's denoiser as a `MODEL` (a ModelPatcher) resting on `offload_device`."""
    use_comfy_linear_layers(pipeline.denoiser)
    pipeline.denoiser.to(offload_device)
    return comfy.model_patcher.ModelPatcher(AVDiTComfyModel(pipeline, device=offload_device),
                                            load_device=load_device, offload_device=offload_device)


def avdit_pipeline(model) -> AVDiTPipeline:
    """The AVDiT behind a MODEL; a clear error for any other model."""
    inner = getattr(model, "model", None)
    if not isinstance(inner, AVDiTComfyModel):
        raise ValueError(f"expected an AVDiT model (from AVDiT Loader); got {type(inner or model).__name__}")
    return inner.pipeline


# --- native latents --------------------------------------------------------------------------------
def to_native(latent: AVLatent, with_mask: bool = True) -> dict:
    """AVLatent -> native AV LATENT. Its noise mask holds each latent frame's level (1 = generate),
    at the latents' full size with one channel; none when everything is generated or `with_mask` is
    False (a sampled latent, like core samplers' output). The "avdit" entry keeps the time grid, the
    asked duration and which latent frames hold input."""
    mask = latent.effective_mask()
    time_last = isinstance(latent.layout, MiniMaxH3Layout)  # H3's audio (B, 32, 2, T): back to time last
    audio = latent.audio.movedim(2, -1) if time_last else latent.audio
    out = {"samples": comfy.nested_tensor.NestedTensor((latent.video, audio)),
           LATENT_KEY: {"layout": dataclasses.asdict(latent.layout), "seconds": latent.seconds,
                        "available": [latent.available.video.tolist(), latent.available.audio.tolist()]}}
    if time_last:
        out[LATENT_KEY]["grid"] = MINIMAX_GRID
    if with_mask and bool((mask.video < 1).any() or (mask.audio < 1).any()):
        audio_mask = frame_mask(mask.audio, latent.audio)
        out["noise_mask"] = comfy.nested_tensor.NestedTensor((frame_mask(mask.video, latent.video),
                                                              audio_mask.movedim(2, -1).contiguous() if time_last else audio_mask))
    return out


def frame_mask(levels: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Per latent frame levels (T,) -> a noise mask of `samples`' shape (B, C, T, ...) with batch and
    channels 1: AVDiT's video (1, 1, T, h, w) and audio (1, 1, T); LTX-2's audio (1, 1, T, bins)."""
    rest = samples.shape[3:]
    return levels.float().reshape(1, 1, -1, *([1] * len(rest))).expand(1, 1, -1, *rest).contiguous()


def per_frame(mask: torch.Tensor) -> torch.Tensor:
    """A noise mask (B, C, T, ...) -> the first item's level per latent frame (T,), the largest over
    channels and positions."""
    return mask[0].transpose(0, 1).flatten(1).amax(dim=1).float().cpu()


def replace_native(latent: dict, av: AVLatent, with_mask: bool = True) -> dict:
    """`latent` (whatever else it carries) with the samples, noise mask and grid of `av`."""
    out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask", LATENT_KEY)}
    out.update(to_native(av, with_mask))
    return out


def native_parts(latent: dict, node: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(video, audio) of a native AV LATENT, or a clear error naming what came instead."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None or not getattr(samples, "is_nested", False) or len(samples.unbind()) != 2:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"{node}: the latent is not an audio-video latent (samples {shape}); connect one from "
                         "AVDiT Encode, AVDiT Empty Latent or core Concat AV Latent")
    video, audio = samples.unbind()
    return video, audio


def layout_of(latent: dict, node: str, pipeline: AVDiTPipeline | None = None) -> Layout:
    """The time grid of an AVDiT native latent: its "avdit" entry's, else the model's for its latent
    frames; a grid that does not fit the latent is an error naming both."""
    video, audio = native_parts(latent, node)
    info = latent.get(LATENT_KEY) or {}
    if "layout" in info:
        layout = (MiniMaxH3Layout if info.get("grid") == MINIMAX_GRID else Layout)(**info["layout"])
    elif pipeline is not None:
        config = pipeline.config
        s = config.video_codec.temporal_stride
        frames = 1 + s * (video.shape[2] - 1) if config.video_codec.causal else s * video.shape[2]
        layout = Layout.from_config(config, num_frames=frames)
    else:
        raise ValueError(f"{node}: this latent carries no time grid (an AVDiT latent that went through core nodes "
                         "that rebuild it, or another model's latent); connect its model to the node's model input "
                         "(and for LTX-2 set fps to the clip's frame rate)")
    audio_frames = audio.shape[-1] if isinstance(layout, MiniMaxH3Layout) else audio.shape[2]
    if (video.shape[2], audio_frames) != (layout.video_latent_frames, layout.audio_latent_frames):
        raise ValueError(f"{node}: the latent has {video.shape[2]} video and {audio_frames} audio latent frames; "
                         f"the {'MiniMax H3' if isinstance(layout, MiniMaxH3Layout) else 'AVDiT'} time grid of {layout.duration:g} s has {layout.video_latent_frames} and "
                         f"{layout.audio_latent_frames}")
    return layout


# LTX-2's grid (ComfyUI's LTXAV): a causal video VAE of temporal factor 8 (vae_scale_factors (8, 32, 32) in
# comfy/ldm/lightricks/av_model.py), so latent frame 0 is frame 0 and latent frame k >= 1 frames 8k-7 .. 8k; an
# audio VAE at 16 kHz with a mel hop of 160 and 4x temporal down-sampling (comfy/ldm/lightricks/vae/audio_vae.py,
# latents_per_second), so 25 audio latent frames a second.
LTX2_VIDEO_STRIDE, LTX2_SAMPLE_RATE, LTX2_AUDIO_HOP = 8, 16000, 640


def ltx2_layout(latent: dict, node: str, fps: float) -> Layout:
    """The time grid of an LTX-2 audio-video latent at `fps`; an error naming both when the audio
    does not cover the same time as the video at that frame rate."""
    video, audio = native_parts(latent, node)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{node}: fps is {fps}; an LTX-2 latent's time grid needs the clip's frame rate (> 0)")
    frames = 1 + LTX2_VIDEO_STRIDE * (video.shape[2] - 1)
    expected = math.ceil(frames / fps * LTX2_SAMPLE_RATE / LTX2_AUDIO_HOP)
    if abs(audio.shape[2] - expected) > 1:
        raise ValueError(f"{node}: the LTX-2 latent's {video.shape[2]} video latent frames are {frames} frames = "
                         f"{frames / fps:g} s at {fps:g} fps, which is {expected} audio latent frames, but the latent has "
                         f"{audio.shape[2]} ({audio.shape[2] * LTX2_AUDIO_HOP / LTX2_SAMPLE_RATE:g} s): set fps to the clip's frame rate")
    return Layout(fps=float(fps), sample_rate=LTX2_SAMPLE_RATE, temporal_stride=LTX2_VIDEO_STRIDE, causal=True,
                  hop=LTX2_AUDIO_HOP, segment_seconds=0.5, num_frames=frames, num_samples=audio.shape[2] * LTX2_AUDIO_HOP)


# MiniMax H3's grid (comfy/ldm/minimax/model.py in ComfyUI 0.33): its video latent frame k spans
# FRAME_PER_TOKEN[k % 5] = (1, 4, 4, 4, 4) frames (17 frames per 5 latent frames; 17k + 5 frames give 5k + 2 latent
# frames, comfy_extras/nodes_minimax_h3.py video_latent_t) at 24 fps (nodes_minimax_h3.FPS; the model's RoPE puts
# FRAME_RESCALE = 5/3 = 40/24 audio frames on each video frame), and its audio latent (B, 32, 2 channels, T) has
# 40 latent frames a second (AUDIO_LATENT_FPS). The frame rate is the model's, so the mask's fps input is not used.
MINIMAX_FRAMES_PER_LATENT, MINIMAX_FPS, MINIMAX_AUDIO_RATE = (1, 4, 4, 4, 4), 24, 40
MINIMAX_GRID = "minimax_h3"  # recorded in the latent's "avdit" entry, so a later mask node rebuilds this grid
MINIMAX_MASK_STEPS = 256.0  # MiniMaxH3._token_grid_masks rounds mask values up to multiples of 1/256


def minimax_video_frames(latent_frames: int) -> int:
    return sum(MINIMAX_FRAMES_PER_LATENT[k % 5] for k in range(latent_frames))


@dataclasses.dataclass(frozen=True)
class MiniMaxH3Layout(Layout):
    """Layout on MiniMax H3's grid: video latent frames of (1, 4, 4, 4, 4) frames, audio at `sample_rate` /
    `hop` = 40 latent frames a second (sample_rate 40, hop 1: num_samples is the audio latent frames)."""

    @property
    def video_latent_frames(self) -> int:
        k = 0
        while minimax_video_frames(k) < self.num_frames:
            k += 1
        return k

    @property
    def video_spans(self) -> torch.Tensor:
        n = self.video_latent_frames
        ends = torch.tensor([minimax_video_frames(k + 1) for k in range(n)], dtype=torch.float64)
        starts = torch.cat([torch.zeros(1, dtype=torch.float64), ends[:-1]])
        return torch.stack([starts, ends], dim=1) / self.fps


def minimax_layout(latent: dict, node: str) -> MiniMaxH3Layout:
    """The time grid of a MiniMax H3 audio-video latent; an error naming both when its audio does not
    cover the time of its video."""
    video, audio = native_parts(latent, node)
    if audio.ndim != 4:
        raise ValueError(f"{node}: a MiniMax H3 audio latent is (batch, 32, 2, frames); this one is {tuple(audio.shape)}")
    frames = minimax_video_frames(video.shape[2])
    expected = round(frames / MINIMAX_FPS * MINIMAX_AUDIO_RATE)
    if abs(audio.shape[-1] - expected) > 1:
        raise ValueError(f"{node}: the MiniMax H3 latent's {video.shape[2]} video latent frames are {frames} frames = "
                         f"{frames / MINIMAX_FPS:g} s at {MINIMAX_FPS} fps, which is {expected} audio latent frames, but the "
                         f"latent has {audio.shape[-1]} ({audio.shape[-1] / MINIMAX_AUDIO_RATE:g} s)")
    return MiniMaxH3Layout(fps=float(MINIMAX_FPS), sample_rate=MINIMAX_AUDIO_RATE, temporal_stride=4, causal=True, hop=1,
                           segment_seconds=0.5, num_frames=frames, num_samples=audio.shape[-1])


def is_minimax(inner) -> bool:
    cls = getattr(comfy.model_base, "MiniMaxH3", None)  # ComfyUI 0.33 and newer
    return cls is not None and isinstance(inner, cls)


def grid_of(latent: dict, node: str, model=None, fps: float = 0.0) -> AVLatent:
    """A native AV latent on its time grid: an AVDiT latent's own (or its model's), or LTX-2's at `fps`
    when `model` is an LTX-2 (ComfyUI's LTXAV); any other model is an error naming what is known."""
    inner = getattr(model, "model", None)
    if model is None or LATENT_KEY in latent or isinstance(inner, AVDiTComfyModel):
        return from_native(latent, node, inner.pipeline if isinstance(inner, AVDiTComfyModel) else None)
    if isinstance(inner, comfy.model_base.LTXAV):
        return from_native(latent, node, layout=ltx2_layout(latent, node, fps))
    if is_minimax(inner):
        return from_native(latent, node, layout=minimax_layout(latent, node))
    raise ValueError(f"{node}: the model is a {type(inner or model).__name__}; the mask knows the time grids of AVDiT, "
                     "LTX-2 (LTXAV) and MiniMax H3 latents")


def mask_levels(latent: dict, audio_time_last: bool = False) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per latent frame levels (Tv,), (Ta,) of a native latent's noise mask (first batch item; the
    largest over channels and positions), or None when it has none. `audio_time_last`: MiniMax H3's."""
    mask = latent.get("noise_mask")
    if mask is None:
        return None
    video_mask, audio_mask = mask.unbind() if getattr(mask, "is_nested", False) else (mask, None)
    if audio_mask is not None and audio_time_last:
        audio_mask = audio_mask.movedim(-1, 2)
    return per_frame(video_mask), (per_frame(audio_mask) if audio_mask is not None else None)


def from_native(latent: dict, node: str, pipeline: AVDiTPipeline | None = None, layout: Layout | None = None) -> AVLatent:
    """Native AV LATENT -> AVLatent (the noise mask becomes the task's mask), on the grid of its
    "avdit" entry, of `pipeline` (an AVDiT) or `layout` (another model's, e.g. `ltx2_layout`)."""
    layout = layout_of(latent, node, pipeline) if layout is None or LATENT_KEY in latent else layout
    video, audio = native_parts(latent, node)
    time_last = isinstance(layout, MiniMaxH3Layout)
    if time_last:  # H3's audio (B, 32, 2, T) -> (B, 32, T, 2): time on axis 2, as everywhere else here
        audio = audio.movedim(-1, 2)
    info = latent.get(LATENT_KEY) or {}
    available = NoiseLevelMask(*(torch.tensor(a, dtype=torch.float32) for a in info["available"])) if "available" in info \
        else NoiseLevelMask(torch.zeros(layout.video_latent_frames), torch.zeros(layout.audio_latent_frames))
    levels = mask_levels(latent, time_last)
    if levels is not None:
        mask = NoiseLevelMask(levels[0], levels[1] if levels[1] is not None else torch.ones(layout.audio_latent_frames))
    else:
        mask = NoiseLevelMask(torch.ones(layout.video_latent_frames), torch.ones(layout.audio_latent_frames))
    return AVLatent(video, audio, layout, available, mask, seconds=info.get("seconds"))


def sampled(latent: AVLatent, video: torch.Tensor, audio: torch.Tensor) -> AVLatent:
    """`latent` with sampled content: everything in it is now there (given, for what follows)."""
    nothing_missing = NoiseLevelMask(torch.zeros(latent.layout.video_latent_frames), torch.zeros(latent.layout.audio_latent_frames))
    return AVLatent(video, audio, latent.layout, nothing_missing, nothing_missing, seconds=latent.seconds)


# --- the MoNL guider -------------------------------------------------------------------------------
EMPTY_CONDITIONING = [[torch.zeros(1, 1, 1), {}]]  # AVDiT takes no text: one empty condition


class MonlGuider(comfy.samplers.CFGGuider):
    """Guidance through noise levels for any native AV model (see the module doc).

    With D(x) the model's x0 per pass: C = D(positive, given blocks as they are), U = D(positive,
    given blocks replaced by noise at the top level), N = D(negative, given blocks as they are),

        x0 = C + (s_m - 1) (C - U) + (s_text - 1) (C - N)

    with s_m the video scale on video tokens and the audio scale on audio tokens. A scale of 1
    drops its pass; with nothing given yet (joint generation) U is not computed. All passes go to
    the model as one batch. Blocks held at a level above the current sigma predict their given
    content exactly, so the sampler keeps them on the given content's noising path.
    """

    def __init__(self, model_patcher, video_scale: float = 1.0, audio_scale: float = 1.0, drop: str = "all",
                 text_scale: float = 1.0, seed: int = 0):
        super().__init__(model_patcher)
        if drop not in MODALITY_DROPS:
            raise ValueError(f"MoNL Guider: guidance_drop is {drop!r}; expected one of {MODALITY_DROPS}")
        self.video_scale, self.audio_scale, self.drop = float(video_scale), float(audio_scale), drop
        self.text_scale, self.seed = float(text_scale), int(seed)
        self.inner_set_conds({"positive": EMPTY_CONDITIONING})
        self.unconditional_noise = None  # a fixed (packed) noise for the unconditional pass, else drawn from seed + 1
        self.model_calls = 0

    def set_conds(self, positive=None, negative=None):
        conds = {"positive": positive if positive is not None else EMPTY_CONDITIONING}
        if negative is not None:
            conds["negative"] = negative
        self.inner_set_conds(conds)

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                     latent_shapes=None):
        if latent_shapes is None or len(latent_shapes) != 2:
            raise ValueError("MoNL Guider: the latent is not an audio-video latent (video and audio, as core Concat "
                             f"AV Latent makes); got shapes {latent_shapes or [tuple(latent_image.shape)]}")
        given = latent_image
        self.inner_model.latent_shapes = latent_shapes  # as CFGGuider.inner_sample (MiniMax H3 scales its audio by it)
        self.minimax = is_minimax(self.inner_model)
        if torch.count_nonzero(latent_image) > 0:  # as CFGGuider.inner_sample does before sampling
            given = self.inner_model.process_latent_in(latent_image)
        self.given, self.levels, self.sigmas, self.latent_shapes = given, denoise_mask, sigmas, latent_shapes
        self.t_star = None if denoise_mask is None else snap_levels(denoise_mask, sigmas)  # once, not every step
        self.video_size = math.prod(latent_shapes[0][1:])
        if self.unconditional_noise is not None:
            self.drop_noise = self.unconditional_noise.reshape(given.shape).to(given)
        else:  # drawn on the CPU, so one seed gives one output on any device
            generator = torch.Generator(device="cpu").manual_seed(self.seed + 1)
            self.drop_noise = torch.randn(given.shape, generator=generator, dtype=torch.float32).to(given)
        if denoise_mask is not None:
            self.model_options["denoise_mask_function"] = self.denoise_mask_function
            previous = self.model_options.get("model_function_wrapper")
            self.model_options["model_function_wrapper"] = lambda apply_model, args: self.model_call(apply_model, args, previous)
        samples = super().inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar,
                                       seed, latent_shapes=latent_shapes)
        if denoise_mask is None:
            return samples
        # the last sampler step lands on the given content only up to rounding (x + d * dt): put it back exactly
        return torch.where(denoise_mask == 0, latent_image.to(samples), samples)

    def denoise_mask_function(self, sigma, denoise_mask, extra_options):
        sigma = sigma.reshape(-1)[0]  # a tensor on the sampler's device: nothing here waits for it
        if self.minimax:
            video, audio = self.minimax_held(denoise_mask, float(sigma))
            return torch.cat([video, audio], dim=-1)
        return held_mask(denoise_mask, sigma, self.sigmas, self.t_star if denoise_mask is self.levels else None)

    # --- MiniMax H3 (docs/minimax-h3.md) ---------------------------------------------------------
    def audio_sigma(self, sigma: float) -> float:
        """MiniMax H3: the sigma its audio stream is at when the sampler (its video schedule) is at
        `sigma` (comfy/ldm/minimax/model.py time_shift_sigma, with the model sampling's shifts)."""
        import comfy.ldm.minimax.model as minimax

        sampling = self.inner_model.model_sampling
        if getattr(sampling, "audio_shift", None) is None or sigma <= 0:
            return sigma
        return float(minimax.time_shift_sigma(torch.tensor(sigma, dtype=torch.float64), sampling.shift, sampling.audio_shift))

    def minimax_held(self, levels: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed levels -> this step's packed (video part, audio part) masks for MiniMax H3, whose mask value
        m puts a token at m x its stream's sigma: a block held at t* (sampler coordinate) is at t* / sigma on
        video and audio_sigma(t*) / audio_sigma(sigma) on audio, so both streams stay where the sampler is at t*."""
        video = held_mask(levels[..., : self.video_size], sigma, self.sigmas)
        t_star = snap_levels(levels[..., self.video_size :], self.sigmas)
        if sigma <= 0:
            return video, torch.ones_like(t_star, dtype=video.dtype)
        sigma_a = self.audio_sigma(sigma)
        held = {float(t): self.audio_sigma(float(t)) / sigma_a for t in t_star.unique().tolist() if t < sigma - 1e-6}
        audio = torch.ones_like(t_star)
        for t, m in held.items():
            audio = torch.where((t_star - t).abs() < 1e-9, torch.full_like(audio, m), audio)
        return video, audio.to(video.dtype)

    def modality(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return packed[..., : self.video_size], packed[..., self.video_size :]

    def conditioning(self, sigma: float) -> torch.Tensor:
        """Packed bool mask of the tokens the guidance drops at `sigma`: held below it (they condition
        this step), in the modalities `drop` names."""
        held_below = self.t_star < sigma - 1e-6  # (B|1, 1, N)
        video, audio = self.modality(held_below)
        if self.drop == "video":
            audio = torch.zeros_like(audio)
        elif self.drop == "audio":
            video = torch.zeros_like(video)
        return torch.cat([video, audio], dim=-1)

    def model_call(self, apply_model, args, previous=None):
        """Every batched model call: the masks become the step's MoNL masks, and the chunks of the
        guidance's unconditional pass (cond index 1) get noise at the top level on the dropped tokens."""
        x, timestep, c = args["input"], args["timestep"], dict(args["c"])
        sigma = timestep.reshape(-1)[0]
        chunks = args["cond_or_uncond"]
        drop = self.conditioning(sigma).to(x.device)
        if self.minimax:
            return self.minimax_call(apply_model, args, x, timestep, c, float(sigma), chunks, drop, previous)
        dropped = [index == 1 for index in chunks]
        if any(dropped):
            size = x.shape[0] // len(chunks)
            pieces = list(x.split(size))
            for j, is_dropped in enumerate(dropped):
                if is_dropped:
                    pieces[j] = torch.where(drop, self.drop_noise[:size].to(x), pieces[j])
            x = torch.cat(pieces)
        for key, part in (("denoise_mask", 0), ("audio_denoise_mask", 1)):
            if c.get(key) is not None:
                c[key] = self.step_mask(c[key], sigma, chunks, drop, part)
        self.model_calls += 1
        args = {**args, "input": x, "c": c}
        if previous is not None:
            return previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **args["c"])

    def minimax_call(self, apply_model, args, x, timestep, c, sigma, chunks, drop, previous):
        """MiniMax H3's network takes one item at a time (comfy/ldm/minimax/model.py: "supports batch size
        1") and reads its masks from item 0, so the batched call runs it once per pass, each with its own
        masks. The masks are H3's own (1, 1, T, h, w) and (1, 1, 2, Ta), rounded up to 1/256 as
        MiniMaxH3._token_grid_masks does, so a token's timestep is that of the input the sampler's inpainting
        blend made. The unconditional pass (cond index 1) runs at the top level: see `minimax_top`."""
        size = x.shape[0] // len(chunks)
        levels = self.levels[:1].to(x.device)
        held = torch.cat([torch.ceil(m * MINIMAX_MASK_STEPS) / MINIMAX_MASK_STEPS for m in self.minimax_held(levels, sigma)], dim=-1)
        outputs = []
        for j, index in enumerate(chunks):
            rows = slice(j * size, (j + 1) * size)
            piece, mask, at, back = x[rows], held, timestep[rows], None
            if index == 1:
                piece, mask, at, back = self.minimax_top(piece, held, at, drop, sigma, c)
            video_mask, audio_mask = comfy.utils.unpack_latents(mask.expand(1, *self.levels.shape[1:]), self.latent_shapes)
            part = {key: (value[rows] if isinstance(value, torch.Tensor) and value.shape[:1] == x.shape[:1] else value)
                    for key, value in c.items()}
            part["denoise_mask"] = video_mask[:1, :1].contiguous()
            part["audio_denoise_mask"] = audio_mask[:1].amax(dim=1, keepdim=True)
            step = {**args, "input": piece, "timestep": at, "c": part, "cond_or_uncond": [index]}
            self.model_calls += 0 if j else 1
            out = previous(apply_model, step) if previous is not None else apply_model(piece, at, **part)
            outputs.append(out if back is None else back(out))
        return torch.cat(outputs)

    def minimax_top(self, piece, held, timestep, drop, sigma, c):
        """MiniMax H3's unconditional pass, as a call at timestep 1 (sigma 1, where the audio's sigma is 1 too).

        The pass needs the dropped tokens at the top level and every other token at this step's level. At
        this step's timestep that is mask 1 / sigma on the dropped tokens and 1 on the free ones: no value
        below 1, which H3 reads as no mask (model.py mask_row_values), labelling the dropped tokens with
        sigma. At timestep 1 a mask m' puts a token at m' itself: the dropped tokens get 1 (the guider's
        noise at the top), every other token m x its stream's sigma at this step (its label unchanged; the
        free ones get sigma, below 1). The input is each stream's own latent: the sampler's audio carry
        sigma / audio_sigma(sigma) is undone (at sigma 1 it is 1). H3 turns the velocity v it predicts into
        x0 = x - 1 v at that timestep, and the map returned takes it to x - sigma_stream v, the x0 the
        conditional pass gets at this step, in the sampler's coordinates (audio: audio_scale times its own
        latent, ModelSamplingAV). Returns the call's input, masks, timestep and that map."""
        sigma_a = self.audio_sigma(sigma)
        audio_scale = float((c.get("minimax_payload") or {}).get("audio_scale", 1.0))
        audio_size = piece.shape[-1] - self.video_size

        def streams(video: float, audio: float) -> torch.Tensor:
            return torch.cat([torch.full((self.video_size,), video, dtype=torch.float64),
                              torch.full((audio_size,), audio, dtype=torch.float64)]).to(piece)

        level = streams(sigma, sigma_a)  # each stream's sigma at this step
        top = torch.where(drop, self.drop_noise[:piece.shape[0]].to(piece), piece * streams(1.0, sigma_a / sigma))
        mask = torch.where(drop[:1], torch.ones_like(held), held * level.to(held))
        start = top * streams(1.0, audio_scale)  # the x0 of a zero velocity, in the sampler's coordinates
        return top, mask, torch.ones_like(timestep), lambda x0: start + level * (x0 - start)

    def step_mask(self, levels: torch.Tensor, sigma, chunks: list[int], drop: torch.Tensor, part: int) -> torch.Tensor:
        """A batched per-modality noise mask of levels -> this step's mask; on the unconditional
        chunks the dropped tokens get 1 / sigma (timestep = top level)."""
        mask = held_mask(levels, sigma, self.sigmas)
        if 1 not in chunks:
            return mask
        shape = self.latent_shapes[part]
        drop_part = comfy.utils.unpack_latents(drop.float(), self.latent_shapes)[part]  # (B|1, C, ...)
        drop_part = drop_part.amax(dim=1, keepdim=True).expand(-1, mask.shape[1], *mask.shape[2:]) \
            if mask.shape[1:] != tuple(shape[1:]) else drop_part
        size = mask.shape[0] // len(chunks)
        pieces = list(mask.split(size))
        for j, index in enumerate(chunks):
            if index == 1:
                top = (1.0 / torch.as_tensor(sigma, dtype=mask.dtype, device=mask.device)).expand_as(pieces[j])
                pieces[j] = torch.where(drop_part[:size].to(mask.device) > 0, top, pieces[j])
        return torch.cat(pieces)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        sigma = timestep.reshape(-1)[0]  # kept on the device: no host synchronisation inside the step loop
        positive = self.conds.get("positive")
        negative = self.conds.get("negative")
        # with a mask, the unconditional pass runs every step (whether any block conditions this step
        # would need the host to read the device); with no block conditioning it equals C and adds nothing
        guided = self.levels is not None and (self.video_scale != 1 or self.audio_scale != 1)
        text = negative is not None and self.text_scale != 1
        conds = [positive, positive if guided else None, negative if text else None]
        outputs = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        cond = outputs[0]
        out = cond
        if guided:
            video, audio = self.modality(cond - outputs[1])
            out = out + torch.cat([(self.video_scale - 1) * video, (self.audio_scale - 1) * audio], dim=-1)
        if text:
            out = out + (self.text_scale - 1) * (cond - outputs[2])
        if self.levels is not None:  # held blocks predict their given content: they stay on its noising path
            held = self.t_star < sigma - 1e-6
            held = held & (self.levels > 0)
            out = torch.where(held.to(out.device), self.given.to(out), out)
        return out

"""Samplers with per-token noise levels, clean re-injection of given blocks, and guidance
through noise levels.

Samplers are k-diffusion style plain functions with one signature:

    sample_NAME(model, x, sigmas, callback=None, generator=None) -> x

`model(x, sigma)` returns the x0 prediction; `sigmas` run from 1 down to 0 in the normalised
rectified-flow coordinate (`avdit.schedule.Schedule.flow_sigma`) in which x = (1 - s) x0 + s eps
for every schedule, so every sampler works with every checkpoint. Schedules (`simple`, `karras`,
...) are separate functions returning levels; `MonlDenoiser` turns an AVDiT into such a model.

Every model call may write into `x`: `MonlDenoiser` re-injects the held (given) blocks into the
sampler's own state before predicting, so samplers must call the model on their state tensor
itself, as all of these do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from avdit.monl import NoiseLevelMask
from avdit.schedule import Schedule


class SamplingCancelled(RuntimeError):
    """Raised when a sampler's callback asks to stop (returns False)."""


def _report(callback, i, x, sigma, denoised) -> None:
    if callback is not None and callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised}) is False:
        raise SamplingCancelled(f"sampling cancelled at step {i + 1}")


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


# --- samplers ---------------------------------------------------------------------------------
@torch.no_grad()
def sample_euler(model, x, sigmas, callback=None, generator=None):
    """First-order ODE steps: x += (x - x0) / s * (s_next - s)."""
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s)
        _report(callback, i, x, s, denoised)
        x = x + (x - denoised) / s * (s_next - s)
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, callback=None, generator=None, eta: float = 0.0):
    """DDIM: x_next = (1 - s') x0 + s' eps_hat (in this coordinate the same update as Euler),
    with `eta` > 0 adding fresh noise as DDIM's stochastic variant (eta = 1 is ancestral)."""
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s)
        _report(callback, i, x, s, denoised)
        x = _ancestral_step(x, denoised, s, s_next, eta, generator)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, callback=None, generator=None, eta: float = 1.0):
    """Stochastic: step down past the next level, then add fresh noise back up to it."""
    return sample_ddim(model, x, sigmas, callback, generator, eta=eta)


def _ancestral_step(x, denoised, s, s_next, eta, generator):
    """Move from level s to s_next; with eta > 0, part of the noise is replaced by fresh noise.

    Rectified-flow form of the ancestral step (as ComfyUI's for flow models): go down to
    s_down <= s_next deterministically, then rescale and add noise so the marginal at s_next
    is again (1 - s_next) x0 + s_next eps.
    """
    if s_next == s:  # a step of length 0 (a repeated level, e.g. sigmas 1, 1, ...): nothing moves
        return x
    if s_next == 0 or eta == 0:
        eps = (x - (1 - s) * denoised) / s
        return (1 - s_next) * denoised + s_next * eps
    s_down = s_next * (1 + (s_next / s - 1) * eta)
    keep = s_down / s
    x = keep * x + (1 - keep) * denoised  # at level s_down
    alpha_next, alpha_down = 1 - s_next, 1 - s_down
    renoise = math.sqrt(max(s_next**2 - s_down**2 * alpha_next**2 / alpha_down**2, 0.0))
    return (alpha_next / alpha_down) * x + renoise * _noise_like(x, generator)


@torch.no_grad()
def sample_heun(model, x, sigmas, callback=None, generator=None):
    """Second order: an Euler step, then the average of the slopes at both ends (last step Euler)."""
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s)
        _report(callback, i, x, s, denoised)
        d = (x - denoised) / s
        x_euler = x + d * (s_next - s)
        if s_next == 0:
            x = x_euler
            continue
        d_next = (x_euler - model(x_euler, s_next)) / s_next
        x = x + (d + d_next) / 2 * (s_next - s)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, callback=None, generator=None):
    """DPM-Solver++(2M): second-order multistep in log-SNR, reusing the previous x0 prediction."""

    def lam(s):  # log((1 - s) / s): the half log-SNR of the flow coordinate
        return math.log((1 - s) / s) if 0 < s < 1 else (-math.inf if s >= 1 else math.inf)

    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s)
        _report(callback, i, x, s, denoised)
        if s_next == 0:
            x = denoised
            break
        h = lam(s_next) - lam(s)
        # x_next = (s'/s) x + (1 - s') (1 - e^-h) D, with e^-h = s'(1 - s) / ((1 - s') s)
        x = (s_next / s) * x + ((1 - s_next) - s_next * (1 - s) / s) * _second_order(denoised, old_denoised, h, h_last)
        old_denoised, h_last = denoised, h
    return x


def _second_order(denoised, old_denoised, h, h_last):
    if old_denoised is None or not math.isfinite(h_last) or not math.isfinite(h) or h == 0:
        return denoised  # first step (from level 1, where log-SNR is -inf) is first order
    r = h_last / h
    return (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised


SAMPLERS: dict[str, Callable] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "ddim": sample_ddim,
    "euler_ancestral": sample_euler_ancestral,
}
CALLS_PER_STEP = {"euler": 1, "heun": 2, "dpmpp_2m": 1, "ddim": 1, "euler_ancestral": 1}


# --- schedules (levels t, descending to 0) -----------------------------------------------------------
def schedule_levels(name: str, steps: int, schedule: Schedule, shift: float = 1.0) -> torch.Tensor:
    """`steps` + 1 noise levels from the schedule's max level down to 0, as float64.

    simple: uniform in level t. karras: Karras et al.'s rho = 7 spacing of the noise-to-signal
    ratio sigma / alpha between 0.002 and its value at the max level (capped at 1000).
    `shift` > 1 moves steps towards high noise (SD3's shift, on the flow coordinate).
    """
    if steps < 1:
        raise ValueError(f"steps is {steps}; expected at least 1")
    if not (shift > 0 and math.isfinite(shift)):
        raise ValueError(f"shift is {shift}; expected a positive number (1 = no shift)")
    top = schedule.max_level
    if name in ("simple", "uniform"):
        levels = torch.linspace(top, 0, steps + 1, dtype=torch.float64)
    elif name == "karras":
        u_top = float(schedule.flow_sigma(torch.tensor(top, dtype=torch.float64)))
        nsr_max = min(u_top / max(1 - u_top, 1e-12), 1000.0)
        rho, nsr_min = 7.0, 0.002
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        nsr = (nsr_max ** (1 / rho) + ramp * (nsr_min ** (1 / rho) - nsr_max ** (1 / rho))) ** rho
        levels = schedule.level_of_flow_sigma(nsr / (1 + nsr))
        levels[0] = top  # start from pure noise, not from sigma/alpha = 1000
        levels = torch.cat([levels, torch.zeros(1, dtype=torch.float64)])
    else:
        raise ValueError(f"scheduler is {name!r}; expected one of {SCHEDULERS}")
    if shift != 1.0:
        u = schedule.flow_sigma(levels)
        levels = schedule.level_of_flow_sigma(shift * u / (1 + (shift - 1) * u))
    return levels


SCHEDULERS = ("simple", "uniform", "karras")


# --- the MoNL denoiser -----------------------------------------------------------------------------
# The guidance scale the command line, the pipeline and the ComfyUI sampler start from. On the demo model
# (16 held-out clips, 10 euler steps) scale 3 against 1 (off) raised A/V agreement from 0.62 to 0.67 (a2v),
# 0.48 to 0.56 (v2a) and 0.61 to 0.65 (continue), and continuity from 0.91 to 0.98; 2 fell between.
DEFAULT_GUIDANCE = 3.0


@dataclass
class Guidance:
    """Guidance through noise levels: scales per modality (1 = off) and which given blocks the
    unconditional pass replaces by pure noise ('all', 'video' or 'audio')."""

    video: float = 1.0
    audio: float = 1.0
    drop: str = "all"


class MonlDenoiser:
    """An AVDiT + schedule + noise-level mask as a sampler's `model(x, sigma) -> x0`.

    The sampler state is the flow-coordinate sample of all tokens, flattened as
    [video latent | audio latent] per batch item: (B, Nv + Na). See `avdit.monl` for the levels.
    """

    def __init__(self, model, schedule: Schedule, mask: NoiseLevelMask, given_video, given_audio,
                 levels: torch.Tensor, generator: torch.Generator | None = None,
                 guidance: Guidance | None = None):
        self.model, self.schedule = model, schedule
        self.guidance = guidance or Guidance()
        if self.guidance.drop not in ("all", "video", "audio"):
            raise ValueError(f"guidance drop is {self.guidance.drop!r}; expected 'all', 'video' or 'audio'")
        b, cv, tv, h, w = given_video.shape
        ta = given_audio.shape[2]
        self.video_shape, self.audio_shape = given_video.shape, given_audio.shape
        self.nv = cv * tv * h * w
        self.tv, self.ta, self.hw = tv, ta, h * w
        self.video_channels = cv
        device = given_video.device
        # per latent frame: t* = the largest sampler level <= the mask's level (module doc of monl)
        grid = levels.to(torch.float64)
        self.join_video = _snap_down(mask.video.to(torch.float64), grid).to(device)  # (Tv,)
        self.join_audio = _snap_down(mask.audio.to(torch.float64), grid).to(device)  # (Ta,)
        join = self.expand(self.join_video, self.join_audio)  # (1, N)
        given = self.pack(given_video.float(), given_audio.float())  # (B, N)
        self.start_noise = torch.randn(given.shape, generator=generator, device=device)
        self.uncond_noise = torch.randn(given.shape, generator=generator, device=device)
        # held value in the flow coordinate: (1 - u*) x_given + u* eps, with u* = u(t*)
        u_join = schedule.flow_sigma(join).float()
        self.reference = (1 - u_join) * given + u_join * self.start_noise  # (B, N)
        self.given = given
        self.join = join.float()
        self.model_calls = 0

    # packing ---------------------------------------------------------------------------------
    def pack(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return torch.cat([video.flatten(1), audio.flatten(1)], dim=1)

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        return x[:, : self.nv].reshape(b, *self.video_shape[1:]), x[:, self.nv :].reshape(b, *self.audio_shape[1:])

    def expand(self, video_frames: torch.Tensor, audio_frames: torch.Tensor) -> torch.Tensor:
        """Per-latent-frame values (Tv,), (Ta,) -> per element (1, N)."""
        v = video_frames[None, None, :, None].expand(1, self.video_channels, self.tv, self.hw)
        a = audio_frames[None, None, :].expand(1, self.audio_shape[1], self.ta)
        return self.pack(v, a)

    def initial_noise(self) -> torch.Tensor:
        return self.start_noise.clone()

    # the model call --------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0 prediction at flow sigma `sigma`; writes the held blocks into `x` first."""
        u = float(sigma)
        t = float(self.schedule.level_of_flow_sigma(torch.tensor(u, dtype=torch.float64)))
        held = self.join <= t + 1e-9  # (1, N): blocks not yet (or never) generated
        x.copy_(torch.where(held, self.reference, x))
        video_levels = torch.minimum(self.join_video, torch.tensor(t, dtype=torch.float64)).float()  # (Tv,)
        audio_levels = torch.minimum(self.join_audio, torch.tensor(t, dtype=torch.float64)).float()  # (Ta,)
        b = x.shape[0]
        conditions = self.join < t - 1e-9  # blocks that condition this step (held below the sampler)
        guided = bool(conditions.any()) and (self.guidance.video != 1 or self.guidance.audio != 1)
        if guided:
            drop = conditions.clone()
            if self.guidance.drop != "all":
                keep_modality = slice(self.nv, None) if self.guidance.drop == "video" else slice(0, self.nv)
                drop[:, keep_modality] = False
            x_uncond = torch.where(drop, self.uncond_noise, x)
            drop_video, drop_audio = self.unpack(drop.float())
            uncond_video_levels = torch.where(drop_video[0, 0, :, 0, 0] > 0, 1.0, video_levels)
            uncond_audio_levels = torch.where(drop_audio[0, 0] > 0, 1.0, audio_levels)
            x_in = torch.cat([x, x_uncond])
            lv = torch.cat([video_levels.expand(b, -1), uncond_video_levels.expand(b, -1)])
            la = torch.cat([audio_levels.expand(b, -1), uncond_audio_levels.expand(b, -1)])
        else:
            x_in, lv, la = x, video_levels.expand(b, -1), audio_levels.expand(b, -1)
        denoised = self._predict(x_in, lv, la)
        if guided:
            cond, uncond = denoised.chunk(2)
            scale = self.expand(torch.full((self.tv,), self.guidance.video), torch.full((self.ta,), self.guidance.audio)).to(x)
            denoised = uncond + scale * (cond - uncond)
        # given blocks predict themselves exactly, so the samplers keep them where they are
        return torch.where(self.join == 0, self.given, denoised)

    def _predict(self, x_flow: torch.Tensor, video_levels: torch.Tensor, audio_levels: torch.Tensor) -> torch.Tensor:
        """Flow-coordinate x -> x0 (flattened), through `denoise_flow`."""
        self.model_calls += 1
        video, audio = self.unpack(x_flow)
        return self.pack(*denoise_flow(self.model, self.schedule, video, audio, video_levels, audio_levels))

    def finish(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's final state -> (video, audio) latents, given blocks exactly as given."""
        return self.unpack(torch.where(self.join == 0, self.given, x))


def denoise_flow(model, schedule: Schedule, video: torch.Tensor, audio: torch.Tensor, video_levels: torch.Tensor,
                 audio_levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 predictions (float32) of flow-coordinate latents video (B, Cv, Tv, h, w) and audio (B, Ca, Ta)
    whose latent frames sit at noise levels (B, Tv) and (B, Ta): each frame is scaled to the
    model's input scale x_t = x_flow * (alpha + sigma), run through the network, and its output
    turned into x0 by the checkpoint's target. The one model call of every sampling path."""
    scale_video = schedule.flow_scale(video_levels.float())[:, None, :, None, None]  # (B, 1, Tv, 1, 1)
    scale_audio = schedule.flow_scale(audio_levels.float())[:, None, :]  # (B, 1, Ta)
    x_video, x_audio = video.float() * scale_video, audio.float() * scale_audio
    dtype = next(model.parameters()).dtype
    out_video, out_audio = model(x_video.to(dtype), x_audio.to(dtype), video_levels.float(), audio_levels.float())
    return (schedule.denoised(x_video, out_video.float(), video_levels.float()[:, None, :, None, None]),
            schedule.denoised(x_audio, out_audio.float(), audio_levels.float()[:, None, :]))


def snap_levels(levels: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each noise-mask level (any shape) -> t*, the largest of the sampler's `sigmas` (descending,
    ending at 0) that is <= it: the level a given block is held at until the sampler comes down to
    it (see `avdit.monl`). Level 0 stays 0; a level at or above the first sigma is never held."""
    flat = levels.flatten().to(torch.float64)
    grid = sigmas.to(flat.device, torch.float64).flatten()
    return torch.where(flat >= grid.max(), flat, _snap_down(flat, grid)).reshape(levels.shape)


def held_mask(levels: torch.Tensor, sigma: float, sigmas: torch.Tensor, t_star: torch.Tensor | None = None) -> torch.Tensor:
    """The sampler-step mask m(sigma) of ComfyUI's inpainting convention (x_in = m x + (1 - m) given,
    per-token timestep m * sigma) that gives MoNL's meaning to levels: a block of level l is held at
    t* = snap(l) (the given content noised to t*, timestep t*) while sigma > t*, so m = t* / sigma,
    and is sampled freely (m = 1) once sigma <= t*. Level 0: m = 0 (given, exactly); level 1: m = 1.
    `t_star`: snap_levels(levels, sigmas), when the caller keeps it from step to step."""
    t_star = snap_levels(levels, sigmas) if t_star is None else t_star
    t_star = t_star.to(levels.dtype if levels.is_floating_point() else torch.float32)
    # sigma may be a tensor on the sampler's device: no host synchronisation here
    sigma = torch.as_tensor(sigma, dtype=t_star.dtype, device=t_star.device)
    free = (t_star >= sigma - 1e-6) | (sigma <= 0)
    return torch.where(free, torch.ones_like(t_star), t_star / sigma.clamp(min=1e-12))


SNAP_SLACK = 1e-6  # far above float32 rounding near 1 (6e-8), far below any grid spacing (1000 steps: 1e-3)


def _snap_down(mask_levels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """For each mask level, the largest level of the descending `grid` that is <= it (0 if none).
    A binary search, so it costs little on the millions of tokens of a large latent."""
    ascending = grid.to(mask_levels.device, mask_levels.dtype).flip(0).contiguous()
    # a level within SNAP_SLACK below a grid level is on it: a mask stored in float32 (0.7 -> 0.69999999)
    # must not drop to the grid level beneath
    index = torch.searchsorted(ascending, (mask_levels + SNAP_SLACK).contiguous(), right=True) - 1
    return torch.where(index >= 0, ascending[index.clamp(min=0)], torch.zeros_like(mask_levels)).clamp(min=0)


def sample(
    model,
    schedule: Schedule,
    mask: NoiseLevelMask,
    given_video: torch.Tensor,
    given_audio: torch.Tensor,
    *,
    steps: int = 25,
    sampler: str = "euler",
    scheduler: str = "simple",
    shift: float = 1.0,
    seed: int = 0,
    guidance: Guidance | None = None,
    callback=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate the blocks `mask` asks for; given blocks come back bit-identical.

    given_video (B, Cv, Tv, h, w) and given_audio (B, Ca, Ta) hold the given content (anything,
    e.g. zeros, where the mask generates). Same seed, same inputs -> the same output on the CPU.
    `callback(info)` is called once per step with "i", "sigma", "x", "denoised" (flattened) and
    "video", "audio" (the x0 prediction in latent shapes); returning False cancels.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler is {sampler!r}; expected one of {sorted(SAMPLERS)}")
    generator = torch.Generator(device=given_video.device).manual_seed(int(seed))
    levels = schedule_levels(scheduler, steps, schedule, shift)
    denoiser = MonlDenoiser(model, schedule, mask, given_video, given_audio, levels, generator, guidance)
    sigmas = [float(u) for u in schedule.flow_sigma(levels)]
    report = None
    if callback is not None:
        def report(info):  # add the x0 prediction in latent shapes, for previews
            info["video"], info["audio"] = denoiser.unpack(info["denoised"])
            return callback(info)
    x = SAMPLERS[sampler](denoiser, denoiser.initial_noise(), sigmas, callback=report, generator=generator)
    return denoiser.finish(x)

"""Noise schedules on a continuous noise level t in [0, 1], and what the network predicts.

A level t noises clean latents x0 as x_t = alpha(t) x0 + sigma(t) eps. Two families:

- "flow" (rectified flow): alpha = 1 - t, sigma = t; the network predicts the velocity eps - x0.
- "cosine" (the paper's DDPM family): alpha = cos(pi t / 2), sigma = sin(pi t / 2). alpha(1) = 0,
  so level 1 is pure noise (zero terminal SNR), which MoNL guidance relies on. The network
  predicts eps (the paper's target) or v = alpha eps - sigma x0.

Samplers never see any of this: `Schedule.denoised` turns a network output into an x0 prediction,
and `Schedule.flow_sigma` maps a level to the normalised coordinate u = sigma / (alpha + sigma)
in which every schedule reads x_t / (alpha + sigma) = (1 - u) x0 + u eps. Samplers work on that
rectified-flow form, so every sampler works with every (schedule, target) pair.
"""
from __future__ import annotations

import math

import torch

from avdit.config import ScheduleConfig

TARGETS = {"flow": ("velocity",), "cosine": ("eps", "v")}
# With an eps target, x0 = (x_t - sigma eps) / alpha is undefined at alpha = 0, so sampling starts
# just below level 1 (alpha = 0.01, about DDPM's sqrt(alphabar_T) = 0.006); the model still sees
# level 1 for guidance's unconditional blocks, whose x0 is never needed.
_EPS_TARGET_ALPHA_MIN = 0.01


class Schedule:
    """alpha(t), sigma(t), the training target, and the network-output -> x0 conversion."""

    def __init__(self, config: ScheduleConfig):
        if config.kind not in TARGETS:
            raise ValueError(f"schedule kind is {config.kind!r}; expected one of {sorted(TARGETS)}")
        if config.target not in TARGETS[config.kind]:
            raise ValueError(
                f"schedule target is {config.target!r} for kind {config.kind!r}; expected one of {TARGETS[config.kind]}"
            )
        self.kind, self.target = config.kind, config.target

    @property
    def max_level(self) -> float:
        """The level sampling starts from (1, except for an eps target, see above)."""
        if self.target == "eps":
            return 2 / math.pi * math.acos(_EPS_TARGET_ALPHA_MIN)
        return 1.0

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "flow":
            return 1 - t, t
        angle = t * (math.pi / 2)
        # cos(pi/2) is 6e-17 in floating point; make level 1 exactly pure noise
        return torch.where(t >= 1, torch.zeros_like(t), torch.cos(angle)), torch.sin(angle)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for levels t broadcastable to x0."""
        alpha, sigma = self.alpha_sigma(t)
        return alpha * x0 + sigma * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.target == "velocity":
            return noise - x0
        if self.target == "eps":
            return noise
        alpha, sigma = self.alpha_sigma(t)
        return alpha * noise - sigma * x0

    def denoised(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 predicted from the network `output` at levels t (broadcastable)."""
        if self.target == "velocity":
            return x_t - t * output
        alpha, sigma = self.alpha_sigma(t)
        if self.target == "eps":
            return (x_t - sigma * output) / alpha.clamp(min=_EPS_TARGET_ALPHA_MIN)
        return alpha * x_t - sigma * output

    # --- the normalised rectified-flow coordinate the samplers use --------------------------
    def flow_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """u = sigma / (alpha + sigma): x_t / (alpha + sigma) = (1 - u) x0 + u eps."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma / (alpha + sigma)

    def level_of_flow_sigma(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse of `flow_sigma`."""
        if self.kind == "flow":
            return u
        # sin/(cos+sin) = u  <=>  tan(angle) = u / (1 - u)
        return torch.atan2(u, 1 - u) * (2 / math.pi)

    def flow_scale(self, t: torch.Tensor) -> torch.Tensor:
        """alpha + sigma: divide x_t by it to get the flow-coordinate sample."""
        alpha, sigma = self.alpha_sigma(t)
        return alpha + sigma

"""MoNL training: the loss of one batch (the `python -m avdit train` command builds on it)."""
from __future__ import annotations

import torch

from avdit.config import MonlConfig
from avdit.layout import Layout
from avdit.monl import draw_levels, per_frame_levels
from avdit.schedule import Schedule


def monl_loss(
    model,
    schedule: Schedule,
    monl: MonlConfig,
    video: torch.Tensor,
    audio: torch.Tensor,
    layout: Layout,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean squared error of the schedule's target over every noised latent element.

    Each sample gets its own (2, N) level matrix from the MoNL mixture; each block is noised to
    its level. Blocks at level 0 are clean inputs with nothing to predict and are left out of the
    mean. video (B, Cv, Tv, h, w), audio (B, Ca, Ta) are clean, normalised latents.
    """
    b = video.shape[0]
    levels, _ = draw_levels(b, layout.num_segments, monl, generator)
    video_levels, audio_levels = per_frame_levels(levels.to(video.device), layout)  # (B, Tv), (B, Ta)
    tv = video_levels[:, None, :, None, None]  # broadcast over channels and space
    ta = audio_levels[:, None, :]
    noise_v = torch.randn(video.shape, generator=generator, device=video.device)
    noise_a = torch.randn(audio.shape, generator=generator, device=audio.device)
    out_v, out_a = model(
        schedule.add_noise(video, noise_v, tv), schedule.add_noise(audio, noise_a, ta), video_levels, audio_levels
    )
    err_v = (out_v.float() - schedule.training_target(video, noise_v, tv)) ** 2 * (tv > 0)
    err_a = (out_a.float() - schedule.training_target(audio, noise_a, ta)) ** 2 * (ta > 0)
    count = (tv > 0).expand_as(video).sum() + (ta > 0).expand_as(audio).sum()
    return (err_v.sum() + err_a.sum()) / count.clamp(min=1)

"""Audio and video autoencoders behind one small interface (see `avdit.codecs.base`).

    video, audio, config = load_codecs()          # the trained codecs shipped with avdit
    latent = video.encode(frames)                 # (B, F, H, W, 3) 0..1 -> (B, C, Tv, H/8, W/8)
    frames = video.decode(latent)                 # -> (B, 1 + 4 (Tv - 1), H, W, 3) 0..1

Kinds: video "space_to_depth" and audio "framed" are weight-free and exactly invertible (for
tests; `analytic_video_config()` / `analytic_audio_config()` give consistent configs); "learned"
are the small trained autoencoders in `avdit.codecs.learned`.
"""
from __future__ import annotations

import os
from pathlib import Path

from avdit.checkpoint import CheckpointError, load_checkpoint, load_state
from avdit.codecs.analytic import (
    FramedAudioCodec,
    SpaceToDepthVideoCodec,
    analytic_audio_config,
    analytic_video_config,
    framed_channels,
    space_to_depth_channels,
)
from avdit.codecs.base import AudioCodec, VideoCodec
from avdit.codecs.learned import LearnedAudioCodec, LearnedVideoCodec
from avdit.config import AudioCodecConfig, AVDiTConfig, VideoCodecConfig

SHIPPED_CODECS = Path(__file__).resolve().parent.parent / "assets" / "codecs.safetensors"

VIDEO_KINDS = {"space_to_depth": SpaceToDepthVideoCodec, "learned": LearnedVideoCodec}
AUDIO_KINDS = {"framed": FramedAudioCodec, "learned": LearnedAudioCodec}

__all__ = [
    "AudioCodec",
    "VideoCodec",
    "SHIPPED_CODECS",
    "analytic_audio_config",
    "analytic_video_config",
    "build_audio_codec",
    "build_codecs",
    "build_video_codec",
    "framed_channels",
    "load_codecs",
    "space_to_depth_channels",
]


def build_video_codec(cfg: VideoCodecConfig) -> VideoCodec:
    """A video codec of `cfg.kind` (weights, if any, freshly initialised)."""
    if cfg.kind not in VIDEO_KINDS:
        raise ValueError(f"video codec kind {cfg.kind!r} is unknown; known kinds: {sorted(VIDEO_KINDS)}")
    return VIDEO_KINDS[cfg.kind](cfg)


def build_audio_codec(cfg: AudioCodecConfig) -> AudioCodec:
    """An audio codec of `cfg.kind` (weights, if any, freshly initialised)."""
    if cfg.kind not in AUDIO_KINDS:
        raise ValueError(f"audio codec kind {cfg.kind!r} is unknown; known kinds: {sorted(AUDIO_KINDS)}")
    return AUDIO_KINDS[cfg.kind](cfg)


def load_codecs(path: str | os.PathLike | None = None) -> tuple[VideoCodec, AudioCodec, AVDiTConfig]:
    """The video and audio codecs of a checkpoint (default: the shipped codecs), in eval mode on CPU."""
    path = Path(path) if path is not None else SHIPPED_CODECS
    if path == SHIPPED_CODECS and not path.is_file():
        raise CheckpointError(
            f"{path}: the shipped codecs are missing from this install; reinstall avdit, pass a checkpoint, "
            "or train new ones with `python -m avdit train-codec --output PATH`"
        )
    config, tensors = load_checkpoint(path)
    video, audio = build_codecs(config, tensors, path)
    return video, audio, config


def build_codecs(config: AVDiTConfig, tensors: dict, source) -> tuple[VideoCodec, AudioCodec]:
    """Both codecs of `config`, with their weights from a checkpoint's `tensors` (read from `source`)."""
    codecs = []
    for build, cfg, prefix in (
        (build_video_codec, config.video_codec, "video_codec."),
        (build_audio_codec, config.audio_codec, "audio_codec."),
    ):
        try:
            codec = build(cfg)
        except ValueError as exc:
            raise CheckpointError(f"{source}: its {prefix[:-1]} config cannot be built: {exc}") from None
        load_state(codec, tensors, prefix, source)
        codecs.append(codec.eval().requires_grad_(False))
    return codecs[0], codecs[1]

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

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_CODECS = ASSETS / "codecs.safetensors"  # ToneShapes' own, 64 x 64 (the demo model's)
GENERAL_CODECS = ASSETS / "general-codecs.safetensors"  # real footage, 128 x 128 (model card: docs/GENERAL_CODECS.md)
# codecs shipped with the package, by the name the command line takes (--codecs general)
NAMED_CODECS = {"toneshapes": SHIPPED_CODECS, "general": GENERAL_CODECS}

VIDEO_KINDS = {"space_to_depth": SpaceToDepthVideoCodec, "learned": LearnedVideoCodec}
AUDIO_KINDS = {"framed": FramedAudioCodec, "learned": LearnedAudioCodec}

__all__ = [
    "AudioCodec",
    "VideoCodec",
    "GENERAL_CODECS",
    "NAMED_CODECS",
    "SHIPPED_CODECS",
    "codecs_path",
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


def codecs_path(codecs: str | os.PathLike | None = None) -> Path:
    """The file of `codecs`: a name in NAMED_CODECS ("toneshapes", "general"), a checkpoint's path, or None
    for the shipped ToneShapes codecs. A shipped file missing from the install is refused here."""
    if codecs is None:
        codecs = "toneshapes"
    path = NAMED_CODECS.get(codecs if isinstance(codecs, str) else "", Path(codecs))
    if path in NAMED_CODECS.values() and not path.is_file():
        raise CheckpointError(
            f"{path}: the shipped codecs are missing from this install; reinstall avdit, pass a checkpoint, "
            "or train new ones with `python -m avdit train-codec --output PATH`"
        )
    return path


def load_codecs(path: str | os.PathLike | None = None) -> tuple[VideoCodec, AudioCodec, AVDiTConfig]:
    """The video and audio codecs of a checkpoint, or of shipped codecs by name (`codecs_path`; default: the
    ToneShapes codecs), in eval mode on CPU."""
    path = codecs_path(path)
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

"""Weight-free, exactly invertible codecs: rearrangements of the input, nothing learned.

They exist so that everything around the codecs (layout, denoiser, sampling, nodes) can be tested
without trained weights, and a round trip is exact. Their latents are large: the config's
`latent_channels` must equal what the rearrangement produces (`space_to_depth_channels`,
`framed_channels`), and a config that disagrees is refused with the number it needs.
"""
from __future__ import annotations

import torch
from einops import rearrange

from avdit.codecs.base import AudioCodec, VideoCodec
from avdit.config import AudioCodecConfig, VideoCodecConfig


def space_to_depth_channels(config: VideoCodecConfig) -> int:
    """Latent channels of the space-to-depth codec: 3 colours x s x s pixels x temporal_stride frames."""
    return 3 * config.spatial_stride**2 * config.temporal_stride


def framed_channels(config: AudioCodecConfig) -> int:
    """Latent channels of the framed audio codec: channels x hop samples."""
    return config.channels * config.hop


def analytic_video_config(temporal_stride: int = 4, spatial_stride: int = 8, causal: bool = True) -> VideoCodecConfig:
    """A consistent "space_to_depth" config (latent_channels filled in: 768 with the defaults)."""
    config = VideoCodecConfig(kind="space_to_depth", temporal_stride=temporal_stride, spatial_stride=spatial_stride, causal=causal)
    config.latent_channels = space_to_depth_channels(config)
    return config


def analytic_audio_config(hop: int = 320, channels: int = 1) -> AudioCodecConfig:
    """A consistent "framed" config (latent_channels filled in: 320 with the defaults)."""
    return AudioCodecConfig(kind="framed", hop=hop, channels=channels, latent_channels=channels * hop)


class SpaceToDepthVideoCodec(VideoCodec):
    """Groups `temporal_stride` frames and `spatial_stride` x `spatial_stride` pixels into channels.

    Causal: frame 0 is repeated to fill the first group, so every latent frame has the same
    channels and frame 0 is encoded alone; decoding keeps the last copy.
    """

    def __init__(self, config: VideoCodecConfig):
        super().__init__(config)
        needed = space_to_depth_channels(config)
        if config.latent_channels != needed:
            raise ValueError(
                f"video codec 'space_to_depth': latent_channels is {config.latent_channels}, but temporal_stride "
                f"{config.temporal_stride} and spatial_stride {config.spatial_stride} give 3 x "
                f"{config.spatial_stride}^2 x {config.temporal_stride} = {needed}; set latent_channels to {needed}"
            )

    def _encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        stride = self.config.temporal_stride
        if self.config.causal:
            frames = torch.cat([frames[:, :1].expand(-1, stride - 1, -1, -1, -1), frames], dim=1)
        return rearrange(
            frames, "b (t g) (h p) (w q) c -> b (g p q c) t h w", g=stride, p=self.config.spatial_stride, q=self.config.spatial_stride
        )

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        stride = self.config.temporal_stride
        frames = rearrange(
            raw, "b (g p q c) t h w -> b (t g) (h p) (w q) c", g=stride, p=self.config.spatial_stride, q=self.config.spatial_stride
        )
        return frames[:, stride - 1:] if self.config.causal else frames


class FramedAudioCodec(AudioCodec):
    """Cuts the waveform into `hop`-sample frames; latent channel index = channel * hop + sample."""

    def __init__(self, config: AudioCodecConfig):
        super().__init__(config)
        needed = framed_channels(config)
        if config.latent_channels != needed:
            raise ValueError(
                f"audio codec 'framed': latent_channels is {config.latent_channels}, but {config.channels} channel(s) "
                f"x hop {config.hop} give {needed}; set latent_channels to {needed}"
            )

    def _encode_raw(self, waveform: torch.Tensor) -> torch.Tensor:
        return rearrange(waveform, "b c (t j) -> b (c j) t", j=self.config.hop)

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        return rearrange(raw, "b (c j) t -> b c (t j)", j=self.config.hop)

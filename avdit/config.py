"""Configuration dataclasses for AVDiT: model size, codecs, latent layout, schedule, training.

Every checkpoint stores an `AVDiTConfig` as JSON in its safetensors metadata, so a file alone
says how to rebuild its model and how to read and write its latents.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass
class ModelConfig:
    """Size of the AVDiT denoiser (see `avdit.model.PRESETS` for named sizes)."""

    width: int = 384
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    video_patch: int = 1  # spatial patch size on the video latent (time patch is always 1)
    level_frequencies: int = 256  # sinusoidal features of the noise level
    time_scale: float = 8.0  # positions in seconds are multiplied by this before the sinusoid


@dataclass
class VideoCodecConfig:
    """A video autoencoder: `kind` picks the implementation in `avdit.codecs`."""

    kind: str = "space_to_depth"  # "space_to_depth" (analytic, no weights) or "learned"
    temporal_stride: int = 4
    spatial_stride: int = 8
    causal: bool = True  # causal codecs map 1 + k*stride frames to 1 + k latent frames
    latent_channels: int = 16
    latent_scale: float = 1.0  # latents are multiplied by this so they are about unit variance
    latent_shift: float = 0.0  # subtracted before scaling
    options: dict = field(default_factory=dict)  # architecture details of learned codecs


@dataclass
class AudioCodecConfig:
    """An audio autoencoder: `kind` picks the implementation in `avdit.codecs`."""

    kind: str = "framed"  # "framed" (analytic, no weights) or "learned"
    hop: int = 320  # waveform samples per latent frame
    latent_channels: int = 16
    channels: int = 1  # waveform channels the codec expects
    latent_scale: float = 1.0
    latent_shift: float = 0.0
    options: dict = field(default_factory=dict)


@dataclass
class LayoutConfig:
    """The model's native media format and how time is cut into segments."""

    fps: float = 8.0
    sample_rate: int = 16000
    height: int = 64
    width: int = 64
    window_frames: int = 17  # video frames in one training window (17 at 8 fps = 2.125 s)
    segment_seconds: float = 0.5  # after the first frame of a causal codec (see avdit.layout)


@dataclass
class ScheduleConfig:
    """Noise schedule and what the network predicts.

    kind "flow": x_t = (1 - t) x0 + t eps, target "velocity" (eps - x0).
    kind "cosine": DDPM family, alpha = cos(pi t / 2), sigma = sin(pi t / 2) (zero terminal SNR),
    target "eps" (the paper's) or "v".
    """

    kind: str = "flow"
    target: str = "velocity"


@dataclass
class MonlConfig:
    """Training-time mixture of noise-level strategies (weights need not sum to 1)."""

    weights: dict = field(
        default_factory=lambda: {
            "vanilla": 1.0,
            "per_modality": 1.0,
            "per_segment": 1.0,
            "per_modality_segment": 1.0,
        }
    )
    task: str | None = None  # task-specific baseline: always train on this task's mask
    # Chance that a drawn row (per modality) or column (per segment) is made clean (level 0):
    # whole-modality-clean and clean-prefix draws teach the conditional tasks directly.
    clean_probability: float = 0.0
    # Chance that a sample, whatever its strategy, gets one conditional task's given blocks
    # (a2v, v2a, continue or inpaint; `avdit.monl.task_given`) at level 0: the same exposure to
    # conditioning for every strategy, which clean_probability does not give.
    task_probability: float = 0.0
    level_sampling: str = "uniform"  # how levels are drawn: "uniform" or "logit_normal"
    # Chance that a sample is the continuation of an input that ends at a random video frame: both
    # modalities given before it, their latents encoded from the clip cut there and zero-padded, as
    # `generate` and ComfyUI encode a user's input (the audio encoder looks ~60-80 ms ahead, so these
    # differ from the whole clip's near the cut); everything after it made at one drawn level.
    cut_probability: float = 0.0
    # "elements": the mean over every noised latent element; "modality": each sample's video and
    # audio errors are averaged separately, then together, so every sample and modality weighs the same
    loss_weighting: str = "elements"


@dataclass
class AVDiTConfig:
    """Everything needed to rebuild a checkpoint's model and read its latents."""

    model: ModelConfig = field(default_factory=ModelConfig)
    video_codec: VideoCodecConfig = field(default_factory=VideoCodecConfig)
    audio_codec: AudioCodecConfig = field(default_factory=AudioCodecConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monl: MonlConfig = field(default_factory=MonlConfig)
    training: dict = field(default_factory=dict)  # provenance: data, steps, time, hardware

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVDiTConfig":
        """Build from a dict, refusing unknown sections or fields by name."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(sub):
                if not isinstance(value, dict):
                    raise ValueError(f"config section '{f.name}' must be an object, got {value!r}")
                known = {g.name for g in dataclasses.fields(sub)}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise ValueError(
                        f"config section '{f.name}' has unknown fields {unknown}; known: {sorted(known)}"
                    )
                value = type(sub)(**value)
            kwargs[f.name] = value
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"config has unknown sections {unknown}")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "AVDiTConfig":
        return cls.from_dict(json.loads(text))

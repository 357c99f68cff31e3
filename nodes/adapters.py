"""What the nodes do, as plain functions over ComfyUI's data formats: no ComfyUI import here.

ComfyUI's formats (comfy_api/latest/_input/basic_types.py): IMAGE is (B, H, W, C) float 0..1 with
B = frames for video; AUDIO is {"waveform": (B, C, S) float, "sample_rate": int}. The library
(`avdit.pipeline`) takes frames (F, H, W, 3) and waveforms (C, S), so the nodes convert here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from avdit.monl import MODALITIES, TASKS, NoiseLevelMask, task_mask
from avdit.pipeline import AVDiTPipeline, AVLatent

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
MODALITY_CHOICES = {"both": MODALITIES, "video": ("video",), "audio": ("audio",)}


@dataclass
class AVDiTCodecs:
    """What flows on an AVDIT_CODECS wire: the checkpoint's pipeline, whose codecs (and layout)
    Encode, Empty Latent and Decode use; the denoiser itself flows as a core MODEL."""

    pipeline: AVDiTPipeline
    name: str

    def modules(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        return self.pipeline.video_codec, self.pipeline.audio_codec

    def size_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.modules() for p in m.parameters())

    def to(self, device) -> "AVDiTCodecs":
        for module in self.modules():
            module.to(device)
        return self


# --- checkpoints -----------------------------------------------------------------------------
def holds_denoiser(path: str | os.PathLike) -> bool:
    """True when a safetensors file has 'denoiser.' tensors (codecs-only files are not models)."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            return any(k.startswith("denoiser.") for k in f.keys())
    except Exception:  # unreadable or not safetensors: not offered
        return False


def bundled_checkpoints(assets: str | os.PathLike) -> dict[str, str]:
    """{file name: path} of the pack's own models (`avdit/assets/*.safetensors` with a denoiser)."""
    folder = Path(assets)
    if not folder.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(folder.glob("*.safetensors")) if holds_denoiser(p)}


def checkpoint_choices(user_files: list[str], bundled: dict[str, str]) -> list[str]:
    """The loader's combo: files in models/avdit/ first; a bundled model of the same name is hidden."""
    user = sorted(f for f in user_files if f.lower().endswith(".safetensors"))
    return user + [name for name in sorted(bundled) if name not in user]


def resolve_dtype(choice: str, auto: torch.dtype) -> torch.dtype:
    """'auto' -> what ComfyUI's model management picked for the device; else fp32/bf16/fp16."""
    if choice == "auto":
        return auto
    if choice not in DTYPES:
        raise ValueError(f"AVDiTLoader: dtype is {choice!r}; expected one of {DTYPE_CHOICES}")
    return DTYPES[choice]


# --- media in ----------------------------------------------------------------------------------
def image_to_frames(images: torch.Tensor) -> torch.Tensor:
    """IMAGE (F, H, W, C) -> frames (F, H, W, 3) float32 (an alpha channel is dropped)."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"AVDiTEncode: images have shape {tuple(images.shape)}; expected an IMAGE batch (frames, height, width, 3)")
    frames = images[..., :3] if images.shape[-1] != 1 else images.expand(-1, -1, -1, 3)
    return frames.float().cpu()


def audio_to_waveform(audio: dict) -> tuple[torch.Tensor, int]:
    """AUDIO {"waveform": (B, C, S), "sample_rate"} -> waveform (C, S) of the first item, rate."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("AVDiTEncode: audio is not an AUDIO value; expected {'waveform': (batch, channels, samples), 'sample_rate': int}")
    waveform = audio["waveform"]
    if waveform.ndim == 2:
        waveform = waveform[None]
    if waveform.ndim != 3 or waveform.shape[2] < 1:
        raise ValueError(f"AVDiTEncode: audio waveform has shape {tuple(waveform.shape)}; expected (batch, channels, samples)")
    return waveform[0].float().cpu(), int(audio["sample_rate"])


def encode(codecs: AVDiTCodecs, images: torch.Tensor | None, fps: float, audio: dict | None, duration: float,
           resize: str = "crop") -> AVLatent:
    """IMAGE and/or AUDIO -> AV_LATENT of `duration` seconds (0: as long as the longer input)."""
    if images is None and audio is None and duration <= 0:
        raise ValueError("AVDiTEncode: no images, no audio and duration 0; connect images and/or audio, or set duration > 0 (or use AVDiT Empty Latent)")
    frames = image_to_frames(images) if images is not None else None
    waveform, rate = audio_to_waveform(audio) if audio is not None else (None, None)
    if frames is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"AVDiTEncode: fps is {fps}; give the frame rate of the images (> 0)")
    return codecs.pipeline.encode(frames=frames, fps=fps if frames is not None else None, waveform=waveform,
                                 sample_rate=rate, duration=duration if duration > 0 else None, resize=resize)


# --- noise-level masks -------------------------------------------------------------------------
def parse_levels(text: str) -> list[list[float]]:
    """Custom levels: two rows (video, then audio), one number per segment.

    Rows are lines or ';'-separated, numbers separated by spaces or commas; an optional
    'video:' / 'audio:' label is allowed. JSON [[...], [...]] works too.
    """
    text = text.strip()
    if text.startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for line in re.split(r"[;\n]+", text):
            line = re.sub(r"^\s*(video|audio)\s*:", "", line.strip(), flags=re.I)
            if line.strip():
                rows.append([float(v) for v in re.split(r"[,\s]+", line.strip()) if v])
    if len(rows) != 2 or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"AVDiTNoiseLevelMask: levels {text!r} must be two rows of equal length: 'video: 0 0 1 1; audio: 0 0 1 1' (one number per segment)")
    return [[float(v) for v in row] for row in rows]


def set_task(latent: AVLatent, task: str, *, given_seconds: float = 0.0, start: float = 0.0, end: float = 0.0,
             head_seconds: float = 0.0, tail_seconds: float = 0.0, modalities: str = "both",
             video_given_level: float = 0.0, audio_given_level: float = 0.0, levels: str = "") -> AVLatent:
    """`latent` with the noise-level mask of `task`; the given blocks of video and audio can
    carry different levels (0 keeps them exactly; 0 < l < 1 re-draws their detail)."""
    if task not in TASKS:
        raise ValueError(f"AVDiTNoiseLevelMask: task is {task!r}; expected one of {TASKS}")
    if modalities not in MODALITY_CHOICES:
        raise ValueError(f"AVDiTNoiseLevelMask: modalities is {modalities!r}; expected one of {tuple(MODALITY_CHOICES)}")
    kwargs = dict(given_seconds=given_seconds, start=start, end=end, head_seconds=head_seconds,
                  tail_seconds=tail_seconds, modalities=MODALITY_CHOICES[modalities])
    if task == "custom":
        kwargs["levels"] = parse_levels(levels)
    video = task_mask(task, latent.layout, given_level=video_given_level, **kwargs).video
    audio = task_mask(task, latent.layout, given_level=audio_given_level, **kwargs).audio
    return dataclasses.replace(latent, mask=NoiseLevelMask(video, audio))


def describe_mask(latent: AVLatent) -> str:
    """One line per modality: what is given (level < 1) in seconds, for the node's text output."""
    mask = latent.effective_mask()
    lines = []
    for m in MODALITIES:
        levels = getattr(mask, m)
        spans = getattr(latent.layout, f"{m}_spans")
        given = [(float(spans[i, 0]), min(float(spans[i, 1]), latent.duration)) for i in range(len(levels)) if levels[i] < 1]
        merged: list[list[float]] = []
        for a, b in given:
            if merged and abs(merged[-1][1] - a) < 1e-6:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        text = ", ".join(f"{a:g}-{b:g} s" for a, b in merged) or "nothing"
        lines.append(f"{m}: given {text}; generated the rest")
    summary = f"{latent.duration:g} s clip. " + "; ".join(lines)
    if latent.mask is not None and any(bool((getattr(latent.mask, m) < getattr(mask, m)).any()) for m in MODALITIES):
        summary += ". The task gives more than the inputs cover; that part is generated"
    return summary


# --- sampling ----------------------------------------------------------------------------------
LONG_LATENTS = {"window by window": True, "one pass": False}  # the sampler's choice -> pipeline.sample(windowed=)


def windowed(long_latents: str) -> bool:
    """The sampler's long_latents choice -> whether to sample window by window."""
    if long_latents not in LONG_LATENTS:
        raise ValueError(f"MoNL KSampler: long_latents is {long_latents!r}; expected one of {list(LONG_LATENTS)}")
    return LONG_LATENTS[long_latents]


def progress(info: dict, steps: int) -> tuple[int, int]:
    """(steps done, steps in all) for the progress bar; windowed sampling runs `steps` per window."""
    windows, window = info.get("windows", 1), info.get("window", 0)
    return window * steps + info["i"] + 1, windows * steps


# --- media out ---------------------------------------------------------------------------------
def decoded_to_comfy(frames: torch.Tensor, waveform: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, dict, dict]:
    """pipeline.decode's (B, F, H, W, 3), (B, C, S) -> IMAGE (B*F, H, W, 3) with the clips one after
    another, AUDIO with one batch item per clip, and the AUDIO of the clips one after another (for
    the VIDEO that shows them in a row)."""
    images = frames.float().clamp(0, 1).flatten(0, 1).contiguous()
    audio = {"waveform": waveform.float().contiguous(), "sample_rate": int(sample_rate)}
    in_a_row = {"waveform": waveform.float().movedim(0, 1).flatten(1)[None].contiguous(), "sample_rate": int(sample_rate)}
    return images, audio, in_a_row


def check_filename_prefix(prefix: str) -> str | None:
    """None when `prefix` stays inside the output folder, else the reason it does not."""
    if not prefix or not prefix.strip():
        return "filename_prefix is empty; give a name such as 'avdit/clip'"
    if os.path.isabs(prefix) or re.match(r"^[A-Za-z]:", prefix) or prefix.startswith(("/", "\\")):
        return f"filename_prefix {prefix!r} is an absolute path; give a path inside the output folder, such as 'avdit/clip'"
    parts = re.split(r"[/\\]+", prefix)
    if ".." in parts:
        return f"filename_prefix {prefix!r} climbs out with '..'; give a path inside the output folder, such as 'avdit/clip'"
    return None


def video_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str]:
    """MP4 tags as core Save Video writes them (comfy_extras/nodes_video.py, VideoFromComponents
    .save_to): each extra_pnginfo entry (the UI sends {"workflow": graph}) and "prompt", as JSON.
    ComfyUI's page reads the "workflow" tag (or else "prompt") when an MP4 is dropped on it."""
    metadata: dict = {}
    if extra_pnginfo:
        metadata.update(extra_pnginfo)
    if prompt is not None:
        metadata["prompt"] = prompt
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}

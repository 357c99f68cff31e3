"""A picture of a clip: its frames in a strip over its waveform, given and generated parts marked.

`contact_sheet` draws one band per clip (e.g. the input, then the output): the frames side by
side, under each a bar (grey: given, orange: generated), then the waveform drawn per pixel column
(min to max of its samples), grey where the audio was given and orange where it was generated.
`write_png` writes it through PyAV's PNG encoder (temporary file, then rename).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

GIVEN = np.array([150, 150, 150], np.uint8)
GENERATED = np.array([255, 150, 40], np.uint8)
BACKGROUND = np.array([255, 255, 255], np.uint8)
BAR = 4  # pixels
WAVE = 64  # pixels
GAP = 8  # pixels between bands


def _band(frames: torch.Tensor, waveform: torch.Tensor, given_video: np.ndarray, given_audio: np.ndarray) -> np.ndarray:
    count, height, width, _ = frames.shape
    strip = (frames.clamp(0, 1).float().numpy() * 255).round().astype(np.uint8)  # (F, H, W, 3)
    strip = strip.transpose(1, 0, 2, 3).reshape(height, count * width, 3)
    total = count * width
    bar = np.repeat(np.where(given_video[:, None], GIVEN, GENERATED), width, axis=0)  # (F * W, 3)
    bar = np.broadcast_to(bar, (BAR, total, 3))
    mono = waveform.float().mean(0).numpy()
    edges = np.linspace(0, len(mono), total + 1).round().astype(int)
    wave = np.tile(BACKGROUND, (WAVE, total, 1))
    column_given = np.repeat(given_audio, width)  # audio given per frame -> per pixel column
    for col in range(total):
        chunk = mono[edges[col]:max(edges[col + 1], edges[col] + 1)]
        low, high = float(np.clip(chunk.min(), -1, 1)), float(np.clip(chunk.max(), -1, 1))
        top = int(round((1 - high) / 2 * (WAVE - 1)))
        bottom = int(round((1 - low) / 2 * (WAVE - 1)))
        wave[top:bottom + 1, col] = GIVEN if column_given[col] else GENERATED
    return np.concatenate([strip, bar, wave])


def contact_sheet(bands: list[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]]) -> np.ndarray:
    """bands: (frames (F, H, W, 3) in 0..1, waveform (C, S), given_video (F,) bool, given_audio (F,) bool)
    per clip; all clips the same frame count and size. Returns an RGB uint8 image (H, W, 3)."""
    if not bands:
        raise ValueError("contact_sheet: give at least one (frames, waveform, given_video, given_audio) band")
    shapes = {tuple(b[0].shape) for b in bands}
    if len(shapes) != 1:
        raise ValueError(f"contact_sheet: the bands' frames have shapes {sorted(shapes)}; give clips of one shape")
    pictures = [_band(*band) for band in bands]
    gap = np.tile(BACKGROUND, (GAP, pictures[0].shape[1], 1))
    out = [pictures[0]]
    for picture in pictures[1:]:
        out += [gap, picture]
    return np.ascontiguousarray(np.concatenate(out))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (H, W, 3) as a PNG, atomically."""
    import av

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"picture path is {str(path)!r}; give a file name ending in .png")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(image, format="rgb24")) + codec.encode(None)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(b"".join(bytes(p) for p in packets))
    os.replace(tmp, path)
    return path

"""One safetensors file per checkpoint: tensors under `denoiser.`, `video_codec.`, `audio_codec.`
(and, in the `.resume.safetensors` file training writes beside a checkpoint, what resuming needs:
`train.` the raw weights behind the EMA `denoiser.`, `optim.` the optimizer's moments, `rng.` each
process's random-number generator states), the full `AVDiTConfig` as JSON in the metadata, with a format version.

Loading reads only safetensors (no pickle, ever) and refuses a bad file with a message that
names the file and what is wrong with it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from avdit.config import FORMAT_VERSION, AVDiTConfig

PREFIXES = ("denoiser.", "video_codec.", "audio_codec.", "train.", "optim.", "rng.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, config: AVDiTConfig, tensors: dict[str, torch.Tensor]) -> Path:
    """Write `tensors` (keys starting with one of PREFIXES) and `config` atomically to `path`."""
    path = Path(path)
    bad = sorted(k for k in tensors if not k.startswith(PREFIXES))
    if bad:
        raise CheckpointError(f"save_checkpoint: tensor names {bad[:5]} must start with one of {PREFIXES}")
    metadata = {"format": "avdit", "format_version": str(FORMAT_VERSION), "config": config.to_json()}
    # safetensors refuses shared or non-contiguous storage; copy into plain contiguous tensors.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(plain, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is as readable as any file the user writes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_config(path: str | os.PathLike) -> AVDiTConfig:
    """The config stored in a checkpoint, without reading its tensors."""
    return _open(Path(path))[0]


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[AVDiTConfig, dict[str, torch.Tensor]]:
    """Read a checkpoint: its config and every tensor (on `device`)."""
    path = Path(path)
    config, handle_path = _open(path)
    tensors = {}
    with safe_open(handle_path, framework="pt", device=str(device)) as f:
        stray = sorted(k for k in f.keys() if not k.startswith(PREFIXES))
        if stray:
            raise CheckpointError(
                f"{path}: holds tensor(s) that are no part of an AVDiT checkpoint, e.g. '{stray[0]}' "
                f"({len(stray)} in all); every tensor name starts with one of {PREFIXES}"
            )
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return config, tensors


def split_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix` (e.g. 'denoiser.'), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: str | os.PathLike) -> None:
    """Load `module`'s weights from `tensors[prefix...]`, refusing missing or mis-shaped tensors."""
    state = split_tensors(tensors, prefix)
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state)
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint is missing {len(missing)} tensor(s) under '{prefix}', "
            f"e.g. '{prefix}{missing[0]}'; the config describes a model that needs them"
        )
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        raise CheckpointError(
            f"{path}: checkpoint has tensor(s) the config's model does not use, e.g. '{prefix}{unexpected[0]}'"
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{path}: tensor '{prefix}{key}' has shape {tuple(state[key].shape)}, "
                f"the config's model expects {tuple(value.shape)}"
            )
    module.load_state_dict(state, strict=True)


def _open(path: Path) -> tuple[AVDiTConfig, Path]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file (expected a .safetensors file)")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc}); only .safetensors checkpoints are loaded") from None
    if not metadata or "config" not in metadata:
        raise CheckpointError(f"{path}: safetensors file has no AVDiT config in its metadata (missing 'config')")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: unknown checkpoint format version {version!r}; this version of avdit reads version {FORMAT_VERSION}"
        )
    try:
        data = json.loads(metadata["config"])
        if not isinstance(data, dict):
            raise ValueError(f"it must be a JSON object of sections, got {type(data).__name__} {str(data)[:40]!r}")
        config = AVDiTConfig.from_dict(data)
        _check_field_types(config)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the config in its metadata is unreadable: {exc}") from None
    return config, path


def _check_field_types(config: AVDiTConfig) -> None:
    """Refuse a config field whose JSON value is not of its default's type (an int may stand for a
    float), so a bad file fails here, named, rather than deep inside the model's construction."""
    def check(name: str, value, default) -> None:
        if default is None:  # an optional field (e.g. monl.task): any JSON value the code checks itself
            return
        expected = type(default)
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ValueError(f"config field '{name}' is {value!r} ({type(value).__name__}); expected {expected.__name__}")

    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if not dataclasses.is_dataclass(value):
            check(section.name, value, section.default_factory())
            continue
        defaults = type(value)()
        for f in dataclasses.fields(value):
            check(f"{section.name}.{f.name}", getattr(value, f.name), getattr(defaults, f.name))

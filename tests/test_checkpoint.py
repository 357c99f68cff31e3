import json

import pytest
import torch
from safetensors.torch import save_file

from avdit.checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from avdit.config import AVDiTConfig
from avdit.model import AVDiT
from tests.conftest import tiny_config


def saved(tmp_path, model):
    tensors = {f"denoiser.{k}": v for k, v in model.state_dict().items()}
    return save_checkpoint(tmp_path / "m.safetensors", model.config, tensors)


def test_save_then_load_is_bit_exact(tmp_path, tiny_model):
    path = saved(tmp_path, tiny_model)
    config, tensors = load_checkpoint(path)
    assert config == tiny_model.config
    restored = AVDiT(config)
    load_state(restored, tensors, "denoiser.", path)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_not_a_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04\x95 pickle bytes, never unpickled")
    with pytest.raises(CheckpointError, match=r"model.ckpt: not a safetensors file .*only .safetensors checkpoints are loaded"):
        load_checkpoint(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_missing_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"denoiser.x": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"has no AVDiT config in its metadata \(missing 'config'\)"):
        load_checkpoint(path)


def test_unreadable_metadata_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"denoiser.x": torch.zeros(2)}, path, metadata={"format_version": "1", "config": "{not json"})
    with pytest.raises(CheckpointError, match="the config in its metadata is unreadable"):
        load_checkpoint(path)
    save_file({"denoiser.x": torch.zeros(2)}, path, metadata={"format_version": "1", "config": json.dumps({"model": {"wdth": 3}})})
    with pytest.raises(CheckpointError, match=r"config section 'model' has unknown fields \['wdth'\]"):
        load_checkpoint(path)


def test_unknown_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"denoiser.x": torch.zeros(2)}, path, metadata={"format_version": "7", "config": AVDiTConfig().to_json()})
    with pytest.raises(CheckpointError, match="unknown checkpoint format version '7'; this version of avdit reads version 1"):
        load_checkpoint(path)


def test_missing_and_misshaped_tensors_are_refused(tmp_path, tiny_model):
    state = {f"denoiser.{k}": v for k, v in tiny_model.state_dict().items()}
    del state["denoiser.blocks.1.fc2.weight"]
    path = save_checkpoint(tmp_path / "missing.safetensors", tiny_model.config, state)
    config, tensors = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\) under 'denoiser.', e.g. 'denoiser.blocks.1.fc2.weight'"):
        load_state(AVDiT(config), tensors, "denoiser.", path)
    state = {f"denoiser.{k}": v for k, v in tiny_model.state_dict().items()}
    state["denoiser.final.audio.weight"] = torch.zeros(3, 3)
    path = save_checkpoint(tmp_path / "shape.safetensors", tiny_model.config, state)
    config, tensors = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"'denoiser.final.audio.weight' has shape \(3, 3\), the config's model expects \(16, 64\)"):
        load_state(AVDiT(config), tensors, "denoiser.", path)


def test_tensor_names_need_a_known_prefix(tmp_path):
    with pytest.raises(CheckpointError, match="must start with one of"):
        save_checkpoint(tmp_path / "x.safetensors", tiny_config(), {"blocks.0": torch.zeros(1)})
    assert not any(tmp_path.iterdir())


def test_a_saved_checkpoint_is_as_readable_as_any_file_the_user_writes(tmp_path):
    import os

    from avdit.checkpoint import save_checkpoint
    from avdit.config import AVDiTConfig

    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "a.safetensors", AVDiTConfig(), {})
        os.umask(0o077)
        private = save_checkpoint(tmp_path / "b.safetensors", AVDiTConfig(), {})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644 and os.stat(private).st_mode & 0o777 == 0o600

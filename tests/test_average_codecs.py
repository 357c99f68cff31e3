"""scripts/average_codecs.py (`avdit.codecs.train.average_codecs`): a fine-tuned codecs file averaged
with the codecs it was fine-tuned from, weight by weight, its latent scale set again, what it was made of
recorded; codecs of another shape, shares outside (0, 1) and missing files are refused, nothing written."""
from pathlib import Path

import pytest
import torch

from avdit.checkpoint import load_checkpoint
from avdit.cli import main
from avdit.codecs import load_codecs
from avdit.codecs.train import Clips
from tests.scripts import load_script
from tests.test_fine_tune_codecs import FEW_STEPS, LAYOUT

script = load_script("scripts/average_codecs.py")


def avdit(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Small codecs, their audio codec fine-tuned for two steps at a large rate, and one grown to 40 channels."""
    folder = tmp_path_factory.mktemp("average")
    base, tuned, grown = folder / "base.safetensors", folder / "tuned.safetensors", folder / "grown.safetensors"
    avdit("train-codec", *LAYOUT, *FEW_STEPS, "--steps", "2", "--output", base)
    avdit("train-codec", "--which", "audio", "--fine-tune", "--base", base, *FEW_STEPS, "--steps", "2", "--lr", "1e-2",
          "--output", tuned)
    avdit("train-codec", "--which", "audio", "--fine-tune", "--base", base, *FEW_STEPS, "--lr", "1e-12",
          "--audio-latent-channels", "40", "--output", grown)
    return base, tuned, grown


def test_the_average_is_each_weight_in_between_with_the_latent_scale_set_again_and_both_files_recorded(pair, tmp_path, capsys):
    base, tuned, _ = pair
    out = tmp_path / "averaged.safetensors"
    assert script.main(["--base", str(base), "--fine-tuned", str(tuned), "--weight", "0.25", "--output", str(out)]) == 0
    assert f"0.75 x {base} + 0.25 x {tuned}" in capsys.readouterr().out
    (base_config, b), (tuned_config, t), (config, a) = (load_checkpoint(p) for p in (base, tuned, out))
    assert set(a) == set(t)
    audio_keys = [k for k in t if k.startswith("audio_codec.")]
    assert any(not torch.equal(b[k], t[k]) for k in audio_keys)  # the fine-tune moved the audio codec
    for key in audio_keys:
        assert a[key].dtype == t[key].dtype
        assert torch.equal(a[key], (0.75 * b[key].float() + 0.25 * t[key].float()).to(t[key].dtype)), key
    assert all(torch.equal(a[k], t[k]) for k in t if k.startswith("video_codec."))  # the same in both: kept
    assert config.video_codec == tuned_config.video_codec and config.layout == base_config.layout
    # the averaged audio codec's latents of the statistics windows (toneshapes) have mean 0 and variance 1
    assert config.audio_codec.latent_scale != tuned_config.audio_codec.latent_scale
    _, audio, _ = load_codecs(out)
    with torch.no_grad():
        latent = audio.encode(Clips("toneshapes", config.layout).statistics()[1])
    assert abs(latent.mean().item()) < 1e-4 and latent.std().item() == pytest.approx(1.0, abs=1e-3)
    record = config.training["codecs"]["audio"]
    assert [(r["file"], r["weight"]) for r in record["average"]] == [(str(base), 0.75), (str(tuned), 0.25)]
    assert record["average"][0]["training"] == base_config.training["codecs"]["audio"]
    assert record["average"][1]["training"] == tuned_config.training["codecs"]["audio"]
    assert config.training["codecs"]["video"] == tuned_config.training["codecs"]["video"]


@pytest.mark.parametrize("change, message", [
    (["--weight", "0"], "--weight 0: give the fine-tuned codecs' share, above 0 and below 1"),
    (["--weight", "1"], "--weight 1: give the fine-tuned codecs' share, above 0 and below 1"),
    (["--fine-tuned", "GROWN"], "its audio codec is not that of BASE (latent_channels 40 against 32); only codecs of the same shape"),
    (["--data", "MISSING"], "--data 'MISSING' is not a folder; give the folder the fine-tune trained on, or toneshapes"),
    (["--base", "MISSING"], "missing.safetensors"),
    (["--output", "FOLDER"], "is a folder; give a file name such as codecs.safetensors"),
])
def test_bad_inputs_are_refused_by_name_and_nothing_is_written(pair, tmp_path, capsys, change, message):
    base, tuned, grown = pair
    out = tmp_path / "averaged.safetensors"
    names = {"GROWN": str(grown), "MISSING": str(tmp_path / "missing.safetensors"), "FOLDER": str(tmp_path)}
    argv = ["--base", str(base), "--fine-tuned", str(tuned), "--output", str(out)] + [names.get(a, a) for a in change]
    assert script.main(argv) == 2
    assert message.replace("BASE", str(base)).replace("MISSING", names["MISSING"]) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []

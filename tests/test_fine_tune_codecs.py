"""`train-codec --fine-tune`: --base's video or audio codec trained on from its weights (the shipped
general codecs on a creator's own footage, say) instead of a new one from scratch. Its shape (layout,
stride, latent channels, floor) is --base's, the other codec is kept, the report says what it was
trained on from; options that would change its shape, and codecs without weights, are refused."""
from pathlib import Path

import pytest
import torch

from avdit.checkpoint import load_checkpoint, save_checkpoint
from avdit.cli import main
from avdit.codecs.analytic import analytic_audio_config, analytic_video_config
from avdit.config import AVDiTConfig

LAYOUT = ["--size", "48x32", "--fps", "6", "--sample-rate", "8000", "--window-frames", "9"]
FEW_STEPS = ["--steps", "1", "--batch", "1", "--audio-batch", "1", "--video-frames", "5", "--device", "cpu", "--threads", "1"]
STILL = ["--lr", "1e-12"]  # a step this small moves no weight by a float16 step: what is saved is where training started


def avdit(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Small codecs of their own layout and shape (8 video latent channels, audio floor 0.01)."""
    path = tmp_path_factory.mktemp("fine-tune") / "base.safetensors"
    avdit("train-codec", *LAYOUT, *FEW_STEPS, "--steps", "3", "--video-latent-channels", "8", "--audio-floor", "0.01",
          "--output", path)
    return path


def weights(tensors: dict, prefix: str) -> dict:
    return {k: v for k, v in tensors.items() if k.startswith(prefix)}


def test_fine_tuning_the_video_codec_starts_from_its_weights_and_shape_and_keeps_the_audio_codec(base, tmp_path):
    base_config, base_tensors = load_checkpoint(base)
    tuned, fresh = tmp_path / "tuned.safetensors", tmp_path / "fresh.safetensors"
    avdit("train-codec", "--which", "video", "--fine-tune", "--base", base, *FEW_STEPS, *STILL, "--output", tuned)
    avdit("train-codec", "--which", "video", "--base", base, *FEW_STEPS, *STILL, "--video-latent-channels", "8",
          "--output", fresh)
    config, tensors = load_checkpoint(tuned)
    assert config.layout == base_config.layout  # 48x32 at 6 fps, 8 kHz, though no layout option was given
    assert config.video_codec.latent_channels == 8 and config.video_codec.options == base_config.video_codec.options
    video = weights(base_tensors, "video_codec.")
    assert set(weights(tensors, "video_codec.")) == set(video)
    assert all(torch.equal(tensors[k], v) for k, v in video.items())  # trained on from the base's weights
    assert all(torch.equal(tensors[k], v) for k, v in weights(base_tensors, "audio_codec.").items())
    # a new codec of the same shape starts elsewhere: the comparison above can tell the two apart
    fresh_tensors = load_checkpoint(fresh)[1]
    assert not all(torch.equal(fresh_tensors[k], v) for k, v in video.items())
    report = config.training["codecs"]["video"]
    assert report["steps"] == 1
    assert report["fine_tuned_from"] == {"base": str(base), "training": base_config.training["codecs"]["video"]}
    assert "fine_tuned_from" not in load_checkpoint(fresh)[0].training["codecs"]["video"]


def test_fine_tuning_the_audio_codec_keeps_its_floor_and_can_give_it_a_neural_decoder(base, tmp_path):
    base_config, base_tensors = load_checkpoint(base)
    tuned = tmp_path / "tuned.safetensors"
    avdit("train-codec", "--which", "audio", "--fine-tune", "--base", base, "--audio-decoder", "neural", *FEW_STEPS,
          *STILL, "--output", tuned)
    config, tensors = load_checkpoint(tuned)
    assert config.audio_codec.options == {**base_config.audio_codec.options, "decoder": "neural", "vocoder_refine": 0}
    assert config.audio_codec.options["eps"] == 0.01 and config.audio_codec.latent_channels == 32
    audio = weights(base_tensors, "audio_codec.")
    assert all(torch.equal(tensors[k], v) for k, v in audio.items())
    assert {k for k in weights(tensors, "audio_codec.") if k not in audio} == set(weights(tensors, "audio_codec.vocoder."))
    assert weights(tensors, "audio_codec.vocoder.")  # the decoder it lacked, trained after it
    assert all(torch.equal(tensors[k], v) for k, v in weights(base_tensors, "video_codec.").items())
    assert config.training["codecs"]["audio"]["fine_tuned_from"]["base"] == str(base)


@pytest.mark.parametrize("which, has, more, fewer", [("video", 8, 12, 4), ("audio", 32, 40, 16)])
def test_a_fine_tune_with_more_latent_channels_grows_the_latent_and_starts_from_the_same_reconstructions(
        base, tmp_path, which, has, more, fewer):
    from avdit.codecs import load_codecs
    from avdit.codecs.train import grow_codec

    base_codec = load_codecs(str(base))[0 if which == "video" else 1]
    grown = grow_codec(base_codec, more)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 5, 32, 48, 3, generator=generator) if which == "video" else torch.randn(2, 1, 8000, generator=generator) * 0.1
    with torch.no_grad():
        raw = grown._encode_raw(inputs)
        assert raw.shape[1] == more and torch.equal(raw[:, :has], base_codec._encode_raw(inputs))
        assert raw[:, has:].abs().amax() > 0  # the new channels carry something for training to find
        assert torch.equal(grown._decode_raw(raw), base_codec._decode_raw(base_codec._encode_raw(inputs)))
    with pytest.raises(ValueError, match=f"latent_channels is {fewer}; a grown codec keeps its {has} channels or more"):
        grow_codec(base_codec, fewer)

    out = tmp_path / "grown.safetensors"
    avdit("train-codec", "--which", which, "--fine-tune", "--base", base, f"--{which}-latent-channels", more, *FEW_STEPS,
          "--output", out)
    config, tensors = load_checkpoint(out)
    codec_config, base_config = getattr(config, f"{which}_codec"), getattr(load_checkpoint(base)[0], f"{which}_codec")
    assert codec_config.latent_channels == more and tensors[f"{which}_codec.dec_in.weight"].shape[1] == more
    # every option (the audio floor 0.01 among them) stays --base's
    assert {k: v for k, v in codec_config.options.items() if k in base_config.options} == base_config.options
    assert config.training["codecs"][which]["latent_channels_grown_from"] == has
    assert load_codecs(str(out))[0 if which == "video" else 1].encode(inputs).shape[1] == more


@pytest.mark.parametrize("argv, message", [
    (["--which", "both"], "--fine-tune trains one codec of --base on from its weights; give --which video or --which "
                          "audio, not both"),
    (["--which", "vocoder"], "--fine-tune trains one codec of --base on from its weights; give --which video or --which "
                             "audio, not vocoder (--which vocoder trains on --base's audio codec already)"),
    (["--which", "video", "--video-latent-channels", "4"],
     "--fine-tune trains the video codec of --base BASE on: --video-latent-channels 4 is fewer than its 8; give 8 or "
     "more (more grow its latent: the new channels start unused, so training starts from its reconstructions), or "
     "train a new codec (without --fine-tune)"),
    (["--which", "audio", "--audio-latent-channels", "16"],
     "--fine-tune trains the audio codec of --base BASE on: --audio-latent-channels 16 is fewer than its 32; give 32 or "
     "more (more grow its latent: the new channels start unused, so training starts from its reconstructions), or "
     "train a new codec (without --fine-tune)"),
    (["--which", "audio", "--audio-floor", "0.001"],
     "--fine-tune trains the audio codec of --base BASE on, whose shape these options would change: "
     "--audio-floor 0.001 (it has 0.01); leave them out, or train a new codec (without --fine-tune)"),
    (["--which", "audio", "--sample-rate", "16000"],
     "--fine-tune trains the audio codec of --base BASE on, made for another layout: --sample-rate 16000 (it has "
     "8000); leave these options out, or train a new codec (without --fine-tune)"),
    (["--which", "video", "--spatial-stride", "16"],
     "--fine-tune trains the video codec of --base BASE on, made for another layout: --spatial-stride 16 (it has 8); "
     "leave these options out, or train a new codec (without --fine-tune)"),
])
def test_what_would_change_the_fine_tuned_codec_is_refused_before_any_training(base, tmp_path, capsys, argv, message):
    out = tmp_path / "out.safetensors"
    code = main(["train-codec", "--fine-tune", "--base", str(base), *argv, *FEW_STEPS, "--output", str(out)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == "train-codec: " + message.replace("BASE", str(base)) + "\n"


def test_a_codec_without_weights_cannot_be_fine_tuned(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "analytic.safetensors",
                           AVDiTConfig(video_codec=analytic_video_config(), audio_codec=analytic_audio_config()), {})
    out = tmp_path / "out.safetensors"
    assert main(["train-codec", "--which", "video", "--fine-tune", "--base", str(base), "--output", str(out)]) == 2
    assert not out.exists()
    assert capsys.readouterr().err == (
        f"train-codec: --fine-tune needs a learned video codec in --base {base}; its video codec is of kind "
        "'space_to_depth', which has no weights to train (leave --fine-tune out to train a new one)\n")

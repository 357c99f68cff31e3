"""The clip layout on the command line. train-codec records a layout other than the default (48x32
at 6 fps, 8 kHz, 9-frame windows) in its checkpoint; train takes it from those codecs and refuses
a layout flag that disagrees; generate and reconstruct write MP4s in it. The learned video codec's
spatial stride is a setting (16: 128 x 128 -> an 8 x 8 grid), and the shipped codecs still
reconstruct bit for bit as before. Each command runs in-process through `avdit.cli.main`."""
import hashlib
from pathlib import Path

import av
import pytest
import torch

from avdit.checkpoint import load_checkpoint, read_config
from avdit.cli import main
from avdit.codecs import build_video_codec, load_codecs
from avdit.codecs.train import learned_video_config
from avdit.config import LayoutConfig
from avdit.data import generate_batch
from avdit.pipeline import AVDiTPipeline

LAYOUT = ["--size", "48x32", "--fps", "6", "--sample-rate", "8000", "--window-frames", "9"]
EXPECTED = LayoutConfig(fps=6.0, sample_rate=8000, height=32, width=48, window_frames=9)
EXAMPLE = Path(__file__).resolve().parent.parent / "example_workflows" / "input" / "avdit_toneshapes.mp4"
FEW_STEPS = ["--steps", "1", "--batch", "1", "--audio-batch", "1", "--video-frames", "5", "--device", "cpu"]


def avdit(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def codecs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layout") / "codecs.safetensors"
    avdit("train-codec", *LAYOUT, *FEW_STEPS, "--output", path)
    return path


@pytest.fixture(scope="module")
def model(codecs) -> Path:
    """A denoiser on those codecs; the layout flags that agree with them are accepted."""
    path = codecs.parent / "model.safetensors"
    avdit("train", "--codecs", codecs, "--size", "48x32", "--fps", "6", "--sample-rate", "8000", "--clips", "4",
          "--preset", "tiny", "--batch", "2", "--steps", "2", "--device", "cpu",
          "--cache", codecs.parent / "latents.safetensors", "--output", path)
    return path


def streams(path: Path) -> dict:
    """What a player sees in an MP4: frame size, frame rate, frames decoded, audio rate and channels."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        found = {"size": (video.width, video.height), "fps": float(video.average_rate), "rate": audio.rate,
                 "channels": audio.channels}
        found["frames"] = sum(1 for _ in container.decode(video=0))
    return found


def test_train_codec_records_the_layout_and_its_codecs_follow_it(codecs):
    config = read_config(codecs)
    assert config.layout == EXPECTED
    assert config.video_codec.spatial_stride == 8 and config.video_codec.options["channels"] == [64, 128]
    assert config.audio_codec.hop == 160 and config.audio_codec.options["n_fft"] == 640  # 50 latent frames a second
    video, audio, _ = load_codecs(codecs)
    assert video.encode(torch.rand(1, 9, 32, 48, 3)).shape == (1, 16, 3, 4, 6)
    assert audio.encode(torch.zeros(1, 1, 12000)).shape == (1, 32, 75)


def test_train_takes_the_layout_of_its_codecs(codecs, model):
    assert read_config(model).layout == EXPECTED
    latent = AVDiTPipeline.load(model).empty_latent(1.5)
    assert latent.video.shape == (1, 16, 3, 4, 6) and latent.audio.shape == (1, 32, 75)


def test_generate_writes_the_layout(model, tmp_path):
    out = tmp_path / "joint.mp4"
    avdit("generate", "--checkpoint", model, "--task", "joint", "--duration", "1", "--steps", "2", "--device", "cpu",
          "--output", out)
    assert streams(out) == {"size": (48, 32), "fps": 6.0, "rate": 8000, "channels": 1, "frames": 6}


def test_generate_refuses_a_length_its_layout_cannot_reach_window_by_window(model, tmp_path, capsys):
    # 6 fps and 8 kHz: a next window can start on whole latent frames of both only every 12 frames,
    # and a 9-frame window holds none: such a model makes at most one window (17-frame windows can)
    out = tmp_path / "long.mp4"
    assert main(["generate", "--checkpoint", str(model), "--duration", "4", "--output", str(out)]) == 2
    assert capsys.readouterr().err == (
        "python -m avdit generate: --duration 4 is longer than one window of the model (9 frames, 1.5 s), and its layout "
        "(6 fps, 8000 Hz, audio latent frames of 160 samples) has no frame within it where a next window can start on "
        "whole latent frames of both; expected --duration of at most 1.5 s\n")
    assert not out.exists()


def test_reconstruct_converts_to_the_layout(codecs, tmp_path, capsys):
    out = tmp_path / "codec.mp4"
    avdit("reconstruct", "--checkpoint", codecs, "--input", EXAMPLE, "--output", out)
    assert "video: 13 frames, 48x32 at 6 fps (from 64x64 at 8 fps)" in capsys.readouterr().out
    assert streams(out) == {"size": (48, 32), "fps": 6.0, "rate": 8000, "channels": 1, "frames": 13}


def test_a_layout_flag_that_disagrees_with_the_codecs_is_refused(codecs, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["train", "--codecs", str(codecs), "--fps", "8", "--size", "64", "--sample-rate", "8000",
                 "--output", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"train: --size 64x64 (it has 48x32); --fps 8 (it has 6): --codecs {codecs} fixes these (its codecs were "
        "trained at its layout); leave the option out, or train codecs at this layout first (python -m avdit "
        "train-codec with the same layout options)\n")
    assert not out.exists()


def test_weight_free_codecs_take_any_layout(tmp_path):
    out = tmp_path / "model.safetensors"
    avdit("train", "--codecs", "analytic", "--size", "32x16", "--fps", "12", "--sample-rate", "24000",
          "--window-frames", "5", "--clips", "2", "--preset", "tiny", "--batch", "2", "--steps", "1", "--device", "cpu",
          "--output", out)
    assert read_config(out).layout == LayoutConfig(fps=12.0, sample_rate=24000, height=16, width=32, window_frames=5)


def test_spatial_stride_16_turns_128_by_128_into_an_8_by_8_grid():
    codec = build_video_codec(learned_video_config(spatial_stride=16)).eval()
    assert codec.config.options == {"patch": 4, "channels": [64, 128, 256], "time_kernel": 3}
    with torch.no_grad():
        latent = codec.encode(torch.rand(1, 5, 128, 128, 3))
        assert latent.shape == (1, 16, 2, 8, 8)
        assert codec.decode(latent).shape == (1, 5, 128, 128, 3)


def test_train_codec_records_the_spatial_stride_and_keeps_the_other_codec(codecs, tmp_path):
    out = tmp_path / "stride16.safetensors"
    avdit("train-codec", "--which", "video", "--base", codecs, "--size", "32", "--spatial-stride", "16", *FEW_STEPS,
          "--output", out)
    config, tensors = load_checkpoint(out)
    assert config.layout == LayoutConfig(fps=6.0, sample_rate=8000, height=32, width=32, window_frames=9)
    assert config.video_codec.spatial_stride == 16 and config.video_codec.options["channels"] == [64, 128, 256]
    video, _, _ = load_codecs(out)
    assert video.encode(torch.rand(1, 9, 32, 32, 3)).shape == (1, 16, 3, 2, 2)
    base = load_checkpoint(codecs)[1]
    kept = [k for k in base if k.startswith("audio_codec.")]
    assert kept and all(torch.equal(tensors[k], base[k]) for k in kept)


# SHA-256 of the shipped codecs' latents and reconstructions of ToneShapes clip 2026 (17 frames), in
# float64 on one thread (the same on 1 and 2 threads here, where float32 audio is not), made with
# the codecs as they were before the spatial stride became a setting (commit c04c371).
SHIPPED_DIGESTS = {
    "video latent": "63ea7e96850f56914aa9daf9a942356b4985daeb2529af7253d45ed00eec26d1",
    "video frames": "45e754cad35ac3078f00b6b9f1acd55d7918328ffee3dcf53c6197611dc612a0",
    "audio latent": "6f8d2e2c99c41ab42915a35877e42ae8f586565a212412c71b869ac2e0a1d6d0",
    "audio waveform": "51accf58076cc6733777bc6a94f35578c8599c79cfc02adfb4c44d5da0253fd3",
}


def test_the_shipped_codecs_reconstruct_bit_for_bit_as_before():
    video, audio, config = load_codecs()
    assert config.video_codec.spatial_stride == 8 and config.video_codec.options["channels"] == [64, 128]
    clip = generate_batch([2026], frames=17)
    frames, waveform = torch.from_numpy(clip.video).double(), torch.from_numpy(clip.audio)[:, None].double()
    video, audio = video.double(), audio.double()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            video_latent, audio_latent = video.encode(frames), audio.encode(waveform)
            results = {"video latent": video_latent, "video frames": video.decode(video_latent),
                       "audio latent": audio_latent, "audio waveform": audio.decode(audio_latent)}
    finally:
        torch.set_num_threads(threads)
    digests = {name: hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest() for name, x in results.items()}
    assert digests == SHIPPED_DIGESTS


def test_eval_refuses_models_and_codecs_of_another_layout_before_any_work(codecs, model, tmp_path, capsys):
    """eval's clips and scorer are ToneShapes' own: a model of another layout gets one line, not a traceback."""
    tail = ("is made for 48x32 at 6 fps, 8000 Hz 1-channel audio, 9-frame windows; eval scores ToneShapes in its own "
            "layout only (64x64 at 8 fps, 16000 Hz mono, 17-frame windows): score other models with generate and "
            "measures of your own")
    for option, path in (("--checkpoint", model), ("--codecs", codecs)):
        output = tmp_path / "scores.md"
        with pytest.raises(SystemExit) as exit_:
            main(["eval", option, str(path), "--workdir", str(tmp_path / "work"), "--output", str(output)])
        assert str(exit_.value) == f"eval: {option} {path} {tail}"
        assert not output.exists() and not (tmp_path / "work").exists()

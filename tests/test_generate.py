"""`python -m avdit generate` end to end: every task writes an MP4 whose given part is the input's."""
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from avdit import media
from avdit.data import generate_clip
from avdit.pipeline import make_untrained_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate")
    checkpoint = make_untrained_checkpoint(folder / "tiny.safetensors", codecs="analytic")
    clip = generate_clip(11, frames=17)
    source = media.write_mp4(folder / "input.mp4", torch.from_numpy(clip.video), 8, torch.from_numpy(clip.audio)[None], 16000)
    return folder, checkpoint, media.decode(source)


def run_generate(folder, checkpoint, *args):
    out = folder / f"out_{abs(hash(args))}.mp4"
    result = subprocess.run([sys.executable, "-m", "avdit", "generate", "--checkpoint", str(checkpoint), "--steps", "2",
                             "--output", str(out), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return media.decode(out)


def psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize("task, video_frames, audio_seconds", [
    ("continue", slice(0, 5), (0.0, 0.62)),
    ("inpaint", slice(0, 5), (0.0, 0.62)),
    ("interpolate", slice(0, 1), (0.0, 0.12)),
    ("a2v", None, (0.0, 2.12)),
    ("v2a", slice(0, 17), None),
])
def test_given_part_of_the_input_comes_back(setup, task, video_frames, audio_seconds):
    folder, checkpoint, source = setup
    out = run_generate(folder, checkpoint, "--task", task, "--input", str(folder / "input.mp4"))
    assert out.frames.shape == source.frames.shape  # same length, size and rate as the input
    assert abs(out.audio_duration - source.audio_duration) < 1 / 8
    if video_frames is not None:
        assert psnr(out.frames[video_frames], source.frames[video_frames]) > 30
    if audio_seconds is not None:
        a, b = (int(t * 16000) for t in audio_seconds)
        ref, got = source.waveform[:, a:b], out.waveform[:, a:b]
        snr = 10 * torch.log10((ref**2).sum() / ((ref - got) ** 2).sum())
        assert snr > 15, snr
    if task == "a2v":  # the untrained model's video is noise, not the input's
        assert psnr(out.frames, source.frames) < 20


def test_joint_and_long_outputs_are_made_window_by_window(setup):
    folder, checkpoint, _ = setup
    out = run_generate(folder, checkpoint, "--task", "joint", "--duration", "5")
    assert out.frames.shape[0] == 40 and out.fps == 8
    assert abs(out.audio_duration - 5.0) < 1 / 8


def test_bad_keep_span_is_refused(setup):
    folder, checkpoint, _ = setup
    result = subprocess.run([sys.executable, "-m", "avdit", "generate", "--checkpoint", str(checkpoint),
                             "--keep", "2-1", "--output", str(folder / "never.mp4")], capture_output=True, text=True)
    assert result.returncode == 2 and "--keep '2-1': expected 0 <= START < END seconds" in result.stderr
    assert not (folder / "never.mp4").exists()


def test_sheet_shows_input_and_output_with_given_frames_marked(setup):
    folder, checkpoint, _ = setup
    sheet = folder / "continue.png"
    run_generate(folder, checkpoint, "--task", "continue", "--input", str(folder / "input.mp4"), "--sheet", str(sheet))
    with av.open(str(sheet)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # two bands (input, output) of 64 px frames + 4 px bar + 64 px waveform, 8 px apart; 17 frames of 64 px
    assert image.shape == (2 * (64 + 4 + 64) + 8, 17 * 64, 3)
    for top in (0, 64 + 4 + 64 + 8):
        bar = image[top + 64 + 1]  # a row of the bar under the frames
        # continue keeps 0..0.625 s: frames 0..4 (midpoints < 0.625 s) grey, 5..16 orange
        assert (bar[: 5 * 64] == [150, 150, 150]).all() and (bar[5 * 64:] == [255, 150, 40]).all()
        wave = image[top + 68: top + 132]
        assert (wave[:, : 5 * 64] == [255, 150, 40]).all(-1).sum() == 0  # the given audio is drawn grey
        assert (wave[:, : 5 * 64] == [150, 150, 150]).all(-1).any(0).all()  # every column has its trace


def test_sheet_name_must_be_png(setup):
    folder, checkpoint, _ = setup
    result = subprocess.run([sys.executable, "-m", "avdit", "generate", "--checkpoint", str(checkpoint),
                             "--sheet", str(folder / "pic.jpg"), "--output", str(folder / "never2.mp4")], capture_output=True, text=True)
    assert result.returncode == 2 and "--sheet" in result.stderr and "ending in .png" in result.stderr
    assert not (folder / "never2.mp4").exists()

"""The shipped demo model: the README's main job runs on it, and it has learned ToneShapes' sound-picture rules."""
import argparse
import subprocess
import sys

import pytest
import torch

from avdit import media
from avdit.codecs.train import HELD_OUT_SEED, toneshapes_batch, tone_agreement
from avdit.generate import example_clip
from avdit.pipeline import DEMO_MODEL, AVDiTPipeline


def test_demo_model_is_shipped_small_and_says_how_it_was_trained():
    from avdit.checkpoint import read_config

    assert DEMO_MODEL.is_file(), f"{DEMO_MODEL} is missing: see README, 'The demo model'"
    assert DEMO_MODEL.stat().st_size <= 60_000_000
    training = read_config(DEMO_MODEL).training
    assert training["strategy"] == "monl" and training["data"] == "toneshapes" and training["steps"] >= 1000


def test_generate_with_no_options_continues_the_bundled_clip(tmp_path):
    """The README's main job: no checkpoint and no input -> the demo model continues the bundled clip."""
    out = tmp_path / "avdit_out.mp4"
    result = subprocess.run([sys.executable, "-m", "avdit", "generate", "--steps", "10"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    got, source = media.decode(out), example_clip()
    assert got.frames.shape == (17, 64, 64, 3) and got.fps == 8 and abs(got.audio_duration - 17 / 8) < 1 / 8
    # the given 0.625 s (frames 0..4) come back up to the codecs' error and H.264 / AAC
    mse = ((got.frames[:5] - source.frames[:5]) ** 2).mean()
    assert 10 * torch.log10(1 / mse) > 28
    heard = tone_agreement(source.waveform[0, : 5 * 2000].numpy(), got.waveform[0, : 5 * 2000].numpy())
    assert heard["pitch"] == 1.0 and heard["timbre"] == 1.0 and heard["presence"] == 1.0


@pytest.fixture(scope="module")
def demo_scores():
    """The demo model on 16 held-out ToneShapes clips, 10 euler steps, guidance 3, as `python -m avdit eval` scores it."""
    from avdit import evaluate
    from avdit.layout import Layout

    pipe = AVDiTPipeline.load()
    layout = Layout.from_config(pipe.config)
    video, audio = toneshapes_batch(range(HELD_OUT_SEED + 5000, HELD_OUT_SEED + 5016))
    reference_video, reference_audio = toneshapes_batch(range(HELD_OUT_SEED + 10000, HELD_OUT_SEED + 10064))
    reference = evaluate.frame_features(reference_video.numpy(), reference_audio[:, 0].numpy()).reshape(-1, 26)
    args = argparse.Namespace(steps=10, sampler="euler", seed=0)
    scores = {}
    for task in ("a2v", "v2a", "continue"):  # continue: the clips cut where the given part ends, as users give them
        latents = evaluate.encoded_clips(pipe, task, video, audio, layout)
        out_video, out_audio = evaluate.run_task(pipe, task, *latents, layout, args, 3.0)
        scores[task] = evaluate._scores(out_video, out_audio, reference, task, layout)
    shuffled = evaluate.agreement_score(video.numpy(), audio[:, 0].roll(1, 0).numpy())
    return scores, shuffled


@pytest.mark.slow
def test_demo_model_makes_the_picture_follow_the_sound_and_the_sound_follow_the_picture(demo_scores):
    """a2v and v2a: the generated modality agrees with the given one far above shuffled-pair chance."""
    scores, shuffled = demo_scores
    for task in ("a2v", "v2a"):
        assert scores[task]["agreement"] > shuffled["agreement"] + 0.12, (task, scores[task], shuffled)
        assert scores[task]["pitch"] > 2 * shuffled["pitch"], (task, scores[task], shuffled)


@pytest.mark.slow
def test_demo_models_sound_is_at_the_discs_height_in_both_directions_and_in_continuations(demo_scores):
    """Issue 15's bar: pitch within a semitone on at least 0.6 of the frames where the disc is present,
    in v2a, a2v and continuation (the model before this one: about 0.26 in v2a)."""
    scores, _ = demo_scores
    for task in ("a2v", "v2a", "continue"):
        assert scores[task]["pitch"] >= 0.6, (task, scores[task])


@pytest.mark.slow
def test_demo_model_continues_in_the_given_colour_and_timbre(demo_scores):
    scores, _ = demo_scores
    assert scores["continue"]["colour_kept"] > 0.9 and scores["continue"]["timbre_kept"] > 0.9, scores["continue"]
    assert scores["continue"]["no_jump"] > 0.8, scores["continue"]

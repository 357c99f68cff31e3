"""`python -m avdit eval`: the scores behave as documented, and a tiny run writes the whole report."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from avdit.codecs.train import HELD_OUT_SEED, toneshapes_batch
from avdit.evaluate import (agreement_from_counts, agreement_score, clip_counts, clip_seeds, continuity_score,
                            frame_features, frechet_distance, paired_differences)


@pytest.fixture(scope="module")
def real():
    video, audio = toneshapes_batch(range(HELD_OUT_SEED + 7000, HELD_OUT_SEED + 7024))
    return video.numpy(), audio[:, 0].numpy()


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_moved_one():
    rows = np.random.default_rng(0).normal(size=(500, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5])
    rows -= rows.mean(0)
    assert frechet_distance(rows, rows) == pytest.approx(0.0, abs=1e-6)
    moved = rows + np.array([3.0, 0.0, -4.0, 0.0])
    assert frechet_distance(moved, rows) == pytest.approx(25.0, rel=1e-6)
    # twice the spread, same (zero) mean: tr(4C) + tr(C) - 2 tr(2C) = tr(C)
    assert frechet_distance(2 * rows, rows) == pytest.approx(np.trace(np.cov(rows, rowvar=False)), rel=1e-6)


def test_real_clips_agree_and_shuffled_ones_do_not(real):
    video, audio = real
    assert agreement_score(video, audio)["agreement"] == pytest.approx(1.0)
    shuffled = agreement_score(video, np.roll(audio, 1, axis=0))
    assert shuffled["pitch"] < 0.25 and shuffled["agreement"] < 0.75


def test_a_clip_continued_by_itself_is_continuous_and_a_swapped_tail_is_not(real):
    video, audio = real
    given = np.arange(17) < 9
    whole = continuity_score(video, audio, given, given)
    assert whole["colour_kept"] == 1.0 and whole["timbre_kept"] == 1.0 and whole["no_jump"] >= 0.9
    # the tail of each clip replaced by another clip's: colours and timbres change in about 2 of 3
    spliced_v, spliced_a = video.copy(), audio.copy()
    spliced_v[:, 9:] = np.roll(video, 1, axis=0)[:, 9:]
    spliced_a[:, 9 * 2000:] = np.roll(audio, 1, axis=0)[:, 9 * 2000:]
    swapped = continuity_score(spliced_v, spliced_a, given, given)
    assert swapped["colour_kept"] < 0.7 and swapped["timbre_kept"] < 0.7 and swapped["no_jump"] < 0.7


def test_per_clip_counts_pool_to_the_batch_agreement(real):
    video, audio = real
    shuffled = np.roll(audio, 1, axis=0)
    counts = clip_counts(video, shuffled)
    assert counts.shape == (24, 6) and (counts[:, 5] == 17).all()
    assert agreement_from_counts(counts) == pytest.approx(agreement_score(video, shuffled)["agreement"], abs=1e-12)
    assert agreement_from_counts(counts[:12]) == pytest.approx(agreement_score(video[:12], shuffled[:12])["agreement"], abs=1e-12)


def test_paired_bootstrap_tells_a_real_difference_from_none(real):
    video, audio = real
    matched, shuffled = clip_counts(video, audio).tolist(), clip_counts(video, np.roll(audio, 1, axis=0)).tolist()
    results = {"monl": {"a2v": {"clip_counts": matched}, "v2a": {"clip_counts": matched}},
               "vanilla": {"a2v": {"clip_counts": shuffled}, "v2a": {"clip_counts": shuffled}},
               "per_modality": {"a2v": {"clip_counts": matched}, "v2a": {"clip_counts": matched}}}
    better, same = paired_differences(results, [("monl", "vanilla", ("a2v", "v2a")), ("monl", "per_modality", ("a2v", "v2a"))])
    chance = agreement_score(video, np.roll(audio, 1, axis=0))["agreement"]
    assert better["difference"] == pytest.approx(1.0 - chance) and 0 < better["low"] < better["difference"] < better["high"]
    assert same["difference"] == same["low"] == same["high"] == 0.0


def test_features_are_per_frame_with_their_change(real):
    video, audio = real
    features = frame_features(video, audio)
    assert features.shape == (24, 17, 26)
    assert (features[:, 0, 13:] == 0).all()  # no change on the first frame
    assert np.allclose(features[:, 1:, 13:], np.diff(features[:, :, :13], axis=1))


@pytest.mark.slow
def test_eval_trains_every_strategy_and_writes_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "RESULTS.md"
    cmd = [sys.executable, "-m", "avdit", "eval", "--output", str(out), "--workdir", str(tmp_path / "models"),
           "--preset", "tiny", "--train-steps", "2", "--batch", "2", "--clips", "8", "--cache", str(tmp_path / "cache.safetensors"),
           "--eval-clips", "3", "--reference-clips", "4", "--steps", "2", "--guidance", "1,2", "--task-probability", "0.5", "--jobs", "2"]
    out.write_text("# an older report\n\n## History\n\n| what | steps |\n| mini | 1000 |\n")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text.endswith("(results.png)\n\n## History\n\n| what | steps |\n| mini | 1000 |\n") and "an older report" not in text
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    strategies = ["monl", "vanilla", "per_modality", "per_segment", "per_modality_segment",
                  "task:a2v", "task:v2a", "task:continue", "task:inpaint"]
    assert data["strategies"] == strategies
    # each model's guidance is the scale with its best average agreement on the validation clips
    for strategy, tried in data["guidance_tried"].items():
        assert list(tried) == ["1.0", "2.0"] and data["guidance"][strategy] == float(max(tried, key=tried.get))  # a tie: the first
    assert "the one of 1, 2 with its best average agreement on the validation clips" in text
    assert "clean probability 0, task probability 0.5" in text
    assert ("Continue gives 0..1.125 s of an input cut there (encoded as `generate` encodes it); inpaint gives 0..0.625 s and "
            "1.625..2.125 s") in text
    assert [row["strategy"] for row in data["summary"]] == sorted(strategies[:5], key=lambda s: (
        -np.mean([data["results"][s][t]["agreement"] for t in data["tasks"]]),
        -np.mean([data["results"][s][t]["continuity"] for t in ("continue", "inpaint")])))
    assert "## Summary, ranked by agreement" in text
    assert re.search(r"The models trained 2 at a time, \d+ threads? each \(`--jobs 2`\), so the wall time was less than that sum", text)
    # side by side, the models' own times add up to more than the wall clock saw: the report does not call the sum wall time
    assert re.search(r"^Time \d+\.\d min, scoring's wall time plus each model's own training time \(\d+\.\d min\), on ", text, re.M)
    assert "Wall time" not in text
    assert all((tmp_path / "models" / f"{s.replace(':', '-')}.log").is_file() for s in strategies)
    for strategy in strategies[:5]:
        assert set(data["results"][strategy]) == {"joint", "a2v", "v2a", "continue", "inpaint"}
    assert set(data["results"]["task:inpaint"]) == {"inpaint"}
    assert {"continuity", "colour_kept", "no_jump"} <= set(data["results"]["monl"]["continue"])
    assert "continuity" not in data["results"]["monl"]["a2v"]
    assert data["references"]["real clips"]["agreement"] == pytest.approx(1.0)
    assert "| MoNL (ours) |" in text and "| task-specific: a2v |" in text and "--train-steps 2" in text
    assert "![Agreement and FD per task](results.png)" in text
    # MoNL paired against the 4 other general strategies on all tasks and each specialist on its own task
    # and on continuity over continue and inpaint, against the general strategies and those two specialists
    assert [(row["b"], row["metric"], len(row["tasks"])) for row in data["paired"]] == (
        [(s, "agreement", 5) for s in strategies[1:5]] + [(s, "agreement", 1) for s in strategies[5:]]
        + [(s, "continuity", 2) for s in strategies[1:5]] + [(s, "continuity", 1) for s in strategies[7:]])
    assert all(row["low"] <= row["difference"] <= row["high"] for row in data["paired"])
    assert "## MoNL against each baseline, paired over the same held-out clips" in text and "| task-specific: inpaint | agreement | inpaint |" in text
    assert len(data["results"]["monl"]["a2v"]["clip_counts"]) == 3
    with open(tmp_path / "results.png", "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    models = sorted(p.name for p in (tmp_path / "models").iterdir() if p.suffix == ".safetensors")
    assert models == sorted(f"{s.replace(':', '-')}{end}" for s in strategies for end in (".safetensors", ".resume.safetensors"))
    # (the resume files are kept, so that a larger --train-steps trains these models on)


def test_a_larger_budget_trains_the_workdir_model_on_and_gives_the_fresh_run_model(tmp_path, capsys):
    import argparse

    import torch

    from avdit.checkpoint import load_checkpoint, read_config
    from avdit.evaluate import add_arguments, train_model

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = lambda steps, **more: parser.parse_args(["--preset", "tiny", "--train-steps", str(steps), "--batch", "2", "--clips", "16",
                                                    "--cache", str(tmp_path / "cache.safetensors"), "--codecs", "analytic",
                                                    *[f"--{k}={v}" for k, v in more.items()]])
    on = train_model("per_modality", args(4), tmp_path / "on")  # warm-up min(200, steps // 4) is 1 at both budgets
    assert read_config(on).training["steps"] == 4
    capsys.readouterr()
    assert train_model("per_modality", args(7), tmp_path / "on") == on
    assert f"eval: per_modality: training {on} on from 4 to 7 steps" in capsys.readouterr().err
    fresh = train_model("per_modality", args(7), tmp_path / "fresh")
    (_, a), (_, b) = load_checkpoint(on), load_checkpoint(fresh)
    assert read_config(on).training["steps"] == 7 and all(torch.equal(a[k], b[k]) for k in a)
    train_model("per_modality", args(8, seed=1), tmp_path / "on")  # another seed: not the same run, trained afresh
    assert "eval: training per_modality (8 steps)" in capsys.readouterr().err
    assert read_config(on).training["seed"] == 1
    assert train_model("per_modality", args(8, seed=1), tmp_path / "on") == on  # the same settings: used as it is
    assert f"eval: per_modality: using {on}" in capsys.readouterr().err
    train_model("per_modality", args(8, seed=1, lr=0.01), tmp_path / "on")  # same steps, another lr: not the model asked for
    err = capsys.readouterr().err
    assert f"eval: per_modality: {on} was trained with lr 0.001, not 0.01: trained afresh" in err
    assert "eval: training per_modality (8 steps)" in err and read_config(on).training["lr"] == 0.01
    train_model("per_modality", args(8, seed=1, lr=0.01, **{"task-probability": 0.5}), tmp_path / "on")  # another recipe: trained afresh
    err = capsys.readouterr().err
    assert f"eval: per_modality: {on} was trained with task_probability 0.0, not 0.5: trained afresh" in err
    assert read_config(on).monl.task_probability == 0.5


def test_eval_scores_given_checkpoints_on_every_task_without_training(tmp_path):
    from avdit.pipeline import make_untrained_checkpoint

    checkpoint = make_untrained_checkpoint(tmp_path / "mine.safetensors")
    out = tmp_path / "card.md"
    cmd = [sys.executable, "-m", "avdit", "eval", "--checkpoint", str(checkpoint), "--output", str(out),
           "--workdir", str(tmp_path / "unused"), "--eval-clips", "2", "--reference-clips", "3", "--steps", "2", "--dtype", "bf16"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "card.json").read_text())
    assert data["settings"]["dtype"] == "bf16" and "denoiser in bf16" in out.read_text()
    assert data["strategies"] == [str(checkpoint)] and set(data["results"][str(checkpoint)]) == {"joint", "a2v", "v2a", "continue", "inpaint"}
    assert data["train_seconds"] == 0.0 and not (tmp_path / "unused").exists()  # nothing trained
    text = out.read_text()
    assert text.startswith("# Scores of trained checkpoints") and f"| {checkpoint} |" in text
    assert data["paired"] == []  # one model: nothing to pair it with


@pytest.mark.slow
def test_eval_pairs_the_first_checkpoint_against_the_others(tmp_path):
    from avdit.pipeline import make_untrained_checkpoint

    first = make_untrained_checkpoint(tmp_path / "first.safetensors")
    second = make_untrained_checkpoint(tmp_path / "second.safetensors")
    out = tmp_path / "two.md"
    cmd = [sys.executable, "-m", "avdit", "eval", "--checkpoint", str(first), "--checkpoint", str(second), "--output", str(out),
           "--eval-clips", "3", "--reference-clips", "3", "--steps", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "two.json").read_text())
    assert [(row["a"], row["b"], row["metric"], len(row["tasks"])) for row in data["paired"]] == [
        (str(first), str(second), "agreement", 5), (str(first), str(second), "continuity", 2)]
    assert f"## {first} against each other model, paired over the same held-out clips" in out.read_text()


def test_validation_clips_are_neither_test_clips_nor_training_clips():
    test_scored, test_reference = clip_seeds("test", 64, 256)
    # the test split is the one every results file so far was scored on
    assert (test_scored[0], test_scored[-1], test_reference[0]) == (HELD_OUT_SEED + 5000, HELD_OUT_SEED + 5063, HELD_OUT_SEED + 10000)
    scored, reference = clip_seeds("validation", 5000, 5000)
    seen = set(test_scored) | set(test_reference)
    assert not seen & set(scored) and not seen & set(reference) and not set(scored) & set(reference)
    assert min(scored) >= HELD_OUT_SEED  # never a training clip
    with pytest.raises(ValueError, match=r"--eval-clips is 5001; expected 2 to 5000"):
        clip_seeds("test", 5001, 3)
    with pytest.raises(ValueError, match=r"split is 'train'; expected one of \['test', 'validation'\]"):
        clip_seeds("train", 3, 3)


def test_eval_refuses_too_many_clips_before_training_anything(tmp_path):
    cmd = [sys.executable, "-m", "avdit", "eval", "--workdir", str(tmp_path / "w"), "--output", str(tmp_path / "r.md"),
           "--eval-clips", "6000", "--split", "validation"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "eval: --eval-clips is 6000; expected 2 to 5000" in result.stderr
    assert not (tmp_path / "w").exists() and not (tmp_path / "r.md").exists()


def test_jobs_train_models_side_by_side_each_logging_to_its_file_and_give_the_same_models(tmp_path):
    import argparse

    import torch

    from avdit.checkpoint import load_checkpoint, read_config
    from avdit.evaluate import add_arguments, train_all

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = lambda jobs: parser.parse_args(["--preset", "tiny", "--train-steps", "3", "--batch", "2", "--clips", "8", "--jobs", str(jobs),
                                           "--cache", str(tmp_path / "cache.safetensors"), "--codecs", "analytic"])
    one = train_all(["monl", "task:v2a"], args(1), tmp_path / "one")
    (tmp_path / "two").mkdir()
    two = train_all(["monl", "task:v2a"], args(2), tmp_path / "two")
    assert list(two) == ["monl", "task:v2a"] and two["task:v2a"] == tmp_path / "two" / "task-v2a.safetensors"
    for strategy in two:
        assert read_config(two[strategy]).training["strategy"] == strategy and read_config(two[strategy]).training["steps"] == 3
        (_, a), (_, b) = load_checkpoint(one[strategy]), load_checkpoint(two[strategy])
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
        log = (tmp_path / "two" / f"{strategy.replace(':', '-')}.log").read_text()
        assert f"saved {two[strategy]}" in log


def test_jobs_name_the_log_of_a_model_whose_training_failed(tmp_path):
    import argparse

    from avdit.evaluate import add_arguments, train_all

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "tiny", "--train-steps", "2", "--batch", "2", "--clips", "8", "--jobs", "2",
                              "--cache", str(tmp_path / "cache.safetensors"), "--codecs", "analytic"])
    with pytest.raises(SystemExit, match=r"eval: training task:sing failed \(SystemExit: 2\); see .*task-sing\.log$"):
        train_all(["monl", "task:sing"], args, tmp_path)
    assert "invalid choice: 'task:sing'" in (tmp_path / "task-sing.log").read_text()

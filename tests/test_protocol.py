"""The comparison protocol of `avdit eval` and the training recipe options (issue 15): every task's
blocks have one definition that training and scoring share; conditioning exposure can be set the
same for every strategy; the loss can weigh modalities equally; continuity has per-clip counts,
paired intervals and a ranked summary."""
import numpy as np
import pytest
import torch

from avdit.codecs.train import HELD_OUT_SEED, toneshapes_batch
from avdit.config import MonlConfig
from avdit.evaluate import (continuity_counts, continuity_score, given_frames, given_seconds, paired_differences,
                            pooled_continuity, scored_mask, summary)
from avdit.layout import Layout
from avdit.monl import CONDITIONAL_TASKS, STRATEGIES, draw_levels, per_frame_levels, task_given
from avdit.schedule import Schedule
from avdit.config import ScheduleConfig
from avdit.train import monl_loss
from tests.conftest import tiny_config
from tests.scripts import load_script


@pytest.mark.parametrize("task", CONDITIONAL_TASKS)
def test_each_task_is_scored_on_exactly_the_blocks_its_task_specific_model_trains_on(task):
    layout = Layout.from_config(tiny_config())
    levels, _ = draw_levels(8, layout.num_segments, MonlConfig(task=task), torch.Generator().manual_seed(0))
    trained_v, trained_a = per_frame_levels(levels, layout)
    scored = scored_mask(task, layout)
    assert torch.equal(scored.video == 0, (trained_v == 0)[0]) and torch.equal(scored.audio == 0, (trained_a == 0)[0])
    assert bool((trained_v == 0).eq((trained_v == 0)[:1]).all())  # every draw gives the same blocks


def test_the_scored_spans_are_the_ones_the_report_states():
    layout = Layout.from_config(tiny_config())  # 2.125 s, five segments
    assert given_seconds("continue", layout) == [(0.0, 1.125)]
    assert given_seconds("inpaint", layout) == [(0.0, 0.625), (1.625, 2.125)]
    video, audio = given_frames("continue", layout)
    assert video.tolist() == [True] * 9 + [False] * 8 and audio.tolist() == video.tolist()
    video, _ = given_frames("inpaint", layout)
    assert video.tolist() == [True] * 5 + [False] * 8 + [True] * 4


@pytest.mark.parametrize("strategy", STRATEGIES + ("monl",))
def test_task_probability_gives_every_strategy_the_same_conditioning_exposure(strategy):
    weights = dict.fromkeys(STRATEGIES, 1.0) if strategy == "monl" else {strategy: 1.0}
    n, q = 40000, 0.4
    levels, _ = draw_levels(n, 5, MonlConfig(weights=weights, task_probability=q), torch.Generator().manual_seed(1))
    given = levels == 0  # uniform levels are never exactly 0: the zeros are the task draws
    counts = {task: int((given == task_given(task, 5)).flatten(1).all(1).sum()) for task in CONDITIONAL_TASKS}
    nothing = int((~given).flatten(1).all(1).sum())
    assert sum(counts.values()) + nothing == n  # every given pattern is one task's, whole
    sd = (n * q / 4 * (1 - q / 4)) ** 0.5
    for task, count in counts.items():
        assert abs(count - n * q / 4) < 4 * sd, (task, count)
    # with clean_probability instead, per-modality training sees the v2a situation far more often than vanilla never does
    levels, _ = draw_levels(n, 5, MonlConfig(weights=weights, clean_probability=0.25), torch.Generator().manual_seed(1))
    v2a = int(((levels[:, 0] == 0).all(1) & (levels[:, 1] > 0).all(1)).sum())
    assert v2a == 0 if strategy in ("vanilla", "per_segment") else v2a > 0


def test_task_probability_zero_draws_exactly_what_it_drew_before():
    generator = lambda: torch.Generator().manual_seed(3)
    plain, _ = draw_levels(64, 5, MonlConfig(clean_probability=0.25), generator())
    zero, _ = draw_levels(64, 5, MonlConfig(clean_probability=0.25, task_probability=0.0), generator())
    assert torch.equal(plain, zero)
    with_tasks, _ = draw_levels(64, 5, MonlConfig(clean_probability=0.25, task_probability=1.0), generator())
    assert torch.equal(with_tasks[with_tasks > 0], plain[with_tasks > 0])  # the strategy's levels stay; only the task's blocks go to 0


def test_logit_normal_levels_crowd_the_middle():
    levels, _ = draw_levels(20000, 5, MonlConfig(weights={"per_modality_segment": 1.0}, level_sampling="logit_normal"),
                            torch.Generator().manual_seed(0))
    assert bool(((levels > 0) & (levels < 1)).all())
    middle = float(((levels > 0.25) & (levels < 0.75)).float().mean())
    assert middle == pytest.approx(0.7286, abs=0.01)  # P(|N(0, 1)| < logit(0.75) = 1.0986); uniform gives 0.5
    with pytest.raises(ValueError, match="level sampling is 'beta'; expected one of"):
        draw_levels(2, 5, MonlConfig(level_sampling="beta"))


class KnownError(torch.nn.Module):
    """Predicts the flow velocity of zero latents exactly (x_t / t), plus `video_error` on video and
    `audio_error` on audio: every noised element's squared error is known."""

    def __init__(self, video_error, audio_error):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.errors = video_error, audio_error

    def forward(self, video, audio, video_levels, audio_levels):
        tv = video_levels[:, None, :, None, None].clamp(min=1e-6)
        ta = audio_levels[:, None, :].clamp(min=1e-6)
        return video / tv + self.errors[0] + 0 * self.weight, audio / ta + self.errors[1]


@pytest.mark.parametrize("weighting", ["elements", "modality"])
def test_loss_weighting_weighs_elements_or_each_samples_modalities(weighting):
    layout = Layout.from_config(tiny_config())
    video, audio = torch.zeros(64, 16, 5, 4, 4), torch.zeros(64, 16, 107)
    schedule = Schedule(ScheduleConfig("flow", "velocity"))
    monl = MonlConfig(weights={"per_modality": 1.0}, clean_probability=0.5, loss_weighting=weighting)
    loss = monl_loss(KnownError(1.0, 2.0), schedule, monl, video, audio, layout, torch.Generator().manual_seed(5))
    levels, _ = draw_levels(64, layout.num_segments, monl, torch.Generator().manual_seed(5))  # the same draw
    noised_v, noised_a = (levels[:, 0] > 0).all(1), (levels[:, 1] > 0).all(1)  # per_modality: whole rows
    assert noised_v.any() and noised_a.any() and (noised_v & ~noised_a).any() and (~noised_v & noised_a).any()
    nv, na = 16 * 5 * 4 * 4, 16 * 107
    if weighting == "elements":
        expected = (noised_v.sum() * nv * 1.0 + noised_a.sum() * na * 4.0) / (noised_v.sum() * nv + noised_a.sum() * na)
    else:  # both noised 2.5, only video 1, only audio 4; samples with nothing noised are left out
        per_sample = torch.where(noised_v & noised_a, 2.5, torch.where(noised_v, 1.0, 4.0))
        expected = per_sample[noised_v | noised_a].mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.fixture(scope="module")
def real():
    video, audio = toneshapes_batch(range(HELD_OUT_SEED + 7000, HELD_OUT_SEED + 7016))
    return video.numpy(), audio[:, 0].numpy()


def spliced(video, audio):
    """Each clip's last 8 frames (and their sound) replaced by the next clip's."""
    out_v, out_a = video.copy(), audio.copy()
    out_v[:, 9:] = np.roll(video, 1, axis=0)[:, 9:]
    out_a[:, 9 * 2000:] = np.roll(audio, 1, axis=0)[:, 9 * 2000:]
    return out_v, out_a


def test_continuity_counts_pool_to_the_score_of_any_set_of_clips(real):
    video, audio = real
    given = np.arange(17) < 9
    spliced_v, spliced_a = spliced(video, audio)
    counts = continuity_counts(spliced_v, spliced_a, given, given)
    assert counts.shape == (16, 6) and (counts[:, 5] <= 1).all()  # one boundary
    for part in (slice(None), slice(0, 5), slice(7, 16)):
        pooled = pooled_continuity(counts[part])
        direct = continuity_score(spliced_v[part], spliced_a[part], given, given)
        assert {k: float(v) for k, v in pooled.items()} == pytest.approx(direct, abs=1e-12)


def test_paired_continuity_tells_a_kept_given_part_from_a_swapped_one_and_the_summary_ranks(real):
    video, audio = real
    given = np.arange(17) < 9
    spliced_v, spliced_a = spliced(video, audio)
    from avdit.evaluate import clip_counts

    kept = {"clip_counts": clip_counts(video, audio).tolist(), "continuity_counts": continuity_counts(video, audio, given, given).tolist()}
    swapped = {"clip_counts": clip_counts(spliced_v, spliced_a).tolist(),
               "continuity_counts": continuity_counts(spliced_v, spliced_a, given, given).tolist()}
    shuffled = {"clip_counts": clip_counts(video, np.roll(audio, 1, axis=0)).tolist()}
    tasks = ("joint", "continue", "inpaint")
    results = {"per_modality": {"joint": shuffled, "continue": swapped, "inpaint": swapped},
               "monl": {"joint": {"clip_counts": kept["clip_counts"]}, "continue": kept, "inpaint": kept},
               "vanilla": {"joint": shuffled, "continue": kept, "inpaint": kept}}
    better, same = paired_differences(results, [("monl", "per_modality", ("continue", "inpaint")), ("monl", "vanilla", ("continue", "inpaint"))],
                                      metric="continuity")
    whole, cut = pooled_continuity(np.array(kept["continuity_counts"])), pooled_continuity(np.array(swapped["continuity_counts"]))
    assert better["metric"] == "continuity" and better["difference"] == pytest.approx(float(whole["continuity"] - cut["continuity"]))
    assert 0 < better["low"] < better["difference"] < better["high"]
    assert same["difference"] == same["low"] == same["high"] == 0.0
    rows = summary(results, tasks)
    assert [row["strategy"] for row in rows] == ["monl", "vanilla", "per_modality"]  # by agreement, a tie by continuity
    for row in rows:
        for metric in ("agreement", "continuity"):
            assert row[metric]["low"] <= row[metric]["value"] <= row[metric]["high"]
    assert rows[-1]["continuity"]["value"] == pytest.approx(float(cut["continuity"]))
    with pytest.raises(ValueError, match="metric is 'fd'; expected agreement or continuity"):
        paired_differences(results, [("monl", "vanilla", ("continue",))], metric="fd")


def test_a_rewritten_report_keeps_its_history_section(tmp_path):
    from avdit.evaluate import kept_history

    report = tmp_path / "RESULTS.md"
    assert kept_history(report) == ""
    report.write_text("# Results\n\nold table\n\n## History\n\n| what | steps |\n|---|---|\n| mini | 1000 |\n")
    assert kept_history(report) == "\n## History\n\n| what | steps |\n|---|---|\n| mini | 1000 |\n"
    report.write_text("# Results\n\nno history here; ## History inside a line does not count\n")
    assert kept_history(report) == ""


def test_long_continuation_scores_each_chunk_after_the_given_part(real):
    bench = load_script("bench/long_continuation.py")
    video, audio = real
    rows = bench.chunk_scores(video, audio, fps=8.0, given=0.125, chunk=1.0)  # frames 1..8 and 9..16
    assert [(row["start"], row["end"]) for row in rows] == [(0.125, 1.125), (1.125, 2.125)]
    assert all(row["agreement"] == pytest.approx(1.0) for row in rows)
    late = np.roll(audio, 1, axis=0)
    late[:, : 9 * 2000] = audio[:, : 9 * 2000]  # the second second's sound is another clip's
    first, second = bench.chunk_scores(video, late, fps=8.0, given=0.125, chunk=1.0)
    assert first["agreement"] == pytest.approx(1.0) and second["pitch"] < 0.5


def test_continue_from_end_counts_a_disc_that_vanishes_where_the_given_part_ends(real):
    from avdit.data import video_features

    bench = load_script("bench/continue_from_end.py")
    video, audio = real
    present = video_features(video)["present"]
    shown = np.flatnonzero(present[:, 8] & present[:, 9])  # clips whose disc shows on both sides of frame 8 | 9
    assert len(shown) >= 4
    assert bench.boundary_counts(video[shown], audio[shown], 9)[:, 6].tolist() == [0] * len(shown)
    blanked = video[shown].copy()
    blanked[:, 9] = 0.0  # the first generated frame without its disc
    counts = bench.boundary_counts(blanked, audio[shown], 9)
    assert counts[:, 6].tolist() == [1] * len(shown)
    assert bench.summary(counts)["gap_at_boundary"] == 1.0
    assert bench.summary(counts)["no_jump"] == 0.0  # nothing left to count across the boundary scores 0, as in eval


# --- cut draws: continuations of an input that ends, encoded as users give it ---------------------
def test_cut_draws_give_the_denoiser_what_generate_gives_it_for_an_input_that_ends():
    """A cut draw is a continuation of the clip cut at a video frame: both modalities given before the
    cut (the latent frames wholly before it), the rest made at one level, and the given audio latents
    exactly those `AVDiTPipeline.encode` makes from the cut clip (zero-padded), which near the cut
    differ from the whole clip's (the audio encoder looks ahead)."""
    import dataclasses

    from avdit.model import AVDiT
    from avdit.pipeline import AVDiTPipeline, load_codec_config_and_tensors
    from tests.test_invariants import Recorder

    codec_config, _, (video_codec, audio_codec) = load_codec_config_and_tensors(None)  # the shipped ToneShapes codecs
    config = dataclasses.replace(codec_config, model=tiny_config().model)
    pipe = AVDiTPipeline(config, AVDiT(config), video_codec, audio_codec)
    layout = Layout.from_config(config)
    frames, waveform = toneshapes_batch([HELD_OUT_SEED + i for i in range(6)], layout.num_frames, config.layout, 1)
    frames, waveform = frames.float(), waveform.float()
    with torch.no_grad():
        video, audio = video_codec.encode(frames), audio_codec.encode(waveform)
    model = Recorder()
    monl = MonlConfig(cut_probability=1.0, level_sampling="logit_normal")
    monl_loss(model, Schedule(config.schedule), monl, video, audio, layout, torch.Generator().manual_seed(0),
              torch.Generator().manual_seed(1), waveform, audio_codec)
    fed_v, fed_a, levels_v, levels_a = model.calls[0]
    cuts, moved = set(), []
    for i in range(len(frames)):
        given_v, given_a = levels_v[i] == 0, levels_a[i] == 0
        cut = [f for f in range(1, layout.num_frames) if torch.equal(given_v, layout.covered([(0.0, f / layout.fps)], "video"))
               and torch.equal(given_a, layout.covered([(0.0, f / layout.fps)], "audio"))]
        assert len(cut) == 1, f"sample {i}: its given frames are no cut's"
        cuts.add(cut[0])
        made = torch.cat([levels_v[i][~given_v], levels_a[i][~given_a]])
        assert bool((made > 0).all()) and bool((made == made[0]).all())  # one level for everything made
        seconds = cut[0] / layout.fps
        users = pipe.encode(frames[i, : cut[0]], layout.fps, waveform[i, :, : round(seconds * layout.sample_rate)], layout.sample_rate,
                            duration=layout.duration)
        torch.testing.assert_close(fed_a[i][:, given_a], users.audio[0][:, given_a], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fed_v[i][:, given_v], video[i][:, given_v])  # the causal video latents are the whole clip's
        moved.append(float((fed_a[i][:, given_a] - audio[i][:, given_a]).abs().max()))
    assert len(cuts) > 1  # the cut is drawn per sample
    assert max(moved) > 0.1, moved  # the given audio is not the whole clip's: the look-ahead heard silence


def test_cut_draws_need_the_waveforms_and_change_nothing_when_off():
    layout = Layout.from_config(tiny_config())
    g = torch.Generator().manual_seed(7)
    video, audio = torch.randn(4, 16, 5, 4, 4, generator=g), torch.randn(4, 16, 107, generator=g)
    schedule = Schedule(ScheduleConfig())
    with pytest.raises(ValueError, match="cut draws .* need the batch's waveforms and the audio codec"):
        monl_loss(lambda *x: x[:2], schedule, MonlConfig(cut_probability=0.5), video, audio, layout, torch.Generator().manual_seed(0))
    off = [monl_loss(lambda v, a, lv, la: (v * 0.5, a * 0.5), schedule, MonlConfig(), video, audio, layout,
                     torch.Generator().manual_seed(0), None, *extra) for extra in ((), (torch.zeros(4, 1, 34000), None))]
    assert torch.equal(off[0], off[1])


def test_continue_is_scored_on_an_input_cut_where_its_given_part_ends():
    """`avdit eval` scores continue on clips cut where the given part ends and encoded as `generate`
    encodes them (so the audio latents near the cut do not hear the real continuation); the other
    tasks on the whole clips."""
    from avdit.evaluate import encoded_clips
    from avdit.pipeline import AVDiTPipeline

    pipe = AVDiTPipeline.load()  # the shipped demo model and its ToneShapes codecs
    layout = Layout.from_config(pipe.config)
    frames, waveform = toneshapes_batch([HELD_OUT_SEED + 1, HELD_OUT_SEED + 2], layout.num_frames)
    with torch.no_grad():
        whole = pipe.video_codec.encode(frames), pipe.audio_codec.encode(waveform)
    for task in ("joint", "a2v", "v2a", "inpaint"):
        got = encoded_clips(pipe, task, frames, waveform, layout)
        assert torch.equal(got[0], whole[0]) and torch.equal(got[1], whole[1]), task
    video, audio = encoded_clips(pipe, "continue", frames, waveform, layout)
    assert given_seconds("continue", layout) == [(0.0, 1.125)]
    for i in range(2):
        users = pipe.encode(frames[i, :9], layout.fps, waveform[i, :, :18000], layout.sample_rate, duration=layout.duration)
        assert torch.equal(video[i], users.video[0]) and torch.equal(audio[i], users.audio[0])
    given = layout.covered([(0.0, 1.125)], "audio")
    last = int(torch.nonzero(given).max())
    assert float((audio[:, :, last] - whole[1][:, :, last]).abs().max()) > 0.1  # the look-ahead heard the cut
    assert torch.equal(audio[:, :, : last - 8], whole[1][:, :, : last - 8])  # far from the cut: the same

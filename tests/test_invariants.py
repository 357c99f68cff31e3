"""Fast invariant tests of the maths: schedules and targets, the MoNL loss, guidance, task masks,
batch independence, modulation, gradient checkpointing, EMA and the samplers' closed forms.

Each test takes well under a second on a CPU; together they pin the formulas that a plausible
one-character bug would change (see docs/mutation.md for what mutation testing found).
"""
import copy
import math

import pytest
import torch

from avdit.config import MonlConfig, ScheduleConfig
from avdit.layout import Layout
from avdit.model import AVDiT
from avdit.monl import TASKS, draw_levels, per_frame_levels, task_mask
from avdit.sampling import SAMPLERS, Guidance, MonlDenoiser, schedule_levels
from avdit.schedule import Schedule
from avdit.train import ema_update, monl_loss
from tests.conftest import tiny_config
from tests.test_sampling import gaussian_x0

SCHEDULES = [("flow", "velocity"), ("cosine", "eps"), ("cosine", "v")]
IDS = [f"{k}-{t}" for k, t in SCHEDULES]
TRAINING_TASKS = ("joint", "a2v", "v2a", "continue", "inpaint", "interpolate")


def schedule_of(kind, target):
    return Schedule(ScheduleConfig(kind, target))


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- schedules and targets ------------------------------------------------------------------------
@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
def test_every_schedule_and_target_round_trips_to_x0(kind, target):
    schedule = schedule_of(kind, target)
    t = torch.linspace(0, schedule.max_level, 41, dtype=torch.float64)[:, None]
    x0, eps = randn(41, 64, seed=1), randn(41, 64, seed=2)
    x_t = schedule.add_noise(x0, eps, t)
    x0_hat = schedule.denoised(x_t, schedule.training_target(x0, eps, t), t)
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
def test_alpha_sigma_are_the_documented_curves(kind, target):
    schedule = schedule_of(kind, target)
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(t)
    if kind == "flow":
        expected = (1 - t, t)
    else:
        expected = (torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2))
    torch.testing.assert_close(alpha[:-1], expected[0][:-1], rtol=0, atol=1e-15)
    torch.testing.assert_close(sigma, expected[1], rtol=0, atol=1e-15)
    assert float(alpha[0]) == 1.0 and float(sigma[0]) == 0.0
    assert float(alpha[-1]) == 0.0, "level 1 must be pure noise (zero terminal SNR)"
    # x_t is alpha x0 + sigma eps, not the other way round
    torch.testing.assert_close(schedule.add_noise(torch.tensor(3.0), torch.tensor(5.0), torch.tensor(0.2, dtype=torch.float64)),
                               3.0 * alpha[1] + 5.0 * sigma[1])


def test_eps_target_x0_formula_is_pinned():
    schedule = schedule_of("cosine", "eps")
    t = torch.tensor(0.3, dtype=torch.float64)
    alpha, sigma = math.cos(0.3 * math.pi / 2), math.sin(0.3 * math.pi / 2)
    x_t, out = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.3, dtype=torch.float64)
    assert float(schedule.denoised(x_t, out, t)) == pytest.approx((0.7 - sigma * -1.3) / alpha, abs=1e-12)
    assert float(schedule.training_target(torch.tensor(2.0), torch.tensor(-1.3), t)) == pytest.approx(-1.3)
    # at (and past) the top the division is clamped to alpha = 0.01, never by zero
    top = torch.tensor(1.0, dtype=torch.float64)
    assert float(schedule.denoised(torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64), top)) == pytest.approx((0.5 - 0.25) / 0.01)
    small = torch.tensor(0.999, dtype=torch.float64)  # alpha below 0.01: clamped
    assert float(schedule.denoised(torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64), small)) == pytest.approx(
        (0.5 - math.sin(0.999 * math.pi / 2) * 0.25) / 0.01)
    assert math.cos(schedule.max_level * math.pi / 2) == pytest.approx(0.01, abs=1e-12)


def test_v_target_formulas_are_pinned():
    schedule = schedule_of("cosine", "v")
    t = torch.tensor(0.3, dtype=torch.float64)
    alpha, sigma = math.cos(0.3 * math.pi / 2), math.sin(0.3 * math.pi / 2)
    x0, eps = torch.tensor(2.0, dtype=torch.float64), torch.tensor(-1.3, dtype=torch.float64)
    assert float(schedule.training_target(x0, eps, t)) == pytest.approx(alpha * -1.3 - sigma * 2.0, abs=1e-12)
    x_t, out = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    assert float(schedule.denoised(x_t, out, t)) == pytest.approx(alpha * 0.7 - sigma * 0.4, abs=1e-12)
    assert schedule.max_level == 1.0


def test_velocity_target_formulas_are_pinned():
    schedule = schedule_of("flow", "velocity")
    t = torch.tensor(0.3, dtype=torch.float64)
    assert float(schedule.training_target(torch.tensor(2.0), torch.tensor(-1.3), t)) == pytest.approx(-3.3)
    assert float(schedule.denoised(torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64), t)) == pytest.approx(0.7 - 0.3 * 0.4)
    assert schedule.max_level == 1.0


@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
def test_flow_sigma_and_its_inverse_agree(kind, target):
    schedule = schedule_of(kind, target)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    u = schedule.flow_sigma(t)
    torch.testing.assert_close(schedule.level_of_flow_sigma(u), t, rtol=0, atol=1e-12)
    uu = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(schedule.flow_sigma(schedule.level_of_flow_sigma(uu)), uu, rtol=0, atol=1e-12)
    assert float(u[0]) == 0.0 and float(u[-1]) == 1.0 and bool((u.diff() > 0).all())
    # the defining identity: x_t / (alpha + sigma) = (1 - u) x0 + u eps
    x0, eps = randn(101, seed=3), randn(101, seed=4)
    scale = schedule.flow_scale(t)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(scale, alpha + sigma)
    torch.testing.assert_close(schedule.add_noise(x0, eps, t) / scale, (1 - u) * x0 + u * eps, rtol=0, atol=1e-12)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="schedule kind"):
        schedule_of("linear", "eps")
    with pytest.raises(ValueError, match="schedule target"):
        schedule_of("flow", "eps")


# --- the training loss -----------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """A stand-in denoiser: returns fixed outputs (plus `offset` where `where(levels)` holds) and
    records what it was called with."""

    def __init__(self, fill=0.0, offset=0.0, where=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.fill, self.offset, self.where, self.calls = fill, offset, where, []

    def forward(self, video, audio, video_levels, audio_levels):
        self.calls.append((video.clone(), audio.clone(), video_levels.clone(), audio_levels.clone()))
        out_v = torch.full_like(video, self.fill) + 0 * self.weight
        out_a = torch.full_like(audio, self.fill) + 0 * self.weight
        if self.where is not None:
            out_v = out_v + self.offset * self.where(video_levels)[:, None, :, None, None]
            out_a = out_a + self.offset * self.where(audio_levels)[:, None, :]
        return out_v, out_a


def loss_setup(clean_probability=0.5, batch=6):
    config = tiny_config()
    layout = Layout.from_config(config)
    g = torch.Generator().manual_seed(7)
    video = torch.randn(batch, 16, 5, 4, 4, generator=g)
    audio = torch.randn(batch, 16, 107, generator=g)
    return layout, MonlConfig(clean_probability=clean_probability), video, audio


@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
def test_loss_is_the_mean_squared_target_error_over_noised_elements_with_each_items_own_levels(kind, target):
    layout, monl, video, audio = loss_setup()
    schedule = schedule_of(kind, target)
    model = Recorder(fill=0.25)
    loss = monl_loss(model, schedule, monl, video, audio, layout, torch.Generator().manual_seed(11))
    # replay the loss's own draws: levels first, then the video and the audio noise
    g = torch.Generator().manual_seed(11)
    levels, _ = draw_levels(video.shape[0], layout.num_segments, monl, g)
    noise_v, noise_a = torch.randn(video.shape, generator=g), torch.randn(audio.shape, generator=g)
    lv, la = per_frame_levels(levels, layout)
    assert len({tuple(row.tolist()) for row in lv}) == video.shape[0], "the draw should give every item other levels"
    x_v, x_a, got_lv, got_la = model.calls[0]
    torch.testing.assert_close(got_lv, lv, rtol=0, atol=0)
    torch.testing.assert_close(got_la, la, rtol=0, atol=0)
    tv, ta = lv[:, None, :, None, None], la[:, None, :]
    torch.testing.assert_close(x_v, schedule.add_noise(video, noise_v, tv))
    torch.testing.assert_close(x_a, schedule.add_noise(audio, noise_a, ta))
    err_v = ((0.25 - schedule.training_target(video, noise_v, tv)) ** 2)[(tv > 0).expand_as(video)]
    err_a = ((0.25 - schedule.training_target(audio, noise_a, ta)) ** 2)[(ta > 0).expand_as(audio)]
    assert 0 < err_v.numel() < video.numel() and 0 < err_a.numel() < audio.numel(), "the draw should hold given blocks"
    expected = torch.cat([err_v, err_a]).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_loss_draws_the_levels_from_the_level_generator_and_the_noise_from_the_other():
    """On a GPU the trainer's noise generator lives on the GPU, where the level draws (made on the CPU)
    cannot use it: they come from a CPU `level_generator`, and the noise from `generator` alone."""
    layout, monl, video, audio = loss_setup()
    schedule = schedule_of("flow", "velocity")
    model = Recorder(fill=0.25)
    monl_loss(model, schedule, monl, video, audio, layout, torch.Generator().manual_seed(11), torch.Generator().manual_seed(4))
    levels, _ = draw_levels(video.shape[0], layout.num_segments, monl, torch.Generator().manual_seed(4))
    lv, la = per_frame_levels(levels, layout)
    x_v, _, got_lv, got_la = model.calls[0]
    assert torch.equal(got_lv, lv) and torch.equal(got_la, la)
    noise = torch.Generator().manual_seed(11)  # untouched by the level draws: its first numbers are the video noise
    torch.testing.assert_close(x_v, schedule.add_noise(video, torch.randn(video.shape, generator=noise), lv[:, None, :, None, None]))


def test_loss_ignores_outputs_on_given_blocks_and_counts_every_noised_one():
    layout, monl, video, audio = loss_setup()
    schedule = schedule_of("flow", "velocity")

    def loss_with(offset, where):
        model = Recorder(fill=0.0, offset=offset, where=where)
        return float(monl_loss(model, schedule, monl, video, audio, layout, torch.Generator().manual_seed(3)).detach())

    base = loss_with(0.0, None)
    assert loss_with(100.0, lambda lv: (lv == 0).float()) == base
    assert loss_with(100.0, lambda lv: (lv > 0).float()) > base + 1000


def test_loss_with_everything_given_is_zero_not_nan():
    layout, _, video, audio = loss_setup()
    # a per_modality draw with clean probability 1 gives both rows clean
    monl = MonlConfig(weights={"per_modality": 1.0}, clean_probability=1.0)
    loss = monl_loss(Recorder(fill=5.0), schedule_of("flow", "velocity"), monl, video, audio, layout)
    assert float(loss.detach()) == 0.0


# --- task masks: training baselines and inference ---------------------------------------------------
def expected_given(task, n):
    """(video, audio) segments a task gives, as bool (N,) each."""
    video, audio = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    if task == "a2v":
        audio[:] = True
    elif task == "v2a":
        video[:] = True
    elif task == "continue":  # the first half, rounded up: five segments -> 0, 1, 2 (the first 1.125 s)
        video[: (n + 1) // 2] = audio[: (n + 1) // 2] = True
    elif task == "inpaint":  # the middle generated: five segments -> 2 and 3 (0.625 .. 1.625 s)
        video[: n // 2] = audio[: n // 2] = True
        video[-1] = audio[-1] = True
    elif task == "interpolate":
        video[[0, -1]] = audio[[0, -1]] = True
    return video, audio


FEWEST_SEGMENTS = {"continue": 2, "inpaint": 3, "interpolate": 3}


@pytest.mark.parametrize("task", TRAINING_TASKS)
@pytest.mark.parametrize("segments", [1, 2, 3, 5])
def test_every_task_baseline_gives_exactly_its_blocks_in_both_modalities(task, segments):
    if segments < FEWEST_SEGMENTS.get(task, 1):  # nothing would be left to generate, or nothing given
        with pytest.raises(ValueError, match=f"task '{task}' needs at least {FEWEST_SEGMENTS[task]} time segments"):
            draw_levels(4, segments, MonlConfig(task=task))
        return
    levels, strategy = draw_levels(64, segments, MonlConfig(task=task), torch.Generator().manual_seed(0))
    assert bool((strategy == -1).all()) and levels.shape == (64, 2, segments)
    video, audio = expected_given(task, segments)
    given = torch.stack([video, audio])  # (2, N)
    assert torch.equal(levels == 0, given.expand_as(levels)), task
    generated = levels[:, ~given]  # (64, K): one level per item for all its generated blocks
    if generated.numel():
        assert bool((generated > 0).all()) and bool((generated < 1).all())
        assert torch.equal(generated, generated[:, :1].expand_as(generated))
        assert generated[:, 0].unique().numel() > 32, "each item draws its own level"


def test_unknown_task_baseline_is_refused():
    with pytest.raises(ValueError, match="task is 'mixed'; expected one of joint, a2v, v2a, continue, inpaint, interpolate"):
        draw_levels(2, 5, MonlConfig(task="mixed"))


def test_every_inference_task_mask_gives_exactly_its_frames():
    layout = Layout.from_config(tiny_config())
    tv, ta = layout.video_latent_frames, layout.audio_latent_frames
    masks = {
        "joint": task_mask("joint", layout),
        "a2v": task_mask("a2v", layout),
        "v2a": task_mask("v2a", layout),
        "continue": task_mask("continue", layout, given_seconds=layout.duration / 2),
        "inpaint": task_mask("inpaint", layout, start=0.6, end=1.5),
        "interpolate": task_mask("interpolate", layout, head_seconds=0.6, tail_seconds=0.6),
        "custom": task_mask("custom", layout, levels=[[0, 1, 0.5, 1, 0], [1, 0, 1, 0.3, 1]]),
    }
    assert set(masks) == set(TASKS)
    for mask in masks.values():
        assert mask.video.shape == (tv,) and mask.audio.shape == (ta,)
    assert bool((masks["joint"].video == 1).all() and (masks["joint"].audio == 1).all())
    assert not masks["joint"].anything_given
    assert bool((masks["a2v"].video == 1).all() and (masks["a2v"].audio == 0).all())
    assert bool((masks["v2a"].video == 0).all() and (masks["v2a"].audio == 1).all())
    for task in ("a2v", "v2a", "continue", "inpaint", "interpolate", "custom"):
        assert masks[task].anything_given, task
    # the spans give the frames wholly inside them, in both modalities
    half, end = layout.duration / 2, layout.duration
    for task, spans in [("continue", [(0, half)]), ("inpaint", [(0, 0.6), (1.5, end)]),
                        ("interpolate", [(0, 0.6), (end - 0.6, end)])]:
        for m, frames in (("video", layout.video_spans), ("audio", layout.audio_spans)):
            frames = frames.clamp(max=end)
            inside = torch.zeros(frames.shape[0], dtype=torch.bool)
            for a, b in spans:
                inside |= (frames[:, 0] >= a - 1e-9) & (frames[:, 1] <= b + 1e-9)
            levels = getattr(masks[task], m)
            assert bool((levels == 0).any() and (levels == 1).any()), (task, m)
            assert torch.equal(levels == 0, inside), (task, m)
            assert bool(((levels == 0) | (levels == 1)).all())
    custom = masks["custom"]
    torch.testing.assert_close(custom.video, torch.tensor([0, 1, 0.5, 1, 0.0])[layout.video_segments])
    torch.testing.assert_close(custom.audio, torch.tensor([1, 0, 1, 0.3, 1.0])[layout.audio_segments])
    one = task_mask("continue", layout, given_seconds=1.0, modalities=("audio",), given_level=0.25)
    assert bool((one.video == 1).all()) and set(one.audio.unique().tolist()) == {0.25, 1.0}


# --- guidance and the MoNL denoiser ---------------------------------------------------------------------
class KnownX0(torch.nn.Module):
    """A flow-velocity stand-in whose x0 prediction is `cond` for the first `batch` items of a
    call and `uncond` for the rest (guidance's second half), whatever the input."""

    def __init__(self, batch, cond, uncond):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batch, self.cond, self.uncond, self.calls = batch, cond, uncond, []

    def forward(self, video, audio, video_levels, audio_levels):
        self.calls.append((video.clone(), audio.clone(), video_levels.clone(), audio_levels.clone()))
        outs = []
        for x, levels in ((video, video_levels[:, None, :, None, None]), (audio, audio_levels[:, None, :])):
            target = torch.full_like(x, self.cond)
            target[self.batch:] = self.uncond
            t = levels.expand_as(x)
            outs.append(torch.where(t > 0, (x - target) / t.clamp(min=1e-12), torch.zeros_like(x)))  # x0 = x - t v
        return tuple(outs)


def denoiser_for(mask, model, guidance, batch=2):
    layout = Layout.from_config(tiny_config())
    g = torch.Generator().manual_seed(5)
    video = torch.randn(batch, 16, layout.video_latent_frames, 4, 4, generator=g)
    audio = torch.randn(batch, 16, layout.audio_latent_frames, generator=g)
    schedule = schedule_of("flow", "velocity")
    levels = schedule_levels("simple", 10, schedule)
    return MonlDenoiser(model, schedule, mask, video, audio, levels, torch.Generator().manual_seed(1), guidance), layout


@pytest.mark.parametrize("video_scale,audio_scale", [(3.0, 1.0), (1.0, 2.5), (2.0, 0.5)])
def test_guidance_combines_uncond_plus_scale_times_cond_minus_uncond_per_modality(video_scale, audio_scale):
    layout = Layout.from_config(tiny_config())
    mask = task_mask("continue", layout, given_seconds=1.0)
    model = KnownX0(2, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(mask, model, Guidance(video=video_scale, audio=audio_scale))
    x = denoiser.initial_noise()
    out = denoiser(x, 0.95)
    assert len(model.calls) == 1 and model.calls[0][0].shape[0] == 4, "cond and uncond in one batch"
    video, audio = denoiser.unpack(out)
    gen_v, gen_a = mask.video > 0, mask.audio > 0
    torch.testing.assert_close(video[:, :, gen_v], torch.full_like(video[:, :, gen_v], -1 + video_scale * 2))
    torch.testing.assert_close(audio[:, :, gen_a], torch.full_like(audio[:, :, gen_a], -1 + audio_scale * 2))
    # given blocks predict themselves exactly
    given_v, given_a = denoiser.unpack(denoiser.given)
    assert torch.equal(video[:, :, ~gen_v], given_v[:, :, ~gen_v]) and torch.equal(audio[:, :, ~gen_a], given_a[:, :, ~gen_a])


def test_without_guidance_or_without_given_blocks_one_unguided_pass_runs():
    layout = Layout.from_config(tiny_config())
    for mask, guidance in ((task_mask("continue", layout, given_seconds=1.0), Guidance()),
                           (task_mask("joint", layout), Guidance(video=3.0, audio=3.0))):
        model = KnownX0(2, cond=1.0, uncond=-1.0)
        denoiser, _ = denoiser_for(mask, model, guidance)
        video, audio = denoiser.unpack(denoiser(denoiser.initial_noise(), 0.95))
        assert model.calls[0][0].shape[0] == 2
        torch.testing.assert_close(video[:, :, mask.video > 0], torch.ones_like(video[:, :, mask.video > 0]))
        torch.testing.assert_close(audio[:, :, mask.audio > 0], torch.ones_like(audio[:, :, mask.audio > 0]))


@pytest.mark.parametrize("drop", ["all", "video", "audio"])
def test_each_drop_mode_drops_the_given_blocks_of_its_modality_only(drop):
    layout = Layout.from_config(tiny_config())
    mask = task_mask("continue", layout, given_seconds=1.0)
    model = KnownX0(2, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(mask, model, Guidance(video=2.0, audio=2.0, drop=drop))
    x = denoiser.initial_noise()
    denoiser(x, 0.95)
    in_v, in_a, lv, la = model.calls[0]
    given_v, given_a = mask.video == 0, mask.audio == 0
    drops = {"video": drop in ("all", "video"), "audio": drop in ("all", "audio")}
    noise_v, noise_a = denoiser.unpack(denoiser.uncond_noise)
    for name, levels, given, inputs, noise in (("video", lv, given_v, in_v, noise_v), ("audio", la, given_a, in_a, noise_a)):
        cond_levels, uncond_levels = levels[:2], levels[2:]
        assert bool((cond_levels[:, given] == 0).all()), name
        assert bool((uncond_levels[:, given] == (1.0 if drops[name] else 0.0)).all()), (drop, name)
        torch.testing.assert_close(uncond_levels[:, ~given], cond_levels[:, ~given])
        cond_in, uncond_in = inputs[:2], inputs[2:]
        if drops[name]:  # pure noise at level 1 (flow scale 1) in place of the given content
            torch.testing.assert_close(uncond_in[:, :, given], noise[:, :, given])
        else:
            torch.testing.assert_close(uncond_in[:, :, given], cond_in[:, :, given])
        torch.testing.assert_close(uncond_in[:, :, ~given], cond_in[:, :, ~given])


def test_bad_drop_mode_is_refused():
    layout = Layout.from_config(tiny_config())
    with pytest.raises(ValueError, match="guidance drop"):
        denoiser_for(task_mask("a2v", layout), KnownX0(2, 1.0, -1.0), Guidance(drop="both"))


def test_denoiser_feeds_given_blocks_clean_at_level_0_and_generated_ones_at_the_samplers_level():
    layout = Layout.from_config(tiny_config())
    mask = task_mask("a2v", layout)
    model = KnownX0(2, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(mask, model, Guidance())
    x = denoiser.initial_noise()
    denoiser(x, 0.6)
    in_v, in_a, lv, la = model.calls[0]
    assert bool((la == 0).all())
    torch.testing.assert_close(lv, torch.full_like(lv, 0.6))
    _, given_a = denoiser.unpack(denoiser.given)
    assert torch.equal(in_a, given_a), "given audio goes in clean"
    noise_v, _ = denoiser.unpack(denoiser.start_noise)
    torch.testing.assert_close(in_v, noise_v)  # flow scale at any level is 1 for rectified flow


# --- batch independence -------------------------------------------------------------------------------
def batch_inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    video, audio = torch.randn(batch, 16, 5, 8, 8, generator=g), torch.randn(batch, 16, 107, generator=g)
    lv, la = torch.rand(batch, 5, generator=g), torch.rand(batch, 107, generator=g)
    lv[0, 1] = 0.0  # a given frame, to exercise a level shared by no other item
    return video, audio, lv, la


def test_each_batch_item_is_denoised_as_if_alone_with_its_own_levels(tiny_model):
    video, audio, lv, la = batch_inputs()
    out_v, out_a = tiny_model(video, audio, lv, la)
    for i in range(video.shape[0]):
        v, a = tiny_model(video[i : i + 1], audio[i : i + 1], lv[i : i + 1], la[i : i + 1])
        torch.testing.assert_close(out_v[i : i + 1], v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_a[i : i + 1], a, rtol=1e-5, atol=1e-5)


def test_perturbing_one_batch_item_leaves_the_others_unchanged(tiny_model):
    video, audio, lv, la = batch_inputs()
    out_v, out_a = tiny_model(video, audio, lv, la)
    video2, audio2, lv2, la2 = video.clone(), audio.clone(), lv.clone(), la.clone()
    video2[1] += 1.0
    audio2[1] -= 1.0
    lv2[1] = 0.9
    la2[1] = 0.1
    new_v, new_a = tiny_model(video2, audio2, lv2, la2)
    for i in (0, 2):
        torch.testing.assert_close(new_v[i], out_v[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(new_a[i], out_a[i], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(new_v[1], out_v[1]) and not torch.allclose(new_a[1], out_a[1])


def test_levels_differing_only_between_batch_items_change_those_items_outputs(tiny_model):
    video, audio, lv, la = batch_inputs()
    video[1], audio[1] = video[0], audio[0]
    lv[1], la[1] = 1 - lv[0], la[0]
    out_v, out_a = tiny_model(video, audio, lv, la)
    assert not torch.allclose(out_v[0], out_v[1], atol=1e-4)
    lv[1] = lv[0]
    out_v, out_a = tiny_model(video, audio, lv, la)
    torch.testing.assert_close(out_v[0], out_v[1])
    torch.testing.assert_close(out_a[0], out_a[1])


# --- modulation: training (autograd) and inference paths ---------------------------------------------------
def trainable_copy(model):
    return copy.deepcopy(model).train().requires_grad_(True)


def test_training_and_inference_paths_of_the_modulation_agree(tiny_model):
    video, audio, lv, la = batch_inputs(2)
    with torch.no_grad():
        inference = tiny_model(video, audio, lv, la)
    train_model = trainable_copy(tiny_model)
    training = train_model(video, audio, lv, la)
    assert training[0].requires_grad
    for a, b in zip(training, inference):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-5)


def test_per_token_modulation_is_its_own_levels_embedding():
    torch.manual_seed(0)
    model = AVDiT(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    _, _, lv, la = batch_inputs(2)
    tokens_per_frame = 4
    dense = model.token_modulation(lv, la, tokens_per_frame, block=1)  # (B, L, 6D)
    d = model.width
    for b in range(2):
        per_token = torch.cat([lv[b].repeat_interleave(tokens_per_frame), la[b]])
        cond = torch.nn.functional.silu(model.level_embed(per_token))
        expected = model.blocks[1].modulation(cond)
        expected[:, d : 2 * d] += 1
        expected[:, 4 * d : 5 * d] += 1
        torch.testing.assert_close(dense[b], expected, rtol=1e-5, atol=1e-6)


def test_level_embedding_is_the_sinusoid_of_the_level_times_1000():
    from avdit.model import LevelEmbedder, sinusoid

    emb = LevelEmbedder(8, 6)
    levels = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(emb(levels), emb.mlp(sinusoid(levels * 1000, 6)))
    s = sinusoid(torch.tensor([2.0]), 5)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(2) / 2)
    torch.testing.assert_close(s[0], torch.cat([torch.cos(2 * freqs), torch.sin(2 * freqs), torch.zeros(1)]))


# --- gradient checkpointing ------------------------------------------------------------------------------
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_model):
    layout, monl, _, _ = loss_setup(batch=2)
    video, audio, _, _ = batch_inputs(2)
    schedule = schedule_of("flow", "velocity")
    grads = []
    for checkpointing in (False, True):
        model = trainable_copy(tiny_model)
        model.gradient_checkpointing = checkpointing
        loss = monl_loss(model, schedule, monl, video, audio, layout, torch.Generator().manual_seed(2))
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in grads[0][1])


# --- EMA ----------------------------------------------------------------------------------------------------
def test_ema_moves_towards_the_weights_as_the_formula_says():
    model, ema = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for p in ema.parameters():
            p.fill_(0.0)
    d = ema_update(ema, model, step=0, decay=0.999)
    assert d == pytest.approx(0.1)  # warm-up: (1 + 0) / (10 + 0)
    for p in ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.9))  # 0.1 * 0 + 0.9 * 1
    d = ema_update(ema, model, step=5, decay=0.999)
    assert d == pytest.approx(6 / 15)
    for p in ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.4 * 0.9 + 0.6))
    d = ema_update(ema, model, step=100_000, decay=0.9)
    assert d == pytest.approx(0.9)
    for p in ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.9 * 0.96 + 0.1))
    assert all(bool((p == 1.0).all()) for p in model.parameters()), "the raw weights are not touched"


# --- samplers against closed forms ------------------------------------------------------------------------
# the largest error over z in [-3, 3] after 100 uniform steps (measured: 0.0195, 0.00029, 0.0019, 0.0195)
DETERMINISTIC = {"euler": 0.025, "heun": 5e-4, "dpmpp_2m": 3e-3, "ddim": 0.025}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_samplers_follow_the_exact_gaussian_flow_map(name):
    # the probability-flow ODE of N(mu, sd^2) maps the noise z at u = 1 to mu + sd z
    mu, sd = 0.7, 0.4
    schedule = schedule_of("flow", "velocity")
    sigmas = [float(u) for u in schedule.flow_sigma(schedule_levels("simple", 100, schedule))]
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    out = SAMPLERS[name](gaussian_x0(mu, sd), z.clone(), sigmas)
    error = float((out - (mu + sd * z)).abs().max())
    assert error < DETERMINISTIC[name], error


def test_second_order_samplers_beat_euler():
    mu, sd = 0.7, 0.4
    schedule = schedule_of("flow", "velocity")
    sigmas = [float(u) for u in schedule.flow_sigma(schedule_levels("simple", 20, schedule))]
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    errors = {n: float((SAMPLERS[n](gaussian_x0(mu, sd), z.clone(), sigmas) - (mu + sd * z)).abs().max()) for n in SAMPLERS if n in DETERMINISTIC}
    assert errors["heun"] < errors["euler"] / 5 and errors["dpmpp_2m"] < errors["euler"] / 3, errors


def test_one_step_updates_are_the_documented_formulas():
    x = torch.tensor([0.8, -0.4], dtype=torch.float64)
    d = torch.tensor([0.3, 0.1], dtype=torch.float64)
    model = lambda x_, s: d.clone()
    # Euler / DDIM: x + (x - x0) / s (s' - s)
    expected = x + (x - d) / 0.8 * (0.5 - 0.8)
    torch.testing.assert_close(SAMPLERS["euler"](model, x.clone(), [0.8, 0.5]), expected)
    torch.testing.assert_close(SAMPLERS["ddim"](model, x.clone(), [0.8, 0.5]), expected)
    # Heun with a constant x0: the slope at the end is the Euler slope there
    x_e = x + (x - d) / 0.8 * (0.5 - 0.8)
    heun = x + ((x - d) / 0.8 + (x_e - d) / 0.5) / 2 * (0.5 - 0.8)
    torch.testing.assert_close(SAMPLERS["heun"](model, x.clone(), [0.8, 0.5]), heun)
    # a last step to 0 lands on the x0 prediction
    for name in SAMPLERS:
        torch.testing.assert_close(SAMPLERS[name](model, x.clone(), [0.8, 0.0], generator=torch.Generator().manual_seed(0)), d)


def test_dpmpp_2m_second_step_uses_the_previous_prediction():
    preds = iter([torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)])
    model = lambda x_, s: next(preds)
    x = torch.tensor([0.9], dtype=torch.float64)
    s0, s1, s2 = 0.9, 0.6, 0.3
    lam = lambda s: math.log((1 - s) / s)
    step = lambda x_, s, sn, D: (sn / s) * x_ + ((1 - sn) - sn * (1 - s) / s) * D
    x1 = step(x, s0, s1, torch.tensor([0.2], dtype=torch.float64))
    h, h_last = lam(s2) - lam(s1), lam(s1) - lam(s0)
    r = h_last / h
    D = (1 + 1 / (2 * r)) * 0.5 - (1 / (2 * r)) * 0.2
    torch.testing.assert_close(SAMPLERS["dpmpp_2m"](model, x.clone(), [s0, s1, s2]), step(x1, s1, s2, D))


@pytest.mark.parametrize("name", ["euler_ancestral", "ddim_eta"])
def test_stochastic_samplers_land_on_the_gaussian(name):
    mu, sd = 0.7, 0.4
    schedule = schedule_of("flow", "velocity")
    sigmas = [float(u) for u in schedule.flow_sigma(schedule_levels("simple", 400, schedule))]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=g, dtype=torch.float64)
    if name == "ddim_eta":
        out = SAMPLERS["ddim"](gaussian_x0(mu, sd), x, sigmas, generator=g, eta=0.5)
    else:
        out = SAMPLERS[name](gaussian_x0(mu, sd), x, sigmas, generator=g)
    assert float(out.mean()) == pytest.approx(mu, abs=0.01)
    assert float(out.std()) == pytest.approx(sd, rel=0.03)


def test_ancestral_step_keeps_the_marginal_variance():
    # from x ~ (1 - s) x0 + s eps with x0 known, one ancestral step to s' gives (1 - s') x0 + s' eps'
    from avdit.sampling import _ancestral_step

    g = torch.Generator().manual_seed(1)
    x0 = 0.5
    eps = torch.randn(200_000, generator=g, dtype=torch.float64)
    s, s_next = 0.8, 0.4
    x = (1 - s) * x0 + s * eps
    out = _ancestral_step(x, torch.full_like(x, x0), s, s_next, 1.0, g)
    assert float(out.mean()) == pytest.approx((1 - s_next) * x0, abs=0.005)
    assert float(out.std()) == pytest.approx(s_next, rel=0.01)
    # eta = 0 is the deterministic DDIM step
    torch.testing.assert_close(_ancestral_step(x, torch.full_like(x, x0), s, s_next, 0.0, g), (1 - s_next) * x0 + s_next * eps)


def test_flow_denoising_of_a_batch_uses_each_items_own_levels():
    from avdit import sampling

    denoise_flow = getattr(sampling, "denoise_flow", None)
    if denoise_flow is None:
        pytest.skip("this version has no avdit.sampling.denoise_flow")
    torch.manual_seed(0)
    model = AVDiT(tiny_config(kind="cosine", target="v")).eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    schedule = schedule_of("cosine", "v")
    video, audio, lv, la = batch_inputs(3)
    x0_v, x0_a = denoise_flow(model, schedule, video, audio, lv, la)
    for i in range(3):
        v, a = denoise_flow(model, schedule, video[i : i + 1], audio[i : i + 1], lv[i : i + 1], la[i : i + 1])
        torch.testing.assert_close(x0_v[i : i + 1], v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x0_a[i : i + 1], a, rtol=1e-5, atol=1e-5)
    # and it is the schedule's x0 of the model's output at the model's input scale
    scale_v = schedule.flow_scale(lv)[:, None, :, None, None]
    scale_a = schedule.flow_scale(la)[:, None, :]
    out_v, out_a = model(video * scale_v, audio * scale_a, lv, la)
    torch.testing.assert_close(x0_v, schedule.denoised(video * scale_v, out_v, lv[:, None, :, None, None]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0_a, schedule.denoised(audio * scale_a, out_a, la[:, None, :]), rtol=1e-5, atol=1e-5)


# --- found by mutation testing (bench/mutation.sh; docs/mutation.md) ----------------------------------
def test_token_modulation_inspects_block_0_by_default(tiny_model):
    _, _, lv, la = batch_inputs(1)
    first = tiny_model.token_modulation(lv, la, 4)
    torch.testing.assert_close(first, tiny_model.token_modulation(lv, la, 4, block=0))
    assert not torch.allclose(first, tiny_model.token_modulation(lv, la, 4, block=1))


@pytest.mark.parametrize("monl", [MonlConfig(task="continue"), MonlConfig(clean_probability=0.3),
                                  # added with the mutation run over issue 15's task draws and logit-normal levels
                                  MonlConfig(task_probability=0.5), MonlConfig(level_sampling="logit_normal"),
                                  MonlConfig(task="a2v", level_sampling="logit_normal")],
                         ids=["task", "mixture", "task-draws", "logit-normal", "task-logit-normal"])
def test_draws_come_from_the_given_generator(monl):
    torch.manual_seed(0)
    a, _ = draw_levels(8, 5, monl, torch.Generator().manual_seed(3))
    torch.manual_seed(1)  # the global generator must not matter
    b, _ = draw_levels(8, 5, monl, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("weights", [{}, {"vanilla": 0.0}, {"vanilla": 0.0, "per_segment": 0.0},
                                     {"vanilla": 1.0, "vanila": 1.0}])
def test_mixtures_without_a_positive_known_weight_or_with_an_unknown_name_are_refused(weights):
    with pytest.raises(ValueError, match="must give a positive weight to at least one of"):
        draw_levels(4, 5, MonlConfig(weights=weights))


def test_vanilla_draws_are_never_made_clean():
    levels, _ = draw_levels(2000, 5, MonlConfig(weights={"vanilla": 1.0}, clean_probability=0.9), torch.Generator().manual_seed(0))
    assert bool((levels > 0).all())
    assert torch.equal(levels, levels[:, :1, :1].expand_as(levels))


def test_per_frame_levels_take_each_modalitys_own_row():
    layout = Layout.from_config(tiny_config())
    levels = torch.tensor([[[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0]]])
    video, audio = per_frame_levels(levels, layout)
    torch.testing.assert_close(video, levels[:, 0, layout.video_segments])
    torch.testing.assert_close(audio, levels[:, 1, layout.audio_segments])
    assert float(video[0, 0]) == pytest.approx(0.1) and float(audio[0, -1]) == pytest.approx(1.0)


def test_given_spans_are_given_at_level_0_by_default_and_unknown_modalities_are_refused():
    from avdit.monl import given_spans_mask

    layout = Layout.from_config(tiny_config())
    mask = given_spans_mask(layout, {"video": [(0.0, 1.0)]})
    assert set(mask.video.unique().tolist()) == {0.0, 1.0} and bool((mask.audio == 1).all())
    with pytest.raises(ValueError, match=r"spans are given for \['pictures'\]"):
        given_spans_mask(layout, {"pictures": [(0.0, 1.0)]})


def test_dpmpp_2m_takes_a_zero_length_step_in_place():
    # a repeated sigma (h = 0) must not divide by zero: the step is first order and moves nothing
    preds = iter(torch.tensor([[0.2], [0.5], [0.4]], dtype=torch.float64))
    x = torch.tensor([0.9], dtype=torch.float64)
    out = SAMPLERS["dpmpp_2m"](lambda x_, s: next(preds), x.clone(), [0.9, 0.6, 0.6])
    x1 = (0.6 / 0.9) * x + ((1 - 0.6) - 0.6 * (1 - 0.9) / 0.9) * 0.2
    torch.testing.assert_close(out, x1)


def test_task_masks_refuse_missing_or_out_of_range_times_bad_modalities_and_level_1():
    layout = Layout.from_config(tiny_config())
    d = layout.duration
    with pytest.raises(ValueError, match="task 'continue' needs given_seconds"):
        task_mask("continue", layout)
    with pytest.raises(ValueError, match="task 'inpaint' needs start"):
        task_mask("inpaint", layout, end=1.0)
    assert not task_mask("continue", layout, given_seconds=0).anything_given  # 0 s given: allowed
    whole = task_mask("continue", layout, given_seconds=d)  # all of it given: allowed
    assert bool((whole.video == 0).all() and (whole.audio == 0).all())
    with pytest.raises(ValueError, match=r"given_seconds is 2.2 s; the clip is 2.125 s long"):
        task_mask("continue", layout, given_seconds=d + 0.075)
    with pytest.raises(ValueError, match="given_seconds is -0.1 s"):
        task_mask("continue", layout, given_seconds=-0.1)
    with pytest.raises(ValueError, match=r"given_level is 1\b.*1 would generate the block"):
        task_mask("continue", layout, given_seconds=1.0, given_level=1.0)
    with pytest.raises(ValueError, match="given_level is 1.5"):
        task_mask("continue", layout, given_seconds=1.0, given_level=1.5)
    for modalities in (("pictures",), ("video", "pictures"), ()):
        with pytest.raises(ValueError, match="expected a non-empty subset of"):
            task_mask("continue", layout, given_seconds=1.0, modalities=modalities)


def test_a_partial_level_holds_the_given_content_noised_to_its_level_with_the_seeds_noise():
    layout = Layout.from_config(tiny_config())
    mask = task_mask("custom", layout, levels=[[0.5, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    model = KnownX0(2, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(mask, model, Guidance(video=2.0, audio=2.0))
    denoiser(denoiser.initial_noise(), 0.8)  # above t* = 0.5: the frame is held at 0.5 and conditions
    assert model.calls[0][0].shape[0] == 4, "a block held below the sampler's level is guided on"
    in_v, _, lv, _ = (c[:2] for c in model.calls[0])
    given_v, _ = denoiser.unpack(denoiser.given)
    noise_v, _ = denoiser.unpack(denoiser.start_noise)
    frame = mask.video == 0.5
    torch.testing.assert_close(in_v[:, :, frame], 0.5 * given_v[:, :, frame] + 0.5 * noise_v[:, :, frame])
    assert bool((lv[:, frame] == 0.5).all())
    torch.testing.assert_close(lv[:, ~frame], torch.full_like(lv[:, ~frame], 0.8))
    state = torch.zeros_like(denoiser.initial_noise())
    denoiser(state, 0.5)  # at t*: the block is still fed as held, then generated from here; nothing conditions
    assert model.calls[1][0].shape[0] == 2, "a block at the sampler's own level is not guided on"
    in_v = model.calls[1][0]
    torch.testing.assert_close(in_v[:, :, frame], 0.5 * given_v[:, :, frame] + 0.5 * noise_v[:, :, frame])
    assert bool((in_v[:, :, ~frame] == 0).all()), "generated blocks are fed the sampler's own state"


def test_the_denoiser_counts_its_model_calls_once_per_batched_call():
    layout = Layout.from_config(tiny_config())
    model = KnownX0(2, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(task_mask("a2v", layout), model, Guidance(video=2.0))
    assert denoiser.model_calls == 0
    for sigma in (0.9, 0.7, 0.5):
        denoiser(denoiser.initial_noise(), sigma)
    assert denoiser.model_calls == 3 == len(model.calls)


def test_guidance_halves_stay_apart_for_any_batch_size():
    layout = Layout.from_config(tiny_config())
    mask = task_mask("a2v", layout)
    model = KnownX0(3, cond=1.0, uncond=-1.0)
    denoiser, _ = denoiser_for(mask, model, Guidance(video=2.0), batch=3)
    video, _ = denoiser.unpack(denoiser(denoiser.initial_noise(), 0.9))
    assert model.calls[0][0].shape[0] == 6
    torch.testing.assert_close(video, torch.full_like(video, 3.0))


def test_sampling_is_set_by_the_seed_alone_and_keeps_its_defaults(tiny_model):
    from avdit.sampling import sample

    layout = Layout.from_config(tiny_model.config)
    schedule = Schedule(tiny_model.config.schedule)
    video, audio = torch.randn(1, 16, 5, 8, 8), torch.randn(1, 16, 107)
    mask = task_mask("a2v", layout)
    runs = []
    for global_seed in (0, 1):  # the global generator must not matter, guided or not
        torch.manual_seed(global_seed)
        runs.append(sample(tiny_model, schedule, mask, video, audio, steps=3, guidance=Guidance(video=2.0, audio=2.0)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    default = sample(tiny_model, schedule, mask, video, audio)
    explicit = sample(tiny_model, schedule, mask, video, audio, steps=25, sampler="euler", scheduler="simple", shift=1.0, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(default, explicit))
    shifted = sample(tiny_model, schedule, mask, video, audio, steps=3, shift=3.0)
    assert not torch.allclose(shifted[0], sample(tiny_model, schedule, mask, video, audio, steps=3)[0])
    with pytest.raises(ValueError, match=r"sampler is 'dpm'; expected one of \['ddim', 'dpmpp_2m', 'euler'"):
        sample(tiny_model, schedule, mask, video, audio, sampler="dpm")
    seen = []
    sample(tiny_model, schedule, mask, video, audio, steps=2, callback=seen.append)
    assert [tuple(i["video"].shape) for i in seen] == [(1, 16, 5, 8, 8)] * 2
    assert [tuple(i["audio"].shape) for i in seen] == [(1, 16, 107)] * 2


def test_inpaint_and_interpolate_name_what_they_need_and_take_an_empty_gap():
    layout = Layout.from_config(tiny_config())
    with pytest.raises(ValueError, match="task 'inpaint' needs end"):
        task_mask("inpaint", layout, start=0.5)
    with pytest.raises(ValueError, match=r"inpaint end \(0.5 s\) is before start \(1.0 s\)"):
        task_mask("inpaint", layout, start=1.0, end=0.5)
    nothing = task_mask("inpaint", layout, start=1.0, end=1.0)  # an empty gap is allowed: only a frame
    assert int((nothing.video == 1).sum()) <= 1 and int((nothing.audio == 1).sum()) <= 1  # across 1.0 s is made
    with pytest.raises(ValueError, match="task 'interpolate' needs head_seconds"):
        task_mask("interpolate", layout, tail_seconds=0.5)
    with pytest.raises(ValueError, match="task 'interpolate' needs tail_seconds"):
        task_mask("interpolate", layout, head_seconds=0.5)
    with pytest.raises(ValueError, match="task 'custom' needs levels"):
        task_mask("custom", layout)
    with pytest.raises(ValueError, match=r"custom levels have shape \(2, 4\); this 2.125 s clip needs \(2, 5\)"):
        task_mask("custom", layout, levels=[[0, 1, 1, 1]] * 2)
    with pytest.raises(ValueError, match=r"custom levels must lie in \[0, 1\]"):
        task_mask("custom", layout, levels=[[0, 1, 1, 1, 1.5], [1] * 5])
    with pytest.raises(ValueError, match="task is 'mixed'; expected one of"):
        task_mask("mixed", layout)


def reference_forward(model, video, audio, lv, la):
    """AVDiT written out token by token: patchify, embed, per-token adaLN-Zero blocks with
    explicit softmax attention, the level-modulated final layer, unpatchify."""
    from avdit.model import latent_times

    b, cv, tv, h, w = video.shape
    p, d = model.patch, model.width
    gh, gw = h // p, w // p
    tokens_v = video.reshape(b, cv, tv, gh, p, gw, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, tv * gh * gw, cv * p * p)
    tokens_a = audio.transpose(1, 2)
    x = torch.cat([model.video_embed(tokens_v), model.audio_embed(tokens_a)], dim=1)
    x = x + model.positions(latent_times(model.config, tv, audio.shape[2]), (gh, gw), x.device, x.dtype)
    levels = torch.cat([lv.repeat_interleave(gh * gw, dim=1), la], dim=1)  # (B, L): each token's level
    cond = torch.nn.functional.silu(model.level_embed(levels.flatten())).view(b, -1, d)
    norm = lambda t: torch.nn.functional.layer_norm(t, (d,), eps=1e-6)
    for block in model.blocks:
        shift1, scale1, gate1, shift2, scale2, gate2 = block.modulation(cond).chunk(6, dim=-1)
        heads = block.heads
        q, k, v = block.qkv(norm(x) * (1 + scale1) + shift1).view(b, -1, 3, heads, d // heads).unbind(2)
        attention = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(d // heads), dim=-1)
        x = x + gate1 * block.proj(torch.einsum("bhlm,bmhd->blhd", attention, v).reshape(b, -1, d))
        x = x + gate2 * block.fc2(torch.nn.functional.silu(block.fc1(norm(x) * (1 + scale2) + shift2)))
    shift, scale = model.final.modulation(cond).chunk(2, dim=-1)
    x = norm(x) * (1 + scale) + shift
    lv_tokens = tv * gh * gw
    out_v = model.final.video(x[:, :lv_tokens]).reshape(b, tv, gh, gw, cv, p, p).permute(0, 4, 1, 2, 5, 3, 6)
    return out_v.reshape(b, cv, tv, h, w), model.final.audio(x[:, lv_tokens:]).transpose(1, 2)


@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_the_model_is_the_written_out_dit(grad, patch):
    from avdit.config import AVDiTConfig
    from avdit.model import model_config

    torch.manual_seed(0)
    model = AVDiT(AVDiTConfig(model=model_config("tiny", video_patch=patch))).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.requires_grad_(grad)
    video, audio, lv, la = batch_inputs(2)
    video, audio = video.double() * 0.01, audio.double() * 0.01  # small inputs: layer norm's eps shows
    with torch.set_grad_enabled(grad):
        got = model(video, audio, lv, la)
        expected = reference_forward(model, video, audio, lv, la)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_a_latent_that_is_not_a_multiple_of_the_patch_in_either_side_is_refused():
    from avdit.config import AVDiTConfig
    from avdit.model import model_config

    model = AVDiT(AVDiTConfig(model=model_config("tiny", video_patch=2)))
    audio, la = torch.zeros(1, 16, 107), torch.ones(1, 107)
    for h, w in ((8, 7), (7, 8)):
        with pytest.raises(ValueError, match=f"video latent is {h}x{w}; it must be a multiple of the patch size 2"):
            model(torch.zeros(1, 16, 5, h, w), audio, torch.ones(1, 5), la)


def test_positions_are_time_row_and_column_sinusoids_plus_the_modality():
    from avdit.model import sinusoid

    torch.manual_seed(0)
    model = AVDiT(tiny_config())
    d, scale = model.width, model.config.model.time_scale
    video_times, audio_times = torch.tensor([0.0625, 0.5625]), torch.tensor([0.01, 0.03, 0.05])
    pos = model.positions((video_times, audio_times), (2, 3), "cpu", torch.float32)
    assert pos.shape == (2 * 2 * 3 + 3, d)
    d_time, d_space = d // 2, (d - d // 2) // 2
    for frame in range(2):
        for row in range(2):
            for col in range(3):
                expected = torch.cat([sinusoid(video_times[frame : frame + 1] * scale, d_time)[0],
                                      sinusoid(torch.tensor([float(row)]), d_space)[0],
                                      sinusoid(torch.tensor([float(col)]), d - d_time - d_space)[0]]) + model.modality_embed[0]
                torch.testing.assert_close(pos[frame * 6 + row * 3 + col], expected.detach())
    audio = torch.cat([sinusoid(audio_times * scale, d_time), torch.zeros(3, d - d_time)], dim=1) + model.modality_embed[1]
    torch.testing.assert_close(pos[12:], audio.detach())


def test_levels_of_the_wrong_shape_are_refused(tiny_model):
    video, audio = torch.zeros(2, 16, 5, 8, 8), torch.zeros(2, 16, 107)
    for lv, la in ((torch.ones(2, 4), torch.ones(2, 107)), (torch.ones(2, 5), torch.ones(1, 107))):
        with pytest.raises(ValueError, match=rf"levels have shapes \({lv.shape[0]}, {lv.shape[1]}\) and \({la.shape[0]}, {la.shape[1]}\); "
                                             r"expected \(2, 5\) and \(2, 107\)"):
            tiny_model(video, audio, lv, la)


# --- found by the mutation run over the rest of sampling.py (docs/mutation.md) -------------------------------
def test_the_sampler_callback_gets_each_steps_state():
    x = torch.tensor([0.8, -0.4], dtype=torch.float64)
    d = torch.tensor([0.3, 0.1], dtype=torch.float64)
    seen = []
    SAMPLERS["euler"](lambda x_, s: d.clone(), x.clone(), [0.8, 0.5, 0.0], callback=lambda info: seen.append(dict(info)))
    assert [sorted(info) for info in seen] == [["denoised", "i", "sigma", "x"]] * 2
    assert [(info["i"], info["sigma"]) for info in seen] == [(0, 0.8), (1, 0.5)]
    torch.testing.assert_close(seen[0]["x"], x)
    torch.testing.assert_close(seen[1]["x"], x + (x - d) / 0.8 * (0.5 - 0.8))  # the state at sigma, before the step
    torch.testing.assert_close(seen[1]["denoised"], d)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_ancestral_samplers_keep_the_latents_dtype(dtype):
    x = torch.randn(64, generator=torch.Generator().manual_seed(0)).to(dtype)
    model = lambda x_, s: torch.zeros_like(x_)
    for name, eta in [("euler_ancestral", 1.0), ("ddim", 0.5)]:
        out = SAMPLERS[name](model, x.clone(), [0.8, 0.4, 0.2], generator=torch.Generator().manual_seed(1), eta=eta)
        assert out.dtype == dtype, name


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_ancestral_steps_replace_the_share_of_the_noise_that_eta_says(eta):
    # from x = (1 - s) x0 + s eps, a step to s' keeps (1 - s') / (1 - s_down) * s_down of eps, where
    # s_down = s' (1 + (s'/s - 1) eta), and adds fresh noise for the rest of the variance s'^2
    from avdit.sampling import _ancestral_step

    g = torch.Generator().manual_seed(2)
    eps = torch.randn(200_000, generator=g, dtype=torch.float64)
    s, s_next, x0 = 0.8, 0.4, 0.5
    x = (1 - s) * x0 + s * eps
    if eta == 1.0:  # the euler_ancestral sampler's default eta
        out = SAMPLERS["euler_ancestral"](lambda x_, u: torch.full_like(x_, x0), x.clone(), [s, s_next], generator=g)
    else:
        out = _ancestral_step(x, torch.full_like(x, x0), s, s_next, eta, g)
    s_down = s_next * (1 + (s_next / s - 1) * eta)
    kept = (1 - s_next) / (1 - s_down) * s_down  # eta 1: 0.15, 0.5: 0.257, 0: 0.4 (all of it, DDIM)
    centred = out - out.mean()
    assert float((centred * eps).mean() / eps.var()) == pytest.approx(kept, abs=0.005)
    assert float(out.std()) == pytest.approx(s_next, rel=0.01)


def test_schedule_levels_take_one_step_and_refuse_bad_steps_and_shifts():
    flow = schedule_of("flow", "velocity")
    for name in ("simple", "uniform", "karras"):
        assert schedule_levels(name, 1, flow).tolist() == [1.0, 0.0], name
    with pytest.raises(ValueError, match="^steps is 0; expected at least 1$"):
        schedule_levels("simple", 0, flow)
    for shift in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=rf"^shift is {shift}; expected a positive number \(1 = no shift\)$"):
            schedule_levels("simple", 4, flow, shift=shift)


@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
def test_schedule_levels_are_float64_and_uniform_is_simple(kind, target):
    schedule = schedule_of(kind, target)
    for name in ("simple", "uniform", "karras"):
        assert schedule_levels(name, 6, schedule).dtype == torch.float64, name
    torch.testing.assert_close(schedule_levels("uniform", 6, schedule), schedule_levels("simple", 6, schedule), rtol=0, atol=0)


def test_shift_2_moves_the_flow_levels_as_sd3_says():
    # u -> 2u / (1 + u)
    assert schedule_levels("simple", 4, schedule_of("flow", "velocity"), shift=2.0).tolist() == pytest.approx(
        [1.0, 1.5 / 1.75, 1.0 / 1.5, 0.5 / 1.25, 0.0], rel=1e-12)


@pytest.mark.parametrize("kind,target,nsr_max", [("flow", "velocity", 1000.0), ("cosine", "eps", math.sqrt(1 - 0.01**2) / 0.01)],
                         ids=["flow-capped", "cosine-eps"])
def test_karras_levels_are_the_rho_7_ramp_of_the_noise_to_signal_ratio(kind, target, nsr_max):
    # sigma / alpha from min(its value at the top level, 1000) down to 0.002, uniform in its 1/7th power;
    # the first level is the top level itself and the last is 0
    schedule, steps = schedule_of(kind, target), 10
    levels = schedule_levels("karras", steps, schedule)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    nsr = (nsr_max ** (1 / 7) + ramp * (0.002 ** (1 / 7) - nsr_max ** (1 / 7))) ** 7
    u = schedule.flow_sigma(levels)
    torch.testing.assert_close(u[1:steps] / (1 - u[1:steps]), nsr[1:], rtol=1e-9, atol=0)
    assert float(levels[0]) == schedule.max_level and float(levels[-1]) == 0.0


@pytest.mark.parametrize("kind,target", SCHEDULES, ids=IDS)
@pytest.mark.parametrize("scheduler", ["simple", "karras"])
def test_a_block_at_a_grid_level_is_held_until_the_sampler_reaches_it_and_never_conditions_at_it(kind, target, scheduler):
    # for every level of the grid, small ones included (karras ends near 0.002): at the step whose level is the
    # block's, the block is still fed as held and nothing is guided; one step earlier it is held and conditions
    from avdit.monl import NoiseLevelMask

    layout = Layout.from_config(tiny_config())
    schedule = schedule_of(kind, target)
    levels = schedule_levels(scheduler, 10, schedule)
    sigmas = [float(u) for u in schedule.flow_sigma(levels)]
    g = torch.Generator().manual_seed(5)
    video = torch.randn(1, 16, layout.video_latent_frames, 2, 2, generator=g)
    audio = torch.randn(1, 16, layout.audio_latent_frames, generator=g)
    for k in range(1, len(levels) - 1):
        video_levels = torch.ones(layout.video_latent_frames, dtype=torch.float64)
        video_levels[0] = levels[k]
        mask = NoiseLevelMask(video_levels, torch.ones(layout.audio_latent_frames, dtype=torch.float64))
        model = KnownX0(1, cond=1.0, uncond=-1.0)
        denoiser = MonlDenoiser(model, schedule, mask, video, audio, levels, torch.Generator().manual_seed(1), Guidance(video=2.0, audio=2.0))
        reference_v, _ = denoiser.unpack(denoiser.reference)
        for sigma, batch in ((sigmas[k - 1], 2), (sigmas[k], 1)):
            model.calls.clear()
            denoiser(torch.zeros_like(denoiser.initial_noise()), sigma)
            in_v = model.calls[0][0]
            assert in_v.shape[0] == batch, (k, float(levels[k]), sigma)
            # fed as held: the given content noised to the block's level, at the model's input scale for that level
            torch.testing.assert_close(in_v[:1, :, 0], reference_v[:, :, 0] * float(schedule.flow_scale(levels[k])), rtol=1e-6, atol=1e-6)


# --- found by the mutation run over the rest of model.py (docs/mutation.md) ----------------------------------
def test_sinusoid_is_cos_and_sin_at_geometric_frequencies_from_1_to_1_over_max_period():
    from avdit.model import sinusoid

    values = torch.tensor([0.0, 1.0, 37.5, 999.0])
    for dim, max_period in ((8, 10000.0), (9, 10000.0), (8, 100.0)):
        freqs = torch.tensor([max_period ** (-i / 4) for i in range(4)], dtype=torch.float64)
        angles = values.double()[:, None] * freqs
        expected = torch.cat([angles.cos(), angles.sin(), torch.zeros(4, dim - 8, dtype=torch.float64)], dim=1)
        out = sinusoid(values, dim) if max_period == 10000.0 else sinusoid(values, dim, max_period)
        torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-4)
    # any leading shape: (...,) -> (..., dim)
    grid = torch.tensor([[0.0, 1.0], [37.5, 999.0]])
    torch.testing.assert_close(sinusoid(grid, 8), sinusoid(values, 8).view(2, 2, 8))


def test_latent_times_of_a_non_causal_codec_are_the_midpoints_of_groups_of_stride_frames():
    import dataclasses

    from avdit.codecs.analytic import analytic_video_config
    from avdit.model import latent_times

    config = dataclasses.replace(tiny_config(), video_codec=analytic_video_config(causal=False))
    fps, hop, sr = config.layout.fps, config.audio_codec.hop, config.layout.sample_rate
    video_times, audio_times = latent_times(config, 5, 7)
    assert video_times.tolist() == pytest.approx([(4 * i + 2) / fps for i in range(5)])  # frames 4i .. 4i + 3
    assert audio_times.tolist() == pytest.approx([(j + 0.5) * hop / sr for j in range(7)])


def test_audio_latent_times_are_float64_midpoints_rounded_once_to_float32():
    # a 44.1 kHz layout, hop 441: computed in float32 they would be 1 ulp off after about 190 s
    import dataclasses

    from avdit.model import latent_times

    config = tiny_config()
    config = dataclasses.replace(config, audio_codec=dataclasses.replace(config.audio_codec, hop=441),
                                 layout=dataclasses.replace(config.layout, sample_rate=44100))
    _, audio_times = latent_times(config, 1, 20_000)
    assert torch.equal(audio_times, ((torch.arange(20_000, dtype=torch.float64) + 0.5) * 0.01).float())


def test_the_model_has_the_parameters_of_the_written_out_dit():
    # embeddings, one learned row per modality, the level MLP, per block qkv / proj / a width x mlp_ratio MLP /
    # 6D modulation, and the final 2D modulation and heads; in the tiny preset and with mlp_ratio 2.5
    from avdit.config import AVDiTConfig
    from avdit.model import model_config

    for mlp_ratio in (4.0, 2.5):
        config = AVDiTConfig(model=model_config("tiny", mlp_ratio=mlp_ratio))
        model = AVDiT(config)
        d, f, depth, hidden = 64, config.model.level_frequencies, config.model.depth, int(64 * mlp_ratio)
        cv, ca = config.video_codec.latent_channels * config.model.video_patch**2, config.audio_codec.latent_channels
        linear = lambda i, o: i * o + o
        block = linear(d, 3 * d) + linear(d, d) + linear(d, hidden) + linear(hidden, d) + linear(d, 6 * d)
        expected = (linear(cv, d) + linear(ca, d) + 2 * d + linear(f, d) + linear(d, d) + depth * block
                    + linear(d, 2 * d) + linear(d, cv) + linear(d, ca))
        assert sum(p.numel() for p in model.parameters()) == expected, mlp_ratio


def test_a_width_that_heads_do_not_divide_is_refused():
    from avdit.model import Block

    with pytest.raises(ValueError, match="^width 10 must be divisible by heads 3$"):
        Block(10, 3, 4.0)


def test_the_modality_embedding_starts_small():
    torch.manual_seed(0)
    std = float(AVDiT(tiny_config()).modality_embed.detach().std())
    assert 0.012 < std < 0.028, std  # N(0, 0.02) over 2 x 64 values


def test_gradient_checkpointing_is_off_unless_asked_for():
    # checkpointing recomputes each block's forward in backward: one call per block per step without it, two with it
    torch.manual_seed(0)
    model = AVDiT(tiny_config())
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    video, audio, lv, la = batch_inputs(1)
    for checkpointing, want in ((None, 1), (True, 2)):
        if checkpointing:
            model.gradient_checkpointing = True
        calls.clear()
        out_v, out_a = model(video, audio, lv, la)
        (out_v.sum() + out_a.sum()).backward()
        assert len(calls) == want, checkpointing


# --- found by the mutation run over monl.py's task draws and the loss weighting (docs/mutation.md) ----------
def test_an_unknown_loss_weighting_is_refused():
    layout = Layout.from_config(tiny_config())
    video, audio = torch.zeros(1, 16, 5, 4, 4), torch.zeros(1, 16, 107)
    model = lambda v, a, lv, la: (v, a)
    with pytest.raises(ValueError, match="^loss weighting is 'mean'; expected 'elements' or 'modality'$"):
        monl_loss(model, schedule_of("flow", "velocity"), MonlConfig(loss_weighting="mean"), video, audio, layout)


def test_modality_weighting_counts_a_modality_with_one_noised_element_and_a_batch_of_one():
    # a 1-channel 1x1 video latent: a noised segment is one element (segments are latent frames here)
    from tests.test_protocol import KnownError

    layout = Layout.from_config(tiny_config())
    schedule = schedule_of("flow", "velocity")
    monl = MonlConfig(weights={"per_modality_segment": 1.0}, clean_probability=0.8, loss_weighting="modality")
    video, audio = torch.zeros(256, 1, 5, 1, 1), torch.zeros(256, 16, 107)
    loss = monl_loss(KnownError(1.0, 2.0), schedule, monl, video, audio, layout, torch.Generator().manual_seed(0))
    levels, _ = draw_levels(256, layout.num_segments, monl, torch.Generator().manual_seed(0))  # the same draw
    video_levels, audio_levels = per_frame_levels(levels, layout)
    noised_v, noised_a = (video_levels > 0).any(1), (audio_levels > 0).any(1)
    assert bool(((video_levels > 0).sum(1) == 1).any()), "no sample with exactly one noised video element"
    per_sample = torch.where(noised_v & noised_a, 2.5, torch.where(noised_v, 1.0, 4.0))  # errors 1 and 2, squared
    assert float(loss.detach()) == pytest.approx(float(per_sample[noised_v | noised_a].mean()), rel=1e-5)
    # one sample, only its video noised (a2v): the loss is its video error
    one = monl_loss(KnownError(3.0, 2.0), schedule, MonlConfig(task="a2v", loss_weighting="modality"), video[:1], audio[:1], layout,
                    torch.Generator().manual_seed(0))
    assert float(one.detach()) == pytest.approx(9.0, rel=1e-5)


def test_elements_weighting_of_a_batch_with_one_noised_element_is_that_elements_error():
    from tests.test_protocol import KnownError

    layout = Layout.from_config(tiny_config())
    monl = MonlConfig(weights={"per_modality_segment": 1.0}, clean_probability=0.8)
    # a seed whose draw noises one video segment and nothing else: one element of a 1-channel 1x1 video latent
    seed = next(s for s in range(1000) if (lambda l: int((l > 0).sum()) == 1 and bool((l[0, 0] > 0).any()))(
        draw_levels(1, layout.num_segments, monl, torch.Generator().manual_seed(s))[0][0]))
    loss = monl_loss(KnownError(3.0, 2.0), schedule_of("flow", "velocity"), monl, torch.zeros(1, 1, 5, 1, 1), torch.zeros(1, 16, 107),
                     layout, torch.Generator().manual_seed(seed))
    assert float(loss.detach()) == pytest.approx(9.0, rel=1e-5)


def test_custom_levels_are_float32_whatever_they_come_as_and_their_absence_is_named():
    layout = Layout.from_config(tiny_config())
    rows = [[0, 1, 1, 1, 0], [1, 1, 0, 1, 1]]
    want = task_mask("custom", layout, levels=[[float(v) for v in row] for row in rows])
    for given in (rows, torch.tensor(rows, dtype=torch.float64), torch.tensor(rows)):
        mask = task_mask("custom", layout, levels=given)
        assert mask.video.dtype == mask.audio.dtype == torch.float32
        assert torch.equal(mask.video, want.video) and torch.equal(mask.audio, want.audio)
    with pytest.raises(ValueError, match=r"^task 'custom' needs levels: a \(2, N\) matrix, row 0 video, row 1 audio, one column per segment$"):
        task_mask("custom", layout)


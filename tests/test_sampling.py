import pytest
import torch

from avdit.config import ScheduleConfig
from avdit.layout import Layout
from avdit.model import AVDiT
from avdit.monl import task_mask
from avdit.sampling import (CALLS_PER_STEP, SAMPLERS, Guidance, MonlDenoiser, SamplingCancelled, sample,
                            schedule_levels)
from avdit.schedule import Schedule
from tests.conftest import tiny_config

SCHEDULES = [ScheduleConfig("flow", "velocity"), ScheduleConfig("cosine", "eps"), ScheduleConfig("cosine", "v")]
TASKS = [("joint", {}), ("a2v", {}), ("v2a", {}), ("continue", {"given_seconds": 0.625}),
         ("inpaint", {"start": 0.625, "end": 1.625}), ("interpolate", {"head_seconds": 0.125, "tail_seconds": 0.5}),
         ("custom", {"levels": [[0, 1, 0.5, 1, 0], [1, 0, 1, 0.3, 1]]})]


def given_latents(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, 5, 8, 8, generator=g), torch.randn(1, 16, 107, generator=g)


def gaussian_x0(mu, sd):
    """The exact x0 predictor of data ~ N(mu, sd^2) at flow sigma u: E[x0 | x]."""
    def model(x, u):
        a = 1 - u
        return mu + a * sd**2 / (a * a * sd**2 + u * u) * (x - a * mu)
    return model


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("scheduler", ["simple", "karras"])
def test_every_sampler_lands_on_a_known_gaussian(name, scheduler):
    mu, sd = 1.5, 0.5
    schedule = Schedule(ScheduleConfig("cosine", "v"))
    sigmas = [float(u) for u in schedule.flow_sigma(schedule_levels(scheduler, 400, schedule))]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g, dtype=torch.float64)
    out = SAMPLERS[name](gaussian_x0(mu, sd), x, sigmas, generator=g)
    assert float(out.mean()) == pytest.approx(mu, abs=0.01)
    assert float(out.std()) == pytest.approx(sd, rel=0.03)


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m"])
def test_second_order_samplers_are_accurate_in_few_steps(name):
    schedule = Schedule(ScheduleConfig())
    sigmas = [float(u) for u in schedule.flow_sigma(schedule_levels("simple", 30, schedule))]
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = SAMPLERS[name](gaussian_x0(-0.5, 2.0), x, sigmas)
    assert float(out.std()) == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize("schedule_config", SCHEDULES, ids=lambda c: f"{c.kind}-{c.target}")
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_given_blocks_come_back_bit_identical(tiny_model, schedule_config, name):
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    for task, kwargs in TASKS:
        mask = task_mask(task, layout, **kwargs)
        out_v, out_a = sample(tiny_model, Schedule(schedule_config), mask, video, audio, steps=3, sampler=name,
                              guidance=Guidance(video=2.0, audio=3.0))
        given_v, given_a = mask.video == 0, mask.audio == 0
        assert torch.equal(out_v[:, :, given_v], video[:, :, given_v]), task
        assert torch.equal(out_a[:, :, given_a], audio[:, :, given_a]), task
        generated = ~given_v
        if generated.any():
            assert not torch.equal(out_v[:, :, generated], video[:, :, generated]), task


def test_partial_levels_keep_content_until_their_level(tiny_model):
    """A block at level 0.5 is held at its noised content while the sampler is above 0.5."""
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    schedule = Schedule(ScheduleConfig())
    levels = schedule_levels("simple", 4, schedule)  # 1, .75, .5, .25, 0
    mask = task_mask("custom", layout, levels=[[0, 1, 0.6, 1, 1], [1] * 5])
    seen = []
    model = lambda v, a, lv, la: (seen.append(lv.clone()), tiny_model(v, a, lv, la))[1]
    model.parameters = tiny_model.parameters
    denoiser = MonlDenoiser(model, schedule, mask, video, audio, levels)
    x = denoiser.initial_noise()
    for u in [1.0, 0.75, 0.5, 0.25]:
        denoiser(x, u)
    # frame 2 joins at 0.5, the largest step level <= 0.6: held at 0.5 before, then follows the sampler
    assert [float(lv[0, 2]) for lv in seen] == [0.5, 0.5, 0.5, 0.25]
    assert [float(lv[0, 0]) for lv in seen] == [0.0] * 4
    assert [float(lv[0, 1]) for lv in seen] == [1.0, 0.75, 0.5, 0.25]


def test_guidance_is_one_batched_call_and_skipped_when_nothing_is_given(tiny_model):
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    schedule = Schedule(ScheduleConfig())
    batches = []
    model = lambda v, a, lv, la: (batches.append(v.shape[0]), tiny_model(v, a, lv, la))[1]
    model.parameters = tiny_model.parameters
    levels = schedule_levels("simple", 6, schedule)
    for task, kwargs, expected in [("joint", {}, [1] * 6), ("v2a", {}, [2] * 6)]:
        batches.clear()
        denoiser = MonlDenoiser(model, schedule, task_mask(task, layout, **kwargs), video, audio, levels,
                                guidance=Guidance(video=3.0, audio=3.0))
        SAMPLERS["euler"](denoiser, denoiser.initial_noise(), [float(u) for u in schedule.flow_sigma(levels)])
        assert batches == expected, task
    assert CALLS_PER_STEP["euler"] == 1


def test_guidance_scales_apply_per_modality(tiny_model):
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    mask = task_mask("continue", layout, given_seconds=0.625)
    schedule = Schedule(ScheduleConfig())
    plain = sample(tiny_model, schedule, mask, video, audio, steps=3, seed=5)
    audio_only = sample(tiny_model, schedule, mask, video, audio, steps=3, seed=5, guidance=Guidance(video=1.0, audio=4.0))
    both = sample(tiny_model, schedule, mask, video, audio, steps=3, seed=5, guidance=Guidance(video=4.0, audio=4.0))
    assert not torch.equal(plain[1], audio_only[1])
    assert not torch.equal(audio_only[0], both[0])
    assert not torch.equal(plain[0], both[0])


def test_same_seed_is_identical_and_two_seeds_differ(tiny_model):
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    mask = task_mask("joint", layout)
    schedule = Schedule(ScheduleConfig())
    for name in ["euler_ancestral", "dpmpp_2m"]:
        a = sample(tiny_model, schedule, mask, video, audio, steps=4, seed=7, sampler=name)
        b = sample(tiny_model, schedule, mask, video, audio, steps=4, seed=7, sampler=name)
        c = sample(tiny_model, schedule, mask, video, audio, steps=4, seed=8, sampler=name)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


def test_callback_reports_each_step_and_can_cancel(tiny_model):
    layout = Layout.from_config(tiny_model.config)
    video, audio = given_latents()
    steps = []
    sample(tiny_model, Schedule(ScheduleConfig()), task_mask("joint", layout), video, audio, steps=5,
           callback=lambda info: steps.append(info["i"]))
    assert steps == [0, 1, 2, 3, 4]
    steps.clear()
    with pytest.raises(SamplingCancelled, match="cancelled at step 2"):
        sample(tiny_model, Schedule(ScheduleConfig()), task_mask("joint", layout), video, audio, steps=5,
               callback=lambda info: steps.append(info["i"]) or info["i"] < 1)
    assert steps == [0, 1]


def test_schedules_run_from_the_top_level_to_zero():
    flow = Schedule(ScheduleConfig())
    assert schedule_levels("simple", 4, flow).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    karras = schedule_levels("karras", 10, flow)
    assert float(karras[0]) == 1.0 and float(karras[-1]) == 0.0 and bool((karras.diff() < 0).all())
    shifted = schedule_levels("simple", 4, flow, shift=3.0)
    assert float(shifted[2]) == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    eps = Schedule(ScheduleConfig("cosine", "eps"))
    assert float(schedule_levels("simple", 4, eps)[0]) == pytest.approx(eps.max_level) and eps.max_level < 1
    with pytest.raises(ValueError, match="scheduler is 'linear'; expected one of"):
        schedule_levels("linear", 4, flow)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_repeated_level_is_a_step_in_place_for_every_sampler(name):
    """sigmas 1, 1, 0.5, 0 give what 1, 0.5, 0 give (the ancestral step divided by zero there)."""
    from avdit.sampling import SAMPLERS as samplers

    model = gaussian_x0(0.3, 0.5)
    start = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    runs = [samplers[name](model, start.clone(), torch.tensor(s, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
            for s in ([1.0, 1.0, 0.5, 0.0], [1.0, 0.5, 0.0])]
    assert torch.isfinite(runs[0]).all()
    if name != "dpmpp_2m":  # its second-order history differs after an extra step; the others carry none
        assert torch.allclose(runs[0], runs[1], atol=1e-12)


def test_a_float32_mask_level_on_a_grid_level_is_held_there_not_one_step_lower():
    from avdit.sampling import held_mask, snap_levels

    sigmas = torch.linspace(1, 0, 11, dtype=torch.float64)  # 10 simple steps: 1, 0.9, ..., 0
    levels = torch.tensor([0.7, 0.9, 0.3, 0.75], dtype=torch.float32)  # 0.7 is 0.69999999 in float32
    assert snap_levels(levels, sigmas).tolist() == pytest.approx([0.7, 0.9, 0.3, 0.7], abs=1e-6)
    assert held_mask(levels, 1.0, sigmas).tolist() == pytest.approx([0.7, 0.9, 0.3, 0.7], abs=1e-6)

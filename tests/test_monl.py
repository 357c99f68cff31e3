import pytest
import torch

from avdit.config import MonlConfig
from avdit.monl import STRATEGIES, draw_levels


def draw(n=20000, segments=5, **config):
    return draw_levels(n, segments, MonlConfig(**config), torch.Generator().manual_seed(0))


def test_each_strategy_has_its_structure():
    levels, strategy = draw()
    for index, name in enumerate(STRATEGIES):
        chosen = levels[strategy == index]  # (k, 2, N)
        same_rows = torch.equal(chosen[:, 0], chosen[:, 1])
        same_cols = torch.equal(chosen, chosen[:, :, :1].expand_as(chosen))
        assert (same_rows, same_cols) == {
            "vanilla": (True, True),
            "per_modality": (False, True),
            "per_segment": (True, False),
            "per_modality_segment": (False, False),
        }[name], name
    assert float(levels.min()) >= 0 and float(levels.max()) < 1
    # levels are uniform on [0, 1): mean 0.5, variance 1/12
    assert float(levels.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(levels.var()) == pytest.approx(1 / 12, abs=0.003)


def test_mixture_frequencies_follow_the_weights():
    weights = {"vanilla": 1.0, "per_modality": 2.0, "per_segment": 0.0, "per_modality_segment": 1.0}
    _, strategy = draw(40000, weights=weights)
    freq = torch.bincount(strategy, minlength=4).float() / 40000
    assert freq.tolist() == pytest.approx([0.25, 0.5, 0.0, 0.25], abs=0.01)


def test_single_strategy_is_an_ablation_baseline():
    levels, strategy = draw(1000, weights={"per_modality": 1.0})
    assert bool((strategy == 1).all())
    assert torch.equal(levels, levels[:, :, :1].expand_as(levels))


def test_clean_probability_makes_whole_rows_clean():
    levels, strategy = draw(20000, weights={"per_modality": 1.0}, clean_probability=0.35)
    clean_rows = (levels == 0).all(dim=2)  # (B, 2)
    assert float(clean_rows.float().mean()) == pytest.approx(0.35, abs=0.01)


def test_task_specific_baseline_always_draws_its_task():
    levels, strategy = draw(500, task="v2a")
    assert bool((strategy == -1).all())
    assert bool((levels[:, 0] == 0).all()) and bool((levels[:, 1] > 0).any())
    assert torch.equal(levels[:, 1], levels[:, 1, :1].expand_as(levels[:, 1]))


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="must give a positive weight to at least one of"):
        draw(10, weights={"vanila": 1.0})

import pytest
import torch

from avdit.model import AVDiT, PRESETS, latent_times, model_config
from tests.conftest import tiny_config

TOKENS_PER_FRAME = 64  # 8 x 8 latent, patch 1


def inputs(batch=2, tv=5, ta=107, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 16, tv, 8, 8, generator=g), torch.randn(batch, 16, ta, generator=g),
            torch.rand(batch, tv, generator=g), torch.rand(batch, ta, generator=g))


def test_output_shapes_for_batches_and_lengths(tiny_model):
    for batch, tv, ta in [(1, 5, 107), (3, 2, 31), (2, 21, 500)]:
        v, a, lv, la = inputs(batch, tv, ta)
        out_v, out_a = tiny_model(v, a, lv, la)
        assert out_v.shape == v.shape and out_a.shape == a.shape


def test_zero_initialised_model_outputs_zero():
    model = AVDiT(tiny_config())
    out_v, out_a = model(*inputs())
    assert bool((out_v == 0).all()) and bool((out_a == 0).all())


def test_changing_audio_levels_leaves_video_modulation_unchanged(tiny_model):
    v, a, lv, la = inputs()
    lv_tokens = 5 * TOKENS_PER_FRAME
    base = tiny_model.token_modulation(lv, la, TOKENS_PER_FRAME)
    other = tiny_model.token_modulation(lv, torch.rand_like(la), TOKENS_PER_FRAME)
    torch.testing.assert_close(other[:, :lv_tokens], base[:, :lv_tokens], rtol=0, atol=1e-6)
    assert not torch.allclose(other[:, lv_tokens:], base[:, lv_tokens:])
    # a token's modulation is a function of its own level only: equal levels, equal modulation
    lv_same = torch.full_like(lv, 0.3)
    mod = tiny_model.token_modulation(lv_same, la, TOKENS_PER_FRAME)
    torch.testing.assert_close(mod[:, :lv_tokens], mod[:, :1].expand(-1, lv_tokens, -1), rtol=0, atol=1e-6)


def test_a_tokens_level_changes_its_output(tiny_model):
    v, a, lv, la = inputs()
    out_v, out_a = tiny_model(v, a, lv, la)
    la2 = la.clone()
    la2[:, 40] = 0.9 if float(la[0, 40]) < 0.5 else 0.1
    out_v2, out_a2 = tiny_model(v, a, lv, la2)
    assert not torch.allclose(out_a2[:, :, 40], out_a[:, :, 40])


def test_audio_and_video_share_one_time_axis(tiny_model):
    video_times, audio_times = latent_times(tiny_model.config, 5, 107)
    assert video_times.tolist() == pytest.approx([0.0625, 0.375, 0.875, 1.375, 1.875])
    assert audio_times[:2].tolist() == pytest.approx([0.01, 0.03])
    # an audio frame at the same moment as a video frame gets the same time features
    pos = tiny_model.positions((torch.tensor([0.375]), torch.tensor([0.375])), (1, 1), "cpu", torch.float32)
    d_time = tiny_model.width // 2
    torch.testing.assert_close(pos[0, :d_time] - tiny_model.modality_embed[0, :d_time],
                               pos[1, :d_time] - tiny_model.modality_embed[1, :d_time])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_runs_in_every_dtype(tiny_model, dtype):
    v, a, lv, la = inputs()
    ref_v, _ = tiny_model(v, a, lv, la)
    model = tiny_model.to(dtype)
    out_v, out_a = model(v, a, lv, la)
    assert out_v.dtype == dtype and bool(torch.isfinite(out_v).all()) and bool(torch.isfinite(out_a).all())
    assert torch.allclose(out_v.float(), ref_v, atol=0.05 * float(ref_v.abs().max()))


def test_presets_have_the_documented_sizes():
    from avdit.config import AVDiTConfig
    small = AVDiT(AVDiTConfig(model=model_config("small")))
    params = sum(p.numel() for p in small.parameters())
    assert 10e6 <= params <= 30e6
    assert set(PRESETS) == {"tiny", "mini", "demo", "small", "paper"}
    with pytest.raises(ValueError, match="model preset is 'huge'; expected one of"):
        model_config("huge")


def test_wrong_channels_are_refused(tiny_model):
    v, a, lv, la = inputs()
    with pytest.raises(ValueError, match="latents have 8 video and 16 audio channels; this model takes 16 and 16"):
        tiny_model(v[:, :8], a, lv, la)

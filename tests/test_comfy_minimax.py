"""The noise level mask and the MoNL Guider on MiniMax H3 (ComfyUI 0.33's comfy.model_base.MiniMaxH3),
in-process, with no MiniMax weights: a tiny MiniMax H3 built by ComfyUI's own classes
(`comfy.supported_models.MiniMaxH3(...).get_model`) with random weights, under ComfyUI's ModelPatcher,
sampled by core SamplerCustomAdvanced. Run in a child pytest under each copy's python (as
tests/test_comfy_ltx2.py); a copy without MiniMax H3 (0.9.1) is skipped with the reason printed.

What H3 does with a noise mask, and why the guider treats its audio differently: docs/minimax-h3.md.
The network turns the masks into per-token timesteps inside its forward (t = 1 - m x stream sigma);
the hooks below read them where they are used: the time embedder's table of distinct timesteps and
the first block's per-segment rows into it (audio then video are the layout's last two segments).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.test_comfy_native import IN_PROCESS, child, comfy_nested, copies, pack, run_child  # noqa: F401 (pack: fixture)

VIDEO_FRAMES, AUDIO_FRAMES = 7, 37  # 22 frames (17 + 5) at 24 fps = 0.917 s; round(22 * 40 / 24) = 37 audio latent frames
SIGMAS = [1.0, 0.8, 0.6, 0.45, 0.3, 0.15]  # then 0; a level of 0.5 is held at 0.45
TINY = dict(image_model="minimax_h3", hidden_size=48, num_layers=1, token_refiner_num_layers=1, num_attention_heads=2,
            attention_head_dim=24, ffn_hidden_size=64, text_dim=16, timestep_input_dim=32, time_embed_hidden_size=32,
            time_embed_dim=48, rope_inv_freq_len=4)  # rope: 3 axes x 4 x 2 = 24 = attention_head_dim
TEXT_TOKENS = 3


def has_minimax(copy) -> bool:
    return (Path(copy) / "comfy" / "ldm" / "minimax" / "model.py").exists()


@pytest.mark.skipif(IN_PROCESS is not None, reason="this is the child run")
@pytest.mark.parametrize("copy", copies() or [None])
def test_in_process_against_comfyui(copy):
    if copy is not None and not has_minimax(copy):
        print(f"{copy}: no comfy.model_base.MiniMaxH3 in this ComfyUI (it came with 0.33); skipped")
        pytest.skip(f"{copy} has no MiniMax H3 (comfy.model_base.MiniMaxH3)")
    run_child(copy, Path(__file__), "the MiniMax H3 in-process tests", 4)


@pytest.fixture(scope="module")
def h3(pack):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    model = comfy.supported_models.MiniMaxH3(dict(TINY)).get_model({})
    assert isinstance(model, comfy.model_base.MiniMaxH3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # ComfyUI's ops leave the weights uninitialised
        for parameter in model.diffusion_model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
        model.diffusion_model.rope.inv_freq.copy_(torch.rand(4, generator=generator))
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@pytest.fixture(scope="module")
def latent(pack):
    """A native MiniMax H3 AV latent as core Concat AV Latent makes it: video (1, 24, 7, 2, 2), audio (1, 32, 2, 37)."""
    from comfy_extras import nodes_lt

    generator = torch.Generator().manual_seed(1)
    video = torch.randn(1, 24, VIDEO_FRAMES, 2, 2, generator=generator)
    audio = torch.randn(1, 32, 2, AUDIO_FRAMES, generator=generator)
    return nodes_lt.LTXVConcatAVLatent.execute({"samples": video}, {"samples": audio, "type": "audio"}).args[0]


@pytest.fixture(scope="module")
def positive():
    generator = torch.Generator().manual_seed(2)
    return [[torch.randn(1, TEXT_TOKENS, TINY["text_dim"], generator=generator), {}]]


def mask(pack, latent, model, task, given_seconds=0.0):
    nodes, _ = pack
    return nodes["AVDiTNoiseLevelMask"].execute(latent, task, given_seconds, 0.5, 1.5, 0.5, 0.5, "both", 0.0, 0.0, "",
                                                model=model, fps=25.0).args  # fps: H3's is the model's 24


def video_levels(out):
    return out["noise_mask"].unbind()[0][0, 0, :, 0, 0]


def audio_levels(out):
    audio = out["noise_mask"].unbind()[1]
    assert torch.equal(audio, audio[:, :, :1].expand_as(audio))  # both stereo channels alike
    return audio[0, 0, 0]


@child
def test_the_mask_on_minimax_h3_has_its_grid_in_seconds(pack, h3, latent):
    # video latent frames of 1, 4, 4, 4, 4, 1, 4 frames at 24 fps: frame 2 ends at 9 / 24 = 0.375 s;
    # audio latent frame j is j / 40 .. (j + 1) / 40 s: 0.375 s is audio frames 0-14
    out, summary = mask(pack, latent, h3, "continue", given_seconds=0.375)
    assert summary.startswith("0.916667 s clip. video: given 0-0.375 s; generated the rest; audio: given 0-0.375 s"), summary
    video, audio = out["noise_mask"].unbind()
    assert video.shape == (1, 1, VIDEO_FRAMES, 2, 2) and audio.shape == (1, 1, 2, AUDIO_FRAMES)  # the latent's own shapes
    assert torch.equal(video_levels(out), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(audio_levels(out), (torch.arange(AUDIO_FRAMES) >= 15).float())
    assert all(torch.equal(a, b) for a, b in zip(out["samples"].unbind(), latent["samples"].unbind()))
    # the output records H3's grid, so a second mask node (without a model) keeps it
    again, _ = mask(pack, out, None, "continue", given_seconds=0.2)
    video, audio = again["noise_mask"].unbind()
    assert video.shape == (1, 1, VIDEO_FRAMES, 2, 2) and audio.shape == (1, 1, 2, AUDIO_FRAMES)
    assert video_levels(again)[0] == 0 and audio_levels(again)[0] == 0
    video, audio = latent["samples"].unbind()
    short = {"samples": comfy_nested((video, audio[..., :30]))}
    with pytest.raises(ValueError, match=r"7 video latent frames are 22 frames = 0\.916667 s at 24 fps, which is 37 "
                                         r"audio latent frames, but the latent has 30 \(0\.75 s\)"):
        mask(pack, short, h3, "continue", given_seconds=0.375)


def continued(pack, h3, latent, held=False):
    """0.375 s given; with `held`, video latent frame 3 and audio latent frames 15-19 at level 0.5."""
    out, _ = mask(pack, latent, h3, "continue", given_seconds=0.375)
    if held:
        video, audio = (m.clone() for m in out["noise_mask"].unbind())
        video[:, :, 3] = 0.5
        audio[..., 15:20] = 0.5
        out = {**out, "noise_mask": comfy_nested((video, audio))}
    return out


def sample(latent, guider, sigmas=SIGMAS):
    from comfy_extras import nodes_custom_sampler as ncs

    noise = ncs.RandomNoise.execute(0).args[0]
    manual = ncs.ManualSigmas.execute(", ".join(f"{s:g}" for s in [*sigmas, 0.0])).args[0]
    sampler = ncs.KSamplerSelect.execute("euler").args[0]
    return ncs.SamplerCustomAdvanced.execute(noise, guider, sampler, manual, latent).args[0]


def guider(pack, h3, positive, video=1.0, audio=1.0):
    nodes, _ = pack
    return nodes["AVDiTGuider"].execute(h3, video, audio, "all", positive=positive).args[0]


@child
def test_monl_guidance_scales_on_minimax_h3_are_refused_with_the_reason(pack, h3, latent, positive):
    with pytest.raises(ValueError, match="on MiniMax H3 set video_guidance and audio_guidance to 1"):
        sample(continued(pack, h3, latent), guider(pack, h3, positive, 3.0, 2.0))


@child
def test_monl_guider_on_minimax_h3_gives_the_given_blocks_back_exactly(pack, h3, latent, positive):
    given = continued(pack, h3, latent, held=True)
    out = sample(given, guider(pack, h3, positive))
    (video, audio), (given_video, given_audio) = out["samples"].unbind(), given["samples"].unbind()
    assert video.shape == given_video.shape and audio.shape == given_audio.shape
    assert torch.equal(video[:, :, :3], given_video[:, :, :3]) and torch.equal(audio[..., :15], given_audio[..., :15])
    assert not torch.isclose(video[:, :, 3:], given_video[:, :, 3:]).any()
    assert not torch.isclose(audio[..., 15:], given_audio[..., 15:]).any()
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()


class Recorder:
    """Per network call: its inputs (video, the audio as the sampler carries it), and the per-row
    timesteps of the target video and audio rows."""

    def __init__(self, model):
        net = model.model.diffusion_model
        self.calls = []
        self.handles = [net.register_forward_pre_hook(self.forward, with_kwargs=True),
                        net.time_embedder.register_forward_pre_hook(self.table),
                        net.blocks[0].register_forward_pre_hook(self.rows)]

    def forward(self, module, args, kwargs):
        x, timestep = args[0], args[1]
        self.calls.append(dict(video=x[0].float().clone(), audio=x[1].float().clone(), sigma=float(timestep.flatten()[0]) / 1000))

    def table(self, module, args):
        self.calls[-1]["t"] = args[0].float().clone()

    def rows(self, module, args):
        t = self.calls[-1]["t"]
        (aa, ab, a_row), (va, vb, v_row) = args[2][-2:]
        self.calls[-1]["audio_t"] = t[torch.as_tensor(a_row) // 3].expand(ab - aa).clone()
        self.calls[-1]["video_t"] = t[torch.as_tensor(v_row) // 3].expand(vb - va).clone()

    def close(self):
        for handle in self.handles:
            handle.remove()


def up(m):
    return math.ceil(m * 256) / 256  # MiniMaxH3._token_grid_masks


@child
def test_minimax_h3_gets_the_masks_timesteps_in_one_call_per_step(pack, h3, latent, positive):
    """One model call a step at the mask's per-token timesteps: given tokens at H3's own preserved
    timesteps (video 0.999, audio 1), the 0.5 blocks held where the sampler is at 0.45 (video sigma 0.45,
    audio sigma f(0.45), f H3's audio shift; up to H3's 1/256 mask steps) until it comes down to it, their
    inputs the given content at that level. (The unconditional-pass branches below stay for when H3 can
    take the top level: see docs/minimax-h3.md.)"""
    import comfy.ldm.minimax.model as minimax
    import comfy.utils
    from comfy_extras import nodes_custom_sampler as ncs

    f = lambda s: float(minimax.time_shift_sigma(torch.tensor(s, dtype=torch.float64), 12.0, 3.0))
    held = continued(pack, h3, latent, held=True)
    given_video, given_audio = held["samples"].unbind()
    noise_video, noise_audio = ncs.RandomNoise.execute(0).args[0].generate_noise(held).unbind()
    monl = guider(pack, h3, positive)
    recorder = Recorder(h3)
    try:
        sample(held, monl)
    finally:
        recorder.close()
    assert monl.model_calls == len(SIGMAS)
    assert len(recorder.calls) == len(SIGMAS) and all(call["video"].shape[0] == 1 for call in recorder.calls)
    drop_video, drop_audio = comfy.utils.unpack_latents(monl.drop_noise, monl.latent_shapes)
    for step, sigma in enumerate(SIGMAS):
        sigma_a = f(sigma)
        holding = sigma > 0.45 + 1e-6
        g_v, g_a = up(0.45 / sigma), up(f(0.45) / sigma_a)
        passes = recorder.calls[step: step + 1]
        for call in passes:
            assert abs(call["sigma"] - sigma) < 1e-6
        for call, is_unconditional in zip(passes, [False]):
            video_t = torch.full((VIDEO_FRAMES,), 1 - sigma)
            audio_t = torch.full((AUDIO_FRAMES,), 1 - sigma_a)
            video_t[:3], audio_t[:15] = (0.0, 0.0) if is_unconditional else (0.999, 1.0)
            if holding:
                video_t[3], audio_t[15:20] = (0.0, 0.0) if is_unconditional else (1 - g_v * sigma, 1 - g_a * sigma_a)
            assert torch.allclose(call["video_t"], video_t, atol=1e-5), (sigma, call["video_t"])
            assert torch.allclose(call["audio_t"], audio_t.repeat(2), atol=1e-5), (sigma, call["audio_t"])
            audio = call["audio"] * sigma_a / sigma  # the stream's own latent, as the network takes it
            if is_unconditional:
                n = 4 if holding else 3
                assert torch.equal(call["video"][:, :, :n], drop_video[:, :, :n])
                assert torch.allclose(audio[..., :15], drop_audio[..., :15], atol=1e-5)
                continue
            if holding:  # the given content at the level the sampler has at 0.45 (up to H3's 1/256 steps)
                k = 0.001 + g_v * (sigma - 0.001)  # H3 injects preserved video at 0.999 of its content
                assert torch.allclose(call["video"][:, :, 3], (1 - k) * given_video[:, :, 3] + k * noise_video[:, :, 3], atol=1e-5)
                k = g_a * sigma_a
                assert torch.allclose(audio[..., 15:20], (1 - k) * given_audio[..., 15:20] + k * noise_audio[..., 15:20], atol=1e-5)
            assert torch.allclose(audio[..., :15], given_audio[..., :15], atol=1e-5)  # given audio: clean

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
    run_child(copy, Path(__file__), "the MiniMax H3 in-process tests", 9)


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


def guider(pack, h3, positive, video=1.0, audio=1.0, drop="all", negative=None, text=1.0):
    nodes, _ = pack
    return nodes["AVDiTGuider"].execute(h3, video, audio, drop, positive=positive, negative=negative, text_guidance=text).args[0]


def audio_sigma(s):
    """H3's audio sigma at video sigma s (comfy/ldm/minimax/model.py time_shift_sigma, shifts 12 and 3)."""
    import comfy.ldm.minimax.model as minimax

    return float(minimax.time_shift_sigma(torch.tensor(s, dtype=torch.float64), 12.0, 3.0))


@child
def test_monl_guidance_of_1_on_minimax_h3_samples_as_core_cfg_1_with_one_call_a_step(pack, h3, latent, positive):
    """Guidance scales of 1 add no pass: with a mask of given (0) and generated (1) blocks only, the MoNL
    Guider's samples are core CFGGuider's at cfg 1 bit for bit, except that it puts the given blocks back
    exactly (core leaves H3's 0.999 video injection in them)."""
    from comfy_extras import nodes_custom_sampler as ncs

    given = continued(pack, h3, latent)
    recorder = Recorder(h3)
    monl = guider(pack, recorder.model, positive)
    try:
        out = sample(given, monl)
    finally:
        recorder.close()
    assert monl.model_calls == len(SIGMAS) and len(recorder.calls) == len(SIGMAS)
    core = sample(given, ncs.CFGGuider.execute(h3, positive, positive, 1.0).args[0])
    for ours, theirs, mask_, was in zip(out["samples"].unbind(), core["samples"].unbind(), given["noise_mask"].unbind(),
                                        given["samples"].unbind()):
        generated = (mask_ > 0).expand_as(ours)
        assert generated.any() and not generated.all()
        assert torch.equal(ours[generated], theirs[generated])
        assert torch.equal(ours[~generated], was[~generated])


@child
@pytest.mark.parametrize("scales", [(1.0, 1.0), (3.0, 2.0)])
def test_monl_guider_on_minimax_h3_gives_the_given_blocks_back_exactly(pack, h3, latent, positive, scales):
    given = continued(pack, h3, latent, held=True)
    out = sample(given, guider(pack, h3, positive, *scales))
    (video, audio), (given_video, given_audio) = out["samples"].unbind(), given["samples"].unbind()
    assert video.shape == given_video.shape and audio.shape == given_audio.shape
    assert torch.equal(video[:, :, :3], given_video[:, :, :3]) and torch.equal(audio[..., :15], given_audio[..., :15])
    assert not torch.isclose(video[:, :, 3:], given_video[:, :, 3:]).any()
    assert not torch.isclose(audio[..., 15:], given_audio[..., 15:]).any()
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()


class Recorder:
    """Per network call: the guider's pass (cond index: 0 conditional, 1 unconditional, 2 negative), the
    call's sigma, the streams' own inputs and velocities as the network takes and gives them (inside H3's
    forward, which undoes the sampler's audio carry; a DIFFUSION_MODEL wrapper), and the per-row
    timesteps of the target video and audio rows. `model`: a clone of the patcher that carries the
    wrappers, for the guider."""

    def __init__(self, h3):
        import comfy.patcher_extension

        net = h3.model.diffusion_model
        self.calls, self.index = [], None
        self.model = h3.clone()
        self.model.set_model_unet_function_wrapper(self.pass_of)
        self.model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test", self.network)
        self.handles = [net.time_embedder.register_forward_pre_hook(self.table),
                        net.blocks[0].register_forward_pre_hook(self.rows)]

    def pass_of(self, apply_model, args):
        (self.index,) = args["cond_or_uncond"]  # the guider runs H3 one pass at a time
        return apply_model(args["input"], args["timestep"], **args["c"])

    def network(self, executor, x, timestep, *args, **kwargs):
        self.calls.append(dict(index=self.index, video=x[0].float().clone(), audio=x[1].float().clone(),
                               sigma=float(timestep.flatten()[0]) / 1000))
        out = executor(x, timestep, *args, **kwargs)
        self.calls[-1].update(v_video=out[0].float().clone(), v_audio=out[1].float().clone())
        return out

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


def labels(sigma, holding, g_v, g_a):
    """The per-row timesteps of the conditional pass at `sigma`: given tokens at H3's preserved timesteps
    (video 0.999, audio 1), the 0.5 blocks (while `holding`) at their masks g x the stream's sigma."""
    sigma_a = audio_sigma(sigma)
    video_t, audio_t = torch.full((VIDEO_FRAMES,), 1 - sigma), torch.full((AUDIO_FRAMES,), 1 - sigma_a)
    video_t[:3], audio_t[:15] = 0.999, 1.0
    if holding:
        video_t[3], audio_t[15:20] = 1 - g_v * sigma, 1 - g_a * sigma_a
    return video_t, audio_t


@child
@pytest.mark.parametrize("scales, drop", [((1.0, 1.0), "all"), ((3.0, 2.0), "all"), ((3.0, 2.0), "video")])
def test_minimax_h3_gets_the_masks_timesteps_and_the_unconditional_pass_at_the_top_level(pack, h3, latent, positive, scales, drop):
    """Per step, the conditional pass at the mask's per-token timesteps: given tokens at H3's preserved
    timesteps, the 0.5 blocks held where the sampler is at 0.45 (video sigma 0.45, audio sigma f(0.45), f
    H3's audio shift; up to H3's 1/256 mask steps) until it comes down to it, their inputs the given
    content at that level. With guidance, a second call a step, the unconditional pass: run at sigma 1,
    the tokens it drops (those held below sigma, in the modalities `drop` names) labelled at the top (0)
    holding the guider's noise, every other token labelled and fed exactly as in the conditional pass."""
    import comfy.utils
    from comfy_extras import nodes_custom_sampler as ncs

    held = continued(pack, h3, latent, held=True)
    given_video, given_audio = held["samples"].unbind()
    noise_video, noise_audio = ncs.RandomNoise.execute(0).args[0].generate_noise(held).unbind()
    recorder = Recorder(h3)
    monl = guider(pack, recorder.model, positive, *scales, drop=drop)
    try:
        sample(held, monl)
    finally:
        recorder.close()
    passes = 1 if scales == (1.0, 1.0) else 2
    assert monl.model_calls == len(SIGMAS)
    assert len(recorder.calls) == passes * len(SIGMAS) and all(call["video"].shape[0] == 1 for call in recorder.calls)
    drop_video, drop_audio = comfy.utils.unpack_latents(monl.drop_noise, monl.latent_shapes)
    for step, sigma in enumerate(SIGMAS):
        sigma_a = audio_sigma(sigma)
        holding = sigma > 0.45 + 1e-6
        g_v, g_a = up(0.45 / sigma), up(audio_sigma(0.45) / sigma_a)
        calls = {call["index"]: call for call in recorder.calls[passes * step: passes * (step + 1)]}
        assert sorted(calls) == list(range(passes))
        cond = calls[0]
        assert abs(cond["sigma"] - sigma) < 1e-6
        video_t, audio_t = labels(sigma, holding, g_v, g_a)
        assert torch.allclose(cond["video_t"], video_t, atol=1e-5), (sigma, cond["video_t"])
        assert torch.allclose(cond["audio_t"], audio_t.repeat(2), atol=1e-5), (sigma, cond["audio_t"])
        if holding:  # the given content at the level the sampler has at 0.45 (up to H3's 1/256 steps)
            k = 0.001 + g_v * (sigma - 0.001)  # H3 injects preserved video at 0.999 of its content
            assert torch.allclose(cond["video"][:, :, 3], (1 - k) * given_video[:, :, 3] + k * noise_video[:, :, 3], atol=1e-5)
            k = g_a * sigma_a
            assert torch.allclose(cond["audio"][..., 15:20], (1 - k) * given_audio[..., 15:20] + k * noise_audio[..., 15:20], atol=1e-5)
        assert torch.allclose(cond["audio"][..., :15], given_audio[..., :15], atol=1e-5)  # given audio: clean
        if passes == 1:
            continue
        uncond = calls[1]
        assert uncond["sigma"] == 1.0
        dropped_video, dropped_audio = torch.zeros(VIDEO_FRAMES, dtype=torch.bool), torch.zeros(AUDIO_FRAMES, dtype=torch.bool)
        dropped_video[:4 if holding else 3] = drop in ("all", "video")
        dropped_audio[:20 if holding else 15] = drop in ("all", "audio")
        assert dropped_video.any() and not dropped_video.all()
        assert torch.allclose(uncond["video_t"], torch.where(dropped_video, 0.0, video_t), atol=1e-5), (sigma, uncond["video_t"])
        assert torch.allclose(uncond["audio_t"], torch.where(dropped_audio, 0.0, audio_t).repeat(2), atol=1e-5), (sigma, uncond["audio_t"])
        v, a = dropped_video[None, None, :, None, None], dropped_audio[None, None, None, :]
        assert torch.equal(uncond["video"], torch.where(v, drop_video, cond["video"]))
        assert torch.equal(uncond["audio"][a.expand_as(drop_audio)], drop_audio[a.expand_as(drop_audio)])
        assert torch.allclose(uncond["audio"], torch.where(a, drop_audio, cond["audio"]), rtol=1e-6, atol=1e-6)


@child
@pytest.mark.parametrize("text", [1.0, 1.5])
def test_monl_guidance_on_minimax_h3_is_c_plus_scale_minus_1_times_c_minus_u(pack, h3, latent, positive, text):
    """The guided x0 of every step, from the passes captured at the network: x0 = C + (s - 1)(C - U)
    (+ (text - 1)(C - N)), video scale 3 on video tokens and audio scale 2 on audio tokens, with each
    pass's x0 the network's own velocity v taken at this step's level whatever timestep it ran at:
    video x - sigma v, audio audio_scale (x - f(sigma) v) (H3's audio target in the sampler's
    coordinates); the blocks held at 0.5 give their given content while held."""
    generator = torch.Generator().manual_seed(3)
    negative = [[torch.randn(1, TEXT_TOKENS, TINY["text_dim"], generator=generator), {}]]
    held = continued(pack, h3, latent, held=True)
    recorder = Recorder(h3)
    monl = guider(pack, recorder.model, positive, 3.0, 2.0, negative=negative, text=text)
    predict, guided = monl.predict_noise, []

    def recorded(*args, **kwargs):
        guided.append(predict(*args, **kwargs))
        return guided[-1]

    monl.predict_noise = recorded
    try:
        sample(held, monl)
    finally:
        recorder.close()
    audio_scale = h3.model.model_sampling.audio_scale
    assert audio_scale == 4.0
    passes = 2 if text == 1.0 else 3
    assert len(guided) == len(SIGMAS) and len(recorder.calls) == passes * len(SIGMAS)
    given_video, given_audio = monl.given.to(torch.float32).split([monl.video_size, monl.given.shape[-1] - monl.video_size], dim=-1)
    for step, sigma in enumerate(SIGMAS):
        calls = {call["index"]: call for call in recorder.calls[passes * step: passes * (step + 1)]}
        assert sorted(calls) == list(range(passes))
        x0 = {index: (call["video"] - sigma * call["v_video"],
                      audio_scale * (call["audio"] - audio_sigma(sigma) * call["v_audio"])) for index, call in calls.items()}
        (c_video, c_audio), (u_video, u_audio) = x0[0], x0[1]
        video, audio = c_video + 2.0 * (c_video - u_video), c_audio + 1.0 * (c_audio - u_audio)
        if text != 1.0:
            video, audio = video + (text - 1) * (c_video - x0[2][0]), audio + (text - 1) * (c_audio - x0[2][1])
        video, audio = video.reshape(1, 1, -1), audio.reshape(1, 1, -1)
        if sigma > 0.45 + 1e-6:  # held at 0.5: video latent frame 3, audio latent frames 15-19 (both channels)
            video = video.reshape(1, 24, VIDEO_FRAMES, 4)
            video[:, :, 3] = given_video.reshape(1, 24, VIDEO_FRAMES, 4)[:, :, 3]
            audio = audio.reshape(1, 32, 2, AUDIO_FRAMES)
            audio[..., 15:20] = given_audio.reshape(1, 32, 2, AUDIO_FRAMES)[..., 15:20]
        expected = torch.cat([video.reshape(1, 1, -1), audio.reshape(1, 1, -1)], dim=-1)
        assert not torch.equal(c_video, u_video) and not torch.equal(c_audio, u_audio)
        assert torch.allclose(guided[step], expected, rtol=1e-4, atol=1e-4), (sigma, (guided[step] - expected).abs().max())

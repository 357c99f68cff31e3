"""The noise level mask and the MoNL Guider on LTX-2 (ComfyUI's LTXAV), in-process, with no LTX-2
weights: a tiny LTXAV built by ComfyUI's own classes (`comfy.supported_models.LTXAV(...).get_model`)
with random weights, under ComfyUI's ModelPatcher, sampled by core SamplerCustomAdvanced.

As in tests/test_comfy_native.py, ComfyUI's modules need its own Python environment: the parent
test (`test_in_process_against_comfyui`, one per copy named by COMFYUI_PATH) runs this file in
a child pytest under each copy's python, with COMFYUI_INPROCESS naming the copy.

How the timesteps reach LTX-2's network (comfy/model_base.py LTXAV in 0.9.1 and 0.33): LTXAV is a
FLUX-type model, so `model_sampling.timestep(sigma)` is sigma itself (0..1); `process_timestep`
multiplies the unpacked video and audio noise masks by it and patchifies them, so
`diffusion_model.forward(x, (v_timestep, a_timestep), ...)` gets one timestep per token:
video (B, Tv*h*w, 1) in (frame, h, w) order and audio (B, Ta, 1). The network itself multiplies
them by timestep_scale_multiplier (1000) before its AdaLN embeddings; the hook below sees them
before that, on the sampler's 0..1 scale.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_comfy_native import IN_PROCESS, child, comfy_nested, copies, pack, run_child  # noqa: F401 (pack: fixture)

FPS = 25.0
VIDEO_FRAMES, AUDIO_FRAMES = 3, 17  # 1 + 8 * 2 = 17 frames = 0.68 s at 25 fps; 0.68 s * 25 audio latents/s = 17
SIGMAS = [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]  # then 0; a level of 0.45 is held at 0.375
TINY = dict(image_model="ltxav", num_layers=1, in_channels=128, audio_in_channels=128,  # audio latent (B, 8, T, 16)
            num_attention_heads=2, attention_head_dim=8, audio_num_attention_heads=2, audio_attention_head_dim=8,
            cross_attention_dim=16, audio_cross_attention_dim=16, caption_channels=8,
            # 0.33's text-embedding connectors (ignored by 0.9.1): 30 heads of 128 by default
            connector_num_attention_heads=2, connector_attention_head_dim=4, connector_num_layers=1)
TEXT_TOKENS = 4


@pytest.mark.skipif(IN_PROCESS is not None, reason="this is the child run")
@pytest.mark.parametrize("copy", copies() or [None])
def test_in_process_against_comfyui(copy):
    run_child(copy, Path(__file__), "the LTX-2 in-process tests", 4)


@pytest.fixture(scope="module")
def ltx2(pack):
    """A tiny randomly initialised LTX-2 (ComfyUI's LTXAV) as a MODEL on the CPU."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    model = comfy.supported_models.LTXAV(dict(TINY)).get_model({})
    assert isinstance(model, comfy.model_base.LTXAV)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # ComfyUI's ops leave the weights uninitialised
        for parameter in model.diffusion_model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@pytest.fixture(scope="module")
def latent(pack):
    """A native LTX-2 AV latent as core LTXVConcatAVLatent makes it: video (1, 128, 3, 2, 2), audio (1, 8, 17, 16)."""
    from comfy_extras import nodes_lt

    generator = torch.Generator().manual_seed(1)
    video = torch.randn(1, 128, VIDEO_FRAMES, 2, 2, generator=generator)
    audio = torch.randn(1, 8, AUDIO_FRAMES, 16, generator=generator)
    return nodes_lt.LTXVConcatAVLatent.execute({"samples": video}, {"samples": audio, "type": "audio"}).args[0]


@pytest.fixture(scope="module")
def text():
    """Positive and negative conditioning: random embeddings of the width LTXAV's context takes in both
    versions (2 x caption_channels, the video and audio halves; 0.33 takes that width as already processed)."""
    generator = torch.Generator().manual_seed(2)
    return [[[torch.randn(1, TEXT_TOKENS, 2 * TINY["caption_channels"], generator=generator), {"frame_rate": FPS}]]
            for _ in range(2)]


def mask(pack, latent, model, task, given_seconds=0.0, fps=FPS):
    nodes, _ = pack
    return nodes["AVDiTNoiseLevelMask"].execute(latent, task, given_seconds, 0.5, 1.5, 0.5, 0.5, "both", 0.0, 0.0, "",
                                                model=model, fps=fps).args


def sample(latent, guider, sigmas=SIGMAS):
    """Core SamplerCustomAdvanced: RandomNoise, euler, ManualSigmas (then 0)."""
    from comfy_extras import nodes_custom_sampler as ncs

    noise = ncs.RandomNoise.execute(0).args[0]
    manual = ncs.ManualSigmas.execute(", ".join(f"{s:g}" for s in [*sigmas, 0.0])).args[0]
    sampler = ncs.KSamplerSelect.execute("euler").args[0]
    return ncs.SamplerCustomAdvanced.execute(noise, guider, sampler, manual, latent).args[0]


class Recorder:
    """Forward hook on LTXAV's network: per call the batch's video and audio inputs, their per-token
    timesteps (video (B, Tv*h*w, 1), audio (B, Ta, 1)) and the text context."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.model.diffusion_model.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):
        (video, audio), (v_timestep, a_timestep) = args[:2]
        assert v_timestep.shape == (video.shape[0], VIDEO_FRAMES * 2 * 2, 1) and a_timestep.shape == (video.shape[0], AUDIO_FRAMES, 1)
        self.calls.append(dict(video=video.float().clone(), audio=audio.float().clone(), v_timestep=v_timestep[..., 0].float().clone(),
                               a_timestep=a_timestep[..., 0].float().clone(), context=kwargs["context"].float().clone()))

    def close(self):
        self.handle.remove()


@child
def test_the_mask_on_ltx2_has_ltx2s_grid_in_seconds(pack, ltx2, latent):
    video_mask = lambda out: out["noise_mask"].unbind()[0][0, 0, :, 0, 0]  # one level per video latent frame
    audio_mask = lambda out: out["noise_mask"].unbind()[1][0, 0, :, 0]
    out, summary = mask(pack, latent, ltx2, "v2a")
    assert summary == "0.68 s clip. video: given 0-0.68 s; generated the rest; audio: given nothing; generated the rest"
    video, audio = out["noise_mask"].unbind()
    assert video.shape == (1, 1, VIDEO_FRAMES, 2, 2) and audio.shape == (1, 1, AUDIO_FRAMES, 16)  # the latent's own shapes
    assert torch.equal(video, torch.zeros_like(video)) and torch.equal(audio, torch.ones_like(audio))
    assert all(torch.equal(a, b) for a, b in zip(out["samples"].unbind(), latent["samples"].unbind()))

    # latent frame 0 is frame 0 (0-0.04 s), frame 1 frames 1-8 (0.04-0.36 s), frame 2 frames 9-16 (0.36-0.68 s);
    # audio latent frame j is 0.04 j .. 0.04 (j + 1) s: 0.36 s gives video frames 0 and 1, audio frames 0-8
    out, summary = mask(pack, latent, ltx2, "continue", given_seconds=0.36)
    assert summary == "0.68 s clip. video: given 0-0.36 s; generated the rest; audio: given 0-0.36 s; generated the rest"
    assert torch.equal(video_mask(out), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(audio_mask(out), (torch.arange(AUDIO_FRAMES) >= 9).float())
    video, audio = out["noise_mask"].unbind()
    assert torch.equal(video, video[:, :, :, :1, :1].expand_as(video)) and torch.equal(audio, audio[..., :1].expand_as(audio))

    # a latent frame is given only where its whole span is: 0.35 s ends inside video frame 1 and audio frame 8
    out, summary = mask(pack, latent, ltx2, "continue", given_seconds=0.35)
    assert summary == "0.68 s clip. video: given 0-0.04 s; generated the rest; audio: given 0-0.32 s; generated the rest"
    assert torch.equal(video_mask(out), torch.tensor([0.0, 1.0, 1.0]))
    assert torch.equal(audio_mask(out), (torch.arange(AUDIO_FRAMES) >= 8).float())

    with pytest.raises(ValueError, match=r"17 frames = 0\.34 s at 50 fps, which is 9 audio latent frames, "
                                         r"but the latent has 17 \(0\.68 s\): set fps to the clip's frame rate"):
        mask(pack, latent, ltx2, "continue", given_seconds=0.36, fps=50.0)


def continued(pack, ltx2, latent, held=False):
    """0.36 s given; with `held`, video latent frame 1 and audio latent frames 5-8 at level 0.45 instead."""
    out, _ = mask(pack, latent, ltx2, "continue", given_seconds=0.36)
    if held:
        video, audio = (m.clone() for m in out["noise_mask"].unbind())
        video[:, :, 1] = 0.45
        audio[:, :, 5:9] = 0.45
        out = {**out, "noise_mask": comfy_nested((video, audio))}
    return out


def guider(pack, ltx2, text, text_guidance):
    nodes, _ = pack
    positive, negative = text
    return nodes["AVDiTGuider"].execute(ltx2, 3.0, 2.0, "all", positive=positive, negative=negative,
                                        text_guidance=text_guidance).args[0]


@child
def test_monl_guider_on_ltx2_in_sampler_custom_advanced_gives_the_given_blocks_back_exactly(pack, ltx2, latent, text):
    given = continued(pack, ltx2, latent)
    out = sample(given, guider(pack, ltx2, text, 3.0))
    (video, audio), (given_video, given_audio) = out["samples"].unbind(), given["samples"].unbind()
    assert video.shape == given_video.shape and audio.shape == given_audio.shape
    assert torch.equal(video[:, :, :2], given_video[:, :, :2])  # latent frames 0 and 1: the first 0.36 s
    assert torch.equal(audio[:, :, :9], given_audio[:, :, :9])
    assert not torch.isclose(video[:, :, 2:], given_video[:, :, 2:]).any()  # the rest is generated
    assert not torch.isclose(audio[:, :, 9:], given_audio[:, :, 9:]).any()
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()


def expected_timesteps(sigma: float, unconditional: bool):
    """Per-token timesteps of the held latent of `continued(held=True)` at `sigma`: 0 on given tokens, 0.375
    on the 0.45 blocks while sigma is above it (then sigma), sigma on generated tokens; on the guidance's
    unconditional pass the tokens held below sigma (they condition this step) are at the top level, 1."""
    held = 0.375 if sigma > 0.375 else sigma
    video = torch.tensor([0.0, held, sigma]).repeat_interleave(4)  # 2 x 2 tokens per latent frame
    audio = torch.tensor([0.0] * 5 + [held] * 4 + [sigma] * 8)
    if unconditional:
        video[:4], audio[:5] = 1.0, 1.0
        if sigma > 0.375:
            video[4:8], audio[5:9] = 1.0, 1.0
    return video, audio


@child
@pytest.mark.parametrize("text_guidance", [3.0, 1.0])
def test_ltx2_gets_the_masks_timesteps_in_one_batched_call_per_step(pack, ltx2, latent, text, text_guidance):
    """At a hook on LTXAV's network: one call a step, with the conditional, the MoNL-unconditional and
    (text guidance on) the negative pass in one batch, each at the per-token timesteps of the mask; the
    inputs are the given content on given tokens, the given content noised to 0.375 (with the sampler's
    noise) on the 0.45 blocks until sigma comes down to it, and the guider's noise on the tokens the
    unconditional pass drops."""
    import comfy.utils
    from comfy_extras import nodes_custom_sampler as ncs

    positive, negative = (conditioning[0][0][0] for conditioning in text)
    held = continued(pack, ltx2, latent, held=True)
    given_video, given_audio = held["samples"].unbind()
    noise_video, noise_audio = ncs.RandomNoise.execute(0).args[0].generate_noise(held).unbind()  # SamplerCustomAdvanced's
    monl = guider(pack, ltx2, text, text_guidance)
    recorder = Recorder(ltx2)
    try:
        sample(held, monl)
    finally:
        recorder.close()
    assert [call["video"].shape[0] for call in recorder.calls] == [3 if text_guidance != 1 else 2] * len(SIGMAS)
    assert monl.model_calls == len(SIGMAS)
    drop_video, drop_audio = comfy.utils.unpack_latents(monl.drop_noise, monl.latent_shapes)
    for call, sigma in zip(recorder.calls, SIGMAS):
        unconditional = [bool(v[0] > 0.5) for v in call["v_timestep"]]  # a given token: 1 there, 0 on the other passes
        assert sum(unconditional) == 1
        for row, is_unconditional in enumerate(unconditional):
            video, audio = expected_timesteps(sigma, is_unconditional)
            assert torch.allclose(call["v_timestep"][row], video, rtol=0, atol=1e-6), (sigma, row, call["v_timestep"][row])
            assert torch.allclose(call["a_timestep"][row], audio, rtol=0, atol=1e-6), (sigma, row, call["a_timestep"][row])
            x_video, x_audio = call["video"][row], call["audio"][row]
            if is_unconditional:  # the tokens held below sigma are the guider's noise
                dropped = 2 if sigma > 0.375 else 1
                assert torch.equal(x_video[:, :dropped], drop_video[0, :, :dropped])
                assert torch.equal(x_audio[:, :5 + 4 * (dropped - 1)], drop_audio[0, :, :5 + 4 * (dropped - 1)])
                continue
            assert torch.equal(call["v_timestep"][row][:4], torch.zeros(4)) and torch.equal(call["a_timestep"][row][:5], torch.zeros(5))
            assert torch.equal(x_video[:, 0], given_video[0, :, 0]) and torch.equal(x_audio[:, :5], given_audio[0, :, :5])
            if sigma >= 0.375:  # held: the given content noised to 0.375, at every step until sigma is there
                assert torch.allclose(x_video[:, 1], 0.625 * given_video[0, :, 1] + 0.375 * noise_video[0, :, 1], atol=1e-5)
                assert torch.allclose(x_audio[:, 5:9], 0.625 * given_audio[0, :, 5:9] + 0.375 * noise_audio[0, :, 5:9], atol=1e-5)
        contexts = ["positive" if torch.equal(c, positive) else "negative" if torch.equal(c, negative) else "?" for c in call["context"]]
        assert contexts[unconditional.index(True)] == "positive"  # the MoNL pass keeps the positive prompt
        assert sorted(contexts) == sorted(["positive", "positive"] + (["negative"] if text_guidance != 1 else []))

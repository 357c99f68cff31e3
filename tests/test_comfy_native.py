"""The nodes' execute methods against ComfyUI's own modules, in-process: the MODEL, the native
audio-video LATENT, the MoNL Guider in core SamplerCustomAdvanced, and the per-token levels the
model receives.

ComfyUI's modules need ComfyUI's own Python environment, so these tests run in a child pytest
under each ComfyUI copy's python (`test_in_process_against_comfyui`, one per copy named by
COMFYUI_PATH); inside it, COMFYUI_INPROCESS names the copy and the other tests run.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "example_workflows" / "input" / "avdit_toneshapes.mp4"
IN_PROCESS = os.environ.get("COMFYUI_INPROCESS")


def copies() -> list[str]:
    return [p for p in os.environ.get("COMFYUI_PATH", "").split(":") if p]


def python_of(copy: str) -> str | None:
    venv = Path(copy) / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else os.environ.get("COMFYUI_PYTHON")


@pytest.mark.skipif(IN_PROCESS is not None, reason="this is the child run")
@pytest.mark.parametrize("copy", copies() or [None])
def test_in_process_against_comfyui(copy):
    run_child(copy, Path(__file__), "the nodes' in-process tests", 10)


def run_child(copy: str | None, test_file: Path, what: str, tests: int) -> None:
    """Run `test_file`'s child tests under `copy`'s python; all `tests` of them must pass."""
    if copy is None:
        pytest.skip(f"COMFYUI_PATH is not set: {what} need a ComfyUI copy (see README, 'Testing against a real ComfyUI')")
    python = python_of(copy)
    if python is None:
        pytest.skip(f"{copy} has no .venv/bin/python and COMFYUI_PYTHON is unset")
    env = {**os.environ, "COMFYUI_INPROCESS": copy, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert f"{tests} passed" in result.stdout and "failed" not in result.stdout  # every child test ran


child = pytest.mark.skipif(IN_PROCESS is None, reason="runs in the child pytest under a ComfyUI copy's python "
                                                      "(test_in_process_against_comfyui)")


@pytest.fixture(scope="module")
def pack():
    sys.path.insert(0, IN_PROCESS)
    from comfy.cli_args import args

    args.cpu = True
    args.preview_method = args.preview_method  # ComfyUI's own setting
    import nodes

    assert asyncio.run(nodes.load_custom_node(str(REPO))) is not False
    module = next(m for name, m in sys.modules.items() if name.endswith("nodes.comfy_avdit"))
    return nodes.NODE_CLASS_MAPPINGS, module


@pytest.fixture(scope="module")
def demo(pack):
    nodes, _ = pack
    model, codecs = nodes["AVDiTLoader"].execute("avdit-toneshapes-demo.safetensors", "auto").args
    return model, codecs


@pytest.fixture(scope="module")
def clip(pack):
    from avdit import media

    m = media.decode(CLIP)
    return m.frames, m.fps, {"waveform": m.waveform[None], "sample_rate": m.sample_rate}


def continued(pack, demo, clip, given_seconds=0.625):
    nodes, _ = pack
    images, fps, audio = clip
    latent = nodes["AVDiTEncode"].execute(demo[1], fps=fps, duration=0.0, resize="crop", images=images, audio=audio).args[0]
    return nodes["AVDiTNoiseLevelMask"].execute(latent, "continue", given_seconds, 0.5, 1.5, 0.5, 0.5, "both", 0.0, 0.0, "").args


def custom_advanced(model, guider, latent, steps=4, sampler="euler"):
    from comfy_extras import nodes_custom_sampler as ncs

    noise = ncs.RandomNoise.execute(0).args[0]
    sigmas = ncs.BasicScheduler.execute(model, "simple", steps, 1.0).args[0]
    return ncs.SamplerCustomAdvanced.execute(noise, guider, ncs.KSamplerSelect.execute(sampler).args[0], sigmas, latent).args[0]


class Recorder:
    """Forward hook on the AVDiT network: the batch and per-frame levels of every call."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.model.diffusion_model.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        video, audio, video_levels, audio_levels = inputs[:4]
        self.calls.append((video.shape[0], video_levels.clone(), audio_levels.clone()))

    def close(self):
        self.handle.remove()


@child
def test_the_loader_gives_a_core_model_that_comfyui_loads_and_can_load_partially(pack, demo):
    import comfy.model_management as mm
    import comfy.model_patcher

    model, codecs = demo
    assert isinstance(model, comfy.model_patcher.ModelPatcher)
    assert model.model_dtype() == torch.float32  # auto on the CPU
    linears = [m for m in model.model.diffusion_model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(hasattr(m, "comfy_cast_weights") for m in linears)  # what --lowvram's partial loading casts
    latent = pack[0]["AVDiTEmptyLatent"].execute(codecs, 0.625, 1).args[0]
    pack[0]["AVDiTSampler"].execute(model, latent, 0, 1, "euler", "simple", 1.0, 1.0, "all", 1.0)
    assert any(loaded.model is model for loaded in mm.current_loaded_models)


@child
def test_monl_guider_in_core_sampler_custom_advanced_gives_the_given_blocks_back_exactly(pack, demo, clip):
    nodes, _ = pack
    model, codecs = demo
    latent, summary = continued(pack, demo, clip)
    assert summary.startswith("2.125 s clip. video: given 0-0.625 s")
    guider = nodes["AVDiTGuider"].execute(model, 3.0, 3.0, "all").args[0]
    out = custom_advanced(model, guider, latent)
    given_video, given_audio = latent["samples"].unbind()
    video, audio = out["samples"].unbind()
    assert torch.equal(video[:, :, :2], given_video[:, :, :2])  # latent frames 0 and 1: the first 0.625 s
    assert torch.equal(audio[:, :, :31], given_audio[:, :, :31])  # 31 audio frames of 20 ms inside 0.625 s
    assert (video[:, :, 2:] - given_video[:, :, 2:]).abs().mean() > 0.05  # the rest is generated
    images, _, fps, _ = nodes["AVDiTDecode"].execute(codecs, out).args
    assert images.shape == (17, 64, 64, 3) and fps == 8.0


def pipeline_reference(pack, model, latent, levels, steps, guidance):
    """The same latent sampled by AVDiTPipeline.sample; returns its output and its two noises."""
    from avdit import sampling
    from avdit.monl import NoiseLevelMask

    _, module = pack
    pipeline = module.avdit_pipeline(model)
    av = dataclasses.replace(module.from_native(latent, "test"), mask=NoiseLevelMask(*levels))
    made = []
    original = sampling.MonlDenoiser.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    sampling.MonlDenoiser.__init__ = init
    try:
        reference = pipeline.sample(av, steps=steps, seed=0, video_guidance=guidance, audio_guidance=guidance)
    finally:
        sampling.MonlDenoiser.__init__ = original
    return av, reference, made[0].start_noise, made[0].uncond_noise


@child
@pytest.mark.parametrize("kind", ["continue", "fractional"])
def test_the_node_path_samples_what_the_pipeline_samples_for_the_same_noise(pack, demo, clip, kind):
    """Core sampling + MoNL Guider against AVDiTPipeline.sample (our own MoNL sampler): the same
    x0 path, so the guidance formula, the held levels and the per-token timesteps all agree."""
    import comfy.nested_tensor
    import comfy.samplers
    import comfy.utils

    nodes, module = pack
    model, _ = demo
    latent, _ = continued(pack, demo, clip)
    if kind == "continue":
        levels = module.mask_levels(latent)
    else:  # frame 1 and the first 40 audio frames at 0.45: held at 0.375 (the sampler level below) until then
        levels = (torch.tensor([0.0, 0.45, 1, 1, 1]), torch.where(torch.arange(107) < 40, 0.45, 1.0))
    av, reference, start_noise, uncond_noise = pipeline_reference(pack, model, latent, levels, 8, 3.0)
    given = module.to_native(av)
    guider = nodes["AVDiTGuider"].execute(model, 3.0, 3.0, "all").args[0]
    guider.unconditional_noise = uncond_noise
    shapes = [av.video.shape, av.audio.shape]
    noise = comfy.nested_tensor.NestedTensor(comfy.utils.unpack_latents(start_noise.reshape(1, 1, -1), shapes))
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 8)
    out = guider.sample(noise, given["samples"], comfy.samplers.sampler_object("euler"), sigmas,
                        denoise_mask=given["noise_mask"], disable_pbar=True, seed=0)
    video, audio = out.unbind()
    assert (video - reference.video).abs().max() < 1e-4
    assert (audio - reference.audio).abs().max() < 1e-4


@child
def test_guidance_is_one_batched_model_call_per_step_and_the_levels_are_the_masks(pack, demo, clip):
    """At a hook on the network: one call per step, conditional and unconditional passes in one
    batch; the conditional pass sees level 0 on the given frames, 0.375 on a frame held at 0.45
    (until the sampler comes down to it) and sigma elsewhere; the unconditional pass sees the
    conditioning frames at the top level 1."""
    nodes, module = pack
    model, _ = demo
    latent, _ = continued(pack, demo, clip)
    video_mask, audio_mask = latent["noise_mask"].unbind()
    video_mask = video_mask.clone()
    video_mask[:, :, 1] = 0.45  # latent frame 1 (0.125 .. 0.625 s) held at 0.45 instead of given
    held = {**latent, "noise_mask": comfy_nested((video_mask, audio_mask))}
    guider = nodes["AVDiTGuider"].execute(model, 3.0, 1.0, "all").args[0]
    recorder = Recorder(model)
    try:
        custom_advanced(model, guider, held, steps=8)
    finally:
        recorder.close()
    sigmas = [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert [batch for batch, _, _ in recorder.calls] == [2] * 8  # one call a step, both passes in it
    for (batch, video_levels, audio_levels), sigma in zip(recorder.calls, sigmas):
        order = [0, 1] if video_levels[0, 0] == 0 else [1, 0]  # ComfyUI may batch the passes either way round
        (cond, uncond), audio_levels = video_levels[order], audio_levels[order]
        assert cond[0] == 0 and torch.allclose(cond[2:], torch.full((3,), sigma))
        assert cond[1].item() == pytest.approx(0.375 if sigma > 0.375 else sigma, abs=1e-6)
        conditioning = [0, 1] if sigma > 0.375 else [0]
        assert torch.allclose(uncond[conditioning], torch.ones(len(conditioning)))
        assert torch.equal(audio_levels[0][:31], torch.zeros(31)) and torch.equal(audio_levels[1][:31], torch.ones(31))


def comfy_nested(tensors):
    import comfy.nested_tensor

    return comfy.nested_tensor.NestedTensor(tensors)


@child
def test_an_empty_latent_of_a_batch_decodes_to_every_clip(pack, demo):
    nodes, _ = pack
    model, codecs = demo
    latent = nodes["AVDiTEmptyLatent"].execute(codecs, 2.125, 2).args[0]
    assert latent["samples"].unbind()[0].shape[0] == 2 and "noise_mask" not in latent
    out = nodes["AVDiTSampler"].execute(model, latent, 3, 2, "euler", "simple", 3.0, 3.0, "all", 1.0).args[0]
    images, audio, fps, video = nodes["AVDiTDecode"].execute(codecs, out).args
    assert images.shape == (34, 64, 64, 3)  # two clips of 17 frames, one after another
    assert audio["waveform"].shape == (2, 1, 34000)
    assert video.get_components().audio["waveform"].shape == (1, 1, 68000)
    assert not torch.equal(images[:17], images[17:])  # each clip its own noise


@child
def test_the_mask_asks_for_the_model_when_a_latent_lost_its_time_grid(pack, demo, clip):
    nodes, module = pack
    model, _ = demo
    latent, _ = continued(pack, demo, clip)
    bare = {"samples": latent["samples"]}  # as core nodes that rebuild a latent leave it
    arguments = ("inpaint", 1.0, 0.5, 1.5, 0.5, 0.5, "both", 0.0, 0.0, "")
    with pytest.raises(ValueError, match="carries no time grid.*connect its model to the node.s model input"):
        nodes["AVDiTNoiseLevelMask"].execute(bare, *arguments)
    out, summary = nodes["AVDiTNoiseLevelMask"].execute(bare, *arguments, model=model).args
    # a latent frame is given only where its whole span is: video frame 1 (0.125-0.625 s) reaches into 0.5-1.5 s
    assert summary.startswith("2.125 s clip. video: given 0-0.125 s, 1.625-2.125 s; generated the rest; audio: given 0-0.5 s, 1.5-2.125 s")
    wrong = {**latent, module.LATENT_KEY: {**latent[module.LATENT_KEY], "layout": {**latent[module.LATENT_KEY]["layout"], "num_frames": 33, "num_samples": 66000}}}
    with pytest.raises(ValueError, match="has 5 video and 107 audio latent frames.*has 9 and 207"):
        nodes["AVDiTNoiseLevelMask"].execute(wrong, *arguments)


@child
@pytest.mark.parametrize("sampler, scheduler", [("dpmpp_2m", "karras"), ("heun", "simple"), ("euler_ancestral", "normal")])
def test_core_samplers_and_schedulers_keep_the_given_blocks_after_core_separate_and_concat(pack, demo, clip, sampler, scheduler):
    """A latent split by core Separate AV Latent and joined again by Concat AV Latent, sampled by core
    SamplerCustomAdvanced with other core samplers and schedulers and the MoNL Guider."""
    from comfy_extras import nodes_custom_sampler as ncs
    from comfy_extras import nodes_lt

    nodes, _ = pack
    model, codecs = demo
    latent, _ = continued(pack, demo, clip)
    video, audio = nodes_lt.LTXVSeparateAVLatent.execute(latent).args
    joined = nodes_lt.LTXVConcatAVLatent.execute(video, audio).args[0]
    guider = nodes["AVDiTGuider"].execute(model, 3.0, 3.0, "all").args[0]
    noise = ncs.RandomNoise.execute(2).args[0]
    sigmas = ncs.BasicScheduler.execute(model, scheduler, 3, 1.0).args[0]
    out = ncs.SamplerCustomAdvanced.execute(noise, guider, ncs.KSamplerSelect.execute(sampler).args[0], sigmas, joined).args[0]
    given_video, given_audio = latent["samples"].unbind()
    out_video, out_audio = out["samples"].unbind()
    assert torch.equal(out_video[:, :, :2], given_video[:, :, :2]) and torch.equal(out_audio[:, :, :31], given_audio[:, :, :31])
    assert torch.isfinite(out_video).all() and (out_video[:, :, 2:] - given_video[:, :, 2:]).abs().mean() > 0.05
    images = nodes["AVDiTDecode"].execute(codecs, out).args[0]
    assert images.shape == (17, 64, 64, 3)

"""The AVDiT nodes (ComfyUI V3 schema). Each node adapts ComfyUI types to `avdit.pipeline`;
the work itself is in `avdit/` and in `nodes/adapters.py`.

Only the V3 surface that ComfyUI 0.9.1 and 0.33 share is used (comfy_api/latest/_io.py of both).
The model is a core MODEL and the latents are core audio-video LATENTs (see `comfy_avdit`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from fractions import Fraction

import torch

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import latent_preview
from comfy.cli_args import args
from comfy_api.latest import ComfyExtension, InputImpl, Types, io, ui

from avdit.monl import TASKS
from avdit.pipeline import ASSETS, AVDiTPipeline
from avdit.sampling import DEFAULT_GUIDANCE

from . import adapters, comfy_avdit

log = logging.getLogger("avdit")

AVDiTCodecsType = io.Custom("AVDIT_CODECS")
CATEGORY = "AVDiT"
MODEL_FOLDER = "avdit"
EXAMPLE_INPUTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows", "input")


def register_model_folder() -> None:
    """models/avdit/ (plus any 'avdit:' paths from extra_model_paths.yaml), safetensors only."""
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    paths = list(folder_paths.folder_names_and_paths.get(MODEL_FOLDER, ([], set()))[0])
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, {".safetensors"})


def copy_example_inputs() -> None:
    """Put the examples' input clips into ComfyUI's input folder, so Load Video finds them."""
    if not os.path.isdir(EXAMPLE_INPUTS):
        return
    target = folder_paths.get_input_directory()
    for name in sorted(os.listdir(EXAMPLE_INPUTS)):
        destination = os.path.join(target, name)
        if name.endswith(".mp4") and not os.path.exists(destination):
            try:
                os.makedirs(target, exist_ok=True)
                shutil.copyfile(os.path.join(EXAMPLE_INPUTS, name), destination)
            except OSError as e:  # a read-only input folder only costs the examples their clip
                log.warning("AVDiT: could not copy example input %s to %s: %s", name, target, e)


def seconds_input(id: str, default: float, tooltip: str, min: float = 0.0) -> io.Float.Input:
    """A time in seconds, to the millisecond. (The page shows as many decimals as the step has,
    so a step of 1/8 s would show 2.125 as 2.1.)"""
    return io.Float.Input(id, default=default, min=min, max=600.0, step=0.001, round=0.001, tooltip=tooltip)


def checkpoint_path(name: str) -> str:
    path = folder_paths.get_full_path(MODEL_FOLDER, name) or adapters.bundled_checkpoints(ASSETS).get(name)
    if path is None:
        raise FileNotFoundError(f"AVDiTLoader: checkpoint {name!r} is neither in models/{MODEL_FOLDER}/ nor bundled with the pack")
    return path


@contextlib.contextmanager
def on_vae_device(codecs: adapters.AVDiTCodecs):
    """Run the codecs on ComfyUI's VAE device (the GPU when there is one), then offload them."""
    device, offload = mm.vae_device(), mm.vae_offload_device()
    if device != offload:
        mm.free_memory(codecs.size_bytes() * 2, device)
    codecs.to(device)
    try:
        yield
    finally:
        codecs.to(offload)


def on_intermediate_device(latent):
    """An AVLatent on ComfyUI's intermediate device (the CPU unless --gpu-only), where latents cross nodes."""
    device = mm.intermediate_device()
    return dataclasses.replace(latent, video=latent.video.to(device), audio=latent.audio.to(device))


def native(latent) -> dict:
    """An AVLatent as the native AV LATENT, on ComfyUI's intermediate device."""
    return comfy_avdit.to_native(on_intermediate_device(latent))


class AVDiTLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        choices = adapters.checkpoint_choices(folder_paths.get_filename_list(MODEL_FOLDER), adapters.bundled_checkpoints(ASSETS))
        return io.Schema(
            node_id="AVDiTLoader",
            display_name="AVDiT Loader",
            category=CATEGORY,
            description="Loads an AVDiT checkpoint from models/avdit/ or the pack's bundled models: the denoiser as a MODEL "
                        "under ComfyUI's model management, and its audio and video codecs.",
            inputs=[
                io.Combo.Input("checkpoint", options=choices, tooltip="A .safetensors AVDiT checkpoint from models/avdit/ or bundled with the pack (a file in models/avdit/ hides a bundled one of the same name)."),
                io.Combo.Input("dtype", options=list(adapters.DTYPE_CHOICES), default="auto", tooltip="Weight precision of the denoiser. auto: what ComfyUI picks for its device (fp32 on CPU). The codecs always run in fp32."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The AVDiT denoiser: sample with MoNL KSampler, or with SamplerCustomAdvanced and the MoNL Guider."),
                AVDiTCodecsType.Output(display_name="codecs", tooltip="The checkpoint's video and audio codecs, for AVDiT Encode, Empty Latent and Decode."),
            ],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        choices = adapters.checkpoint_choices(folder_paths.get_filename_list(MODEL_FOLDER), adapters.bundled_checkpoints(ASSETS))
        if checkpoint not in choices:
            return (f"AVDiTLoader: checkpoint {checkpoint!r} is not in models/{MODEL_FOLDER}/ nor bundled; "
                    f"available: {', '.join(choices) or 'none (put a .safetensors AVDiT checkpoint in models/avdit/)'}")
        return True

    @classmethod
    def execute(cls, checkpoint: str, dtype: str) -> io.NodeOutput:
        path = checkpoint_path(checkpoint)
        load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
        weight_dtype = adapters.resolve_dtype(dtype, mm.unet_dtype(load_device, supported_dtypes=[torch.bfloat16, torch.float16, torch.float32]))
        pipeline = AVDiTPipeline.load(path, device=mm.vae_offload_device(), dtype=weight_dtype)
        model = comfy_avdit.model_patcher(pipeline, load_device, offload_device)
        return io.NodeOutput(model, adapters.AVDiTCodecs(pipeline, checkpoint))


class AVDiTEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTEncode",
            display_name="AVDiT Encode",
            category=CATEGORY,
            description="Encodes video frames and/or audio into an audio-video latent of a total duration; a missing modality and the time after the inputs end are left to generate.",
            inputs=[
                AVDiTCodecsType.Input("codecs", tooltip="The AVDiT codecs (from AVDiT Loader) that encode the inputs."),
                io.Image.Input("images", optional=True, tooltip="Video frames (IMAGE batch, one image per frame), e.g. from Get Video Components. Leave empty to generate the video."),
                io.Float.Input("fps", default=8.0, min=0.01, max=1000.0, step=0.001, tooltip="Frame rate of the images (Get Video Components gives it). Converted to the model's frame rate."),
                io.Audio.Input("audio", optional=True, tooltip="Audio, e.g. from Load Audio or Get Video Components. Leave empty to generate the audio."),
                seconds_input("duration", 0.0, "Total length of the clip in seconds; the time after the inputs end is generated. 0: as long as the longer input."),
                io.Combo.Input("resize", options=["crop", "pad", "stretch"], default="crop", tooltip="How frames of another size reach the model's size: centre crop, fit inside with black bars, or stretch."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="A native audio-video latent (video and audio, as core Concat AV Latent makes), with what the inputs cover marked as given in its noise mask.")],
        )

    @classmethod
    def execute(cls, codecs, fps: float, duration: float, resize: str, images=None, audio=None) -> io.NodeOutput:
        with on_vae_device(codecs):
            latent = adapters.encode(codecs, images, fps, audio, duration, resize)
        return io.NodeOutput(native(latent))


class AVDiTEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTEmptyLatent",
            display_name="AVDiT Empty Latent",
            category=CATEGORY,
            description="An audio-video latent of a duration with nothing given: everything is generated (joint generation).",
            inputs=[
                AVDiTCodecsType.Input("codecs", tooltip="The AVDiT codecs (from AVDiT Loader) whose layout (frame rate, size, sample rate) the latent follows."),
                seconds_input("duration", 2.125, "Length of the clip in seconds (rounded up to the model's frame grid).", min=0.125),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Number of clips to generate at once."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="An empty native audio-video latent.")],
        )

    @classmethod
    def execute(cls, codecs, duration: float, batch_size: int = 1) -> io.NodeOutput:
        return io.NodeOutput(native(codecs.pipeline.empty_latent(duration, batch=batch_size)))


class AVDiTNoiseLevelMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        level = dict(default=0.0, min=0.0, max=0.99, step=0.01)
        return io.Schema(
            node_id="AVDiTNoiseLevelMask",
            display_name="AVDiT Noise Level Mask",
            category=CATEGORY,
            description="Sets the task: which (modality, time) blocks of an audio-video latent are given and which are generated, as a Mixture-of-Noise-Levels noise mask.",
            inputs=[
                io.Latent.Input("latent", tooltip="The audio-video latent to set the task on (from AVDiT Encode or Empty Latent)."),
                io.Combo.Input("task", options=list(TASKS), default="continue", tooltip="joint: generate both. a2v: audio given, make video. v2a: video given, make audio. continue: the first given_seconds given. inpaint: all but start..end given. interpolate: the first head_seconds and last tail_seconds given. custom: levels per (modality, segment)."),
                seconds_input("given_seconds", 1.0, "continue: seconds from the start that are given."),
                seconds_input("start", 0.5, "inpaint: start of the span to regenerate, in seconds."),
                seconds_input("end", 1.5, "inpaint: end of the span to regenerate, in seconds."),
                seconds_input("head_seconds", 0.5, "interpolate: seconds at the start that are given."),
                seconds_input("tail_seconds", 0.5, "interpolate: seconds at the end that are given."),
                io.Combo.Input("modalities", options=list(adapters.MODALITY_CHOICES), default="both", tooltip="continue / inpaint / interpolate: which modalities the given spans hold (e.g. audio: keep the audio there, generate all of the video)."),
                io.Float.Input("video_given_level", tooltip="Noise level on given video blocks: 0 keeps them exactly; 0 < l < 1 keeps their coarse structure and re-draws detail (with the MoNL Guider or KSampler: the given content noised to l, held until the sampler comes down to l).", **level),
                io.Float.Input("audio_given_level", tooltip="Noise level on given audio blocks: 0 keeps them exactly; 0 < l < 1 keeps their coarse structure and re-draws detail.", **level),
                io.String.Input("levels", default="video: 0 1 1 1 1\naudio: 0 1 1 1 1", multiline=True, tooltip="custom: one row for video and one for audio, one level per segment (0 given, 1 generated); the error message says how many segments the clip has."),
                io.Model.Input("model", optional=True, tooltip="The model the latent is for: needed for LTX-2 and MiniMax H3 latents, and for AVDiT latents that lost their time grid (core nodes that rebuild a latent drop it)."),
                io.Float.Input("fps", default=25.0, min=0.01, max=1000.0, step=0.001, optional=True, tooltip="LTX-2 latents: the clip's frame rate (the frame_rate of its conditioning), which places its latent frames in time. AVDiT latents carry their own; MiniMax H3's is the model's (24 fps)."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The latent with the task's noise mask (per-token noise levels: 0 given, 1 generated)."),
                io.String.Output(display_name="summary", tooltip="What is given and what is generated, in seconds."),
            ],
        )

    @classmethod
    def execute(cls, latent, task, given_seconds, start, end, head_seconds, tail_seconds, modalities,
                video_given_level, audio_given_level, levels, model=None, fps=25.0) -> io.NodeOutput:
        av = comfy_avdit.grid_of(latent, "AVDiTNoiseLevelMask", model, fps)
        av = adapters.set_task(av, task, given_seconds=given_seconds, start=start, end=end,
                               head_seconds=head_seconds, tail_seconds=tail_seconds, modalities=modalities,
                               video_given_level=video_given_level, audio_given_level=audio_given_level, levels=levels)
        return io.NodeOutput(comfy_avdit.replace_native(latent, av), adapters.describe_mask(av))


def guidance_inputs() -> list:
    guidance = dict(default=DEFAULT_GUIDANCE, min=0.0, max=30.0, step=0.1, round=0.01)
    return [
        io.Float.Input("video_guidance", tooltip="Guidance scale on video (1 = off): how strongly the video follows the given blocks.", **guidance),
        io.Float.Input("audio_guidance", tooltip="Guidance scale on audio (1 = off): how strongly the audio follows the given blocks.", **guidance),
        io.Combo.Input("guidance_drop", options=list(comfy_avdit.MODALITY_DROPS), default="all", tooltip="The unconditional variant of guidance: which given blocks it replaces by noise (all, only the video, or only the audio)."),
    ]


class AVDiTGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTGuider",
            display_name="MoNL Guider",
            category=CATEGORY,
            description="Guidance through noise levels for SamplerCustomAdvanced, on AVDiT or any audio-video model with per-token "
                        "timesteps from its noise mask (LTX-2, MiniMax H3): the unconditional pass replaces the given blocks by noise, with "
                        "separate video and audio scales; fractional mask levels hold the given content noised to that level. "
                        "x0 = C + (s_av - 1)(C - U) + (text_guidance - 1)(C - N), all passes in one model call (MiniMax H3, which takes "
                        "a batch of one: one call per pass).",
            inputs=[
                io.Model.Input("model", tooltip="The model to guide (AVDiT, or LTX-2 / MiniMax H3 from core loaders)."),
                *guidance_inputs(),
                io.Conditioning.Input("positive", optional=True, tooltip="Text conditioning (LTX-2, MiniMax H3). AVDiT takes none: leave empty."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative text conditioning (LTX-2, MiniMax H3), used when text_guidance is not 1."),
                io.Float.Input("text_guidance", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01, optional=True, tooltip="Text guidance scale (1 = off): positive against negative, added to the noise-level guidance."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, optional=True, tooltip="Seed of the noise the unconditional pass puts on the given blocks."),
            ],
            outputs=[io.Guider.Output(display_name="guider", tooltip="For SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, video_guidance, audio_guidance, guidance_drop, positive=None, negative=None,
                text_guidance=1.0, seed=0) -> io.NodeOutput:
        guider = comfy_avdit.MonlGuider(model, video_guidance, audio_guidance, guidance_drop, text_guidance, seed)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


class AVDiTSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTSampler",
            display_name="MoNL KSampler",
            category=CATEGORY,
            description="Generates the blocks the latent's noise mask asks for with an AVDiT, through the MoNL Guider and ComfyUI's samplers; given blocks come back unchanged.",
            inputs=[
                io.Model.Input("model", tooltip="The AVDiT to sample with (from AVDiT Loader)."),
                io.Latent.Input("latent", tooltip="The audio-video latent and its noise mask (from AVDiT Noise Level Mask, Encode or Empty Latent)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="The random seed of the noise (drawn on the CPU: one seed gives one output on any device)."),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Number of denoising steps."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="The sampling algorithm (ComfyUI's own)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple", tooltip="How the noise levels are spaced over the steps (ComfyUI's own)."),
                *guidance_inputs(),
                io.Float.Input("shift", default=1.0, min=0.01, max=100.0, step=0.01, tooltip="Moves steps towards high noise (> 1) or low noise (< 1); 1 = the scheduler as is."),
                io.Combo.Input("long_latents", options=list(adapters.LONG_LATENTS), default="window by window", optional=True,
                               tooltip="A latent longer than the model's training window (2.125 s for the demo model): "
                                       "'window by window' makes it one training window at a time, each given the last 0.625 s "
                                       "of what came before, as `python -m avdit generate` does; 'one pass' samples it whole, "
                                       "beyond the length the model was trained on. Shorter latents are sampled the same either way."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The generated audio-video latent.")],
        )

    @classmethod
    def execute(cls, model, latent, seed, steps, sampler_name, scheduler, video_guidance, audio_guidance,
                guidance_drop, shift, long_latents="window by window") -> io.NodeOutput:
        windowed = adapters.windowed(long_latents)
        pipeline = comfy_avdit.avdit_pipeline(model)
        av = comfy_avdit.from_native(latent, "MoNL KSampler", pipeline)
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
        if shift != 1.0:
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        sampler = comfy.samplers.sampler_object(sampler_name)
        bar = comfy.utils.ProgressBar(steps)
        previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)

        def progress(info):
            done, total = adapters.progress(info, steps)
            preview = previewer.decode_latent_to_preview_image("JPEG", info["denoised"]) if previewer else None
            bar.update_absolute(done, total, preview)

        def sample_window(window, step):
            given = comfy_avdit.to_native(window)
            noise = comfy.sample.prepare_noise(given["samples"], seed)
            guider = comfy_avdit.MonlGuider(model, video_guidance, audio_guidance, guidance_drop, seed=seed)
            callback = lambda i, x0, x, total: step({"i": i, "denoised": x0})
            out = guider.sample(noise, given["samples"], sampler, sigmas, denoise_mask=given.get("noise_mask"),
                                callback=callback, disable_pbar=True, seed=seed)
            video, audio = (t.to(mm.intermediate_device()) for t in out.unbind())
            return comfy_avdit.sampled(window, video, audio)

        if windowed:
            out = pipeline.sample_windowed(av, sample_window, callback=progress)
        else:
            out = sample_window(av, lambda info: progress({**info, "window": 0, "windows": 1}))
        return io.NodeOutput(comfy_avdit.replace_native(latent, on_intermediate_device(out), with_mask=False))


class AVDiTDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTDecode",
            display_name="AVDiT Decode",
            category=CATEGORY,
            description="Decodes an audio-video latent into frames, audio and their frame rate, and a VIDEO for core Save Video. A batch of clips comes out one after another.",
            inputs=[
                AVDiTCodecsType.Input("codecs", tooltip="The AVDiT codecs (from AVDiT Loader) that decode the latent."),
                io.Latent.Input("latent", tooltip="The audio-video latent to decode (usually from MoNL KSampler or SamplerCustomAdvanced)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The video frames (one IMAGE per frame; the clips of a batch one after another)."),
                io.Audio.Output(display_name="audio", tooltip="The audio at the model's sample rate (one batch item per clip)."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the images."),
                io.Video.Output(display_name="video", tooltip="Frames and audio as one VIDEO (the clips of a batch one after another), for Save Video / Preview."),
            ],
        )

    @classmethod
    def execute(cls, codecs, latent) -> io.NodeOutput:
        av = comfy_avdit.from_native(latent, "AVDiTDecode", codecs.pipeline)
        with on_vae_device(codecs):
            frames, waveform, fps, rate = codecs.pipeline.decode(av)
        images, audio, video_audio = adapters.decoded_to_comfy(frames, waveform, rate)
        video = InputImpl.VideoFromComponents(Types.VideoComponents(
            images=images, audio=video_audio, frame_rate=Fraction(fps).limit_denominator(1001)))
        return io.NodeOutput(images, audio, float(fps), video)


class AVDiTSaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AVDiTSaveVideo",
            display_name="AVDiT Save Video",
            category=CATEGORY,
            description="Saves a video with its audio as one MP4 (H.264 + AAC) in the output folder, with the prompt and workflow in its metadata: drop the file on ComfyUI to get the workflow back.",
            inputs=[
                io.Video.Input("video", tooltip="The video to save (from AVDiT Decode, Create Video or Load Video)."),
                io.String.Input("filename_prefix", default="avdit/AVDiT", tooltip="Name of the file inside the output folder; may contain subfolders but cannot leave the output folder."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filename_prefix):
        if isinstance(filename_prefix, str):  # None when it comes from another node's output
            problem = adapters.check_filename_prefix(filename_prefix)
            if problem:
                return f"AVDiTSaveVideo: {problem}"
        return True

    @classmethod
    def execute(cls, video, filename_prefix: str) -> io.NodeOutput:
        from avdit.media import write_mp4

        problem = adapters.check_filename_prefix(filename_prefix)
        if problem:
            raise ValueError(f"AVDiTSaveVideo: {problem}")
        components = video.get_components()
        images = components.images
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), images.shape[2], images.shape[1])
        os.makedirs(folder, exist_ok=True)
        file = f"{filename}_{counter:05}_.mp4"
        waveform, rate = None, None
        if components.audio is not None:
            waveform, rate = adapters.audio_to_waveform(components.audio)
        metadata = None if args.disable_metadata else adapters.video_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo)
        write_mp4(os.path.join(folder, file), images.cpu(), Fraction(components.frame_rate), waveform, rate, metadata)
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


NODES = [AVDiTLoader, AVDiTEncode, AVDiTEmptyLatent, AVDiTNoiseLevelMask, AVDiTGuider, AVDiTSampler, AVDiTDecode, AVDiTSaveVideo]


class AVDiTExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


register_model_folder()
copy_example_inputs()

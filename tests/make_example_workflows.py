"""Write example_workflows/NAME.json (UI format) and example_workflows/api/NAME.json (API format)
from the graphs below, with each node's widget order and defaults from a real server's /object_info.

    COMFYUI_PATH=/path/to/ComfyUI-0.9.1 COMFYUI_PYTHON=/path/to/python python -m tests.make_example_workflows

Use the oldest supported ComfyUI (0.9.1): newer ones may add inputs or outputs to core nodes,
which the older page would not find.

The loader gives the denoiser as a core MODEL (output 0, for the samplers and the MoNL Guider) and
the codecs (output 1, for Encode, Empty Latent and Decode).

Run it after changing a node's inputs; tests/test_nodes.py and the page tests check the files.
"""
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from tests.comfy_helpers import EXAMPLES, ComfyServer

CHECKPOINT = "avdit-toneshapes-demo.safetensors"
CLIP = "avdit_toneshapes.mp4"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class Graph:
    """Nodes in execution order; an input is a value or `link(node, output index)`."""

    def __init__(self, note: str):
        self.note, self.nodes = note, []

    def add(self, class_type: str, **inputs) -> int:
        self.nodes.append({"id": len(self.nodes) + 1, "class_type": class_type, "inputs": inputs})
        return len(self.nodes)


def link(node: int, output: int) -> tuple:
    return ("link", node, output)


# --- the examples ----------------------------------------------------------------------------------
def load_clip(g: Graph) -> int:
    video = g.add("LoadVideo", file=CLIP)
    return g.add("GetVideoComponents", video=link(video, 0))  # images 0, audio 1, fps 2


MODEL, CODECS = 0, 1  # the loader's outputs


def sample_and_save(g: Graph, loader: int, latent: tuple, prefix: str) -> None:
    sampled = g.add("AVDiTSampler", model=link(loader, MODEL), latent=latent, seed=1, steps=25)
    decoded = g.add("AVDiTDecode", codecs=link(loader, CODECS), latent=link(sampled, 0))
    g.add("AVDiTSaveVideo", video=link(decoded, 3), filename_prefix=prefix)


def custom_sample_and_save(g: Graph, loader: int, latent: tuple, prefix: str) -> None:
    """Core SamplerCustomAdvanced with the MoNL Guider, euler, simple schedule, 25 steps; core Save Video."""
    noise = g.add("RandomNoise", noise_seed=1)
    guider = g.add("AVDiTGuider", model=link(loader, MODEL), seed=1)
    sampler = g.add("KSamplerSelect", sampler_name="euler")
    sigmas = g.add("BasicScheduler", model=link(loader, MODEL), scheduler="simple", steps=25, denoise=1.0)
    sampled = g.add("SamplerCustomAdvanced", noise=link(noise, 0), guider=link(guider, 0), sampler=link(sampler, 0),
                    sigmas=link(sigmas, 0), latent_image=latent)
    decoded = g.add("AVDiTDecode", codecs=link(loader, CODECS), latent=link(sampled, 0))  # output 0: sampled, 1: denoised
    g.add("SaveVideo", video=link(decoded, 3), filename_prefix=prefix)


def task_example(task: str, note: str, duration: float = 0.0, video: bool = True, audio: bool = True,
                 custom_sampler: bool = False, **times) -> Graph:
    g = Graph(note)
    loader = g.add("AVDiTLoader", checkpoint=CHECKPOINT)
    clip = load_clip(g)
    given = {"images": link(clip, 0)} if video else {}
    given.update({"audio": link(clip, 1)} if audio else {})
    encoded = g.add("AVDiTEncode", codecs=link(loader, CODECS), fps=link(clip, 2), duration=duration, **given)
    masked = g.add("AVDiTNoiseLevelMask", latent=link(encoded, 0), task=task, **times)
    if custom_sampler:
        custom_sample_and_save(g, loader, link(masked, 0), f"avdit/{task}_custom_sampler")
    else:
        sample_and_save(g, loader, link(masked, 0), f"avdit/{task}")
    return g


def joint_example() -> Graph:
    g = Graph("Joint generation: video and audio together from noise, 2.125 s.")
    loader = g.add("AVDiTLoader", checkpoint=CHECKPOINT)
    empty = g.add("AVDiTEmptyLatent", codecs=link(loader, CODECS), duration=2.125)
    sample_and_save(g, loader, link(empty, 0), "avdit/joint")
    return g


def extend_example(windows: int = 4, window_seconds: float = 2.0) -> Graph:
    g = Graph("Extend the 2.125 s clip to 10.125 s, 2 s per window: each window continues the clip so far "
              "(its frames and audio given) and adds 2 s.")
    loader = g.add("AVDiTLoader", checkpoint=CHECKPOINT)
    clip = load_clip(g)
    images, audio, fps, seconds = link(clip, 0), link(clip, 1), link(clip, 2), 2.125
    for window in range(windows):
        encoded = g.add("AVDiTEncode", codecs=link(loader, CODECS), images=images, audio=audio, fps=fps,
                        duration=seconds + window_seconds)
        masked = g.add("AVDiTNoiseLevelMask", latent=link(encoded, 0), task="continue", given_seconds=seconds)
        sampled = g.add("AVDiTSampler", model=link(loader, MODEL), latent=link(masked, 0), seed=window + 1, steps=25)
        decoded = g.add("AVDiTDecode", codecs=link(loader, CODECS), latent=link(sampled, 0))
        images, audio, fps, seconds = link(decoded, 0), link(decoded, 1), link(decoded, 2), seconds + window_seconds
    g.add("AVDiTSaveVideo", video=link(decoded, 3), filename_prefix="avdit/extend_10s")
    return g


# --- MoNL on LTX-2: the pack's mask and guider on ComfyUI's own LTX-2 (model file names of its LTX-2 templates) ---
LTX2_CHECKPOINT = "ltx-2-19b-dev-fp8.safetensors"
LTX2_TEXT_ENCODER = "gemma_3_12B_it_fp4_mixed.safetensors"
LTX2_SIZE, LTX2_FPS, LTX2_FRAMES = 512, 8.0, 17  # the bundled clip: 17 frames (1 + 8k, as LTX-2's VAE takes) at 8 fps


def ltx2_example(task: str, note: str, prompt: str, video: bool = True, audio: bool = True, **times) -> Graph:
    """The bundled clip's given modalities encoded by LTX-2's VAEs, a missing one as LTX-2's empty latent, joined
    by core Concat AV Latent; the pack's mask (on LTX-2's grid at the clip's fps) and MoNL Guider (with LTX-2's
    text conditioning) in core SamplerCustomAdvanced; LTX-2's decoders, Create Video, Save Video."""
    g = Graph(note)
    checkpoint = g.add("CheckpointLoaderSimple", ckpt_name=LTX2_CHECKPOINT)  # MODEL 0, CLIP 1, VAE 2
    text_encoder = g.add("LTXAVTextEncoderLoader", text_encoder=LTX2_TEXT_ENCODER, ckpt_name=LTX2_CHECKPOINT)
    audio_vae = g.add("LTXVAudioVAELoader", ckpt_name=LTX2_CHECKPOINT)
    positive = g.add("CLIPTextEncode", text=prompt, clip=link(text_encoder, 0))
    negative = g.add("CLIPTextEncode", text="blurry, low quality, still frame, watermark", clip=link(text_encoder, 0))
    conditioning = g.add("LTXVConditioning", positive=link(positive, 0), negative=link(negative, 0), frame_rate=LTX2_FPS)
    clip = load_clip(g)
    if video:
        frames = g.add("ImageScale", image=link(clip, 0), upscale_method="bilinear", width=LTX2_SIZE, height=LTX2_SIZE, crop="center")
        video_latent = g.add("VAEEncode", pixels=link(frames, 0), vae=link(checkpoint, 2))
    else:
        video_latent = g.add("EmptyLTXVLatentVideo", width=LTX2_SIZE, height=LTX2_SIZE, length=LTX2_FRAMES, batch_size=1)
    if audio:
        audio_latent = g.add("LTXVAudioVAEEncode", audio=link(clip, 1), audio_vae=link(audio_vae, 0))
    else:
        audio_latent = g.add("LTXVEmptyLatentAudio", frames_number=LTX2_FRAMES, frame_rate=int(LTX2_FPS), batch_size=1,
                             audio_vae=link(audio_vae, 0))
    joined = g.add("LTXVConcatAVLatent", video_latent=link(video_latent, 0), audio_latent=link(audio_latent, 0))
    masked = g.add("AVDiTNoiseLevelMask", latent=link(joined, 0), task=task, model=link(checkpoint, 0), fps=LTX2_FPS, **times)
    guider = g.add("AVDiTGuider", model=link(checkpoint, 0), positive=link(conditioning, 0), negative=link(conditioning, 1),
                   text_guidance=4.0, seed=1)
    noise = g.add("RandomNoise", noise_seed=1)
    sampler = g.add("KSamplerSelect", sampler_name="euler")
    sigmas = g.add("LTXVScheduler", steps=20, latent=link(masked, 0))
    sampled = g.add("SamplerCustomAdvanced", noise=link(noise, 0), guider=link(guider, 0), sampler=link(sampler, 0),
                    sigmas=link(sigmas, 0), latent_image=link(masked, 0))
    parts = g.add("LTXVSeparateAVLatent", av_latent=link(sampled, 0))
    images = g.add("VAEDecode", samples=link(parts, 0), vae=link(checkpoint, 2))
    sound = g.add("LTXVAudioVAEDecode", samples=link(parts, 1), audio_vae=link(audio_vae, 0))
    made = g.add("CreateVideo", images=link(images, 0), fps=LTX2_FPS, audio=link(sound, 0))
    g.add("SaveVideo", video=link(made, 0), filename_prefix=f"avdit/ltx2_{task}")
    return g


def ltx2_examples() -> dict[str, Graph]:
    scene = "A coloured disc drifts across a dark background; its pitch rises as it climbs and its tone fills the room."
    return {
        "ltx2_v2a": ltx2_example("v2a", "LTX-2, sound for a silent video: the clip's video is given (level 0), LTX-2 makes "
                                 "its audio (from an empty audio latent).", scene, audio=False),
        "ltx2_a2v": ltx2_example("a2v", "LTX-2, picture for a sound: the clip's audio is given, LTX-2 makes its video "
                                 "(from an empty video latent).", scene, video=False),
        "ltx2_inpaint": ltx2_example("inpaint", "LTX-2, regenerate a time span of both streams: 0.5 s to 1.5 s of video "
                                     "and audio are made again, the rest is kept.", scene, start=0.5, end=1.5),
        "ltx2_continue": ltx2_example("continue", "LTX-2, continue a clip: the first 1 s of video and audio is given, "
                                      "LTX-2 continues both to the clip's end (2.125 s).", scene, given_seconds=1.0),
    }


def examples() -> dict[str, Graph]:
    return {
        "joint": joint_example(),
        "continue": task_example("continue", "Continue: the 2.125 s input clip is given; the next 2 s of video and audio are generated.",
                                 duration=4.125, given_seconds=2.125),
        "continue_custom_sampler": task_example(
            "continue", "Continue with core nodes: the same task sampled by SamplerCustomAdvanced (RandomNoise, "
            "KSamplerSelect euler, BasicScheduler simple 25 steps) with the MoNL Guider, saved by core Save Video.",
            duration=4.125, given_seconds=2.125, custom_sampler=True),
        "inpaint": task_example("inpaint", "Inpaint: 0.5 s to 1.5 s of the clip is regenerated in both modalities; the rest is kept.",
                                start=0.5, end=1.5),
        "interpolate": task_example("interpolate", "Interpolate: the first 0.625 s and the last 0.5 s are given; the middle is generated.",
                                    head_seconds=0.625, tail_seconds=0.5),
        "a2v": task_example("a2v", "Audio to video: the clip's audio is given; its video is generated.", video=False),
        "v2a": task_example("v2a", "Video to audio: the clip's video is given; its audio is generated.", audio=False),
        "extend_10s": extend_example(),
        **ltx2_examples(),
    }


# --- writing both formats ----------------------------------------------------------------------------
def schema_inputs(object_info: dict, class_type: str) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) in the order the page lays out a node's inputs."""
    info = object_info[class_type]
    return [(name, info["input"][section][name], section == "optional")
            for section in ("required", "optional") for name in info["input_order"].get(section, [])]


def is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def widget_value(spec: list, given):
    if given is not None:
        return given
    options = spec[1] if len(spec) > 1 else {}
    if "default" in options:
        return options["default"]
    return spec[0][0] if isinstance(spec[0], list) else options["options"][0]


def to_api(object_info: dict, g: Graph) -> dict:
    prompt = {}
    for node in g.nodes:
        known = {name for name, _, _ in schema_inputs(object_info, node["class_type"])}
        if set(node["inputs"]) - known:
            raise ValueError(f"{node['class_type']} has no input {sorted(set(node['inputs']) - known)}; it has {sorted(known)}")
        inputs = {}
        for name, spec, _ in schema_inputs(object_info, node["class_type"]):
            value = node["inputs"].get(name)
            if isinstance(value, tuple):
                inputs[name] = [str(value[1]), value[2]]
            elif is_widget(spec):
                inputs[name] = widget_value(spec, value)
        prompt[str(node["id"])] = {"class_type": node["class_type"], "inputs": inputs,
                                   "_meta": {"title": object_info[node["class_type"]]["display_name"]}}
    return prompt


def to_ui(object_info: dict, g: Graph, name: str) -> dict:
    nodes, links, column_heights, column_of = [], [], {}, {}
    for node in g.nodes:
        class_type, given = node["class_type"], node["inputs"]
        sources = [v[1] for v in given.values() if isinstance(v, tuple)]
        column = column_of[node["id"]] = 1 + max((column_of[s] for s in sources), default=-1)
        slots, widgets = [], []
        for input_name, spec, optional in schema_inputs(object_info, class_type):
            value = given.get(input_name)
            if is_widget(spec):
                widgets.append(widget_value(spec, None if isinstance(value, tuple) else value))
                options = spec[1] if len(spec) > 1 else {}
                if options.get("control_after_generate"):
                    widgets.append("fixed")  # the examples are reproducible: the seed stays
                if options.get("video_upload"):
                    widgets.append("image")  # Load Video's upload button
                if isinstance(value, tuple):  # a widget fed by a link gets a socket
                    slots.append({"name": input_name, "type": "COMBO" if isinstance(spec[0], list) else spec[0],
                                  "widget": {"name": input_name}, "link": None})
            else:
                slots.append({"name": input_name, "type": spec[0], "link": None, **({"shape": 7} if optional else {})})
        for slot_index, slot in enumerate(slots):
            source = given.get(slot["name"])
            if isinstance(source, tuple):
                slot["link"] = len(links) + 1
                links.append([slot["link"], source[1], source[2], node["id"], slot_index, None])
        info = object_info[class_type]
        size = [420, 480] if class_type in ("AVDiTSaveVideo", "SaveVideo") else [320, 120 + 26 * len(widgets)]
        row = column_heights.get(column, 0)
        column_heights[column] = row + size[1] + 40
        nodes.append({"id": node["id"], "type": class_type, "pos": [40 + 380 * column, 60 + row], "size": size,
                      "flags": {}, "order": node["id"] - 1, "mode": 0, "inputs": slots,
                      "outputs": [{"name": n, "type": t, "links": []} for n, t in zip(info["output_name"], info["output"])],
                      "properties": {"Node name for S&R": class_type,
                                     "cnr_id": "comfyui-avdit" if class_type.startswith("AVDiT") else "comfy-core"},
                      "widgets_values": widgets})
    by_id = {n["id"]: n for n in nodes}
    for entry in links:
        output = by_id[entry[1]]["outputs"][entry[2]]
        output["links"].append(entry[0])
        entry[5] = output["type"]
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "avdit/" + name)), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "avdit_note": g.note}, "version": 0.4}


def write(object_info: dict, folder: Path = EXAMPLES) -> None:
    (folder / "api").mkdir(parents=True, exist_ok=True)
    for name, graph in examples().items():
        (folder / f"{name}.json").write_text(json.dumps(to_ui(object_info, graph, name), indent=1))
        (folder / "api" / f"{name}.json").write_text(json.dumps(to_api(object_info, graph), indent=1))
        print(f"{name}: {len(graph.nodes)} nodes")


def main() -> None:
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        sys.exit("set COMFYUI_PATH (and COMFYUI_PYTHON) to a ComfyUI checkout")
    server = ComfyServer(comfy, os.environ.get("COMFYUI_PYTHON", sys.executable), Path(tempfile.mkdtemp()), {},
                         [EXAMPLES / "input" / CLIP])
    try:
        server.wait_ready()
        object_info = server.get("/object_info")
    finally:
        server.stop()
    write(object_info)


if __name__ == "__main__":
    main()

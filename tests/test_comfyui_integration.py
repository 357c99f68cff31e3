"""The pack inside a real ComfyUI server: node catalogue, every example queued over HTTP, refusals
of malformed prompts, cancel during sampling, and the README's HTTP API snippet.

Runs when COMFYUI_PATH names a ComfyUI checkout, or several separated by os.pathsep (each one's
python: its `.venv/bin/python` if it has one, else COMFYUI_PYTHON, else this one); every test runs
once per checkout. Otherwise every test here is skipped with the reason printed.
The server runs on 127.0.0.1 with --cpu and a tiny random checkpoint saved under the demo model's
name in a temporary models/avdit/, so the examples run as shipped, only with fewer steps. The
shipped, trained demo model sits beside it under another name, for the one test of what it makes.
"""
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import av
import pytest

from tests.comfy_helpers import (EXAMPLES, REPO, Browser, ComfyServer, WebSocket, api_example, comfyui_version,
                                 example_names, find_chromium)

COMFYUI_PATHS = [p for p in os.environ.get("COMFYUI_PATH", "").split(os.pathsep) if p]
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
if not COMFYUI_PATHS:
    reason = "COMFYUI_PATH is not set: set it to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run these"
    print(f"\ntests/test_comfyui_integration.py skipped: {reason}")
    pytestmark = pytest.mark.skip(reason=reason)
elif not all((Path(p) / "main.py").is_file() for p in COMFYUI_PATHS):
    pytestmark = pytest.mark.skip(reason=f"COMFYUI_PATH={os.environ['COMFYUI_PATH']}: some entry has no main.py")


def python_for(comfyui: str) -> str:
    venv = Path(comfyui) / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else COMFYUI_PYTHON or __import__("sys").executable

DEMO = "avdit-toneshapes-demo.safetensors"
TRAINED = "trained-demo.safetensors"  # the shipped demo model itself (DEMO is a tiny random stand-in)
NODE_IDS = ["AVDiTLoader", "AVDiTEncode", "AVDiTEmptyLatent", "AVDiTNoiseLevelMask", "AVDiTGuider", "AVDiTSampler",
            "AVDiTDecode", "AVDiTSaveVideo"]
TEST_STEPS = 2
# Each example's clip length: the duration asked for, rounded up to the codec's frame grid (1 + 4k frames at 8 fps).
EXPECTED_SECONDS = {"joint": 2.125, "continue": 4.125, "continue_custom_sampler": 4.125, "inpaint": 2.125, "interpolate": 2.125, "a2v": 2.125,
                    "v2a": 2.125, "extend_10s": 10.125}


def fast(prompt: dict, steps: int = TEST_STEPS) -> dict:
    for node in prompt.values():
        if node["class_type"] in ("AVDiTSampler", "BasicScheduler"):  # MoNL KSampler, or SamplerCustomAdvanced's sigmas
            node["inputs"]["steps"] = steps
    return prompt


def mp4_streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
        return {"frames": frames, "fps": float(video.average_rate), "sample_rate": audio.rate,
                "audio_seconds": float(audio.duration * audio.time_base), "metadata": dict(container.metadata)}


@pytest.fixture(scope="module", params=COMFYUI_PATHS or [None], ids=lambda p: Path(p).name if p else "none")
def server(request):
    comfyui = request.param
    from avdit.data import generate_clip
    from avdit.media import write_mp4
    from avdit.pipeline import DEMO_MODEL, make_untrained_checkpoint

    import torch

    base = Path(tempfile.mkdtemp(prefix="avdit-comfyui-"))
    checkpoint = make_untrained_checkpoint(base / "tiny.safetensors", codecs="analytic")
    other = generate_clip(11, frames=17)  # a second input clip for the API snippet
    write_mp4(base / "other_clip.mp4", torch.from_numpy(other.video), 8.0, torch.from_numpy(other.audio)[None], 16000)
    comfy = ComfyServer(comfyui, python_for(comfyui), base, {DEMO: checkpoint, TRAINED: DEMO_MODEL},
                        [EXAMPLES / "input" / "avdit_toneshapes.mp4", base / "other_clip.mp4"])
    try:
        comfy.wait_ready()
        print(f"\nComfyUI {comfyui_version(comfyui)} at {comfyui} on port {comfy.port}")
        yield comfy
    finally:
        comfy.stop()
        log = comfy.log_text()
        assert "Traceback" not in log.split("Starting server")[0], log[-4000:]  # the pack imported cleanly


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def test_object_info_lists_every_node_with_its_inputs(object_info):
    for node_id in NODE_IDS:
        assert node_id in object_info, f"{node_id} missing from /object_info"
        info = object_info[node_id]
        assert info["category"] == "AVDiT"
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert object_info["AVDiTSampler"]["display_name"] == "MoNL KSampler"
    assert object_info["AVDiTGuider"]["display_name"] == "MoNL Guider"
    assert object_info["AVDiTLoader"]["output"] == ["MODEL", "AVDIT_CODECS"]
    assert set(object_info["AVDiTLoader"]["input"]["required"]) == {"checkpoint", "dtype"}
    for node_id in ("AVDiTEncode", "AVDiTEmptyLatent", "AVDiTSampler"):
        assert object_info[node_id]["output"] == ["LATENT"], node_id
    assert object_info["AVDiTNoiseLevelMask"]["output"] == ["LATENT", "STRING"]
    assert object_info["AVDiTNoiseLevelMask"]["input"]["optional"]["model"][0] == "MODEL"
    assert object_info["AVDiTGuider"]["output"] == ["GUIDER"]
    assert object_info["AVDiTGuider"]["input"]["required"]["model"][0] == "MODEL"
    assert set(object_info["AVDiTGuider"]["input"]["optional"]) == {"positive", "negative", "text_guidance", "seed"}
    assert object_info["AVDiTDecode"]["output"] == ["IMAGE", "AUDIO", "FLOAT", "VIDEO"]
    assert object_info["AVDiTDecode"]["input"]["required"]["codecs"][0] == "AVDIT_CODECS"
    assert object_info["AVDiTSaveVideo"]["output_node"] is True
    sampler = object_info["AVDiTSampler"]["input"]["required"]
    assert sampler["seed"][1]["control_after_generate"] is True
    assert set(sampler) >= {"model", "latent", "seed", "steps", "sampler_name", "scheduler", "video_guidance",
                            "audio_guidance", "guidance_drop", "shift"}
    assert sampler["model"][0] == "MODEL" and sampler["latent"][0] == "LATENT"
    # ComfyUI's own samplers and schedulers
    assert sampler["sampler_name"][1]["options"] == object_info["KSamplerSelect"]["input"]["required"]["sampler_name"][1]["options"]
    assert sampler["scheduler"][1]["options"] == object_info["BasicScheduler"]["input"]["required"]["scheduler"][1]["options"]
    assert DEMO in object_info["AVDiTLoader"]["input"]["required"]["checkpoint"][1]["options"]
    assert object_info["AVDiTEncode"]["input"]["optional"]["images"][0] == "IMAGE"
    assert object_info["AVDiTEncode"]["input"]["optional"]["audio"][0] == "AUDIO"


def test_examples_are_served_as_workflow_templates(server):
    templates = server.get("/api/workflow_templates")
    assert sorted(templates["comfyui-avdit"]) == example_names()
    assert server.get("/api/workflow_templates/comfyui-avdit/continue.json")["nodes"]


AVDIT_EXAMPLES = [n for n in example_names() if not n.startswith("ltx2_")]
LTX2_EXAMPLES = [n for n in example_names() if n.startswith("ltx2_")]
LTX2_FILES = {"CheckpointLoaderSimple": "ckpt_name", "LTXAVTextEncoderLoader": {"text_encoder", "ckpt_name"},
              "LTXVAudioVAELoader": "ckpt_name"}


@pytest.mark.parametrize("name", LTX2_EXAMPLES)
def test_every_ltx2_example_is_accepted_up_to_the_missing_weight_files(server, name):
    """No LTX-2 weights here: the server refuses the prompt, and every node error is a model file name
    (the loaders' file inputs); every other node and input, ours included, validates."""
    status, body = server.post("/prompt", {"prompt": api_example(name), "client_id": uuid.uuid4().hex})
    assert status == 400, body
    errors = body["node_errors"]
    assert errors and {e["class_type"] for e in errors.values()} <= set(LTX2_FILES), errors
    for error in errors.values():
        for item in error["errors"]:
            assert item["type"] == "value_not_in_list", item
            assert item["extra_info"]["input_name"] in LTX2_FILES[error["class_type"]], item


@pytest.mark.parametrize("name", AVDIT_EXAMPLES)
def test_every_example_makes_an_mp4_with_both_streams(server, name):
    workflow = json.loads((EXAMPLES / f"{name}.json").read_text())
    prompt = fast(api_example(name))
    entry = server.wait(server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}}))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    files = server.saved_files(entry)
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].is_file()
    assert files[0].resolve().is_relative_to((server.base / "output").resolve())
    clip = mp4_streams(files[0])
    seconds = EXPECTED_SECONDS[name]
    assert clip["frames"] == round(seconds * 8) and clip["fps"] == 8.0
    assert clip["sample_rate"] == 16000 and clip["audio_seconds"] == pytest.approx(seconds, abs=0.07)  # AAC frames
    # what dropping the MP4 on ComfyUI's page reads back: the graph and the prompt
    assert json.loads(clip["metadata"]["workflow"]) == workflow
    saved_prompt = json.loads(clip["metadata"]["prompt"])
    for node in saved_prompt.values():
        node.pop("is_changed", None)  # the executor adds the fingerprint of inputs such as files
    assert saved_prompt == prompt


def test_prompts_from_before_long_latents_still_run_and_one_pass_is_still_offered(server, object_info):
    """long_latents is an optional input: API prompts saved without it sample window by window."""
    spec = object_info["AVDiTSampler"]["input"]["optional"]["long_latents"]
    assert spec[1]["default"] == "window by window" and "one pass" in (spec[0] if isinstance(spec[0], list) else spec[1]["options"])
    for choice in (None, "one pass"):
        prompt = fast(api_example("continue"))
        for node in prompt.values():
            if node["class_type"] == "AVDiTSampler":
                node["inputs"].pop("long_latents")
                if choice:
                    node["inputs"]["long_latents"] = choice
        entry = server.wait(server.queue(prompt))
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
        assert mp4_streams(server.saved_files(entry)[0])["frames"] == 33


def widget_defaults(spec: dict, prefix: str = "") -> dict:
    """API-format values of a core node's required widgets: defaults, and the first option of
    ComfyUI 0.33's dynamic combos (whose sub-inputs are named 'parent.child')."""
    values = {}
    for name, (kind, options, *_) in spec.get("required", {}).items():
        if kind == "COMFY_DYNAMICCOMBO_V3":
            first = options["options"][0]
            values[prefix + name] = first["key"]
            values.update(widget_defaults(first["inputs"], f"{prefix}{name}."))
        elif isinstance(kind, list):
            values[prefix + name] = options.get("default", kind[0])
        elif kind == "COMBO":
            values[prefix + name] = options.get("default", options["options"][0])
        elif "default" in options:
            values[prefix + name] = options["default"]
    return values


def run_on_the_trained_demo_model(server, example: str):
    """`example` queued with the shipped demo model (10 steps): (the saved clip, the input clip, given frames)."""
    from avdit import media

    prompt = fast(api_example(example), steps=10)
    loaders = [node for node in prompt.values() if node["class_type"] == "AVDiTLoader"]
    assert len(loaders) == 1
    loaders[0]["inputs"]["checkpoint"] = TRAINED
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    files = server.saved_files(entry)
    assert len(files) == 1 and files[0].suffix == ".mp4", files
    got, source = media.decode(files[0]), media.decode(EXAMPLES / "input" / "avdit_toneshapes.mp4")
    given = source.frames.shape[0]  # 17 frames, 2.125 s
    assert got.frames.shape[0] == 33 and got.frames.shape[1:] == source.frames.shape[1:]
    return got, source, given


def given_psnr(got, source, given: int) -> float:
    """PSNR in dB of the saved clip's first `given` frames against the input clip's."""
    import numpy as np

    mse = ((got.frames[:given] - source.frames) ** 2).mean()
    return float(10 * np.log10(1 / float(mse)))


def test_the_trained_demo_model_continues_the_example_clip_through_samplercustomadvanced_and_the_monl_guider(server):
    """The continue_custom_sampler example as shipped (core SamplerCustomAdvanced, RandomNoise, KSamplerSelect euler,
    BasicScheduler simple, the MoNL Guider, AVDiT Decode, core Save Video) on the real demo model: the given
    2.125 s come back."""
    got, source, given = run_on_the_trained_demo_model(server, "continue_custom_sampler")
    psnr = given_psnr(got, source, given)
    print(f"\nSamplerCustomAdvanced + MoNL Guider: given part at {psnr:.1f} dB")
    assert psnr >= 30, psnr  # given exactly; H.264 twice (input clip, core Save Video)


def test_the_trained_demo_model_continues_the_example_clip_through_the_server(server):
    """The continue example as shipped, on the real demo model: the given 2.125 s come back, and the
    2 s it makes keep the clip's colour, start without a jump and sound at the disc's height."""
    import numpy as np

    from avdit.codecs.train import tone_agreement
    from avdit.data import agreement
    from avdit.evaluate import continuity_score

    got, source, given = run_on_the_trained_demo_model(server, "continue")
    assert given_psnr(got, source, given) > 35  # given exactly; only H.264 again (measured 45.8 dB)
    per_frame = round(got.sample_rate / got.fps)  # audio samples per video frame
    heard = tone_agreement(source.waveform[0, : given * per_frame].numpy(), got.waveform[0, : given * per_frame].numpy())
    # 16 of 17 frames at least: AAC's edge, and the last given frame's audio is decoded together
    # with the generated audio after it (measured: presence 16/17 in one pass; timbre and level 16/17 window by window)
    assert heard["pitch"] == 1.0 and heard["timbre"] > 0.9 and heard["presence"] > 0.9, heard
    frames = np.arange(got.frames.shape[0])
    kept = continuity_score(got.frames[None].numpy(), got.waveform[:1, : got.frames.shape[0] * per_frame].numpy(),
                            frames < given, frames < given)
    assert kept["colour_kept"] > 0.9, kept  # measured 1.0 at the example's seed
    assert kept["no_jump"] == 1.0, kept  # window by window (the sampler's default): no jump where the given part ends
    # The example's disc is about the smallest, quietest and highest the data makes (radius 3, -30 dB,
    # up to 880 Hz): there the demo model keeps the timbre less well than on held-out clips. Measured with
    # `pipeline.generate` over seeds 1-12 at 10 steps, guidance 3: timbre kept 0.72 (0.83 at guidance 2;
    # held-out validation clips 0.98; the model before it 0.96) and here 0.71 at the example's seed; a
    # sound of another colour's timbre throughout keeps none of it.
    assert kept["timbre_kept"] > 0.6, kept
    made = agreement(got.frames[given:].numpy(), got.waveform[0, given * per_frame : got.frames.shape[0] * per_frame].numpy())
    assert made["pitch"] > 0.8, made  # the made sound follows the disc's height (seeds 1-12: 0.99; the model before it 0.35)


def test_core_nodes_connect_load_audio_in_and_create_and_save_video_out(server, object_info):
    def core(class_type, **links):
        return {"class_type": class_type, "inputs": {**widget_defaults(object_info[class_type]["input"]), **links}}

    a2v = {node["class_type"]: node["inputs"] for node in api_example("a2v").values()}
    prompt = {
        "1": {"class_type": "AVDiTLoader", "inputs": {"checkpoint": DEMO, "dtype": "auto"}},
        "2": core("LoadAudio", audio="avdit_toneshapes.mp4"),
        "3": {"class_type": "AVDiTEncode", "inputs": {"codecs": ["1", 1], "audio": ["2", 0], "fps": 8.0, "duration": 0.0, "resize": "crop"}},
        "4": {"class_type": "AVDiTNoiseLevelMask", "inputs": {**a2v["AVDiTNoiseLevelMask"], "latent": ["3", 0]}},
        "5": {"class_type": "AVDiTSampler", "inputs": {**a2v["AVDiTSampler"], "model": ["1", 0], "latent": ["4", 0]}},
        "6": {"class_type": "AVDiTDecode", "inputs": {"codecs": ["1", 1], "latent": ["5", 0]}},
        "7": core("SaveVideo", video=["6", 3], filename_prefix="core/decoded"),
        "8": core("CreateVideo", images=["6", 0], audio=["6", 1], fps=["6", 2]),
        "9": core("SaveVideo", video=["8", 0], filename_prefix="core/created"),
    }
    assert prompt["4"]["inputs"]["task"] == "a2v"
    entry = server.wait(server.queue(fast(prompt)))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    files = sorted(server.saved_files(entry))
    assert [f.parent.name for f in files] == ["core", "core"] and len(files) == 2
    for path in files:
        clip = mp4_streams(path)
        assert clip["frames"] == 17 and clip["fps"] == 8.0 and clip["audio_seconds"] == pytest.approx(2.125, abs=0.07)


def malformed(kind: str) -> dict:
    prompt = fast(api_example("joint"))
    by_class = {node["class_type"]: key for key, node in prompt.items()}
    if kind == "wrong type":  # IMAGE into a LATENT input
        prompt[by_class["AVDiTSampler"]]["inputs"]["latent"] = [by_class["AVDiTDecode"], 0]
    elif kind == "codecs as the model":  # the loader's AVDIT_CODECS (output 1) into a MODEL input
        prompt[by_class["AVDiTSampler"]]["inputs"]["model"] = [by_class["AVDiTLoader"], 1]
    elif kind == "model as the codecs":  # the loader's MODEL (output 0) into an AVDIT_CODECS input
        prompt[by_class["AVDiTDecode"]]["inputs"]["codecs"] = [by_class["AVDiTLoader"], 0]
    elif kind == "missing codecs":  # e.g. a prompt from before the loader split its outputs
        del prompt[by_class["AVDiTEmptyLatent"]]["inputs"]["codecs"]
        prompt[by_class["AVDiTEmptyLatent"]]["inputs"]["model"] = [by_class["AVDiTLoader"], 0]
    elif kind == "missing checkpoint":
        prompt[by_class["AVDiTLoader"]]["inputs"]["checkpoint"] = "no-such-model.safetensors"
    elif kind == "negative duration":
        prompt[by_class["AVDiTEmptyLatent"]]["inputs"]["duration"] = -1.0
    elif kind == "prefix escapes output":
        prompt[by_class["AVDiTSaveVideo"]]["inputs"]["filename_prefix"] = "../../escaped"
    return prompt, by_class


@pytest.mark.parametrize("kind, node, error_type", [
    ("wrong type", "AVDiTSampler", "return_type_mismatch"),
    ("codecs as the model", "AVDiTSampler", "return_type_mismatch"),
    ("model as the codecs", "AVDiTDecode", "return_type_mismatch"),
    ("missing codecs", "AVDiTEmptyLatent", "required_input_missing"),
    ("missing checkpoint", "AVDiTLoader", "custom_validation_failed"),
    ("negative duration", "AVDiTEmptyLatent", "value_smaller_than_min"),
    ("prefix escapes output", "AVDiTSaveVideo", "custom_validation_failed"),
])
def test_malformed_prompts_are_refused_with_node_errors_and_the_server_goes_on(server, kind, node, error_type):
    prompt, by_class = malformed(kind)
    status, body = server.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
    assert status == 400, body
    errors = body["node_errors"]
    assert by_class[node] in errors, errors
    assert errors[by_class[node]]["class_type"] == node
    assert error_type in [e["type"] for e in errors[by_class[node]]["errors"]], errors
    entry = server.wait(server.queue(fast(api_example("joint"))))  # the next good prompt still runs
    assert entry["status"]["status_str"] == "success"


def test_interrupt_stops_sampling_within_one_step(server):
    steps = 400
    prompt = fast(api_example("continue"), steps=steps)
    sampler = next(key for key, node in prompt.items() if node["class_type"] == "AVDiTSampler")
    client_id = uuid.uuid4().hex
    socket = WebSocket(server.port, f"/ws?clientId={client_id}")
    try:
        prompt_id = server.queue(prompt, client_id=client_id)
        values, interrupted_at, ending = [], None, None
        deadline = time.monotonic() + 240
        while ending is None and time.monotonic() < deadline:
            message = socket.receive()
            if message is None:
                continue
            data = message.get("data", {})
            if message["type"] == "progress" and data.get("node") == sampler and data.get("prompt_id") == prompt_id:
                # the 33-frame clip is sampled window by window (windows at frames 0, 12 and 24; the
                # first, all given, is skipped), and the bar runs over all three windows' steps
                assert data["max"] == 3 * steps
                values.append(data["value"])
                if interrupted_at is None and data["value"] >= 3:
                    interrupted_at = data["value"]
                    assert server.post("/interrupt", {})[0] == 200
            elif message["type"] in ("execution_interrupted", "execution_success", "execution_error") \
                    and data.get("prompt_id") == prompt_id:
                ending = message["type"]
    finally:
        socket.close()
    print(f"\ninterrupt after step {interrupted_at}; last step reported {max(values)} of {3 * steps}")
    assert ending == "execution_interrupted", (ending, values[-5:])
    # the step running when the cancel arrived may finish and report; no further step does
    assert max(values) <= interrupted_at + 1, (interrupted_at, values[-5:])
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "error" and not entry.get("outputs")
    assert server.wait(server.queue(fast(api_example("joint"))))["status"]["status_str"] == "success"


def sampler_messages(server, prompt: dict, extra_data: dict | None = None) -> tuple[list[int], int, dict]:
    """Queue `prompt` and read its websocket messages to the end: (progress values of the MoNL KSampler,
    binary preview frames, the prompt's history entry)."""
    sampler = next(key for key, node in prompt.items() if node["class_type"] == "AVDiTSampler")
    client_id = uuid.uuid4().hex
    socket = WebSocket(server.port, f"/ws?clientId={client_id}")
    try:
        prompt_id = server.queue(prompt, client_id=client_id, extra_data=extra_data)
        values, previews = [], 0
        while True:
            message = socket.receive()
            if message is None:
                previews += 1
                continue
            data = message.get("data", {})
            if message["type"] == "progress" and data.get("node") == sampler:
                values.append(data["value"])
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
    finally:
        socket.close()
    return values, previews, server.wait(prompt_id)


def joint_with_seed(seed: int, steps: int) -> dict:
    prompt = fast(api_example("joint"), steps=steps)
    for node in prompt.values():
        if node["class_type"] == "AVDiTSampler":
            node["inputs"]["seed"] = seed  # not cached from an earlier run
    return prompt


def test_progress_reports_every_step_of_the_sampler(server):
    values, previews, entry = sampler_messages(server, joint_with_seed(12345, 5))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert values[-1] == 5 and values == sorted(values)
    assert previews == 0  # the server runs with --preview-method none


def test_previews_come_from_comfyuis_previewer_when_the_prompt_asks_for_them(server):
    """The server runs with --preview-method none; a prompt may ask ComfyUI's previewer for latent2rgb
    (what the page's live-preview setting sends), and the MoNL KSampler's steps then come with preview frames."""
    values, previews, entry = sampler_messages(server, joint_with_seed(54321, 5), extra_data={"preview_method": "latent2rgb"})
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert values[-1] == 5 and values == sorted(values)
    assert previews >= 1  # preview images come as binary frames


def readme_snippet() -> str:
    for name in ("README.md", "docs/COMFYUI.md"):
        path = REPO / name
        if path.is_file():
            match = re.search(r"```python\n(# queue_example\.py.*?)```", path.read_text(), re.S)
            if match:
                return match.group(1)
    raise AssertionError("no '# queue_example.py' python block in README.md or docs/COMFYUI.md")


def test_readme_http_api_snippet_runs_against_the_server(server, capsys):
    code = readme_snippet()
    code = code.replace("http://127.0.0.1:8188", server.url).replace('"steps": 25', f'"steps": {TEST_STEPS}')
    code = code.replace("example_workflows/api/", str(EXAMPLES / "api") + "/")
    exec(compile(code, "README snippet", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    saved = server.base / "output" / printed
    assert saved.is_file(), printed
    clip = mp4_streams(saved)
    prompt = json.loads(clip["metadata"]["prompt"])
    loads = [n for n in prompt.values() if n["class_type"] == "LoadVideo"]
    samplers = [n for n in prompt.values() if n["class_type"] == "AVDiTSampler"]
    assert loads[0]["inputs"]["file"] == "other_clip.mp4" and samplers[0]["inputs"]["seed"] == 7


# --- ComfyUI's web page (headless Chromium) --------------------------------------------------------
@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH: apt-get install chromium chromium-driver to run the page tests")
    server.post("/settings/Comfy.TutorialCompleted", True)  # no first-run template browser over the graph
    page = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"), width=2300, height=900)
    try:
        page.open(server.url)
        page.wait_for("!!(window.app && window.app.graph && window.app.graph.nodes !== undefined"
                      " && document.querySelector('canvas'))")
        time.sleep(2)  # let the page finish registering node definitions
        yield page
    finally:
        page.close()


TOASTS = """(() => { const shown = Array.from(document.querySelectorAll('.p-toast-message')).map(e => e.innerText);
                     document.querySelectorAll('.p-toast-close-button').forEach(b => b.click()); return shown; })()"""
GRAPH_STATE = """(() => app.graph.nodes.map(n => ({id: n.id, type: n.type, known: !!n.constructor.nodeData,
                                               widgets: (n.widgets || []).map(w => w.value)})))()"""


@pytest.mark.parametrize("name", example_names())
def test_every_ui_example_opens_in_the_page_with_no_missing_nodes(browser, object_info, name):
    workflow = json.loads((EXAMPLES / f"{name}.json").read_text())
    browser.console.clear()
    browser.evaluate(TOASTS)
    browser.evaluate(f"app.loadGraphData({json.dumps(workflow)})")
    time.sleep(0.5)
    assert browser.evaluate(TOASTS) == [], "the page warned while loading the workflow"
    nodes = browser.evaluate(GRAPH_STATE)
    assert len(nodes) == len(workflow["nodes"])
    assert [n["type"] for n in nodes if not n["known"]] == [], "nodes the page does not know"
    # the page's own conversion of the graph is the API twin the other tests queue
    output = browser.evaluate("app.graphToPrompt().then(p => p.output)")
    twin = api_example(name)
    for key, node in output.items():  # widgets the page adds for itself (e.g. Load Video's preview)
        spec = object_info[node["class_type"]]["input"]
        spec = {**spec.get("required", {}), **spec.get("optional", {})}
        node["inputs"] = {k: v for k, v in node["inputs"].items() if k in spec}
        for k in set(node["inputs"]) - set(twin.get(key, {}).get("inputs", {})):
            # an input newer than the oldest supported ComfyUI the examples are made on (e.g. 0.33's
            # Create Video bit_depth): the page fills in its default, which is what the server uses for the twin
            if len(spec[k]) > 1 and node["inputs"][k] == spec[k][1].get("default"):
                del node["inputs"][k]
    assert {k: (v["class_type"], v["inputs"]) for k, v in output.items()} == \
           {k: (v["class_type"], v["inputs"]) for k, v in twin.items()}
    assert browser.console == [], browser.console


def test_a_saved_mp4_restores_its_workflow_in_the_page(server, browser, tmp_path):
    workflow = json.loads((EXAMPLES / "continue.json").read_text())
    prompt = fast(api_example("continue"))
    entry = server.wait(server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}}))
    saved = next(item for output in entry["outputs"].values() for item in output.get("images", []))
    browser.evaluate(f"app.loadGraphData({json.dumps(json.loads((EXAMPLES / 'joint.json').read_text()))})")
    assert len(browser.evaluate(GRAPH_STATE)) == 5  # a different graph is open before the drop
    url = f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type=output"
    browser.evaluate(f"""fetch({json.dumps(url)}).then(r => r.blob()).then(blob =>
        app.handleFile(new File([blob], {json.dumps(saved['filename'])}, {{type: 'video/mp4'}})))""")
    browser.wait_for(f"app.graph.nodes.length === {len(workflow['nodes'])}", timeout=30)
    nodes = browser.evaluate(GRAPH_STATE)
    assert sorted((str(n["id"]), n["type"]) for n in nodes) == sorted((str(n["id"]), n["type"]) for n in workflow["nodes"])
    assert all(n["known"] for n in nodes)
    assert browser.evaluate(TOASTS) == [] and browser.console == [], browser.console
    sampler = next(n for n in nodes if n["type"] == "AVDiTSampler")
    assert sampler["widgets"][:2] == next(n for n in workflow["nodes"] if n["type"] == "AVDiTSampler")["widgets_values"][:2]


def test_running_from_the_page_shows_the_saved_video_on_the_save_node(server, browser, tmp_path):
    workflow = json.loads((EXAMPLES / "continue.json").read_text())
    sampler = next(n for n in workflow["nodes"] if n["type"] == "AVDiTSampler")
    sampler["widgets_values"][0] = 4242  # a seed no other test used, so nothing comes from the cache
    sampler["widgets_values"][2] = TEST_STEPS
    browser.evaluate(TOASTS)
    browser.evaluate(f"app.loadGraphData({json.dumps(workflow)})")
    browser.evaluate("app.queuePrompt(0, 1)")
    shown = "Array.from(document.querySelectorAll('video')).some(v => v.src.includes('continue_') && v.src.includes('type=output'))"
    browser.wait_for(shown, timeout=120)
    assert browser.evaluate(TOASTS) == [] and browser.console == [], browser.console
    shot = Path(os.environ.get("AVDIT_SCREENSHOT") or tmp_path / "page.png")
    browser.evaluate("app.canvas.ds.scale = 0.65, app.canvas.ds.offset = [130, 110], app.graph.setDirtyCanvas(true, true)")
    time.sleep(2)
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000

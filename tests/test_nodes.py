"""The node pack without ComfyUI: the adapters the nodes call, and the example workflows' files.

(ComfyUI itself is exercised by tests/test_comfyui_integration.py when COMFYUI_PATH is set.)
"""
import json
from pathlib import Path

import pytest
import torch

from avdit.pipeline import AVDiTPipeline, make_untrained_checkpoint
from nodes import adapters

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_workflows"
OUR_NODES = {"AVDiTLoader", "AVDiTEncode", "AVDiTEmptyLatent", "AVDiTNoiseLevelMask", "AVDiTGuider", "AVDiTSampler",
             "AVDiTDecode", "AVDiTSaveVideo"}
CORE_NODES_USED = {"LoadVideo", "GetVideoComponents", "RandomNoise", "KSamplerSelect", "BasicScheduler",
                   "SamplerCustomAdvanced", "SaveVideo",  # present in ComfyUI 0.9.1 and 0.33, as are LTX-2's:
                   "CheckpointLoaderSimple", "LTXAVTextEncoderLoader", "LTXVAudioVAELoader", "CLIPTextEncode",
                   "LTXVConditioning", "ImageScale", "VAEEncode", "EmptyLTXVLatentVideo", "LTXVAudioVAEEncode",
                   "LTXVEmptyLatentAudio", "LTXVConcatAVLatent", "LTXVScheduler", "LTXVSeparateAVLatent", "VAEDecode",
                   "LTXVAudioVAEDecode", "CreateVideo"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", codecs="analytic")


@pytest.fixture(scope="module")
def model(checkpoint):
    """What flows on the AVDIT_CODECS wire (the denoiser flows as a core MODEL, tested in test_comfy_native.py)."""
    return adapters.AVDiTCodecs(AVDiTPipeline.load(checkpoint), "tiny.safetensors")


def test_codecs_move_both_codecs_and_count_only_their_weights(model):
    pipe = model.pipeline
    expected = sum(p.numel() * p.element_size() for m in (pipe.video_codec, pipe.audio_codec) for p in m.parameters())
    assert model.size_bytes() == expected
    assert model.modules() == (pipe.video_codec, pipe.audio_codec)
    assert model.to(torch.device("cpu")) is model


# --- loader ------------------------------------------------------------------------------------
def test_only_checkpoints_with_a_denoiser_are_offered_from_the_bundled_folder(tmp_path, checkpoint):
    (tmp_path / "model.safetensors").write_bytes(checkpoint.read_bytes())
    from safetensors.torch import save_file

    save_file({"video_codec.w": torch.zeros(1)}, str(tmp_path / "codecs.safetensors"))
    (tmp_path / "notes.txt").write_text("not a model")
    assert adapters.bundled_checkpoints(tmp_path) == {"model.safetensors": str(tmp_path / "model.safetensors")}
    assert adapters.bundled_checkpoints(tmp_path / "missing") == {}


def test_user_checkpoints_come_first_and_hide_bundled_ones_of_the_same_name():
    choices = adapters.checkpoint_choices(["b.safetensors", "a.safetensors", "old.ckpt"],
                                          {"demo.safetensors": "/x/demo.safetensors", "a.safetensors": "/x/a.safetensors"})
    assert choices == ["a.safetensors", "b.safetensors", "demo.safetensors"]


def test_dtype_choice_auto_follows_the_device_and_names_map_to_torch_dtypes():
    assert adapters.resolve_dtype("auto", torch.bfloat16) is torch.bfloat16
    assert adapters.resolve_dtype("fp16", torch.float32) is torch.float16
    with pytest.raises(ValueError, match="expected one of"):
        adapters.resolve_dtype("fp8", torch.float32)


# --- encode ------------------------------------------------------------------------------------
def test_image_batches_lose_alpha_and_audio_takes_the_first_batch_item():
    rgba = torch.rand(5, 8, 8, 4)
    assert torch.equal(adapters.image_to_frames(rgba), rgba[..., :3])
    waveform, rate = adapters.audio_to_waveform({"waveform": torch.ones(2, 1, 100), "sample_rate": 44100})
    assert waveform.shape == (1, 100) and rate == 44100
    with pytest.raises(ValueError, match="AUDIO"):
        adapters.audio_to_waveform({"samples": torch.ones(1, 1, 10)})


def test_encode_of_frames_only_leaves_all_audio_and_the_time_after_the_frames_to_generate(model):
    frames = torch.rand(17, 64, 64, 3)  # 2.125 s at 8 fps
    latent = adapters.encode(model, frames, 8.0, None, 4.125)
    assert latent.duration == pytest.approx(4.125)
    assert bool((latent.available.audio == 1).all())
    video_spans = latent.layout.video_spans
    inside = video_spans[:, 1] <= 2.125 + 1e-6
    assert bool((latent.available.video[inside] == 0).all()) and bool((latent.available.video[~inside] == 1).all())


def test_encode_duration_zero_means_as_long_as_the_longer_input(model):
    audio = {"waveform": torch.zeros(1, 2, 44100 * 3), "sample_rate": 44100}
    latent = adapters.encode(model, torch.rand(9, 32, 48, 3), 8.0, audio, 0.0)
    assert latent.duration == pytest.approx(3.125)  # 3 s rounded up to the causal frame grid (1 + 4k frames)
    with pytest.raises(ValueError, match="connect images and/or audio"):
        adapters.encode(model, None, 8.0, None, 0.0)


# --- noise-level masks ---------------------------------------------------------------------------
def test_given_levels_are_set_per_modality(model):
    latent = model.pipeline.empty_latent(2.125)
    masked = adapters.set_task(latent, "continue", given_seconds=1.125, video_given_level=0.0, audio_given_level=0.4)
    given_video = masked.mask.video < 1
    given_audio = masked.mask.audio < 1
    assert given_video.any() and given_audio.any()
    assert bool((masked.mask.video[given_video] == 0).all())
    assert masked.mask.audio[given_audio].unique().tolist() == [pytest.approx(0.4)]
    assert latent.mask is None  # the input latent is left as it was


def test_modalities_choice_limits_the_given_spans_to_one_modality(model):
    masked = adapters.set_task(model.pipeline.empty_latent(2.125), "inpaint", start=0.5, end=1.5, modalities="audio")
    assert bool((masked.mask.video == 1).all()) and bool((masked.mask.audio < 1).any())


def test_custom_levels_parse_from_rows_labels_or_json():
    expected = [[0.0, 1.0, 1.0], [0.0, 0.5, 1.0]]
    assert adapters.parse_levels("video: 0 1 1\naudio: 0, 0.5, 1") == expected
    assert adapters.parse_levels("0 1 1; 0 0.5 1") == expected
    assert adapters.parse_levels("[[0, 1, 1], [0, 0.5, 1]]") == expected
    with pytest.raises(ValueError, match="two rows of equal length"):
        adapters.parse_levels("0 1 1")


def test_custom_levels_of_the_wrong_width_name_the_number_of_segments(model):
    latent = model.pipeline.empty_latent(2.125)
    with pytest.raises(ValueError, match=r"needs \(2, 5\)"):
        adapters.set_task(latent, "custom", levels="0 1; 0 1")


def test_mask_summary_says_what_is_given_in_seconds(model):
    audio = {"waveform": torch.zeros(1, 1, 16000 * 3), "sample_rate": 16000}
    latent = adapters.encode(model, torch.rand(17, 64, 64, 3), 8.0, audio, 4.125)
    masked = adapters.set_task(latent, "continue", given_seconds=2.125)
    # audio latent frames are 0.02 s long: 2.125 s is not on their grid, so 0-2.12 s is kept
    assert adapters.describe_mask(masked) == (
        "4.125 s clip. video: given 0-2.125 s; generated the rest; audio: given 0-2.12 s; generated the rest")


def test_mask_summary_warns_when_the_task_gives_what_no_input_covers(model):
    masked = adapters.set_task(model.pipeline.empty_latent(2.125), "continue", given_seconds=1.125)
    assert adapters.describe_mask(masked) == (
        "2.125 s clip. video: given nothing; generated the rest; audio: given nothing; generated the rest. "
        "The task gives more than the inputs cover; that part is generated")


# --- sampling progress and decode ----------------------------------------------------------------
def test_the_progress_bar_runs_over_every_window_of_a_windowed_sampling(model):
    latent = model.pipeline.empty_latent(4.0)  # 33 frames: windows at frames 0 and 12, then 24
    seen = []
    model.pipeline.sample(latent, steps=2, windowed=adapters.windowed("window by window"),
                          callback=lambda info: seen.append(adapters.progress(info, 2)))
    assert seen == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    seen.clear()
    model.pipeline.sample(latent, steps=2, windowed=adapters.windowed("one pass"), callback=lambda info: seen.append(adapters.progress(info, 2)))
    assert seen == [(1, 2), (2, 2)]
    with pytest.raises(ValueError, match=r"long_latents is 'windowed'; expected one of \['window by window', 'one pass'\]"):
        adapters.windowed("windowed")


def test_decoded_clip_becomes_comfy_image_and_audio(model):
    frames, waveform, fps, rate = model.pipeline.decode(model.pipeline.empty_latent(2.125))
    images, audio, in_a_row = adapters.decoded_to_comfy(frames, waveform, rate)
    assert images.shape == (17, 64, 64, 3)
    assert audio["waveform"].shape == (1, 1, 34000) and audio["sample_rate"] == 16000
    assert torch.equal(in_a_row["waveform"], audio["waveform"]) and in_a_row["sample_rate"] == 16000


def test_a_decoded_batch_comes_out_clip_after_clip():
    frames = torch.rand(3, 17, 8, 8, 3)
    waveform = torch.stack([torch.full((2, 100), float(i)) for i in range(3)])  # (B, C, S), clip i all i
    images, audio, in_a_row = adapters.decoded_to_comfy(frames, waveform, 16000)
    assert images.shape == (51, 8, 8, 3) and torch.equal(images[17:34], frames[1])
    assert audio["waveform"].shape == (3, 2, 100) and torch.equal(audio["waveform"], waveform)
    assert in_a_row["waveform"].shape == (1, 2, 300)
    assert in_a_row["waveform"][0, :, 100:200].unique().tolist() == [1.0]  # the second clip's audio after the first's


# --- saving --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["../escape", "avdit/../../x", "/tmp/x", "C:\\x", "a\\..\\..\\b", ""])
def test_filename_prefixes_that_leave_the_output_folder_are_refused(prefix):
    assert adapters.check_filename_prefix(prefix) is not None


@pytest.mark.parametrize("prefix", ["avdit/clip", "clip", "a/b/c_%date:yyyy%", "dots..in.name"])
def test_filename_prefixes_inside_the_output_folder_are_accepted(prefix):
    assert adapters.check_filename_prefix(prefix) is None


def test_metadata_has_the_workflow_and_prompt_as_json_like_core_save_video():
    workflow = {"nodes": [{"id": 1}], "links": []}
    prompt = {"1": {"class_type": "AVDiTLoader", "inputs": {}}}
    tags = adapters.video_metadata(prompt, {"workflow": workflow})
    assert json.loads(tags["workflow"]) == workflow and json.loads(tags["prompt"]) == prompt
    assert adapters.video_metadata(None, None) == {}


# --- example workflows --------------------------------------------------------------------------
EXAMPLE_NAMES = sorted(p.stem for p in (EXAMPLES / "api").glob("*.json"))


AVDIT_EXAMPLES = [n for n in EXAMPLE_NAMES if not n.startswith("ltx2_")]
LTX2_EXAMPLES = [n for n in EXAMPLE_NAMES if n.startswith("ltx2_")]


def test_there_is_an_example_per_task_the_10_second_chain_the_core_sampler_one_and_the_ltx2_ones():
    assert AVDIT_EXAMPLES == ["a2v", "continue", "continue_custom_sampler", "extend_10s", "inpaint", "interpolate",
                              "joint", "v2a"]
    assert LTX2_EXAMPLES == ["ltx2_a2v", "ltx2_continue", "ltx2_inpaint", "ltx2_v2a"]
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == EXAMPLE_NAMES


@pytest.mark.parametrize("name", LTX2_EXAMPLES)
def test_ltx2_examples_use_comfyuis_ltx2_template_files_and_the_packs_mask_and_guider(name):
    """The file names of ComfyUI's own LTX-2 templates (video_ltx2_t2v), the mask on LTX-2's grid (model + fps)
    and the MoNL Guider with LTX-2's text conditioning, in core SamplerCustomAdvanced."""
    api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text())
    by_type = {}
    for key, node in api.items():
        by_type.setdefault(node["class_type"], []).append((key, node["inputs"]))
    (checkpoint, ckpt), = by_type["CheckpointLoaderSimple"]
    assert ckpt["ckpt_name"] == "ltx-2-19b-dev-fp8.safetensors"
    assert by_type["LTXAVTextEncoderLoader"][0][1]["text_encoder"] == "gemma_3_12B_it_fp4_mixed.safetensors"
    assert by_type["LTXVAudioVAELoader"][0][1]["ckpt_name"] == "ltx-2-19b-dev-fp8.safetensors"
    (_, mask), = by_type["AVDiTNoiseLevelMask"]
    assert mask["task"] == name.removeprefix("ltx2_") and mask["model"] == [checkpoint, 0] and mask["fps"] == 8.0
    (guider_key, guider), = by_type["AVDiTGuider"]
    assert guider["model"] == [checkpoint, 0] and guider["text_guidance"] == 4.0
    assert api[guider["positive"][0]]["class_type"] == "LTXVConditioning" == api[guider["negative"][0]]["class_type"]
    (_, sampled), = by_type["SamplerCustomAdvanced"]
    assert sampled["guider"] == [guider_key, 0]
    assert "AVDiTLoader" not in by_type and "AVDiTSampler" not in by_type


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_ui_example_and_its_api_twin_are_the_same_graph(name):
    ui = json.loads((EXAMPLES / f"{name}.json").read_text())
    api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text())
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    assert {k: n["type"] for k, n in nodes.items()} == {k: n["class_type"] for k, n in api.items()}
    assert {n["type"] for n in ui["nodes"]} <= OUR_NODES | CORE_NODES_USED
    links = {l[0]: l for l in ui["links"]}
    for node_id, node in api.items():
        for input_name, value in node["inputs"].items():
            if isinstance(value, list):  # a link: [source node id, output index]
                slot = next(i for i in nodes[node_id]["inputs"] if i["name"] == input_name)
                _, source, output, target, _, _ = links[slot["link"]]
                assert (str(source), output, str(target)) == (value[0], value[1], node_id), (name, node_id, input_name)
            else:
                assert value in nodes[node_id]["widgets_values"], (name, node_id, input_name, value)


def test_examples_use_the_demo_model_and_the_bundled_clip():
    clips = {p.name for p in (EXAMPLES / "input").iterdir()}
    for name in EXAMPLE_NAMES:
        api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text())
        for node in api.values():
            if node["class_type"] == "AVDiTLoader":
                assert node["inputs"]["checkpoint"] == "avdit-toneshapes-demo.safetensors"
            if node["class_type"] == "LoadVideo":
                assert node["inputs"]["file"] in clips
    assert all((EXAMPLES / "input" / c).stat().st_size < 200_000 for c in clips)


@pytest.mark.parametrize("name", AVDIT_EXAMPLES)
def test_the_loader_feeds_its_model_to_samplers_and_its_codecs_to_encode_and_decode(name):
    api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text())
    loader = next(k for k, n in api.items() if n["class_type"] == "AVDiTLoader")
    fed = {(node["class_type"], input_name, value[1]) for node in api.values()
           for input_name, value in node["inputs"].items() if isinstance(value, list) and value[0] == loader}
    assert {(input_name, output) for _, input_name, output in fed} <= {("model", 0), ("codecs", 1)}, fed
    assert {c for c, i, _ in fed if i == "codecs"} >= {"AVDiTDecode"}
    assert {c for c, i, _ in fed if i == "model"} & {"AVDiTSampler", "AVDiTGuider"}


def test_the_core_sampler_example_is_the_continue_task_through_samplercustomadvanced_and_the_monl_guider():
    api = json.loads((EXAMPLES / "api" / "continue_custom_sampler.json").read_text())
    by_class = {n["class_type"]: n["inputs"] for n in api.values()}
    assert "AVDiTSampler" not in by_class
    assert by_class["AVDiTNoiseLevelMask"]["task"] == "continue" and by_class["AVDiTNoiseLevelMask"]["given_seconds"] == 2.125
    assert by_class["KSamplerSelect"]["sampler_name"] == "euler"
    assert (by_class["BasicScheduler"]["scheduler"], by_class["BasicScheduler"]["steps"]) == ("simple", 25)
    keys = {n["class_type"]: k for k, n in api.items()}
    assert by_class["SamplerCustomAdvanced"]["guider"] == [keys["AVDiTGuider"], 0]
    assert by_class["AVDiTDecode"]["latent"] == [keys["SamplerCustomAdvanced"], 0]
    assert by_class["SaveVideo"]["video"] == [keys["AVDiTDecode"], 3]

"""Robustness: every `python -m avdit` subcommand runs end to end on tiny settings, bad checkpoint
files are refused with a message that names what is wrong, and odd media (cover art, a non-zero
start time, rotation metadata, 8-bit and more-than-two-channel audio) decode as a player shows them.
"""
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avdit import media
from avdit.checkpoint import CheckpointError, load_checkpoint, read_config
from avdit.pipeline import AVDiTPipeline, make_untrained_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def avdit_cli(cwd, *args, timeout=300):
    result = subprocess.run([sys.executable, "-m", "avdit", *args], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=timeout)
    return result


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return make_untrained_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.safetensors", codecs="analytic")


# --- every subcommand ---------------------------------------------------------------------------
def test_help_lists_every_command_and_an_unknown_one_is_refused(tmp_path, capsys):
    from avdit.cli import COMMANDS, main

    out = ok(avdit_cli(tmp_path)).stdout
    assert all(name in out for name in COMMANDS)
    bad = avdit_cli(tmp_path, "nonsense")
    assert bad.returncode == 2 and "invalid choice: 'nonsense'" in bad.stderr
    for name in COMMANDS:  # each command's module imports and builds its options
        try:
            status = main([name, "--help"])
        except SystemExit as exit_:  # argparse's own exit, where main does not turn it into a status
            status = exit_.code
        assert status == 0 and "usage: python -m avdit " + name in capsys.readouterr().out


def test_bench_reports_json(tmp_path):
    out = ok(avdit_cli(tmp_path, "bench", "--preset", "tiny", "--batch", "1", "--repeats", "1", "--steps", "1", "--json"))
    report = json.loads(out.stdout)
    assert report["calls_per_step_unconditioned"] == 1.0 and report["sampler_overhead"] >= 0


def test_generate_then_reconstruct_write_playable_mp4s(tmp_path, tiny_checkpoint):
    ok(avdit_cli(tmp_path, "generate", "--checkpoint", str(tiny_checkpoint), "--steps", "1", "--task", "joint",
                 "--duration", "1", "--output", "g.mp4"))
    generated = media.decode(tmp_path / "g.mp4")
    assert generated.video_duration == pytest.approx(1.0, abs=0.13) and generated.audio_duration == pytest.approx(1.0, abs=0.13)
    ok(avdit_cli(tmp_path, "reconstruct", "--input", "g.mp4", "--output", "r.mp4", "--checkpoint", str(tiny_checkpoint)))
    back = media.decode(tmp_path / "r.mp4")
    assert back.frames.shape[1:] == generated.frames.shape[1:] and back.waveform is not None


def test_train_writes_a_loadable_checkpoint(tmp_path):
    ok(avdit_cli(tmp_path, "train", "--codecs", "analytic", "--clips", "4", "--preset", "tiny", "--batch", "2",
                 "--steps", "2", "--output", "m.safetensors"))
    assert read_config(tmp_path / "m.safetensors").training["steps"] == 2
    AVDiTPipeline.load(tmp_path / "m.safetensors")


@pytest.mark.slow
def test_train_codec_writes_codecs(tmp_path):
    ok(avdit_cli(tmp_path, "train-codec", "--which", "both", "--steps", "1", "--minutes", "0.01", "--batch", "1",
                 "--audio-batch", "1", "--output", "c.safetensors"))
    _, tensors = load_checkpoint(tmp_path / "c.safetensors")
    assert any(k.startswith("video_codec.") for k in tensors) and any(k.startswith("audio_codec.") for k in tensors)


def test_eval_scores_a_checkpoint(tmp_path, tiny_checkpoint):
    ok(avdit_cli(tmp_path, "eval", "--checkpoint", str(tiny_checkpoint), "--output", "e.md", "--workdir", "unused",
                 "--eval-clips", "2", "--reference-clips", "2", "--steps", "1"))
    data = json.loads((tmp_path / "e.json").read_text())
    assert set(data["results"][str(tiny_checkpoint)]) == {"joint", "a2v", "v2a", "continue", "inpaint"}


# --- bad checkpoints -------------------------------------------------------------------------------
def rewrite(source, target, config=None, extra=None):
    with safe_open(source, "pt") as f:
        metadata, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if config is not None:
        metadata["config"] = config if isinstance(config, str) else json.dumps(config)
    save_file({**tensors, **(extra or {})}, target, metadata=metadata)
    return target


def refused(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        AVDiTPipeline.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, match", [
    ("denoiser.blocks.0.extra", "the config's model does not use, e.g. 'denoiser.blocks.0.extra'"),
    ("stray.weight", "no part of an AVDiT checkpoint, e.g. 'stray.weight'"),
])
def test_unexpected_tensors_are_refused(tmp_path, tiny_checkpoint, name, match):
    refused(rewrite(tiny_checkpoint, tmp_path / "x.safetensors", extra={name: torch.zeros(3)}), match)


@pytest.mark.parametrize("keep", [0.3, 0.999])
def test_truncated_files_are_refused(tmp_path, tiny_checkpoint, keep):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: int(len(data) * keep)])
    refused(path, "not a safetensors file")
    path.write_bytes(data[:5])
    refused(path, "not a safetensors file")


@pytest.mark.parametrize("section, value, match", [
    ("model", [], "config section 'model' must be an object"),
    ("schedule", "flow", "config section 'schedule' must be an object"),
    ("layout", None, "config section 'layout' must be an object"),
    ("model", {"width": "wide"}, r"config field 'model.width' is 'wide' \(str\); expected int"),
    ("video_codec", {"kind": 5}, r"config field 'video_codec.kind' is 5 \(int\); expected str"),
    ("layout", {"fps": True}, r"config field 'layout.fps' is True \(bool\); expected float"),
    ("training", [], r"config field 'training' is \[\] \(list\); expected dict"),
    ("monl", {"weights": "uniform"}, r"config field 'monl.weights' is 'uniform' \(str\); expected dict"),
])
def test_config_sections_and_fields_of_the_wrong_type_are_refused(tmp_path, tiny_checkpoint, section, value, match):
    config = json.loads(read_config(tiny_checkpoint).to_json())
    config[section] = {**config[section], **value} if isinstance(value, dict) else value
    refused(rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", config=config), match)


@pytest.mark.parametrize("text", ["[]", '"hello"', "3"])
def test_a_config_that_is_not_an_object_is_refused(tmp_path, tiny_checkpoint, text):
    refused(rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", config=text), "must be a JSON object of sections")


def test_an_int_where_a_float_is_expected_is_accepted(tmp_path, tiny_checkpoint):
    config = json.loads(read_config(tiny_checkpoint).to_json())
    config["layout"]["fps"] = 8
    AVDiTPipeline.load(rewrite(tiny_checkpoint, tmp_path / "int.safetensors", config=config))


# --- odd media ---------------------------------------------------------------------------------------
def picture(i, size=(32, 48)):
    """An RGB frame whose top half is bright and whose left edge counts the frame index."""
    image = np.zeros((*size, 3), np.uint8)
    image[: size[0] // 2] = 200
    image[:, :4] = 10 * i
    return image


def write_av(path, fmt=None, video_start=0.0, audio_start=0.0, frames=16, rotation=None, cover=False, sr=16000):
    """Interleaved H.264 (8 fps, a keyframe every 4 frames) and AAC, each starting at its own time;
    `cover` adds a cover-art picture stream before the video; `rotation` display-matrix degrees."""
    with av.open(str(path), "w", format=fmt) as c:
        art = None
        if cover:
            art = c.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 48, 32, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        v = c.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt, v.options = 48, 32, "yuv420p", {"g": "4"}
        if rotation is not None:
            if not hasattr(v, "set_display_rotation"):
                pytest.skip("this PyAV cannot write rotation metadata")
            v.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=sr, layout="mono")
        if art is not None:
            white = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 255, np.uint8), format="rgb24")
            for packet in [*art.encode(white), *art.encode(None)]:
                c.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(frames * sr // 8) / sr)).astype(np.float32)[None]
        events = sorted([(video_start + i / 8, 0, i) for i in range(frames)] +
                        [(audio_start + j / sr, 1, j) for j in range(0, tone.shape[1], 1024)])
        for _, kind, i in events:
            if kind == 0:
                frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
                frame.pts = i + round(video_start * 8)
                packets = v.encode(frame)
            else:
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, i:i + 1024]), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sr, i + round(audio_start * sr)
                packets = a.encode(frame)
            for packet in packets:
                c.mux(packet)
        for stream in (v, a):
            for packet in stream.encode(None):
                c.mux(packet)
    return path


def frame_indices(m):
    return [round(float(f[0, 0, 0]) * 255 / 10) for f in m.frames]


def test_cover_art_is_not_taken_for_the_video(tmp_path):
    path = write_av(tmp_path / "cover.mp4", cover=True)
    with av.open(str(path)) as c:
        art = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        assert len(art) == 1 and len(c.streams.video) == 2, "the test file should hold a video and its cover art"
    m = media.decode(path)
    assert frame_indices(m) == list(range(16)) and m.fps == pytest.approx(8)


def test_audio_with_cover_art_only_has_no_video(tmp_path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        art = c.add_stream("mjpeg", rate=1)
        art.width, art.height, art.pix_fmt = 48, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        a = c.add_stream("aac", rate=16000, layout="mono")
        for packet in art.encode(av.VideoFrame.from_ndarray(np.zeros((32, 48, 3), np.uint8), format="rgb24")):
            c.mux(packet)
        for packet in art.encode(None):
            c.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*a.encode(frame), *a.encode(None)]:
            c.mux(packet)
    m = media.decode(path, video="optional")
    assert m.frames is None and m.waveform.shape == (1, 8000)
    with pytest.raises(media.MediaError, match="has no video stream"):
        media.decode(path)


@pytest.mark.parametrize("name, kwargs", [
    ("ts", dict(fmt="mpegts")),  # MPEG-TS starts its clock at 1.4 s and seeks imprecisely
    ("mkv", dict(video_start=1.5, audio_start=1.5)),
    ("mp4", dict(video_start=1.5, audio_start=1.5)),
])
def test_a_non_zero_start_time_counts_from_the_files_start(tmp_path, name, kwargs):
    path = write_av(tmp_path / f"late.{name}", **kwargs)
    assert frame_indices(media.decode(path)) == list(range(16))
    for start, expected in ((0.25, [2, 3, 4, 5]), (1.0, [8, 9, 10, 11])):
        m = media.decode(path, start=start, duration=0.5)
        assert frame_indices(m) == expected, (name, start)
        assert m.waveform.shape == (1, 8000)


def test_video_that_starts_after_its_audio_keeps_its_place(tmp_path):
    path = write_av(tmp_path / "late_video.mp4", video_start=0.5)
    assert frame_indices(media.decode(path, start=0.25, duration=0.5)) == [0, 1]
    assert frame_indices(media.decode(path, start=1.0, duration=0.5)) == [4, 5, 6, 7]


@pytest.mark.parametrize("rotation, shape, bright", [
    (90, (48, 32), "left"),  # counter-clockwise: the top of the picture ends up on the left
    (-90, (48, 32), "right"),
    (180, (32, 48), "bottom"),
])
def test_rotation_metadata_turns_the_frames_as_players_do(tmp_path, rotation, shape, bright):
    m = media.decode(write_av(tmp_path / "phone.mp4", rotation=rotation, frames=4))
    assert tuple(m.frames.shape[1:3]) == shape
    f = m.frames[0].mean(-1)
    h, w = f.shape
    halves = {"left": f[:, : w // 2], "right": f[:, w // 2 :], "top": f[: h // 2], "bottom": f[h // 2 :]}
    assert float(halves[bright].mean()) > 0.6
    assert float(halves[{"left": "right", "right": "left", "bottom": "top"}[bright]].mean()) < 0.1


def write_audio(path, codec, layout, rate=16000, samples=8000, fmt=None):
    """A tone per channel (220 Hz times the channel number) at 0.5 of full scale."""
    channels = len(av.AudioLayout(layout).channels)
    t = np.arange(samples) / rate
    x = np.stack([0.5 * np.sin(2 * np.pi * 220 * (i + 1) * t) for i in range(channels)]).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return path, torch.from_numpy(x)


@pytest.mark.parametrize("layout", ["mono", "stereo"])
def test_8_bit_audio_decodes_to_minus_1_to_1(tmp_path, layout):
    path, x = write_audio(tmp_path / "u8.wav", "pcm_u8", layout)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].format.name == "u8"
    m = media.decode(path, video=False)
    assert m.waveform.shape == x.shape and m.waveform.dtype == torch.float32
    assert float((m.waveform - x).abs().max()) <= 1 / 128 + 1e-6  # 8-bit quantisation


@pytest.mark.parametrize("layout", ["2.1", "4.0", "quad", "5.0", "5.1", "6.1"])
def test_more_than_two_channels_decode_and_mix_to_mono_and_stereo(tmp_path, layout):
    path, x = write_audio(tmp_path / "many.flac", "flac", layout)
    m = media.decode(path, video=False)
    channels = x.shape[0]
    assert m.waveform.shape == (channels, 8000)
    assert float((m.waveform - x).abs().max()) < 1e-3
    for want in (1, 2):
        mixed = media.conform_audio(m.waveform, m.sample_rate, 16000, want)
        assert mixed.shape == (want, 8000) and float(mixed.abs().max()) <= 1.0
        assert float(mixed.abs().max()) > 0.1
    loud = media.conform_audio(torch.ones(channels, 10), 16000, 16000, 2)
    assert float(loud.max()) <= 1.0 + 1e-6, "a full-scale input must not clip"
    # front left and front right stay on their own sides
    left_only = torch.zeros(channels, 10)
    left_only[0] = 1
    stereo = media.conform_audio(left_only, 16000, 16000, 2)
    assert float(stereo[0].min()) > 0 and float(stereo[1].abs().max()) == 0

"""Every bad command-line input is answered: one line on stderr naming the option, the value and
what is accepted, a non-zero exit, no traceback, and no output file. Each runs `avdit.cli.main`
in-process; the checks come before any model loads (loading one here fails the test)."""
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avdit.cli import main
from avdit.codecs import SHIPPED_CODECS
from avdit.pipeline import DEMO_MODEL

EXAMPLE = Path(__file__).resolve().parent.parent / "example_workflows" / "input" / "avdit_toneshapes.mp4"


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        samples = (np.sin(np.arange(int(16000 * seconds)) / 10) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def write_video_only(path: Path, frames: int = 8) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad and odd inputs, made once: {name: path}."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "junk.safetensors").write_bytes(b"not a checkpoint")
    (folder / "junk.mp4").write_bytes(b"not a video")
    demo = DEMO_MODEL.read_bytes()
    (folder / "truncated.safetensors").write_bytes(demo[: len(demo) * 9 // 10])
    (folder / "empty").mkdir()
    (folder / "a_file").write_text("a file, not a folder")
    return {
        "junk_ckpt": folder / "junk.safetensors", "junk_media": folder / "junk.mp4",
        "truncated": folder / "truncated.safetensors", "empty": folder / "empty", "file": folder / "a_file",
        "audio_only": write_audio_only(folder / "audio_only.wav"), "video_only": write_video_only(folder / "video_only.mp4"),
        "folder": folder,
    }


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr("avdit.pipeline.AVDiTPipeline.load", refuse)
    monkeypatch.setattr("avdit.reconstruct.load_codecs", refuse)
    monkeypatch.setattr("avdit.train.encode_dataset", refuse, raising=False)
    monkeypatch.setattr("avdit.codecs.train.Clips", refuse)  # a train-codec case let through would train for minutes


def refused(capsys, argv: list[str]) -> str:
    """Run the command; it must exit non-zero with one line on stderr (returned)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # SystemExit("message"): Python prints it on stderr when it exits
        err += code + "\n"
    assert code not in (0, None), err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def check(capsys, tmp_path, command: str, args: list, expected: str | list[str], output: str | None = ".mp4"):
    """`command` with `args` (and an --output in an empty folder) is refused with `expected` in its line."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    extra = ["--output", out / f"result{output}"] if output and "--output" not in args else []
    line = refused(capsys, [command, *args, *extra])
    for part in [expected] if isinstance(expected, str) else expected:
        assert part in line, line
    assert list(out.iterdir()) == [], "an output file was written"
    return line


# --- generate ---------------------------------------------------------------------------------

GENERATE = [
    (["--steps", "0"], "python -m avdit generate: --steps is 0; expected a whole number >= 1"),
    (["--steps", "-3"], "--steps is -3; expected a whole number >= 1"),
    (["--steps", "2.5"], "--steps is '2.5'; expected a whole number >= 1"),
    (["--steps"], "--steps needs a value"),
    (["--duration", "nan"], "--duration is nan; expected a finite number > 0"),
    (["--duration", "0"], "--duration is 0; expected a finite number > 0"),
    (["--duration", "-1"], "--duration is -1; expected a finite number > 0"),
    (["--duration", "inf"], "--duration is inf; expected a finite number > 0"),
    (["--duration", "11000"], "--duration 11000 makes 88001 frames of 64x64 at 8 fps (4.0 GiB of frames held in memory "
                              "until the MP4 is written); expected at most 10922 s for this model"),
    (["--seed", "-1"], "--seed is -1; expected a whole number from 0 to 4294967295"),
    (["--video-guidance", "inf"], "--video-guidance is inf; expected a finite number >= 0"),
    (["--audio-guidance", "-1"], "--audio-guidance is -1; expected a finite number >= 0"),
    (["--task", "foo"], "--task: invalid choice: 'foo'; expected one of 'joint', 'a2v'"),
    (["--sampler", "foo"], "--sampler is 'foo'; expected one of ddim, dpmpp_2m, euler"),
    (["--scheduler", "foo"], "--scheduler: invalid choice: 'foo'; expected one of 'simple'"),
    (["--device", "foo"], "--device is 'foo'; expected cpu"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--keep", "2-1"], "--keep '2-1': expected 0 <= START < END seconds"),
    (["--keep", "abc"], "--keep 'abc': expected START-END in seconds, e.g. 0-1.5"),
    (["--keep", "0-inf"], "--keep '0-inf': expected 0 <= START < END seconds"),
    (["--keep", "3-4"], "--keep '3-4' starts at or after the end of the input (2.125 s of video and audio); "
                        "expected spans that start before 2.125 s"),
    (["--keep", "1-4", "--duration", "0.5"], "--keep '1-4' starts at or after the end of the output (--duration 0.5)"),
    (["--keep", "0-3"], "with --keep 0-3, nothing is left to generate (all 2.125 s of the output's video and audio are kept)"),
    (["--task", "interpolate", "--keep", "0-0.125", "--keep", "0-2.125"], "with --keep 0-0.125 0-2.125, nothing is left"),
    (["--keep", "0-0.01"], "with --keep 0-0.01, no whole latent frame of the input is kept"),
    (["--task", "joint", "--keep", "0-1"], "--keep 0-1 is given, but --task joint keeps nothing of the input"),
    (["--codecs", "analytic"], "--codecs is 'analytic', which does not exist; expected 'toneshapes' or 'general' or an "
                               "avdit .safetensors checkpoint with codecs"),
]


@pytest.mark.parametrize("args, expected", GENERATE, ids=[" ".join(a) for a, _ in GENERATE])
def test_generate_refuses(capsys, tmp_path, args, expected):
    check(capsys, tmp_path, "generate", args, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_generate_refuses_a_device_this_machine_lacks(capsys, tmp_path):
    check(capsys, tmp_path, "generate", ["--device", "cuda"], "--device is 'cuda', which this machine does not have")


@pytest.mark.parametrize("name, expected", [
    ("missing", "--input is '{}', which does not exist; expected a video or audio file"),
    ("empty", "--input is '{}', which is not a file; expected a video or audio file"),
    ("junk_media", "--input '{}': decode: '{}' is not a readable media file"),
])
def test_generate_refuses_a_bad_input_file(capsys, tmp_path, files, name, expected):
    path = files.get(name, tmp_path / "missing.mp4")
    check(capsys, tmp_path, "generate", ["--input", path], expected.format(path, path))


def test_v2a_needs_video_and_a2v_needs_audio(capsys, tmp_path, files):
    check(capsys, tmp_path, "generate", ["--task", "v2a", "--input", files["audio_only"]],
          f"--task v2a makes audio for the input's video, but --input '{files['audio_only']}' has no video stream")
    check(capsys, tmp_path, "generate",
          ["--task", "a2v", "--input", files["video_only"]],
          f"--task a2v makes video for the input's audio, but --input '{files['video_only']}' has no audio stream")


def test_keep_past_the_end_of_a_short_input(capsys, tmp_path, files):
    check(capsys, tmp_path, "generate", ["--task", "a2v", "--input", files["audio_only"], "--keep", "1.5-2"],
          "--keep '1.5-2' starts at or after the end of the input (1 s of audio)")


@pytest.mark.parametrize("output, expected", [
    ("out/result.avi", "--output is '{}'; expected a file name ending in .mp4"),
    ("out", "--output is '{}', which is a folder; expected a file name ending in .mp4"),
    ("nowhere/result.mp4", "--output is '{}', but {} is not a folder; expected a file name ending in .mp4 in an existing folder"),
])
def test_generate_refuses_a_bad_output(capsys, tmp_path, output, expected):
    path = tmp_path / output
    line = check(capsys, tmp_path, "generate", ["--output", path], expected.format(path, path.parent))
    assert not path.is_file(), line


def test_output_in_a_folder_that_cannot_be_written(capsys, tmp_path):
    check(capsys, tmp_path, "generate", ["--output", "/proc/result.mp4"],
          "--output is '/proc/result.mp4', but /proc cannot be written to")


def test_sheet_must_be_a_png(capsys, tmp_path):
    check(capsys, tmp_path, "generate", ["--sheet", tmp_path / "out" / "pic.jpg"], "--sheet is '")


@pytest.mark.parametrize("name, expected", [
    ("missing", "--checkpoint is '{}', which does not exist; expected an avdit .safetensors checkpoint"),
    ("junk_ckpt", "--checkpoint is '{}', not a safetensors file (Error while deserializing header"),
    ("truncated", "--checkpoint is '{}', not a safetensors file"),
    ("codecs", "--checkpoint is '{}', which holds no denoiser weights; expected an avdit .safetensors checkpoint with denoiser"),
])
def test_generate_refuses_a_bad_checkpoint(capsys, tmp_path, files, name, expected):
    path = {**files, "codecs": SHIPPED_CODECS}.get(name, tmp_path / "missing.safetensors")
    check(capsys, tmp_path, "generate", ["--checkpoint", path], expected.format(path))


# --- reconstruct ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--input", "{audio_only}"], "--output '{folder}/out/result.mp4': the input is a sound without video, so the output "
                                  "is written as .wav; give a file name ending in .wav"),
    (["--input", EXAMPLE, "--output", "{folder}/out/x.wav"], "--output '{folder}/out/x.wav': the input is a video, so the "
                                                            "output is written as .mp4; give a file name ending in .mp4"),
    (["--input", "{missing}"], "--input is '{missing}', which does not exist; expected a video or audio file"),
    (["--input", EXAMPLE, "--start", "10"], "decode: start=10 s is past the end of"),
    (["--input", EXAMPLE, "--start", "-1"], "--start is -1; expected a finite number >= 0"),
    (["--input", EXAMPLE, "--duration", "0"], "--duration is 0; expected a finite number > 0"),
    (["--input", EXAMPLE, "--resize", "zoom"], "--resize: invalid choice: 'zoom'; expected one of 'crop', 'pad', 'stretch'"),
    (["--input", EXAMPLE, "--checkpoint", "{junk_ckpt}"], "--codecs is '{junk_ckpt}', not a safetensors file"),
    (["--input", EXAMPLE, "--codecs", "{truncated}"], "--codecs is '{truncated}', not a safetensors file"),
    (["--input", EXAMPLE, "--codecs", "{missing}"], "--codecs is '{missing}', which does not exist; expected 'toneshapes' or "
                                                    "'general' or an avdit .safetensors checkpoint with codecs"),
    (["--input", EXAMPLE, "--output", "{folder}/out/x.mkv"], "--output is '{folder}/out/x.mkv'; expected a file name ending in .mp4 or .wav"),
    (["--input", EXAMPLE], "the following arguments are required: --output"),
])
def test_reconstruct_refuses(capsys, tmp_path, files, args, expected):
    names = {**files, "missing": tmp_path / "missing.mp4", "folder": tmp_path}
    args = [str(a).format(**names) for a in args]
    output = None if "--output" in args or expected.endswith("--output") else ".mp4"
    check(capsys, tmp_path, "reconstruct", args, expected.format(**names), output=output)


# --- train, train-codec, eval, bench ------------------------------------------------------------

TRAIN = [
    (["--steps", "0"], "--steps is 0; expected a whole number >= 1"),
    (["--batch", "0"], "--batch is 0; expected a whole number >= 1"),
    (["--clips", "-5"], "--clips is -5; expected a whole number >= 1"),
    (["--save-every", "0"], "--save-every is 0; expected a whole number >= 1"),
    (["--warmup", "-1"], "--warmup is -1; expected a whole number >= 0"),
    (["--lr", "0"], "--lr is 0; expected a finite number > 0"),
    (["--lr", "nan"], "--lr is nan; expected a finite number > 0"),
    (["--minutes", "-1"], "--minutes is -1; expected a finite number >= 0"),  # 0: stop after the first step
    (["--weight-decay", "-0.1"], "--weight-decay is -0.1; expected a finite number >= 0"),
    (["--ema", "1"], "--ema is 1; expected a finite number >= 0 and < 1"),
    (["--clean-probability", "2"], "--clean-probability is 2; expected a finite number >= 0 and <= 1"),
    (["--task-probability", "-0.1"], "--task-probability is -0.1; expected a finite number >= 0 and <= 1"),
    (["--cut-probability", "1.5"], "--cut-probability is 1.5; expected a finite number >= 0 and <= 1"),
    (["--strategy", "task:continue", "--cut-probability", "0.5"], "train: --cut-probability is for the mixture and the "
                                                                   "single strategies; --strategy task:continue trains its own task only"),
    (["--fine-tune", "{missing}"], "--fine-tune is '{missing}', which does not exist"),
    (["--fine-tune", "{demo}", "--resume", "{demo}"], "train: --resume carries a training on; --fine-tune starts a new one"),
    (["--fine-tune", "{demo}", "--preset", "tiny"], "train: --fine-tune {demo} keeps its checkpoint's model; leave --preset "
                                                    "and --time-scale out"),
    (["--fine-tune", "{demo}", "--codecs", "analytic"], "train: --fine-tune {demo} was trained on other latents than --codecs "
                                                        "analytic give (the video codec has other settings)"),
    (["--time-scale", "0"], "--time-scale is 0; expected a finite number > 0"),
    (["--level-sampling", "beta"], "--level-sampling: invalid choice: 'beta'; expected one of 'uniform', 'logit_normal'"),
    (["--seed", "-1"], "--seed is -1; expected a whole number from 0 to 4294967295"),
    (["--preset", "huge"], "--preset is 'huge'; expected one of tiny, mini, demo, small, paper"),
    (["--schedule", "flow:eps"], "--schedule is 'flow:eps'; expected KIND[:TARGET], one of flow:velocity, cosine:eps, cosine:v"),
    (["--strategy", "best"], "--strategy: invalid choice: 'best'; expected one of 'monl'"),
    (["--save-dtype", "int8"], "--save-dtype: invalid choice: 'int8'; expected one of 'float32', 'bfloat16'"),
    (["--monl-weights", "vanilla=nan"], "--monl-weights part 'vanilla=nan' must be NAME=WEIGHT"),
    (["--device", "foo"], "--device is 'foo'; expected cpu"),
    (["--data", "{missing}"], "--data is '{missing}', which does not exist; expected 'toneshapes' or a folder of video files"),
    (["--data", "{empty}"], "--data is '{empty}', which holds no video file; expected 'toneshapes' or a folder of video files"),
    (["--codecs", "{junk_ckpt}"], "--codecs is '{junk_ckpt}', not a safetensors file"),
    (["--codecs", "{missing}"], "--codecs is '{missing}', which does not exist; expected 'analytic' or 'toneshapes' or 'general' or an avdit .safetensors checkpoint"),
    (["--resume", "{codecs}"], "--resume is '{codecs}', which holds no denoiser weights"),
    (["--resume", "{truncated}"], "--resume is '{truncated}', not a safetensors file"),
    (["--log", "{empty}"], "--log is '{empty}', which is a folder; expected a file name"),
    (["--cache", "{empty}"], "--cache is '{empty}', which is a folder; expected a file name"),
    (["--cache", "{file}/latents.safetensors"], "--cache is '{file}/latents.safetensors', but {file} is not a folder"),
    (["--output", "{folder}/out/model.pt"], "--output is '{folder}/out/model.pt'; expected a file name ending in .safetensors"),
    (["--strategy", "vanilla", "--monl-weights", "vanilla=1"], "--monl-weights is for --strategy monl, not --strategy vanilla"),
    ([], "the following arguments are required: --output"),
    # the layout: each flag alone, then against the codecs (the shipped ones are 64x64, 8 fps, 16 kHz)
    (["--size", "0"], "--size is '0'; expected WIDTHxHEIGHT, or one number for a square, in whole pixels from 1 to 4096 "
                      "(e.g. 128 or 128x96)"),
    (["--size", "128x"], "--size is '128x'; expected WIDTHxHEIGHT"),
    (["--size", "128x96x3"], "--size is '128x96x3'; expected WIDTHxHEIGHT"),
    (["--fps", "0"], "--fps is 0; expected a finite number > 0 and <= 1000"),
    (["--fps", "nan"], "--fps is nan; expected a finite number > 0 and <= 1000"),
    (["--sample-rate", "500"], "--sample-rate is 500; expected a whole number from 1000 to 768000"),
    (["--sample-rate", "16k"], "--sample-rate is '16k'; expected a whole number from 1000 to 768000"),
    (["--window-frames", "8"], "--window-frames is 8; expected 1 + 4k video frames with k >= 1: 5, 9, 13, 17, ..."),
    (["--window-frames", "1"], "--window-frames is 1; expected 1 + 4k video frames with k >= 1"),
    (["--size", "128", "--sample-rate", "16000"], "train: --size 128x128 (it has 64x64): --codecs {codecs} fixes this"),
    (["--fps", "24", "--sample-rate", "44100"], "train: --fps 24 (it has 8); --sample-rate 44100 (it has 16000): "
                                                "--codecs {codecs} fixes these"),
    (["--codecs", "analytic", "--size", "100"], "train: the frame size 100x100 is not a multiple of the video codec's "
                                                "spatial stride 8 in both sides; expected e.g. 96x96"),
    (["--codecs", "analytic", "--size", "40x24"], "train: the frame size 40x24 at spatial stride 8 gives a 5 x 3 latent "
                                                  "grid, which the model's 2 x 2 patches do not tile"),
]

TRAIN_CODEC = [
    (["--which", "both_and_more"], "--which: invalid choice: 'both_and_more'; expected one of 'both', 'video', 'audio'"),
    (["--video-share", "0"], "--video-share is 0; expected a finite number > 0 and < 1"),
    (["--video-share", "1"], "--video-share is 1; expected a finite number > 0 and < 1"),
    (["--video-frames", "6"], "--video-frames is 6; expected 1 + 4k frames: 1, 5, 9, 13 or 17"),
    (["--video-frames", "21"], "--video-frames is 21; expected a whole number from 1 to 17"),
    (["--audio-batch", "0"], "--audio-batch is 0; expected a whole number >= 1"),
    (["--threads", "0"], "--threads is 0; expected a whole number >= 1"),
    (["--minutes", "-1"], "--minutes is -1; expected a finite number > 0"),
    (["--video-latent-channels", "0"], "--video-latent-channels is 0; expected a whole number >= 1"),
    (["--weights-dtype", "int8"], "--weights-dtype: invalid choice: 'int8'; expected one of 'float16', 'float32'"),
    (["--base", "{junk_ckpt}"], "--base is '{junk_ckpt}', not a safetensors file"),
    (["--data", "{file}"], "--data is '{file}', which is not a folder"),
    (["--output", "{folder}/out/codecs.ckpt"], "--output is '{folder}/out/codecs.ckpt'; expected a file name ending in .safetensors"),
    (["--device", "foo"], "--device is 'foo'; expected cpu"),
    (["--spatial-stride", "12"], "--spatial-stride is '12'; expected a power of 2 from 1 to 64: 1, 2, 4, 8, 16, 32 or 64"),
    (["--spatial-stride", "128"], "--spatial-stride is '128'; expected a power of 2 from 1 to 64"),
    (["--size", "64x-8"], "--size is '64x-8'; expected WIDTHxHEIGHT"),
    (["--window-frames", "6"], "--window-frames is 6; expected 1 + 4k video frames with k >= 1"),
    (["--size", "100"], "train-codec: --size 100x100 with --spatial-stride 8: the frame size 100x100 is not a multiple "
                        "of the video codec's spatial stride 8 in both sides; expected e.g. 96x96"),
    (["--size", "128x80", "--spatial-stride", "32"], "train-codec: --size 128x80 with --spatial-stride 32: the frame size "
                                                     "128x80 is not a multiple of the video codec's spatial stride 32"),
    (["--window-frames", "5"], "train-codec: --video-frames 9 is longer than the training window (--window-frames 5); "
                               "expected at most 5"),
    (["--which", "audio", "--size", "128", "--spatial-stride", "16"],
     "train-codec: --which audio keeps the video codec of --base the shipped codecs, made for another layout: "
     "--size 128x128 (it has 64x64); --spatial-stride 16 (it has 8); leave these options out"),
    (["--which", "video", "--sample-rate", "44100"], "train-codec: --which video keeps the audio codec of --base the "
                                                     "shipped codecs, made for another layout: --sample-rate 44100 (it has 16000)"),
    (["--which", "vocoder", "--sample-rate", "44100"], "train-codec: --which vocoder keeps the codecs of --base the "
                                                       "shipped codecs, made for another layout: --sample-rate 44100 (it has 16000)"),
    (["--which", "vocoder", "--audio-decoder", "griffin_lim"],
     "train-codec: --which vocoder trains a neural audio decoder; --audio-decoder griffin_lim has no weights to train"),
    (["--audio-floor", "0"], "train-codec: --audio-floor is 0; give a number above 0 and at most 10 (STFT magnitude)"),
    (["--cache-gb", "-1"], "train-codec: --cache-gb is -1; give 0 (no cache) or more GB of memory for decoded clips"),
    (["--audio-decoder", "wavenet"], "--audio-decoder: invalid choice: 'wavenet'; expected one of 'griffin_lim', 'neural'"),
    (["--audio-decoder", "neural", "--vocoder-share", "1"], "--vocoder-share is 1; expected a finite number > 0 and < 1"),
]

EVAL = [
    (["--strategies", "monl,best"], "--strategies is 'monl,best', in which 'best' is not; expected a comma-separated list of: monl"),
    (["--output", "{folder}/out/results.txt"], "--output is '{folder}/out/results.txt'; expected a file name ending in .md"),
    (["--eval-clips", "1"], "eval: --eval-clips is 1; expected 2 to 5000"),
    (["--reference-clips", "6000"], "eval: --reference-clips is 6000; expected 2 to 5000"),
    (["--train-steps", "0"], "--train-steps is 0; expected a whole number >= 1"),
    (["--jobs", "0"], "--jobs is 0; expected a whole number >= 1"),
    (["--workdir", "{file}"], "--workdir is '{file}', which is a file; expected a folder (made if missing)"),
    (["--checkpoint", "{codecs}"], "--checkpoint is '{codecs}', which holds no denoiser weights"),
    (["--checkpoint", "{missing}"], "--checkpoint is '{missing}', which does not exist"),
    (["--sampler", "nope"], "--sampler is 'nope'; expected one of ddim, dpmpp_2m, euler"),
    (["--split", "train"], "--split: invalid choice: 'train'; expected one of 'test', 'validation'"),
    (["--guidance", "nan"], "--guidance is nan; expected a finite number >= 0"),
    (["--codecs", "{empty}"], "--codecs is '{empty}', which is not a file; expected 'analytic' or 'toneshapes' or 'general' or an avdit .safetensors checkpoint"),
    (["--device", "gpu"], "--device is 'gpu'; expected cpu"),
]

BENCH = [
    (["--batch", "0"], "--batch is 0; expected a whole number >= 1"),
    (["--repeats", "0"], "--repeats is 0; expected a whole number >= 1"),
    (["--steps", "-1"], "--steps is -1; expected a whole number >= 1"),
    (["--preset", "giant"], "--preset is 'giant'; expected one of tiny, mini, demo, small, paper"),
    (["--device", "tpu"], "--device is 'tpu'; expected cpu"),
]

CASES = ([("train", a, e) for a, e in TRAIN] + [("train-codec", a, e) for a, e in TRAIN_CODEC]
         + [("eval", a, e) for a, e in EVAL] + [("bench", a, e) for a, e in BENCH])


@pytest.mark.parametrize("command, args, expected", CASES, ids=[f"{c} {' '.join(a)}" for c, a, _ in CASES])
def test_training_commands_refuse(capsys, tmp_path, files, command, args, expected):
    names = {**files, "missing": tmp_path / "missing.safetensors", "codecs": SHIPPED_CODECS, "folder": tmp_path,
             "demo": DEMO_MODEL}
    args = [a.format(**names) for a in args]
    out = tmp_path / "out"
    # every output these commands could write goes into out/, which must stay empty
    defaults = {"train": [("--output", "model.safetensors"), ("--log", "log.jsonl"), ("--cache", "latents.safetensors")],
                "train-codec": [("--output", "codecs.safetensors")],
                "eval": [("--output", "results.md"), ("--workdir", "work"), ("--cache", "latents.safetensors")]}
    extra = [] if expected.endswith("--output") else [
        part for option, name in defaults.get(command, []) if option not in args for part in (option, out / name)]
    check(capsys, tmp_path, command, [*args, *extra], expected.format(**names), output=None)


def test_unknown_command(capsys):
    line = refused(capsys, ["generat"])
    assert line.startswith("python -m avdit: COMMAND: invalid choice: 'generat'; expected one of 'bench', 'train-codec'")

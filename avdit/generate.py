"""`python -m avdit generate`: joint generation, a2v, v2a, continuation, inpainting or
interpolation from the command line, written to one MP4 with its audio.

With no options it runs the bundled demo model on a bundled ToneShapes clip and continues its
first 0.625 s. Every time is in seconds of the input.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from avdit import media
from avdit.cli import span_seconds
from avdit.sampling import DEFAULT_GUIDANCE, SAMPLERS, SCHEDULERS

TASKS = ("joint", "a2v", "v2a", "continue", "inpaint", "interpolate")
EXAMPLE_SEED = 2026  # the bundled example clip: ToneShapes clip of this seed


def add_arguments(parser) -> None:
    parser.add_argument("--task", default="continue", choices=TASKS, help="what to generate (default: continue)")
    parser.add_argument("--input", default=None, help="a video or audio file (default: the bundled ToneShapes clip)")
    parser.add_argument("--keep", action="append", default=None, metavar="START-END",
                        help="a span of the input, in seconds, that is given (repeatable); the task decides the "
                             "modalities. Defaults: continue 0-0.625; inpaint everything but 0.625-1.625; "
                             "interpolate the first 0.125 s and the last 0.5 s; a2v / v2a the whole input")
    parser.add_argument("--duration", type=float, default=None, help="seconds of output (default: the input's length, at least one window)")
    parser.add_argument("--output", default="avdit_out.mp4", help="MP4 to write (default: avdit_out.mp4)")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled demo model)")
    parser.add_argument("--codecs", default=None,
                        help="decode with these codecs instead of the model's own: codecs that give the same latents, "
                             "e.g. the model's with a neural audio decoder added (train-codec --which vocoder --base "
                             "MODEL); others are refused. A model trained with train --codecs general carries them")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default="euler", choices=sorted(SAMPLERS))
    parser.add_argument("--scheduler", default="simple", choices=SCHEDULERS)
    parser.add_argument("--video-guidance", type=float, default=DEFAULT_GUIDANCE, help=f"guidance scale for video (1 = off; default {DEFAULT_GUIDANCE:g})")
    parser.add_argument("--audio-guidance", type=float, default=DEFAULT_GUIDANCE, help=f"guidance scale for audio (1 = off; default {DEFAULT_GUIDANCE:g})")
    parser.add_argument("--sheet", default=None, metavar="PICTURE.png",
                        help="also write a picture: the input's and the output's frames over their waveforms, given parts grey, generated orange")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def given_spans(task: str, keep: list[tuple[float, float]] | None, duration: float,
                video_end: float, audio_end: float) -> dict[str, list[tuple[float, float]]]:
    """Which seconds of which modality are given, for a task; cut to where the input has them."""
    defaults = {
        "joint": [], "a2v": [(0.0, duration)], "v2a": [(0.0, duration)], "continue": [(0.0, 0.625)],
        "inpaint": [(0.0, 0.625), (1.625, duration)], "interpolate": [(0.0, 0.125), (max(0.0, duration - 0.5), duration)],
    }
    spans = keep if keep is not None else defaults[task]
    modalities = {"joint": (), "a2v": ("audio",), "v2a": ("video",)}.get(task, ("video", "audio"))
    ends = {"video": video_end, "audio": audio_end}
    return {m: [(a, min(b, ends[m])) for a, b in spans if min(b, ends[m]) > a] for m in modalities}


def example_clip() -> media.Media:
    """The bundled example: a ToneShapes clip (2.125 s, 8 fps, 16 kHz)."""
    from avdit import data

    clip = data.generate_clip(EXAMPLE_SEED, frames=17)
    return media.Media(frames=torch.from_numpy(clip.video), fps=float(data.FPS),
                       waveform=torch.from_numpy(clip.audio)[None], sample_rate=data.SAMPLE_RATE)


def check_given(args, source: media.Media, config, duration: float,
                given: dict[str, list[tuple[float, float]]]) -> None:
    """Refuse, naming the options, a task the input cannot serve and spans that give nothing or everything."""
    from avdit.layout import Layout

    needs = {"a2v": ("audio", source.waveform), "v2a": ("video", source.frames)}.get(args.task)
    if needs is not None and needs[1] is None:
        raise ValueError(f"--task {args.task} makes {'video' if needs[0] == 'audio' else 'audio'} for the input's "
                         f"{needs[0]}, but --input {args.input!r} has no {needs[0]} stream; expected a file with {needs[0]}")
    if args.task == "joint":
        if args.keep:
            raise ValueError(f"--keep {' '.join(args.keep)} is given, but --task joint keeps nothing of the input; "
                             "leave --keep out, or choose a task that keeps spans (continue, inpaint, interpolate, a2v, v2a)")
        return
    ends = {"video": source.video_duration or 0.0, "audio": source.audio_duration or 0.0}
    used = [m for m in ("video", "audio") if m in given and ends[m] > 0]
    input_end = max((ends[m] for m in used), default=0.0)
    for text in args.keep or []:
        start = span_seconds(text)[0]
        if start >= min(input_end, duration):
            what = f"the input ({input_end:g} s of {' and '.join(used)})" if start >= input_end else f"the output (--duration {duration:g})"
            raise ValueError(f"--keep {text!r} starts at or after the end of {what}; "
                             f"expected spans that start before {min(input_end, duration):g} s")
    layout = Layout.from_config(config, duration=duration)
    covered = {m: layout.covered(given.get(m, []), m) for m in ("video", "audio")}
    which = f"--keep {' '.join(args.keep)}" if args.keep else f"the spans --task {args.task} keeps by default"
    if not any(c.any() for c in covered.values()):
        shortest = min(float(s[1] - s[0]) for s in (layout.video_spans[0], layout.audio_spans[0]))
        raise ValueError(f"with {which}, no whole latent frame of the input is kept (that would be --task joint); "
                         f"expected spans of at least {shortest:g} s inside the input's {input_end:g} s")
    if all(covered[m].all() for m in ("video", "audio")):
        raise ValueError(f"with {which}, nothing is left to generate (all {layout.duration:g} s of the output's video "
                         f"and audio are kept); expected spans that leave part of 0-{duration:g} s out, or a longer --duration")


MAX_OUTPUT_GIB = 4.0  # the output's frames, float32, are held in memory until the MP4 is written


def check_length(args, config, duration: float) -> None:
    """Refuse an output whose frames would not fit in MAX_OUTPUT_GIB, and one longer than a training window
    when the model's layout cannot start a next window (sampling would fail after the model has loaded)."""
    from avdit.layout import Layout
    from avdit.pipeline import window_hop

    lay = config.layout
    frames = Layout.from_config(config, duration=duration).num_frames
    frame_bytes = lay.height * lay.width * 3 * 4
    if frames * frame_bytes > MAX_OUTPUT_GIB * 2**30:
        what = f"--duration {args.duration:g}" if args.duration else f"the input's {duration:g} s"
        most = math.floor(MAX_OUTPUT_GIB * 2**30 / frame_bytes / lay.fps)
        raise ValueError(f"{what} makes {frames} frames of {lay.width}x{lay.height} at {lay.fps:g} fps "
                         f"({frames * frame_bytes / 2**30:.1f} GiB of frames held in memory until the MP4 is written); "
                         f"expected at most {most} s for this model (or generate it in parts with --input and --keep)")
    if frames <= lay.window_frames:
        return
    try:
        window_hop(config)
    except ValueError:
        what = f"--duration {args.duration:g}" if args.duration else f"the input's {duration:g} s"
        window = lay.window_frames / lay.fps
        raise ValueError(f"{what} is longer than one window of the model ({lay.window_frames} frames, {window:g} s), and its "
                         f"layout ({lay.fps:g} fps, {lay.sample_rate} Hz, audio latent frames of {config.audio_codec.hop} "
                         f"samples) has no frame within it where a next window can start on whole latent frames of both; "
                         f"expected --duration of at most {window:g} s") from None


def run(args) -> int:
    from avdit.checkpoint import read_config
    from avdit.pipeline import DEMO_MODEL, AVDiTPipeline

    try:  # every check before the model loads
        keep = [span_seconds(k) for k in args.keep] if args.keep else None
        try:
            source = media.decode(args.input, video="optional", audio="optional") if args.input else example_clip()
        except media.MediaError as exc:
            raise ValueError(f"--input {args.input!r}: {exc}") from None
        config = read_config(args.checkpoint or DEMO_MODEL)
        video_end = source.video_duration or 0.0
        audio_end = source.audio_duration or 0.0
        duration = args.duration or max(video_end, audio_end, config.layout.window_frames / config.layout.fps)
        given = given_spans(args.task, keep, duration, video_end, audio_end)
        check_given(args, source, config, duration, given)
        check_length(args, config, duration)
        try:
            pipe = AVDiTPipeline.load(args.checkpoint, device=args.device, codecs=args.codecs)
        except ValueError as exc:
            try:  # whose fault: the model's, or (when it loads alone) the codecs'
                args.codecs and AVDiTPipeline.load(args.checkpoint)
            except ValueError:
                raise ValueError(f"--checkpoint {args.checkpoint!r}: {exc}" if args.checkpoint else str(exc)) from None
            raise ValueError(f"--codecs {args.codecs!r}: {exc}") from None
    except (ValueError, OSError) as exc:
        print(f"python -m avdit generate: {exc}", file=sys.stderr)
        return 2
    print(f"{args.task}: {duration:g} s, given {given or 'nothing'}", file=sys.stderr)

    def progress(window_index, windows, info):
        print(f"\rwindow {window_index + 1}/{windows} step {info['i'] + 1}/{args.steps}", end="", file=sys.stderr, flush=True)

    frames, waveform = pipe.generate(
        source.frames, source.fps, source.waveform, source.sample_rate, given, duration, progress=progress,
        steps=args.steps, sampler=args.sampler, scheduler=args.scheduler, seed=args.seed,
        video_guidance=args.video_guidance, audio_guidance=args.audio_guidance,
    )
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    path = media.write_mp4(args.output, frames, pipe.native_fps, waveform, pipe.native_sample_rate,
                           metadata={"comment": "made with avdit generate", "avdit": json.dumps(settings)})
    print(f"\nwrote {Path(path)}", file=sys.stderr)
    if args.sheet:
        print(f"wrote {write_sheet(args.sheet, pipe, source, frames, waveform, given)}", file=sys.stderr)
    return 0


def write_sheet(path, pipe, source: media.Media, frames: torch.Tensor, waveform: torch.Tensor,
                given: dict[str, list[tuple[float, float]]]) -> Path:
    """The --sheet picture: the input (conformed to the output's rate, size and length) over the output."""
    from avdit.sheet import contact_sheet, write_png

    fps, rate = pipe.native_fps, pipe.native_sample_rate
    count, samples = frames.shape[0], waveform.shape[1]
    times = (torch.arange(count).numpy() + 0.5) / fps
    marks = [np.array([any(a <= t < b for a, b in given.get(m, [])) for t in times]) for m in ("video", "audio")]
    in_frames, in_wave = torch.zeros_like(frames), torch.zeros_like(waveform)
    if source.frames is not None:
        native = media.conform_video(source.frames, source.fps, fps, size=tuple(frames.shape[1:3]))[:count]
        in_frames[: native.shape[0]] = native
    if source.waveform is not None:
        native = media.conform_audio(source.waveform, source.sample_rate, rate, waveform.shape[0])[:, :samples]
        in_wave[:, : native.shape[1]] = native
    return write_png(path, contact_sheet([(in_frames, in_wave, *marks), (frames, waveform, *marks)]))

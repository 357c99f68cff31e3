"""`python -m avdit eval`: the paper's Table 1 at our scale.

Every training strategy (the MoNL mixture, vanilla, per-modality, per-segment, per-modality-
segment, and one task-specific model per conditional task) is trained with the same budget: the
same steps, batch, data (the same cached ToneShapes latents), model size, learning rate and seed.
Each model then does each task on the same held-out ToneShapes clips (seeds from
`HELD_OUT_SEED`), with the same sampler, steps and seed, and the weight-free scorer of
`avdit.data` scores what comes out:

- **agreement**: how well the clip's audio matches its video by the ToneShapes rules, the mean
  of the scorer's pitch, level, timbre and presence fractions (1 = every frame agrees), over the
  frames the task generates (continue: after the given part; inpaint: the middle);
- **continuity** (tasks with a given time span: continue, inpaint): the generated frames keep the
  given part's colour and timbre and the disc does not jump at a given/generated boundary (mean of
  the three fractions);
- **FD**: Frechet distance between per-frame scorer features (and their change from the previous
  frame) of the output clips and of other held-out real clips; our stand-in for FAD/FVD, since no
  pretrained audio or video network can be installed here. Lower is better; the codecs' own
  reconstructions of the real clips give the floor.

Writes a Markdown report (the tables, the command, the wall time), the numbers as JSON, and a
PNG plot (needs matplotlib: `pip install matplotlib`; without it the plot is skipped with a note).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avdit.codecs.train import HELD_OUT_SEED, toneshapes_batch
from avdit.sampling import DEFAULT_GUIDANCE

TASKS = ("joint", "a2v", "v2a", "continue", "inpaint")
GENERAL = ("monl", "vanilla", "per_modality", "per_segment", "per_modality_segment")
# joint needs no task-specific model: training with every block at one level is vanilla itself
SPECIFIC = {"a2v": "task:a2v", "v2a": "task:v2a", "continue": "task:continue", "inpaint": "task:inpaint"}
# what is given, in seconds of the 2.125 s clip: the first 1.125 s (three of five segments) to
# continue; 0.625..1.625 s (two middle segments) to inpaint
TASK_SECONDS = {"continue": {"given_seconds": 1.125}, "inpaint": {"start": 0.625, "end": 1.625}}
JUMP_PIXELS = 3.0 * math.hypot(2.0, 3.0)  # three of the data's random-walk step standard deviations
# ToneShapes seeds of the clips each split scores, from HELD_OUT_SEED up: the scored clips start at the
# offset, the FD's real reference clips MAX_CLIPS later. "validation" is for choosing settings (mixture
# weights, guidance, ...) without looking at the "test" clips the results are reported on.
SPLITS = {"test": 5000, "validation": 20000}
MAX_CLIPS = 5000


def clip_seeds(split: str, eval_clips: int, reference_clips: int) -> tuple[range, range]:
    """(scored clips, reference clips) of `split`: ToneShapes seeds, never trained on, the splits disjoint."""
    if split not in SPLITS:
        raise ValueError(f"split is {split!r}; expected one of {sorted(SPLITS)}")
    for name, count in (("--eval-clips", eval_clips), ("--reference-clips", reference_clips)):
        if not 2 <= count <= MAX_CLIPS:
            raise ValueError(f"{name} is {count}; expected 2 to {MAX_CLIPS} (more would run into another split's clips)")
    start = HELD_OUT_SEED + SPLITS[split]
    return range(start, start + eval_clips), range(start + MAX_CLIPS, start + MAX_CLIPS + reference_clips)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="docs/RESULTS.md", help="Markdown report to write (the JSON and PNG go beside it)")
    parser.add_argument("--workdir", default=os.path.join(Path.home(), ".cache", "avdit", "eval"), help="where the trained models go (with their resume files: a larger --train-steps trains them on)")
    parser.add_argument("--strategies", default=",".join(GENERAL + tuple(SPECIFIC.values())), help="comma-separated strategies to train and score")
    parser.add_argument("--checkpoint", action="append", default=None, metavar="PATH",
                        help="score these trained checkpoints on every task instead of training the strategies (repeatable)")
    parser.add_argument("--preset", default="mini", help="model size preset of every model")
    parser.add_argument("--train-steps", type=int, default=2000, help="training steps of every model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clips", type=int, default=4000, help="training clips (ToneShapes seeds 0..clips-1)")
    parser.add_argument("--cache", default=os.path.join(Path.home(), ".cache", "avdit", "toneshapes-latents.safetensors"), help="latent cache shared by every model")
    parser.add_argument("--codecs", default=None, help="codecs to train and score with (default: the shipped ones)")
    parser.add_argument("--eval-clips", type=int, default=64, help="held-out clips each model generates per task")
    parser.add_argument("--reference-clips", type=int, default=256, help="held-out real clips the FD compares against")
    parser.add_argument("--split", default="test", choices=sorted(SPLITS),
                        help="which held-out clips to score: test (what results report) or validation (to choose settings on)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help=f"video and audio guidance scale of every model (1 = off; default {DEFAULT_GUIDANCE:g})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="weight precision of the denoiser while scoring (the codecs stay fp32)")
    parser.add_argument("--retrain", action="store_true", help="train again even where the workdir has a finished model")


# Scores -------------------------------------------------------------------------------------------


def frame_features(video: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """(clips, frames, 26): per-frame scorer features and their change from the previous frame."""
    from avdit.data import audio_features, video_features

    seen, heard = video_features(video), audio_features(audio, video.shape[1])
    colour = np.eye(3)[np.clip(seen["color"], 0, 2)] * seen["present"][..., None]
    timbre = np.eye(3)[np.clip(heard["timbre"], 0, 2)] * heard["present"][..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        semitones = 12.0 * np.log2(heard["f0"] / 440.0)
    features = np.concatenate([
        np.stack([seen["present"], np.nan_to_num(seen["x"] / 64.0), np.nan_to_num(seen["y"] / 64.0),
                  np.nan_to_num(seen["r"] / 12.0)], -1), colour,
        np.stack([heard["present"], np.nan_to_num(semitones / 12.0), np.clip(heard["level_db"], -60.0, 0.0) / 30.0], -1), timbre,
    ], -1).astype(np.float64)
    change = np.concatenate([np.zeros_like(features[:, :1]), np.diff(features, axis=1)], 1)
    return np.concatenate([features, change], -1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to rows of a and b (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace of sqrt(cov_a cov_b) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a) (symmetric)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.sqrt(np.clip(middle, 0.0, None)).sum())


def agreement_score(video: np.ndarray, audio: np.ndarray) -> dict:
    from avdit.data import agreement

    scores = agreement(video, audio)
    parts = {k: (0.0 if math.isnan(scores[k]) else scores[k]) for k in ("pitch", "level", "timbre", "presence")}
    return {"agreement": float(np.mean(list(parts.values()))), **parts}


COUNTS = ("pitch", "level", "timbre", "both_present", "presence", "frames")  # per-clip counts behind agreement_score


def clip_counts(video: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """(clips, 6) integer counts per clip, in COUNTS order: frames whose pitch, level and timbre agree
    (out of the frames where both show the disc), those frames, frames whose presence agrees, all frames.
    Summed over any set of clips they give that set's agreement (`agreement_from_counts`)."""
    from avdit.data import agreement

    rows = []
    for v, a in zip(video, audio):
        s = agreement(v, a)
        both = s["both_present"]
        rows.append([0 if math.isnan(s[k]) else round(s[k] * both) for k in ("pitch", "level", "timbre")]
                    + [both, round(s["presence"] * s["frames"]), s["frames"]])
    return np.array(rows, dtype=np.int64)


def pooled_agreement(counts: np.ndarray) -> dict:
    """agreement_score's numbers for clips pooled along the second-to-last axis of counts (..., clips, 6) -> (...)."""
    total = counts.sum(-2).astype(np.float64)
    both = total[..., 3]
    parts = {k: np.divide(total[..., i], both, out=np.zeros_like(both), where=both > 0) for i, k in enumerate(COUNTS[:3])}
    parts["presence"] = total[..., 4] / total[..., 5]
    return {"agreement": np.mean(list(parts.values()), 0), **parts}


def agreement_from_counts(counts: np.ndarray) -> np.ndarray:
    """Agreement (as agreement_score gives it) of clips pooled along the second-to-last axis: (..., clips, 6) -> (...)."""
    return pooled_agreement(counts)["agreement"]


def paired_differences(results: dict, pairs: list[tuple[str, str, tuple[str, ...]]], rounds: int = 2000,
                       seed: int = 0) -> list[dict]:
    """Paired bootstrap over the held-out clips (every model did every task on the same clips).

    For each (a, b, tasks): the difference of a's and b's agreement averaged over `tasks`, and its
    95 % interval from `rounds` resamplings of the clips (the same resampling for both models and all
    tasks). An interval that excludes 0 is a difference the clips can tell apart."""
    rng = np.random.default_rng(seed)
    clips = len(next(iter(next(iter(results.values())).values()))["clip_counts"])
    picks = rng.integers(0, clips, size=(rounds, clips))
    out = []
    for a, b, tasks in pairs:
        def average(strategy, index):
            return np.mean([agreement_from_counts(np.asarray(results[strategy][task]["clip_counts"])[index]) for task in tasks], 0)

        observed = float(average(a, slice(None)) - average(b, slice(None)))
        resampled = average(a, picks) - average(b, picks)
        low, high = np.percentile(resampled, [2.5, 97.5])
        out.append({"a": a, "b": b, "tasks": list(tasks), "difference": observed, "low": float(low), "high": float(high)})
    return out


def continuity_score(video: np.ndarray, audio: np.ndarray, given_video: np.ndarray, given_audio: np.ndarray) -> dict:
    """Generated frames keep the given frames' colour and timbre; no jump at given/generated boundaries.

    given_video / given_audio: bool (frames,) per modality, True on frames whose content was given."""
    from avdit.data import audio_features, video_features

    seen, heard = video_features(video), audio_features(audio, video.shape[1])

    def kept(classes: np.ndarray, given: np.ndarray) -> list[bool]:
        hits = []
        for row in classes:
            reference = row[given & (row >= 0)]
            if len(reference) == 0:
                continue
            target = np.bincount(reference).argmax()
            hits.extend((row[~given & (row >= 0)] == target).tolist())
        return hits

    colour, timbre = kept(seen["color"], given_video), kept(heard["timbre"], given_audio)
    boundaries = np.flatnonzero(given_video[1:] != given_video[:-1])  # frame b | b + 1 crosses
    jumps = []
    for b in boundaries:
        both = seen["present"][:, b] & seen["present"][:, b + 1]
        step = np.hypot(seen["x"][:, b + 1] - seen["x"][:, b], seen["y"][:, b + 1] - seen["y"][:, b])
        jumps.extend((step[both] <= JUMP_PIXELS).tolist())
    parts = {"colour_kept": float(np.mean(colour)) if colour else 0.0, "timbre_kept": float(np.mean(timbre)) if timbre else 0.0,
             "no_jump": float(np.mean(jumps)) if jumps else 0.0}
    return {"continuity": float(np.mean(list(parts.values()))), **parts}


# Running ------------------------------------------------------------------------------------------


def train_model(strategy: str, args, workdir: Path) -> Path:
    """The workdir's model of `strategy` trained for args.train_steps: reused when it is there, trained on
    from a shorter run of the same settings whose resume file is kept (resuming is exact, so that is the
    model a fresh run would give), trained afresh otherwise."""
    from avdit import train
    from avdit.checkpoint import read_config

    path = workdir / f"{strategy.replace(':', '-')}.safetensors"
    warmup = min(200, args.train_steps // 4)
    resume = False
    if path.is_file() and not args.retrain:
        done = read_config(path).training
        same = {"preset": args.preset, "strategy": strategy, "batch_per_process": args.batch, "lr": args.lr,
                "clips": args.clips, "seed": args.seed, "warmup": warmup, "processes": 1, "codecs": args.codecs}
        # a setting the file records otherwise (older files: no seed or warm-up; their codecs' own training record) is not compared
        differ = [f"{k} {done[k]}, not {v}" for k, v in same.items() if k in done and not isinstance(done[k], dict) and done[k] != v]
        if done.get("steps") == args.train_steps and not differ:
            print(f"eval: {strategy}: using {path} (trained in {done.get('seconds', 0):.0f} s)", file=sys.stderr)
            return path
        if differ:
            print(f"eval: {strategy}: {path} was trained with {'; '.join(differ)}: trained afresh", file=sys.stderr)
        resume = (all(done.get(k) == v for k, v in same.items()) and done.get("steps", 0) < args.train_steps
                  and train.resume_path(path).is_file())
        if resume:
            print(f"eval: {strategy}: training {path} on from {done['steps']} to {args.train_steps} steps", file=sys.stderr)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    argv = ["--output", str(path), "--strategy", strategy, "--preset", args.preset, "--steps", str(args.train_steps),
            "--batch", str(args.batch), "--lr", str(args.lr), "--clips", str(args.clips), "--cache", args.cache,
            "--seed", str(args.seed), "--save-every", str(10**9), "--warmup", str(warmup)]
    if resume:
        argv += ["--resume", str(path)]
    if args.codecs:
        argv += ["--codecs", args.codecs]
    if not resume:
        print(f"eval: training {strategy} ({args.train_steps} steps)", file=sys.stderr)
    train.run(parser.parse_args(argv))
    print(file=sys.stderr)
    return path  # its resume file stays beside it, so that a larger --train-steps can train it on


def run_task(pipe, task: str, video_latent, audio_latent, layout, args) -> tuple[np.ndarray, np.ndarray]:
    """Do `task` on a batch of encoded clips; -> decoded video (B, F, H, W, 3), audio (B, S) as numpy."""
    from avdit.monl import task_mask
    from avdit.pipeline import AVLatent
    from avdit.monl import NoiseLevelMask

    nothing_missing = NoiseLevelMask(torch.zeros(layout.video_latent_frames), torch.zeros(layout.audio_latent_frames))
    latent = AVLatent(video_latent, audio_latent, layout, nothing_missing,
                      mask=task_mask(task, layout, **TASK_SECONDS.get(task, {})))
    out = pipe.sample(latent, steps=args.steps, sampler=args.sampler, seed=args.seed,
                      video_guidance=args.guidance, audio_guidance=args.guidance)
    video, audio, _, _ = pipe.decode(out)
    return video.clamp(0, 1).numpy(), audio[:, 0].numpy()


def given_frames(task: str, layout) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: was its video / its audio given in `task`? (from the latent mask)"""
    from avdit.monl import task_mask

    mask = task_mask(task, layout, **TASK_SECONDS.get(task, {}))
    times = (np.arange(layout.num_frames) + 0.5) / layout.fps
    result = []
    for spans, levels in ((layout.video_spans, mask.video), (layout.audio_spans, mask.audio)):
        spans = spans.numpy()
        owner = np.array([np.flatnonzero((spans[:, 0] <= t) & (t < spans[:, 1]))[0] for t in times])
        result.append(levels.numpy()[owner] == 0)
    return result[0], result[1]


def evaluate(args) -> dict:
    from avdit.checkpoint import read_config
    from avdit.pipeline import AVDiTPipeline

    workdir = Path(args.workdir)
    started = time.time()
    if args.checkpoint:
        models = {str(path): Path(path) for path in args.checkpoint}
        strategies = list(models)
    else:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        workdir.mkdir(parents=True, exist_ok=True)
        models = {s: train_model(s, args, workdir) for s in strategies}
    trained_here = time.time() - started
    # as each model's checkpoint records it, so models trained by an earlier run are counted too
    train_seconds = 0.0 if args.checkpoint else sum(float(read_config(path).training.get("seconds", 0.0)) for path in models.values())

    eval_seeds, reference_seeds = clip_seeds(args.split, args.eval_clips, args.reference_clips)
    real_video, real_audio = toneshapes_batch(eval_seeds)
    ref_video, ref_audio = toneshapes_batch(reference_seeds)
    reference = frame_features(ref_video.numpy(), ref_audio[:, 0].numpy()).reshape(-1, 26)

    first = AVDiTPipeline.load(models[strategies[0]])
    layout = __import__("avdit.layout", fromlist=["Layout"]).Layout.from_config(first.config)
    with torch.no_grad():
        video_latent = first.video_codec.encode(real_video)
        audio_latent = first.audio_codec.encode(real_audio)
    from avdit.monl import NoiseLevelMask
    from avdit.pipeline import AVLatent

    floor_v, floor_a, _, _ = first.decode(AVLatent(video_latent, audio_latent, layout, NoiseLevelMask(torch.zeros(1), torch.zeros(1))))
    rows = {"real clips": _scores(real_video.numpy(), real_audio[:, 0].numpy(), reference, None, layout),
            "codec reconstruction": _scores(floor_v.clamp(0, 1).numpy(), floor_a[:, 0].numpy(), reference, None, layout)}
    shuffled = np.roll(np.arange(len(real_audio)), 1)
    rows["shuffled pairs (chance)"] = _scores(real_video.numpy(), real_audio[shuffled, 0].numpy(), reference, None, layout)

    results = {}
    for strategy in strategies:
        pipe = AVDiTPipeline.load(models[strategy], dtype=DTYPES[args.dtype])
        tasks = [t for t in TASKS if strategy in GENERAL or strategy in (args.checkpoint or []) or SPECIFIC.get(t) == strategy]
        for task in tasks:
            t0 = time.time()
            video, audio = run_task(pipe, task, video_latent, audio_latent, layout, args)
            results.setdefault(strategy, {})[task] = _scores(video, audio, reference, task, layout)
            shown = {k: round(v, 3) for k, v in results[strategy][task].items() if k != "clip_counts"}
            print(f"eval: {strategy:>22} {task:>8}  {shown}  {time.time() - t0:.0f} s", file=sys.stderr)
    return {"results": results, "references": rows, "train_seconds": round(train_seconds, 1),
            "seconds": round(time.time() - started + train_seconds - trained_here, 1), "settings": {k: v for k, v in vars(args).items()},
            "tasks": list(TASKS), "strategies": strategies, "task_seconds": TASK_SECONDS}


def _scores(video: np.ndarray, audio: np.ndarray, reference: np.ndarray, task: str | None, layout) -> dict:
    # agreement over the frames the task generates (in either modality): given frames agree by construction
    given_video, given_audio = given_frames(task, layout) if task else (np.zeros(video.shape[1], bool),) * 2
    made = np.flatnonzero(~(given_video & given_audio))
    first, last = int(made.min()), int(made.max()) + 1
    per_frame = audio.shape[-1] // video.shape[1]
    counts = clip_counts(video[:, first:last], audio[:, first * per_frame:last * per_frame])
    scores = {k: float(v) for k, v in pooled_agreement(counts).items()}
    scores["clip_counts"] = counts.tolist()
    scores["fd"] = frechet_distance(frame_features(video, audio).reshape(-1, 26), reference)
    if task in TASK_SECONDS:
        scores.update(continuity_score(video, audio, *given_frames(task, layout)))
    return scores


# Report -------------------------------------------------------------------------------------------

NAMES = {"monl": "MoNL (ours)", "vanilla": "vanilla", "per_modality": "per modality", "per_segment": "per segment",
         "per_modality_segment": "per modality x segment"}


def _name(strategy: str) -> str:
    return NAMES.get(strategy, strategy.replace("task:", "task-specific: "))


def averages(results: dict) -> dict:
    """Per strategy: the mean of each metric over the tasks it was scored on."""
    out = {}
    for strategy, tasks in results.items():
        out[strategy] = {m: float(np.mean([s[m] for s in tasks.values() if m in s])) for m in ("agreement", "continuity", "fd")
                         if any(m in s for s in tasks.values())}
    return out


def report(data: dict, command: str) -> str:
    results, tasks = data["results"], data["tasks"]
    means = averages(results)
    lines = [
        "# Results: the paper's Table 1 at our scale" if not data['settings'].get('checkpoint') else "# Scores of trained checkpoints", "",
        "Made by `python -m avdit eval` (see `avdit/evaluate.py` for what each number is):", "",
        f"    {command}", "",
        f"Wall time {data['seconds'] / 60:.1f} min ({data['train_seconds'] / 60:.1f} min of it training, as the checkpoints record it), "
        f"on {data.get('hardware', 'this machine')}. " + (
            "Scored checkpoints as trained (their training is in each file's metadata). " if data['settings'].get('checkpoint') else
            f"Every model: preset `{data['settings']['preset']}`, "
            f"{data['settings']['train_steps']} steps of batch {data['settings']['batch']}, lr {data['settings']['lr']}, "
            f"the same {data['settings']['clips']} cached ToneShapes clips and seed. ") +
        f"Each cell: {data['settings']['eval_clips']} held-out "
        f"{'validation clips (not the test clips results report), ' if data['settings'].get('split') == 'validation' else 'clips, '}"
        f"{data['settings']['sampler']} with "
        f"{data['settings']['steps']} steps, video and audio guidance {data['settings']['guidance']:g} (1 = off), denoiser in {data['settings'].get('dtype', 'fp32')}. Continue gives the first 1.125 s; inpaint gives all but "
        "0.625..1.625 s; a2v gives the audio, v2a the video, joint nothing.", "",
    ]
    for metric, title, better in (("agreement", "A/V agreement (mean of pitch, level, timbre, presence)", "higher"),
                                  ("fd", "Frechet distance of scorer features to real clips", "lower"),
                                  ("continuity", "Continuity with the given part (colour kept, timbre kept, no jump)", "higher")):
        shown = [t for t in tasks if any(metric in results[s].get(t, {}) for s in results)]
        lines += [f"## {title} ({better} is better)", "",
                  "| model | " + " | ".join(shown) + " | average |", "|---|" + "---:|" * (len(shown) + 1)]
        for strategy in results:
            cells = [f"{results[strategy][t][metric]:.3f}" if t in results[strategy] and metric in results[strategy][t] else ""
                     for t in shown]
            every_task = len(results[strategy]) == len(tasks)
            average = f"{means[strategy][metric]:.3f}" if every_task and metric in means[strategy] else ""
            lines.append(f"| {_name(strategy)} | " + " | ".join(cells) + f" | {average} |")
        for name, row in data["references"].items():
            if metric in row:
                lines.append(f"| *{name}* | " + " | ".join(f"*{row[metric]:.3f}*" for _ in shown) + " | |")
        lines.append("")
    pitch = data["references"]["shuffled pairs (chance)"]["pitch"]
    lines += ["## A/V pitch agreement on the cross-modal tasks", "",
              "| model | a2v pitch | v2a pitch |", "|---|---:|---:|"]
    for strategy in results:
        cells = [f"{results[strategy][t]['pitch']:.3f}" if t in results[strategy] else "" for t in ("a2v", "v2a")]
        lines.append(f"| {_name(strategy)} | " + " | ".join(cells) + " |")
    lines += [f"| *shuffled pairs (chance)* | *{pitch:.3f}* | *{pitch:.3f}* |", ""]
    if data.get("paired"):
        first = _name(data["paired"][0]["a"])
        lines += ["## MoNL against each baseline, paired over the same held-out clips" if data["paired"][0]["a"] == "monl" else
                  f"## {first} against each other model, paired over the same held-out clips", "",
                  f"Difference in A/V agreement ({first} minus the other model; positive: {first} agrees better), averaged over the "
                  f"tasks named, with its 95 % interval from a paired bootstrap over the {data['settings']['eval_clips']} clips "
                  "(`paired_differences` in `avdit/evaluate.py`). An interval that excludes 0 is a difference these clips can "
                  "tell apart; one that straddles 0 is not.", "",
                  f"| {first} minus | tasks | difference | 95 % interval |", "|---|---|---:|---|"]
        for row in data["paired"]:
            scope = "all five (average)" if len(row["tasks"]) == len(tasks) else ", ".join(row["tasks"])
            lines.append(f"| {_name(row['b'])} | {scope} | {row['difference']:+.3f} | {row['low']:+.3f} .. {row['high']:+.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def baseline_pairs(results: dict, tasks) -> list[tuple[str, str, tuple[str, ...]]]:
    """MoNL against every general strategy on all tasks, and against each task-specific model on its task;
    without a MoNL row (scoring --checkpoint files), the first model against each of the others."""
    if "monl" not in results:
        first, *others = results
        return [(first, other, tuple(tasks)) for other in others]
    pairs = [("monl", s, tuple(tasks)) for s in GENERAL[1:] if s in results]
    return pairs + [("monl", s, (task,)) for task, s in SPECIFIC.items() if s in results and task in results["monl"]]


def plot(data: dict, path: Path) -> str | None:
    """Bar charts of agreement and FD per task; returns why not, if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot written"
    results, tasks = data["results"], data["tasks"]
    strategies = [s for s in results if len(results[s]) == len(tasks)]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / (len(strategies) + 1)
    for ax, metric, title in ((axes[0], "agreement", "A/V agreement (higher is better)"), (axes[1], "fd", "Frechet distance to real (lower is better)")):
        specific = any(s in results for s in SPECIFIC.values())
        for i, strategy in enumerate(strategies + ["task-specific"] * specific):
            xs, ys = [], []
            for j, task in enumerate(tasks):
                source = results.get(SPECIFIC.get(task, "vanilla"), {}) if strategy == "task-specific" else results[strategy]
                if task in source:
                    xs.append(j + (i - len(strategies) / 2) * width)
                    ys.append(source[task][metric])
            ax.bar(xs, ys, width, label=_name(strategy))
        for name, style in (("codec reconstruction", "--"), ("shuffled pairs (chance)", ":")):
            if metric == "agreement" or name == "codec reconstruction":
                ax.axhline(data["references"][name][metric], color="black", linestyle=style, linewidth=1, label=name)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.13, 1, 1))
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)
    return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(args) -> int:
    if args.train_steps < 1:
        raise SystemExit(f"eval: --train-steps is {args.train_steps}; expected at least 1")
    try:
        clip_seeds(args.split, args.eval_clips, args.reference_clips)
    except ValueError as error:
        raise SystemExit(f"eval: {error}") from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    data = evaluate(args)
    data["hardware"] = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    command = "python -m avdit eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["eval"] else "python -m avdit eval"
    data["command"] = command
    data["paired"] = paired_differences(data["results"], baseline_pairs(data["results"], data["tasks"]))
    # one line per clip's counts keeps the JSON readable
    text = re.sub(r"\[\s+(-?\d+(?:,\s+-?\d+)*)\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]",
                  json.dumps(data, indent=1, default=str))
    _write(output.with_suffix(".json"), text)
    text = report(data, command)
    png = output.with_name("results.png") if output.name == "RESULTS.md" else output.with_suffix(".png")
    why_not = plot(data, png)
    text += f"\n![Agreement and FD per task]({png.name})\n" if why_not is None else f"\n({why_not})\n"
    _write(output, text)
    print(text)
    return 0

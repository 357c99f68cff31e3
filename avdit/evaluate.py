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
import dataclasses
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
# tasks with a given time span, whose continuity with it is scored
SPAN_TASKS = ("continue", "inpaint")
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


def guidance_scales(text: str) -> list[float]:
    """--guidance '3' or '1,2,3' -> [scales], each finite and >= 0."""
    try:
        scales = [float(part) for part in text.split(",")]
    except ValueError:
        scales = []
    if not scales or any(not (0 <= v < float("inf")) for v in scales) or len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"--guidance is {text}; expected a finite number >= 0, or several different ones separated by commas (e.g. 1,2,3)")
    return scales


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
    parser.add_argument("--guidance", type=guidance_scales, default=[DEFAULT_GUIDANCE], metavar="S[,S...]",
                        help=f"video and audio guidance scale (1 = off; default {DEFAULT_GUIDANCE:g}); several, e.g. 1,2,3: each model "
                             "gets the one with its best average agreement on the validation clips")
    recipe = parser.add_argument_group("training recipe of every general strategy (the task-specific models train on their own task)")
    recipe.add_argument("--clean-probability", type=float, default=0.0,
                        help="chance a drawn row/column is made clean; the exposure to conditioning this gives differs by strategy (default 0: the paper's setting)")
    recipe.add_argument("--task-probability", type=float, default=0.0,
                        help="chance a sample gets one conditional task's given blocks clean, the same for every strategy (default 0: the paper's setting)")
    recipe.add_argument("--level-sampling", default="uniform", choices=["uniform", "logit_normal"])
    recipe.add_argument("--loss-weighting", default="elements", choices=["elements", "modality"])
    recipe.add_argument("--time-scale", type=float, default=None, help="positional time scale (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="weight precision of the denoiser while scoring (the codecs stay fp32)")
    parser.add_argument("--device", default="cpu",
                        help="where the models generate, e.g. cpu, cuda, cuda:1 (the scores are computed on the CPU; models "
                             "this command trains use their own default, a GPU when there is one)")
    parser.add_argument("--retrain", action="store_true", help="train again even where the workdir has a finished model")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models to train at once, each in its own process on an equal share of the threads, its "
                             "output in WORKDIR/<model>.log (a small model trains faster per core on fewer threads: here, two "
                             "mini models side by side on one thread each took 17 %% less time than one after the other on two)")


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


def _metric_of(metric: str):
    """(the per-clip counts key of a task's scores, counts (..., clips, 6) -> the metric pooled over the clips)."""
    if metric == "agreement":
        return "clip_counts", agreement_from_counts
    if metric == "continuity":
        return "continuity_counts", lambda counts: pooled_continuity(counts)["continuity"]
    raise ValueError(f"metric is {metric!r}; expected agreement or continuity")


def _resampled(results: dict, rounds: int, seed: int):
    """(every clip once, `rounds` bootstrap resamplings of the clips): the same for every model, task and metric."""
    rng = np.random.default_rng(seed)
    clips = len(next(iter(next(iter(results.values())).values()))["clip_counts"])
    return slice(None), rng.integers(0, clips, size=(rounds, clips))


def _task_average(results: dict, strategy: str, tasks, metric: str, index) -> np.ndarray:
    key, pooled = _metric_of(metric)
    return np.mean([pooled(np.asarray(results[strategy][task][key])[index]) for task in tasks], 0)


def paired_differences(results: dict, pairs: list[tuple[str, str, tuple[str, ...]]], rounds: int = 2000,
                       seed: int = 0, metric: str = "agreement") -> list[dict]:
    """Paired bootstrap over the held-out clips (every model did every task on the same clips).

    For each (a, b, tasks): the difference of a's and b's `metric` (agreement, or continuity on tasks with
    a given span) averaged over `tasks`, and its 95 % interval from `rounds` resamplings of the clips (the
    same resampling for both models and all tasks). An interval that excludes 0 is a difference the clips
    can tell apart."""
    every, picks = _resampled(results, rounds, seed)
    out = []
    for a, b, tasks in pairs:
        observed = float(_task_average(results, a, tasks, metric, every) - _task_average(results, b, tasks, metric, every))
        low, high = np.percentile(_task_average(results, a, tasks, metric, picks) - _task_average(results, b, tasks, metric, picks), [2.5, 97.5])
        out.append({"a": a, "b": b, "tasks": list(tasks), "metric": metric, "difference": observed, "low": float(low), "high": float(high)})
    return out


def summary(results: dict, tasks, rounds: int = 2000, seed: int = 0) -> list[dict]:
    """The two summaries of every model scored on all `tasks`, ranked by agreement: its agreement averaged over
    all tasks and its continuity averaged over the tasks with a given span, each with a 95 % bootstrap
    interval over the clips. Ties in agreement are ranked by continuity."""
    every, picks = _resampled(results, rounds, seed)
    rows = []
    for strategy, scored in results.items():
        if set(scored) != set(tasks):
            continue
        row = {"strategy": strategy}
        for metric, over in (("agreement", tasks), ("continuity", [t for t in tasks if t in SPAN_TASKS])):
            low, high = np.percentile(_task_average(results, strategy, over, metric, picks), [2.5, 97.5])
            row[metric] = {"value": float(_task_average(results, strategy, over, metric, every)), "low": float(low), "high": float(high)}
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["agreement"]["value"], -row["continuity"]["value"]))


CONTINUITY_COUNTS = ("colour_kept", "colour_frames", "timbre_kept", "timbre_frames", "no_jump", "boundaries")


def continuity_counts(video: np.ndarray, audio: np.ndarray, given_video: np.ndarray, given_audio: np.ndarray) -> np.ndarray:
    """(clips, 6) integer counts per clip, in CONTINUITY_COUNTS order: generated frames that keep the given
    frames' colour, the generated frames showing a colour; the same for timbre; given/generated boundaries
    the disc does not jump across, the boundaries where both frames show it. Summed over any set of clips
    they give that set's continuity (`pooled_continuity`).

    given_video / given_audio: bool (frames,) per modality, True on frames whose content was given."""
    from avdit.data import audio_features, video_features

    seen, heard = video_features(video), audio_features(audio, video.shape[1])

    def kept(row: np.ndarray, given: np.ndarray) -> tuple[int, int]:
        reference = row[given & (row >= 0)]
        if len(reference) == 0:
            return 0, 0
        made = row[~given & (row >= 0)]
        return int((made == np.bincount(reference).argmax()).sum()), len(made)

    boundaries = np.flatnonzero(given_video[1:] != given_video[:-1])  # frame b | b + 1 crosses
    rows = []
    for i in range(len(video)):
        both = seen["present"][i, boundaries] & seen["present"][i, boundaries + 1]
        step = np.hypot(seen["x"][i, boundaries + 1] - seen["x"][i, boundaries], seen["y"][i, boundaries + 1] - seen["y"][i, boundaries])
        rows.append([*kept(seen["color"][i], given_video), *kept(heard["timbre"][i], given_audio),
                     int((step[both] <= JUMP_PIXELS).sum()), int(both.sum())])
    return np.array(rows, dtype=np.int64).reshape(-1, len(CONTINUITY_COUNTS))


def pooled_continuity(counts: np.ndarray) -> dict:
    """Continuity of clips pooled along the second-to-last axis of counts (..., clips, 6) -> (...): the mean
    of the kept-colour, kept-timbre and no-jump fractions (a part with nothing to count scores 0)."""
    total = counts.sum(-2).astype(np.float64)
    parts = {}
    for name, i in (("colour_kept", 0), ("timbre_kept", 2), ("no_jump", 4)):
        parts[name] = np.divide(total[..., i], total[..., i + 1], out=np.zeros_like(total[..., i]), where=total[..., i + 1] > 0)
    return {"continuity": np.mean(list(parts.values()), 0), **parts}


def continuity_score(video: np.ndarray, audio: np.ndarray, given_video: np.ndarray, given_audio: np.ndarray) -> dict:
    """Generated frames keep the given frames' colour and timbre; no jump at given/generated boundaries."""
    return {k: float(v) for k, v in pooled_continuity(continuity_counts(video, audio, given_video, given_audio)).items()}


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
        config = read_config(path)
        done = config.training
        same = {"preset": args.preset, "strategy": strategy, "batch_per_process": args.batch, "lr": args.lr,
                "clips": args.clips, "seed": args.seed, "warmup": warmup, "processes": 1, "codecs": args.codecs}
        # a setting the file records otherwise (older files: no seed or warm-up; their codecs' own training record) is not compared
        differ = [f"{k} {done[k]}, not {v}" for k, v in same.items() if k in done and not isinstance(done[k], dict) and done[k] != v]
        differ += [f"{k} {had}, not {v}" for k, v in _recipe(strategy, args).items()
                   if (had := getattr(config.model if k == "time_scale" else config.monl, k)) != v]
        if done.get("steps") == args.train_steps and not differ:
            print(f"eval: {strategy}: using {path} (trained in {done.get('seconds', 0):.0f} s)", file=sys.stderr)
            return path
        if differ:
            print(f"eval: {strategy}: {path} was trained with {'; '.join(differ)}: trained afresh", file=sys.stderr)
        resume = (not differ and all(done.get(k) == v for k, v in same.items()) and done.get("steps", 0) < args.train_steps
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
    else:
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in _recipe(strategy, args).items()]
    if args.codecs:
        argv += ["--codecs", args.codecs]
    if not resume:
        print(f"eval: training {strategy} ({args.train_steps} steps)", file=sys.stderr)
    train.run(parser.parse_args(argv))
    print(file=sys.stderr)
    return path  # its resume file stays beside it, so that a larger --train-steps can train it on


def train_all(strategies: list[str], args, workdir: Path) -> dict[str, Path]:
    """Each strategy's model (`train_model`); with args.jobs > 1, that many at a time, each in its own
    process on an equal share of this process's threads, writing its output to workdir/<model>.log."""
    if args.jobs <= 1 or len(strategies) <= 1:
        return {s: train_model(s, args, workdir) for s in strategies}
    import concurrent.futures
    import multiprocessing

    threads = train_threads(args.jobs)
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        work = {}
        for strategy in strategies:
            log = workdir / f"{strategy.replace(':', '-')}.log"
            print(f"eval: {strategy}: trained by one of {args.jobs} processes ({threads} thread{'s' * (threads > 1)} each), "
                  f"its output in {log}", file=sys.stderr)
            work[strategy] = pool.submit(_train_logged, strategy, args, workdir, threads, log)
        models = {}
        for strategy, done in work.items():
            try:
                models[strategy] = done.result()
            except BaseException as error:  # the traceback is in the log
                raise SystemExit(f"eval: training {strategy} failed ({type(error).__name__}: {error}); "
                                 f"see {workdir / (strategy.replace(':', '-') + '.log')}") from None
            print(f"eval: {strategy}: {models[strategy]}", file=sys.stderr)
    return models


def train_threads(jobs: int) -> int:
    """Threads each of `jobs` training processes gets: an equal share of this process's."""
    return max(1, torch.get_num_threads() // jobs)


def _train_logged(strategy: str, args, workdir: Path, threads: int, log: Path) -> Path:
    """`train_model` in a worker process on `threads` threads, its stdout and stderr going to `log`."""
    import traceback

    torch.set_num_threads(threads)
    sys.stdout.flush(), sys.stderr.flush()
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            return train_model(strategy, args, workdir)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()


def _recipe(strategy: str, args) -> dict:
    """The training-recipe settings `strategy`'s model is trained with (MonlConfig's fields, and the time scale)."""
    from avdit.model import model_config

    recipe = {"level_sampling": args.level_sampling, "loss_weighting": args.loss_weighting,
              "time_scale": args.time_scale if args.time_scale is not None else model_config(args.preset).time_scale}
    if not strategy.startswith("task:"):
        recipe.update(clean_probability=args.clean_probability, task_probability=args.task_probability)
    return recipe


def scored_mask(task: str, layout):
    """The noise-level mask `task` is scored with: its given blocks (`avdit.monl.task_given`, the same
    ones its task-specific model trains on) at 0, the rest at 1."""
    from avdit.monl import task_given, task_mask

    return task_mask("custom", layout, levels=(~task_given(task, layout.num_segments)).float())


def given_seconds(task: str, layout) -> list[tuple[float, float]]:
    """The [start, end) spans in seconds whose video and audio `task` gives (continue, inpaint)."""
    from avdit.monl import task_given

    spans, given = layout.segment_spans(), task_given(task, layout.num_segments)[0].tolist()
    out = []
    for (a, b), kept in zip(spans.tolist(), given):
        if kept and out and abs(out[-1][1] - a) < 1e-9:
            out[-1] = (out[-1][0], b)
        elif kept:
            out.append((a, b))
    return out


def encode_cut(pipe, video: torch.Tensor, audio: torch.Tensor, end: float, duration: float):
    """Clips (B, F, H, W, 3) and (B, C, S) at the model's fps and sample rate, each cut at `end` seconds
    and encoded by `AVDiTPipeline.encode` to `duration` seconds, as `generate` and ComfyUI encode an
    input that ends there (the audio zero-padded, the last frame held) -> one AVLatent of the batch
    (past `end` marked not available)."""
    lay = pipe.config.layout
    frames, samples = round(end * lay.fps), round(end * lay.sample_rate)
    with torch.no_grad():
        cut = [pipe.encode(v[:frames], lay.fps, a[:, :samples], lay.sample_rate, duration=duration) for v, a in zip(video, audio)]
    return dataclasses.replace(cut[0], video=torch.cat([c.video for c in cut]), audio=torch.cat([c.audio for c in cut]))


def encoded_clips(pipe, task: str, video: torch.Tensor, audio: torch.Tensor, layout) -> tuple[torch.Tensor, torch.Tensor]:
    """The latents `task` is scored on: the clips (B, F, H, W, 3) and (B, C, S) encoded as a user's
    input for it is. When the task's given part ends before the clip does, with nothing given after
    it (continue), each clip is cut where its given part ends and encoded by `AVDiTPipeline.encode`,
    as `generate` and ComfyUI encode an input that ends there (the audio zero-padded, the last frame
    held): the audio encoder looks ~60-80 ms ahead, so the whole clip's latents there would carry the
    real continuation. Otherwise (a2v and v2a give a whole modality; inpaint gives the clip's end,
    so its input goes on) the whole clips."""
    spans = given_seconds(task, layout) if task in SPAN_TASKS else []
    if not spans or spans[-1][1] >= layout.duration - 1e-6:
        with torch.no_grad():
            return pipe.video_codec.encode(video.to(pipe.codec_device)), pipe.audio_codec.encode(audio.to(pipe.codec_device))
    cut = encode_cut(pipe, video, audio, spans[-1][1], layout.duration)
    return cut.video, cut.audio


def run_task(pipe, task: str, video_latent, audio_latent, layout, args, guidance: float) -> tuple[np.ndarray, np.ndarray]:
    """Do `task` on a batch of encoded clips; -> decoded video (B, F, H, W, 3), audio (B, S) as numpy."""
    from avdit.pipeline import AVLatent
    from avdit.monl import NoiseLevelMask

    nothing_missing = NoiseLevelMask(torch.zeros(layout.video_latent_frames), torch.zeros(layout.audio_latent_frames))
    latent = AVLatent(video_latent, audio_latent, layout, nothing_missing, mask=scored_mask(task, layout))
    out = pipe.sample(latent, steps=args.steps, sampler=args.sampler, seed=args.seed,
                      video_guidance=guidance, audio_guidance=guidance)
    video, audio, _, _ = pipe.decode(out)
    return video.clamp(0, 1).cpu().numpy(), audio[:, 0].cpu().numpy()


def given_frames(task: str, layout) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: was its video / its audio given in `task`? (from the latent mask)"""
    mask = scored_mask(task, layout)
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
        models = train_all(strategies, args, workdir)
    trained_here = time.time() - started
    # as each model's checkpoint records it, so models trained by an earlier run are counted too
    train_seconds = 0.0 if args.checkpoint else sum(float(read_config(path).training.get("seconds", 0.0)) for path in models.values())

    eval_seeds, reference_seeds = clip_seeds(args.split, args.eval_clips, args.reference_clips)
    real_video, real_audio = toneshapes_batch(eval_seeds)
    ref_video, ref_audio = toneshapes_batch(reference_seeds)
    reference = frame_features(ref_video.numpy(), ref_audio[:, 0].numpy()).reshape(-1, 26)

    first = AVDiTPipeline.load(models[strategies[0]], device=args.device)
    layout = __import__("avdit.layout", fromlist=["Layout"]).Layout.from_config(first.config)
    latents = {task: encoded_clips(first, task, real_video, real_audio, layout) for task in TASKS}
    from avdit.monl import NoiseLevelMask
    from avdit.pipeline import AVLatent

    floor_v, floor_a, _, _ = first.decode(AVLatent(*latents["joint"], layout, NoiseLevelMask(torch.zeros(1), torch.zeros(1))))
    rows = {"real clips": _scores(real_video.numpy(), real_audio[:, 0].numpy(), reference, None, layout),
            "codec reconstruction": _scores(floor_v.clamp(0, 1).cpu().numpy(), floor_a[:, 0].cpu().numpy(), reference, None, layout)}
    shuffled = np.roll(np.arange(len(real_audio)), 1)
    rows["shuffled pairs (chance)"] = _scores(real_video.numpy(), real_audio[shuffled, 0].numpy(), reference, None, layout)

    choosing = None
    if len(args.guidance) > 1:  # each model's scale is picked on the validation clips, never on the ones reported
        choice_seeds, _ = clip_seeds("validation", args.eval_clips, args.reference_clips)
        choice_video, choice_audio = toneshapes_batch(choice_seeds)
        choosing = {task: encoded_clips(first, task, choice_video, choice_audio, layout) for task in TASKS}
    results, guidance, tried = {}, {}, {}
    for strategy in strategies:
        pipe = AVDiTPipeline.load(models[strategy], device=args.device, dtype=DTYPES[args.dtype])
        tasks = [t for t in TASKS if strategy in GENERAL or strategy in (args.checkpoint or []) or SPECIFIC.get(t) == strategy]
        guidance[strategy] = args.guidance[0]
        if choosing is not None:
            for scale in args.guidance:
                made = [run_task(pipe, task, *choosing[task], layout, args, scale) for task in tasks]
                tried.setdefault(strategy, {})[str(scale)] = float(np.mean([
                    _scores(video, audio, None, task, layout)["agreement"] for task, (video, audio) in zip(tasks, made)]))
            guidance[strategy] = max(args.guidance, key=lambda scale: tried[strategy][str(scale)])
            print(f"eval: {strategy:>22} guidance {guidance[strategy]:g} (validation agreement {tried[strategy]})", file=sys.stderr)
        for task in tasks:
            t0 = time.time()
            video, audio = run_task(pipe, task, *latents[task], layout, args, guidance[strategy])
            results.setdefault(strategy, {})[task] = _scores(video, audio, reference, task, layout)
            shown = {k: round(v, 3) for k, v in results[strategy][task].items() if not k.endswith("counts")}
            print(f"eval: {strategy:>22} {task:>8}  {shown}  {time.time() - t0:.0f} s", file=sys.stderr)
    return {"results": results, "references": rows, "train_seconds": round(train_seconds, 1),
            "seconds": round(time.time() - started + train_seconds - trained_here, 1), "settings": {k: v for k, v in vars(args).items()},
            "tasks": list(TASKS), "strategies": strategies, "guidance": guidance, "guidance_tried": tried,
            "given_seconds": {task: given_seconds(task, layout) for task in SPAN_TASKS}, "continue_input": "cut"}


def _scores(video: np.ndarray, audio: np.ndarray, reference: np.ndarray, task: str | None, layout) -> dict:
    # agreement over the frames the task generates (in either modality): given frames agree by construction
    given_video, given_audio = given_frames(task, layout) if task else (np.zeros(video.shape[1], bool),) * 2
    made = np.flatnonzero(~(given_video & given_audio))
    first, last = int(made.min()), int(made.max()) + 1
    per_frame = audio.shape[-1] // video.shape[1]
    counts = clip_counts(video[:, first:last], audio[:, first * per_frame:last * per_frame])
    scores = {k: float(v) for k, v in pooled_agreement(counts).items()}
    scores["clip_counts"] = counts.tolist()
    if reference is not None:
        scores["fd"] = frechet_distance(frame_features(video, audio).reshape(-1, 26), reference)
    if task in SPAN_TASKS:
        kept = continuity_counts(video, audio, *given_frames(task, layout))
        scores.update({k: float(v) for k, v in pooled_continuity(kept).items()})
        scores["continuity_counts"] = kept.tolist()
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
        f"{_time_text(data)}, on {data.get('hardware', 'this machine')}. " + _jobs_text(data) + (
            "Scored checkpoints as trained (their training is in each file's metadata). " if data['settings'].get('checkpoint') else
            f"Every model: preset `{data['settings']['preset']}`, "
            f"{data['settings']['train_steps']} steps of batch {data['settings']['batch']}, lr {data['settings']['lr']}, "
            f"the same {data['settings']['clips']} cached ToneShapes clips and seed. ") +
        f"Each cell: {data['settings']['eval_clips']} held-out "
        f"{'validation clips (not the test clips results report), ' if data['settings'].get('split') == 'validation' else 'clips, '}"
        f"{data['settings']['sampler']} with {data['settings']['steps']} steps, {_guidance_text(data)}, denoiser in "
        f"{data['settings'].get('dtype', 'fp32')}. {_given_text(data)}", "",
    ]
    if not data['settings'].get('checkpoint'):
        settings = data["settings"]
        lines += [f"Training recipe of the general strategies: clean probability {settings.get('clean_probability', 0.25):g}, task "
                  f"probability {settings.get('task_probability', 0.0):g}, {settings.get('level_sampling', 'uniform')} levels, loss over "
                  f"{settings.get('loss_weighting', 'elements')}" + (f", time scale {settings['time_scale']:g}" if settings.get("time_scale") else "") +
                  " (`python -m avdit train --help`); the task-specific models train on their own task's blocks "
                  "(`avdit.monl.task_given`), the ones they are scored on.", ""]
    if data.get("summary"):
        lines += ["## Summary, ranked by agreement", "",
                  "Agreement averaged over the five tasks and continuity (keeping to the given part) averaged over continue "
                  "and inpaint, each with its 95 % interval from a bootstrap over the clips.", "",
                  "| rank | model | agreement | 95 % interval | continuity | 95 % interval |", "|---:|---|---:|---|---:|---|"]
        for rank, row in enumerate(data["summary"], 1):
            a, c = row["agreement"], row["continuity"]
            lines.append(f"| {rank} | {_name(row['strategy'])} | {a['value']:.3f} | {a['low']:.3f} .. {a['high']:.3f} | "
                         f"{c['value']:.3f} | {c['low']:.3f} .. {c['high']:.3f} |")
        lines.append("")
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
                  f"Difference in A/V agreement and in continuity ({first} minus the other model; positive: {first} does better), "
                  f"averaged over the tasks named, with its 95 % interval from a paired bootstrap over the "
                  f"{data['settings']['eval_clips']} clips (`paired_differences` in `avdit/evaluate.py`). An interval that "
                  "excludes 0 is a difference these clips can tell apart; one that straddles 0 is not.", "",
                  f"| {first} minus | metric | tasks | difference | 95 % interval |", "|---|---|---|---:|---|"]
        for row in data["paired"]:
            scope = "all five (average)" if len(row["tasks"]) == len(tasks) else ", ".join(row["tasks"])
            lines.append(f"| {_name(row['b'])} | {row.get('metric', 'agreement')} | {scope} | {row['difference']:+.3f} | "
                         f"{row['low']:+.3f} .. {row['high']:+.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _parallel(data: dict) -> bool:
    return data["settings"].get("jobs", 1) > 1 and not data["settings"].get("checkpoint")


def _time_text(data: dict) -> str:
    minutes, training = data["seconds"] / 60, data["train_seconds"] / 60
    if _parallel(data):  # the models' own times add up to more than the wall clock saw
        return f"Time {minutes:.1f} min, scoring's wall time plus each model's own training time ({training:.1f} min)"
    return f"Wall time {minutes:.1f} min ({training:.1f} min of it training, as the checkpoints record it)"


def _jobs_text(data: dict) -> str:
    if not _parallel(data):
        return ""
    jobs, threads = data["settings"]["jobs"], data.get("train_threads", 1)
    return (f"The models trained {jobs} at a time, {threads} thread{'s' * (threads > 1)} each (`--jobs {jobs}`), so the "
            "wall time was less than that sum. ")


def _guidance_text(data: dict) -> str:
    scales = data["settings"]["guidance"]
    scales = scales if isinstance(scales, list) else [scales]
    if len(scales) == 1:
        return f"video and audio guidance {scales[0]:g} (1 = off)"
    chosen = ", ".join(f"{_name(s)} {g:g}" for s, g in data.get("guidance", {}).items())
    return (f"video and audio guidance per model, the one of {', '.join(f'{g:g}' for g in scales)} with its best average "
            f"agreement on the validation clips ({chosen})")


def _given_text(data: dict) -> str:
    spans = data.get("given_seconds", {})

    def said(task):
        return " and ".join(f"{a:g}..{b:g} s" for a, b in spans.get(task, []))
    cut = " of an input cut there (encoded as `generate` encodes it)" if data.get("continue_input") == "cut" else \
        " of the whole clip (encoded whole)"
    return (f"Continue gives {said('continue')}{cut}; inpaint gives {said('inpaint')}; " if spans else "") + \
        "a2v gives the audio, v2a the video, joint nothing."


def baseline_pairs(results: dict, tasks, only: tuple[str, ...] | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """MoNL against every general strategy on all tasks, and against each task-specific model on its task;
    without a MoNL row (scoring --checkpoint files), the first model against each of the others.
    `only`: the tasks a metric is scored on (continuity: continue and inpaint); the rest are left out."""
    tasks = tuple(t for t in tasks if only is None or t in only)
    if "monl" not in results:
        first, *others = results
        return [(first, other, tasks) for other in others if all(t in results[other] for t in tasks)]
    pairs = [("monl", s, tasks) for s in GENERAL[1:] if s in results]
    return pairs + [("monl", s, (task,)) for task, s in SPECIFIC.items() if s in results and task in results["monl"] and task in tasks]


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


HISTORY = "## History"


def kept_history(output: Path) -> str:
    """The `## History` section (to the end) of the report `output` holds, to go under its new tables; '' if none."""
    if not output.is_file():
        return ""
    old = output.read_text()
    start = old.find("\n" + HISTORY + "\n")
    return "\n" + old[start + 1:] if start >= 0 else ""


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def layout_problem(config) -> str | None:
    """Why a model or codecs of `config` cannot be scored here, or None: the scorer and the clips are
    ToneShapes' own (64 x 64, 8 fps, 16 kHz mono, 17-frame windows)."""
    from avdit.config import LayoutConfig

    lay, own = config.layout, LayoutConfig()
    if (lay.width, lay.height, lay.fps, lay.sample_rate, lay.window_frames, config.audio_codec.channels) == (
            own.width, own.height, own.fps, own.sample_rate, own.window_frames, 1):
        return None
    return (f"is made for {lay.width}x{lay.height} at {lay.fps:g} fps, {lay.sample_rate} Hz "
            f"{config.audio_codec.channels}-channel audio, {lay.window_frames}-frame windows; eval scores ToneShapes in "
            f"its own layout only ({own.width}x{own.height} at {own.fps:g} fps, {own.sample_rate} Hz mono, "
            f"{own.window_frames}-frame windows): score other models with generate and measures of your own")


def run(args) -> int:
    if args.train_steps < 1:
        raise SystemExit(f"eval: --train-steps is {args.train_steps}; expected at least 1")
    from avdit.checkpoint import read_config
    from avdit.codecs import codecs_path

    checked = [("--checkpoint", path) for path in args.checkpoint or []]
    if args.codecs and args.codecs != "analytic":
        checked.append(("--codecs", args.codecs))
    for option, path in checked:
        problem = layout_problem(read_config(codecs_path(path)))
        if problem:
            raise SystemExit(f"eval: {option} {path} {problem}")
    try:
        clip_seeds(args.split, args.eval_clips, args.reference_clips)
    except ValueError as error:
        raise SystemExit(f"eval: {error}") from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    data = evaluate(args)
    data["train_threads"] = train_threads(args.jobs)
    data["hardware"] = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    command = "python -m avdit eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["eval"] else "python -m avdit eval"
    data["command"] = command
    data["paired"] = (paired_differences(data["results"], baseline_pairs(data["results"], data["tasks"]))
                      + paired_differences(data["results"], baseline_pairs(data["results"], data["tasks"], SPAN_TASKS), metric="continuity"))
    data["summary"] = summary(data["results"], data["tasks"])
    # one line per clip's counts keeps the JSON readable
    text = re.sub(r"\[\s+(-?\d+(?:,\s+-?\d+)*)\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]",
                  json.dumps(data, indent=1, default=str))
    _write(output.with_suffix(".json"), text)
    text = report(data, command)
    png = output.with_name("results.png") if output.name == "RESULTS.md" else output.with_suffix(".png")
    why_not = plot(data, png)
    text += f"\n![Agreement and FD per task]({png.name})\n" if why_not is None else f"\n({why_not})\n"
    text += kept_history(output)
    _write(output, text)
    print(text)
    return 0

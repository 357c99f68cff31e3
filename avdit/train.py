"""MoNL training: the loss of one batch (the `python -m avdit train` command builds on it)."""
from __future__ import annotations

import torch

from avdit.config import MonlConfig
from avdit.layout import Layout
from avdit.monl import draw_levels, per_frame_levels
from avdit.schedule import Schedule


def monl_loss(
    model,
    schedule: Schedule,
    monl: MonlConfig,
    video: torch.Tensor,
    audio: torch.Tensor,
    layout: Layout,
    generator: torch.Generator | None = None,
    level_generator: torch.Generator | None = None,
    waveform: torch.Tensor | None = None,
    audio_codec=None,
) -> torch.Tensor:
    """Mean squared error of the schedule's target over every noised latent element.

    Each sample gets its own (2, N) level matrix from the MoNL mixture; each block is noised to
    its level. Blocks at level 0 are clean inputs with nothing to predict and are left out of the
    mean. `monl.loss_weighting` "elements" weighs every noised element the same (a sample with
    only its audio noised then weighs a fraction of a joint one); "modality" averages each
    sample's video and audio errors separately, then together, so every sample and every noised
    modality weighs the same. video (B, Cv, Tv, h, w), audio (B, Ca, Ta) are clean, normalised latents.
    The level matrices are drawn on the CPU from `level_generator` (default: `generator`, which must then
    be a CPU generator); the noise comes from `generator` on the latents' device.
    With `monl.cut_probability`, a sample may instead be a continuation from a cut (`cut_draws`): its
    clean audio before the cut is re-encoded by `audio_codec` from `waveform` (B, C, S), the batch's
    clips, cut there.
    """
    b = video.shape[0]
    level_generator = generator if level_generator is None else level_generator
    levels, _ = draw_levels(b, layout.num_segments, monl, level_generator)
    video_levels, audio_levels = per_frame_levels(levels, layout)  # (B, Tv), (B, Ta)
    if monl.cut_probability > 0:
        if waveform is None or audio_codec is None:
            raise ValueError("MoNL cut draws (cut_probability > 0) need the batch's waveforms and the audio codec")
        video_levels, audio_levels, audio = cut_draws(monl, layout, video_levels, audio_levels, audio, waveform,
                                                      audio_codec, level_generator)
    video_levels, audio_levels = video_levels.to(video.device), audio_levels.to(video.device)
    tv = video_levels[:, None, :, None, None]  # broadcast over channels and space
    ta = audio_levels[:, None, :]
    noise_v = torch.randn(video.shape, generator=generator, device=video.device)
    noise_a = torch.randn(audio.shape, generator=generator, device=audio.device)
    out_v, out_a = model(
        schedule.add_noise(video, noise_v, tv), schedule.add_noise(audio, noise_a, ta), video_levels, audio_levels
    )
    err_v = (out_v.float() - schedule.training_target(video, noise_v, tv)) ** 2 * (tv > 0)
    err_a = (out_a.float() - schedule.training_target(audio, noise_a, ta)) ** 2 * (ta > 0)
    count_v, count_a = (tv > 0).expand_as(video), (ta > 0).expand_as(audio)
    if monl.loss_weighting == "elements":
        return (err_v.sum() + err_a.sum()) / (count_v.sum() + count_a.sum()).clamp(min=1)
    if monl.loss_weighting != "modality":
        raise ValueError(f"loss weighting is {monl.loss_weighting!r}; expected 'elements' or 'modality'")
    # per sample: the mean error of each modality with noised elements, then their mean; then over samples
    sums = torch.stack([err_v.flatten(1).sum(1), err_a.flatten(1).sum(1)], 1)  # (B, 2)
    counts = torch.stack([count_v.flatten(1).sum(1), count_a.flatten(1).sum(1)], 1)
    noised = counts > 0
    per_sample = (sums / counts.clamp(min=1)).sum(1) / noised.sum(1).clamp(min=1)
    return per_sample.sum() / noised.any(1).sum().clamp(min=1)


def cut_draws(monl, layout: Layout, video_levels: torch.Tensor, audio_levels: torch.Tensor, audio: torch.Tensor,
              waveform: torch.Tensor, audio_codec, generator: torch.Generator | None):
    """Make a `monl.cut_probability` share of the batch continuations of inputs that end at a cut.

    For each such sample a cut is drawn at one of the clip's inner video-frame boundaries (uniformly),
    the latent frames wholly before it (`Layout.covered`) are given (level 0) in both modalities and the
    rest made at one level from `monl.level_sampling`; its given audio latents are encoded from its
    waveform cut there and zero-padded, as `AVDiTPipeline.encode` encodes an input that ends (the
    audio encoder looks ahead, so near the cut they differ from the whole clip's). The video latents
    are kept: they do not look ahead (a causal codec; measured: cutting only the video left the
    continuations as they were). Draws come from `generator` (CPU). Returns the per-frame levels
    (B, Tv), (B, Ta) and the audio latents to feed, with the cut samples' given frames replaced.
    """
    from avdit.monl import _levels

    b = video_levels.shape[0]
    cut = torch.rand(b, generator=generator) < monl.cut_probability
    frame = torch.randint(1, layout.num_frames, (b,), generator=generator)  # the input's last frame is frame - 1
    level = _levels((b, 1), monl.level_sampling, generator)
    if not bool(cut.any()):
        return video_levels, audio_levels, audio
    index = torch.nonzero(cut).flatten()
    # per cut frame f: the latent frames wholly before f / fps, (F, Tv) and (F, Ta), looked up per sample
    given_v, given_a = (torch.stack([layout.covered([(0.0, f / layout.fps)], m) for f in range(layout.num_frames)])[frame[index]]
                        for m in ("video", "audio"))
    seconds = [int(f) / layout.fps for f in frame[index]]
    video_levels, audio_levels = video_levels.clone(), audio_levels.clone()
    video_levels[index] = torch.where(given_v, 0.0, level[index])
    audio_levels[index] = torch.where(given_a, 0.0, level[index])
    clips = waveform[index.to(waveform.device)]
    samples = torch.tensor([round(t * layout.sample_rate) for t in seconds], device=clips.device)
    clips = clips * (torch.arange(clips.shape[-1], device=clips.device) < samples[:, None, None])
    with torch.no_grad(), torch.autocast(clips.device.type, enabled=False):
        encoded = audio_codec.encode(clips.float()).to(audio)
    audio = audio.clone()
    rows = index.to(audio.device)
    audio[rows] = torch.where(given_a.to(audio.device)[:, None, :], encoded, audio[rows])
    return video_levels, audio_levels, audio


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> float:
    """Move `ema`'s weights towards `model`'s after optimizer step `step` (0-based):
    p_ema <- d p_ema + (1 - d) p with d = min(decay, (1 + step) / (10 + step)), the warm-up that
    lets the early average follow the fast-moving weights. Returns d."""
    d = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - d)
    return d


# --- `python -m avdit train` -------------------------------------------------------------------
import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from avdit.checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint  # noqa: E402
from avdit.config import AVDiTConfig  # noqa: E402
from avdit.layout import LAYOUT_OPTIONS, add_layout_arguments, grid_problem, with_layout_options  # noqa: E402
from avdit.monl import STRATEGIES  # noqa: E402

# What a fresh run uses for the options that --resume takes from its checkpoint instead.
FRESH_DEFAULTS = {"preset": "demo", "strategy": "monl", "clean_probability": 0.25, "schedule": "flow:velocity",
                  "task_probability": 0.0, "level_sampling": "uniform", "loss_weighting": "elements",
                  "cut_probability": 0.0}
# the training-recipe options that go into MonlConfig (a --resume carries the checkpoint's on)
RECIPE = ("task_probability", "level_sampling", "loss_weighting", "cut_probability")
STRATEGY_CHOICES = ("monl",) + STRATEGIES + tuple(f"task:{t}" for t in ("joint", "a2v", "v2a", "continue", "inpaint", "interpolate"))


def mixture_weights(text: str) -> dict:
    """--monl-weights 'vanilla=1,per_modality=2,...' -> {name: weight}; names left out weigh 0."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if name not in STRATEGIES or not 0 <= weight < float("inf") or name in weights:
            raise argparse.ArgumentTypeError(
                f"--monl-weights part {part!r} must be NAME=WEIGHT with NAME one of {', '.join(STRATEGIES)} (each once) "
                "and WEIGHT a finite number >= 0, e.g. vanilla=1,per_modality=2,per_segment=1,per_modality_segment=1")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise argparse.ArgumentTypeError(f"--monl-weights {text!r} gives no strategy a positive weight")
    return weights


def monl_for_strategy(strategy: str, clean_probability: float, weights: dict | None = None, **recipe) -> MonlConfig:
    """The MonlConfig of a --strategy name: the mixture (uniform unless `weights`), one strategy alone, or one task.
    `recipe`: MonlConfig's task_probability, level_sampling, loss_weighting and cut_probability (a
    task-specific model always trains on its own task, so task_probability does not apply to it, and
    cut draws, which would give it other tasks, are refused)."""
    if weights is not None and strategy != "monl":
        raise ValueError(f"--monl-weights is for --strategy monl, not --strategy {strategy}")
    if strategy == "monl":
        return MonlConfig(clean_probability=clean_probability, **({"weights": weights} if weights else {}), **recipe)
    if strategy in STRATEGIES:
        return MonlConfig(weights={strategy: 1.0}, clean_probability=clean_probability, **recipe)
    if strategy.startswith("task:"):
        recipe.pop("task_probability", None)
        if recipe.get("cut_probability", 0.0) > 0:
            raise ValueError(f"--cut-probability is for the mixture and the single strategies; --strategy {strategy} "
                             "trains its own task only")
        return MonlConfig(task=strategy.split(":", 1)[1], **recipe)
    raise ValueError(f"strategy is {strategy!r}; expected one of {STRATEGY_CHOICES}")


def add_arguments(parser) -> None:
    parser.add_argument("--output", required=True, help="checkpoint to write (.safetensors)")
    parser.add_argument("--codecs", default=None, help="codecs to train on: 'toneshapes' (the default, 64x64), 'general' (real footage, 128x128), "
                             "'analytic' (weight-free), or a checkpoint holding codecs")
    parser.add_argument("--data", default="toneshapes", help="'toneshapes' or a folder of your own video files")
    add_layout_arguments(parser, "the --codecs' layout, which fixes --size, --fps and --sample-rate: a value that "
                                 "disagrees is refused; the window may differ (with 'analytic' codecs, any)")
    parser.add_argument("--clips", type=int, default=4000, help="clips to encode once and cache (ToneShapes: seeds 0..clips-1)")
    parser.add_argument("--cache", default=None, help="file to cache the encoded latents in (.safetensors)")
    parser.add_argument("--preset", default=None, help=f"model size preset (see avdit.model.PRESETS; default: {FRESH_DEFAULTS['preset']})")
    parser.add_argument("--strategy", default=None, choices=STRATEGY_CHOICES, help=f"noise-level strategy (default: {FRESH_DEFAULTS['strategy']}; monl is the MoNL mixture)")
    parser.add_argument("--monl-weights", type=mixture_weights, default=None, metavar="NAME=W,...",
                        help="MoNL mixture weights (default: uniform over vanilla, per_modality, per_segment, per_modality_segment)")
    parser.add_argument("--clean-probability", type=float, default=None, help=f"chance a drawn row/column is given clean (default: {FRESH_DEFAULTS['clean_probability']})")
    parser.add_argument("--task-probability", type=float, default=None,
                        help="chance a sample, whatever its strategy, gets one conditional task's given blocks (a2v, v2a, continue, inpaint) "
                             f"clean: the same conditioning exposure for every strategy (default: {FRESH_DEFAULTS['task_probability']})")
    parser.add_argument("--level-sampling", default=None, choices=["uniform", "logit_normal"],
                        help=f"how noise levels are drawn (default: {FRESH_DEFAULTS['level_sampling']})")
    parser.add_argument("--loss-weighting", default=None, choices=["elements", "modality"],
                        help="elements: every noised latent element weighs the same; modality: each sample's video and audio "
                             f"errors are averaged separately, then together (default: {FRESH_DEFAULTS['loss_weighting']})")
    parser.add_argument("--cut-probability", type=float, default=None,
                        help="chance a sample continues an input cut at a random frame: both modalities given before the "
                             "cut, their audio latents encoded from the cut clip as generate and ComfyUI encode a user's "
                             "input; teaches continuations to start cleanly where an input ends "
                             f"(default: {FRESH_DEFAULTS['cut_probability']})")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="positions in seconds are multiplied by this before the sinusoid (default: the preset's, 8)")
    parser.add_argument("--schedule", default=None, help=f"schedule:target, e.g. flow:velocity, cosine:eps, cosine:v (default: {FRESH_DEFAULTS['schedule']})")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (saves first)")
    parser.add_argument("--batch", type=int, default=32, help="batch per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute block activations in backward")
    parser.add_argument("--resume", default=None, help="continue exactly where this checkpoint stopped (EMA, step count, and the raw weights, optimizer state and "
                        "random-number generators in its .resume.safetensors sibling); "
                        "its preset, schedule, strategy and mixture carry on, and options that would change them are refused")
    parser.add_argument("--fine-tune", default=None, metavar="CHECKPOINT",
                        help="start from this checkpoint's denoiser (its saved EMA weights, its model and layout) with a fresh "
                             "optimizer and step count and the recipe given here; its codecs' latents must be --codecs'")
    parser.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16"], help="dtype of the saved (EMA) denoiser weights; bfloat16 halves the file (the resume state stays float32)")
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--log", default=None, help="JSONL log file (default: OUTPUT with .jsonl)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def _distributed():
    """(rank, world size, local device) under torchrun; (0, 1, None) otherwise."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, None
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def encode_dataset(config: AVDiTConfig, codecs: tuple, data: str, clips: int, device, cache: str | None,
                   waveforms: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Latents of the training clips, (N, Cv, Tv, h, w) and (N, Ca, Ta), and with `waveforms` their
    audio (N, C, S) (else None), cached in `cache` if given (a cache without waveforms is made again
    when they are asked for)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if not cache:
        return _encode_clips(config, codecs, data, clips, device, waveforms=waveforms)
    # what the latents depend on: a cache made from other data or other codecs is re-encoded, never reused
    digest = hashlib.sha256(f"{data}|{clips}|{config.layout}".encode())
    for codec in codecs:
        for name, tensor in sorted(codec.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().float().numpy().tobytes())
    key = digest.hexdigest()
    with _cache_lock(cache):  # trainings started together (eval --jobs) encode it once: the others wait, then load it
        if Path(cache).is_file():
            with safe_open(cache, "pt") as handle:
                cached_key = (handle.metadata() or {}).get("key")
                has_waveforms = "waveform" in handle.keys()
            if cached_key == key and (has_waveforms or not waveforms):  # read only what is asked for
                with safe_open(cache, "pt") as handle:
                    return (handle.get_tensor("video"), handle.get_tensor("audio"),
                            handle.get_tensor("waveform") if waveforms else None)
            why = "was made from other data or codecs" if cached_key != key else "holds no waveforms (cut draws need them)"
            print(f"latent cache {cache} {why}: encoding again", file=sys.stderr)
        video, audio, waveform = _encode_clips(config, codecs, data, clips, device, waveforms=waveforms)
        tmp = f"{cache}.{os.getpid()}.tmp"
        tensors = {"video": video.contiguous(), "audio": audio.contiguous()}
        if waveform is not None:
            tensors["waveform"] = waveform.contiguous()
        save_file(tensors, tmp, metadata={"key": key})
        os.replace(tmp, cache)
    return video, audio, waveform


@contextlib.contextmanager
def _cache_lock(cache: str):
    """Holds `cache`.lock exclusively (POSIX advisory lock; where fcntl is missing, no lock)."""
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(f"{cache}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _encode_clips(config: AVDiTConfig, codecs: tuple, data: str, clips: int, device, workers: int | None = None,
                  waveforms: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`encode_dataset` without the cache. ToneShapes clips are made by `workers` threads (default:
    `generation_workers`), the same clips in the same order whatever their number."""
    from avdit import data as data_module

    video_codec, audio_codec = codecs
    lay = config.layout
    videos, audios, kept = [], [], []
    if data == "toneshapes":  # in ToneShapes' own 64 x 64, 8 fps, 16 kHz, or conformed to the layout
        source = _toneshapes_clips(lay, config.audio_codec.channels, clips, workers)
    else:
        folder = data_module.VideoFolderDataset(data, clip_seconds=lay.window_frames / lay.fps, fps=lay.fps,
                                                sample_rate=lay.sample_rate, size=(lay.height, lay.width),
                                                channels=config.audio_codec.channels)
        if len(folder) == 0:
            raise ValueError(f"--data {data}: no usable clips found (skipped: {folder.skipped[:3]})")
        source = ((item["video"], item["audio"]) for i in range(min(clips, len(folder))) for item in folder.readable([i]))
    batch_v, batch_a = [], []

    def flush():
        with torch.no_grad():
            videos.append(video_codec.encode(torch.stack(batch_v).to(device)).cpu())
            audios.append(audio_codec.encode(torch.stack(batch_a).to(device)).cpu())
        if waveforms:
            kept.append(torch.stack(batch_a))
        batch_v.clear(), batch_a.clear()

    for v, a in source:
        batch_v.append(v.float()), batch_a.append(a.float())
        if len(batch_v) == 64:
            flush()
    if batch_v:
        flush()
    if not videos:
        raise ValueError(f"--data {data}: none of its clips decode (skipped: {folder.skipped[:3]})")
    return torch.cat(videos), torch.cat(audios), torch.cat(kept) if waveforms else None


def generation_workers(clips: int) -> int:
    """Threads that make ToneShapes clips for the latent cache: one per core, at most 8, for 512 clips
    or more (about 10 ms a clip on one core); 0 (made by the caller's thread) otherwise."""
    return min(8, os.cpu_count() or 1) if clips >= 512 else 0


_CHUNK = 64  # clips a generation thread makes at a time


def _toneshapes_chunk(layout, channels: int, seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    from avdit.codecs.train import toneshapes_batch

    video, audio = toneshapes_batch(list(seeds), layout.window_frames, layout, channels)
    return video.float(), audio.float()


def _toneshapes_clips(layout, channels: int, clips: int, workers: int | None):
    """(video, audio) of ToneShapes seeds 0..clips-1 in order, made here or by `workers` threads."""
    workers = generation_workers(clips) if workers is None else workers
    chunks = [range(i, min(i + _CHUNK, clips)) for i in range(0, clips, _CHUNK)]
    if workers < 2:
        for seeds in chunks:
            yield from zip(*_toneshapes_chunk(layout, channels, seeds))
        return
    import collections
    import concurrent.futures

    # threads: making a clip is mostly numpy work that lets go of the GIL (on two cores, two threads made
    # 640 clips in 2.2 s against 3.4 s in one), and threads need no guard of the caller's main module.
    # At most 2 * workers chunks are made ahead of the encoder, so a slow encoder holds little memory.
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for seeds in chunks:
            pending.append(pool.submit(_toneshapes_chunk, layout, channels, seeds))
            if len(pending) >= 2 * workers:
                yield from zip(*pending.popleft().result())
        while pending:
            yield from zip(*pending.popleft().result())


def run(args) -> int:
    from avdit.layout import Layout
    from avdit.model import AVDiT
    from avdit.pipeline import load_codec_config_and_tensors

    start_step, resume_tensors, tuned = 0, None, None
    if args.resume and args.fine_tune:
        raise SystemExit("train: --resume carries a training on; --fine-tune starts a new one from a checkpoint's weights: give one of them")
    if args.fine_tune:  # a new training from a checkpoint's model and weights
        if args.preset is not None or args.time_scale is not None:
            raise SystemExit(f"train: --fine-tune {args.fine_tune} keeps its checkpoint's model; leave --preset and --time-scale out")
        tuned = load_checkpoint(args.fine_tune)
    if args.resume:  # what the checkpoint was trained as carries on; asking for something else is refused
        config, resume_tensors = load_checkpoint(args.resume)
        strategy = config.training.get("strategy") or _strategy_of(config.monl)
        changed = _resume_changes(args, config, strategy)
        if changed:
            raise SystemExit(f"train: --resume {args.resume} continues the training it was saved from; "
                             f"{'; '.join(changed)}. Leave these options out, or train afresh without --resume")
        start_step = int(config.training.get("steps", 0))
        args.strategy = strategy
        args.preset = config.training.get("preset") or args.preset
    else:  # a fresh run: the options left out take their defaults
        for name, value in FRESH_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if tuned:
            args.preset = tuned[0].training.get("preset")  # the model is the checkpoint's
        try:  # refuse a bad --strategy / --monl-weights pair before any work
            monl = monl_for_strategy(args.strategy, args.clean_probability, args.monl_weights,
                                     **{k: getattr(args, k) for k in RECIPE})
        except ValueError as exc:
            raise SystemExit(f"train: {exc}") from None
    # The layout: the codecs' (or a resumed checkpoint's). They were trained at a frame size, frame rate and
    # sample rate, so asking for others is refused; the window is the denoiser's own (weight-free codecs: all free).
    if args.resume:
        source, base, fixed = f"--resume {args.resume}", config, tuple(LAYOUT_OPTIONS)
    elif tuned:
        source, base, fixed = f"--fine-tune {args.fine_tune}", tuned[0], tuple(LAYOUT_OPTIONS)
    else:
        from avdit.checkpoint import read_config
        from avdit.codecs import codecs_path

        analytic = args.codecs == "analytic"
        source = f"--codecs {args.codecs or codecs_path()}"
        base = AVDiTConfig() if analytic else read_config(codecs_path(args.codecs))
        fixed = () if analytic else ("size", "fps", "sample_rate")
    layout, differ = with_layout_options(base.layout, {name: getattr(args, name) for name in LAYOUT_OPTIONS}, fixed)
    problem = grid_problem(dataclasses.replace(base, layout=layout, model=base.model if args.resume or tuned else _model_config(args)))
    if differ:
        print(f"train: {'; '.join(differ)}: {source} fixes {'this' if len(differ) == 1 else 'these'} (its codecs were "
              "trained at its layout); leave the option out, or train codecs at this layout first (python -m avdit "
              "train-codec with the same layout options)", file=sys.stderr)
        return 2
    if problem:
        print(f"train: {problem}", file=sys.stderr)
        return 2
    rank, world, dist_device = _distributed()
    device = dist_device or torch.device(args.device)
    torch.manual_seed(args.seed + rank)
    codec_config, codec_tensors, codecs = load_codec_config_and_tensors(args.codecs)
    if tuned:
        from avdit.pipeline import latent_mismatch

        # the window is the denoiser's own; frame size, fps, sample rate and the codecs must be those it was trained on
        window = dataclasses.replace(tuned[0].layout, window_frames=codec_config.layout.window_frames)
        mismatch = latent_mismatch(dataclasses.replace(tuned[0], layout=window), tuned[1], codec_config, codec_tensors)
        if mismatch:
            raise SystemExit(f"train: --fine-tune {args.fine_tune} was trained on other latents than --codecs "
                             f"{args.codecs or 'toneshapes'} give ({mismatch}); give the codecs it was trained with")
    if not args.resume:
        kind, _, target = args.schedule.partition(":")
        config = dataclasses.replace(
            codec_config, model=tuned[0].model if tuned else _model_config(args), layout=layout,
            schedule=dataclasses.replace(codec_config.schedule, kind=kind, target=target or codec_config.schedule.target),
            monl=monl,
        )
    Schedule(config.schedule)  # refuse a bad --schedule before any work
    model = AVDiT(config).to(device)
    if tuned:
        load_state(model, tuned[1], "denoiser.", args.fine_tune)
        before = tuned[0].training  # the whole line of trainings behind the weights, newest first
        config = dataclasses.replace(config, training={"fine_tuned_from": {
            "checkpoint": Path(args.fine_tune).name, **{k: before.get(k) for k in ("steps", "seconds", "strategy", "device")},
            **({"fine_tuned_from": before["fine_tuned_from"]} if "fine_tuned_from" in before else {})}})
    ema = copy.deepcopy(model).requires_grad_(False)
    resume_state = {}
    if resume_tensors is not None:
        load_state(ema, resume_tensors, "denoiser.", args.resume)
        raw_file = resume_path(args.resume)
        if raw_file.is_file():  # the raw weights behind the EMA; without them training restarts from the EMA
            resume_state = load_checkpoint(raw_file)[1]
            load_state(model, resume_state, "train.", raw_file)
        else:
            print(f"train: {raw_file} is missing: training goes on from the EMA weights, with a fresh optimizer "
                  "and data order", file=sys.stderr)
            load_state(model, resume_tensors, "denoiser.", args.resume)
    try:
        cuts = config.monl.cut_probability > 0  # cut draws encode the clips' waveforms afresh
        video, audio, waveform = encode_dataset(config, [c.to(device) for c in codecs], args.data, args.clips, device,
                                                args.cache, waveforms=cuts)
    except ValueError as exc:  # a folder without usable clips
        raise SystemExit(f"train: --data {args.data}: {exc}") from None
    layout = Layout.from_config(config)
    if video.shape[2] != layout.video_latent_frames or audio.shape[2] != layout.audio_latent_frames:
        raise ValueError(f"cached latents have {video.shape[2]} video / {audio.shape[2]} audio frames; the layout needs "
                         f"{layout.video_latent_frames} / {layout.audio_latent_frames}: delete the cache {args.cache}")
    if args.grad_checkpointing:
        model.gradient_checkpointing = True
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    schedule = Schedule(config.schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99))
    warmup = lambda step: min(1.0, (step + 1) / max(1, args.warmup))
    generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + rank)
    index_gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    generators = {"noise": generator, "index": index_gen}
    level_gen = generator  # on the CPU the level draws share the noise generator (as they always have)
    if generator.device.type != "cpu":  # draw_levels draws on the CPU, which a CUDA generator cannot feed
        level_gen = generators["levels"] = torch.Generator().manual_seed(args.seed * 1000 + rank + 500)
    loss_avg = None
    if resume_state:  # pick up exactly where the saved run stopped
        _restore(resume_state, raw_file, model, optimizer, generators, rank, world, config.training.get("processes", 1))
        loss_avg = config.training.get("final_loss")
    log_path = Path(args.log or Path(args.output).with_suffix(".jsonl"))
    if rank == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            log_path.unlink(missing_ok=True)  # a fresh run starts a fresh log; --resume appends to it
    started = time.time()
    seconds_before = float(config.training.get("seconds", 0)) if args.resume else 0.0

    def save(done: int) -> None:  # every process takes part (its generator states go into the resume file)
        states = _generator_states(generators, world, device)
        if rank == 0:
            tensors, resume = _checkpoint_tensors(model, ema, codec_tensors, getattr(torch, args.save_dtype))
            resume.update(_optimizer_tensors(model, optimizer))
            resume.update(states)
            _save(args, config, (tensors, resume), done, seconds_before + time.time() - started, world, loss_avg)

    done = saved = start_step
    for step in range(start_step, args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup(step)
        pick = torch.randint(0, video.shape[0], (args.batch,), generator=index_gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = monl_loss(net, schedule, config.monl, video[pick].to(device), audio[pick].to(device), layout, generator,
                             level_gen, waveform[pick].to(device) if cuts else None, codecs[1] if cuts else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, model, step, args.ema)
        loss_value = loss.item()
        loss_avg = loss_value if loss_avg is None else 0.98 * loss_avg + 0.02 * loss_value
        elapsed = time.time() - started
        done = step + 1
        out_of_time = args.minutes is not None and elapsed > args.minutes * 60
        if world > 1 and args.minutes is not None:  # the clocks differ: every process stops at the same step
            import torch.distributed as dist

            flag = torch.tensor([float(out_of_time)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"\rstep {done}/{args.steps}  loss {loss_avg:.4f}  {elapsed / 60:.1f} min", end="", file=sys.stderr, flush=True)
            with open(log_path, "a") as log:
                log.write(json.dumps({"step": done, "loss": loss_value, "loss_avg": loss_avg, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds_before + elapsed}) + "\n")
        if done % args.save_every == 0 or out_of_time:
            save(done)
            saved = done
        if out_of_time:
            break
    if saved != done or done == start_step:
        save(done)
    if rank == 0:
        print(f"\nsaved {args.output}", file=sys.stderr)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the others wait for rank 0's save: a process group torn down mid-way can abort (gloo)
        dist.destroy_process_group()
    return 0


def _model_config(args):
    """The preset's model, with --time-scale when given."""
    from avdit.model import model_config

    model = model_config(args.preset)
    return model if args.time_scale is None else dataclasses.replace(model, time_scale=args.time_scale)


def _strategy_of(monl: MonlConfig) -> str:
    """The --strategy name a MonlConfig was made from (for checkpoints that did not record it)."""
    if monl.task is not None:
        return f"task:{monl.task}"
    positive = [n for n, w in monl.weights.items() if w > 0]
    return positive[0] if len(positive) == 1 else "monl"


def _resume_changes(args, config: AVDiTConfig, strategy: str) -> list[str]:
    """The options given beside --resume that ask for other training than the checkpoint's (trained
    with `strategy`), each said."""
    from avdit.model import model_config

    recorded = config.training
    changes = []
    if args.preset is not None and dataclasses.replace(model_config(args.preset), time_scale=config.model.time_scale) != config.model:
        changes.append(f"--preset {args.preset} differs from the checkpoint's model (preset {recorded.get('preset', 'unrecorded')})")
    if args.time_scale is not None and args.time_scale != config.model.time_scale:
        changes.append(f"--time-scale {args.time_scale:g} differs from the checkpoint's {config.model.time_scale:g}")
    for name in RECIPE:
        asked, had = getattr(args, name), getattr(config.monl, name)
        if asked is not None and asked != had:
            changes.append(f"--{name.replace('_', '-')} {asked} differs from the checkpoint's {had}")
    if args.schedule is not None:
        kind, _, target = args.schedule.partition(":")
        if kind != config.schedule.kind or (target and target != config.schedule.target):
            changes.append(f"--schedule {args.schedule} differs from the checkpoint's {config.schedule.kind}:{config.schedule.target}")
    if args.strategy is not None and args.strategy != strategy:
        changes.append(f"--strategy {args.strategy} differs from the checkpoint's {strategy}")
    if args.monl_weights is not None:
        asked = {n: w for n, w in args.monl_weights.items() if w > 0}
        if config.monl.task is not None or asked != {n: w for n, w in config.monl.weights.items() if w > 0}:
            changes.append(f"--monl-weights {args.monl_weights} differs from the checkpoint's mixture "
                           f"{config.monl.weights if config.monl.task is None else 'task:' + config.monl.task}")
    if args.clean_probability is not None and args.clean_probability != config.monl.clean_probability:
        changes.append(f"--clean-probability {args.clean_probability:g} differs from the checkpoint's {config.monl.clean_probability:g}")
    return changes


def resume_path(output: str | os.PathLike) -> Path:
    """Where training keeps the raw (non-EMA) weights beside a checkpoint, for --resume."""
    output = Path(output)
    return output.with_name(output.stem + ".resume.safetensors")


def _checkpoint_tensors(model, ema, codec_tensors, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """(the checkpoint: EMA denoiser + codecs, the resume state: raw weights under 'train.').

    They go to two files so the checkpoint a user loads or ships is no bigger than the model."""
    tensors = {f"denoiser.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    tensors.update(codec_tensors)
    return tensors, {f"train.{k}": v for k, v in model.state_dict().items()}


def _optimizer_tensors(model, optimizer) -> dict:
    """The optimizer's per-parameter state (AdamW: step, exp_avg, exp_avg_sq) as `optim.<state>.<parameter>`."""
    tensors = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"optim.{key}.{name}"] = value
    return tensors


def _generator_states(generators: dict, world: int, device) -> dict:
    """`rng.<name>.<rank>`: every process's generator states (a collective call under torchrun)."""
    states = {}
    for name, gen in generators.items():
        state = gen.get_state()
        if world > 1:
            import torch.distributed as dist

            gathered = [torch.empty_like(state, device=device) for _ in range(world)]
            dist.all_gather(gathered, state.to(device))
            states.update({f"rng.{name}.{r}": s.cpu() for r, s in enumerate(gathered)})
        else:
            states[f"rng.{name}.0"] = state
    return states


def _restore(tensors: dict, path, model, optimizer, generators: dict, rank: int, world: int, saved_world: int) -> None:
    """Load the optimizer state and this process's generator states from a resume file, so that
    resuming gives the model an unbroken run would have; say what cannot be restored."""
    params = dict(model.named_parameters())
    by_param = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            state, _, name = key[len("optim."):].partition(".")
            if name not in params:
                raise CheckpointError(f"{path}: optimizer state '{key}' is for a parameter the model does not have")
            by_param.setdefault(name, {})[state] = value
    if by_param:
        if set(by_param) != set(params):
            missing = sorted(set(params) - set(by_param))
            raise CheckpointError(f"{path}: optimizer state is missing for {len(missing)} parameter(s), e.g. '{missing[0]}'")
        full = optimizer.state_dict()
        full["state"] = {i: by_param[name] for i, name in enumerate(params)}  # param_groups list them in this order
        optimizer.load_state_dict(full)
    own = {name: tensors.get(f"rng.{name}.{rank}") for name in generators}
    fresh = [] if by_param else ["the optimizer"]
    if saved_world == world and all(state is not None for state in own.values()):
        for name, gen in generators.items():
            gen.set_state(own[name])
    else:
        fresh.append("the data order and noise")
    if fresh and rank == 0:
        why = f"by {saved_world} processes and this run has {world}" if saved_world != world else "by an older version"
        print(f"train: {path} was saved {why}: the weights carry on, {' and '.join(fresh)} start afresh", file=sys.stderr)


def _save(args, config, tensor_sets, step, seconds, world, loss) -> None:
    tensors, resume_state = tensor_sets
    config = dataclasses.replace(config, training={
        **config.training, "steps": step, "data": args.data, "clips": args.clips, "strategy": args.strategy,
        "batch_per_process": args.batch, "processes": world, "lr": args.lr, "seconds": round(seconds, 1),
        "final_loss": loss, "device": args.device, "preset": args.preset, "save_dtype": args.save_dtype,
        "seed": args.seed, "warmup": args.warmup, "weight_decay": args.weight_decay, "ema": args.ema, "codecs": args.codecs,
    })
    save_checkpoint(resume_path(args.output), config, resume_state)
    save_checkpoint(args.output, config, tensors)

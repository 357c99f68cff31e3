"""`python -m avdit train-codec`: train the small learned video and audio autoencoders on ToneShapes.

    python -m avdit train-codec --threads 2 --output avdit/assets/codecs.safetensors

Each step draws fresh ToneShapes clips (training seeds below HELD_OUT_SEED; held-out clips use
seeds from it up). Video: squared error on pixels and on horizontal and vertical pixel differences
(edges), on 9-frame clips (the first frame alone, then two groups of four). Audio: the codec's own
STFT (see `avdit.codecs.learned.LearnedAudioCodec`), L1 of log magnitudes plus spectral
convergence, on whole 2.125 s clips; Griffin-Lim, which turns spectra back into waveforms, has no
weights and is not trained. AdamW with warm-up and cosine decay over the step or compute budget,
whichever ends first; the budget counts CPU time over threads, so a busy machine makes training
take longer rather than train less. At the end the latent shift and scale are measured
on training clips (so latents come out about zero-mean, unit-variance), the codecs are scored on
held-out clips, and everything is saved with `avdit.checkpoint.save_checkpoint` under
`video_codec.` / `audio_codec.`, the scores in the config's `training` section.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from avdit.checkpoint import CheckpointError, save_checkpoint
from avdit.codecs import build_audio_codec, build_video_codec, load_codecs
from avdit.codecs.base import AudioCodec, VideoCodec, video_psnr
from avdit.codecs.learned import AUDIO_OPTIONS, VIDEO_OPTIONS
from avdit.config import AudioCodecConfig, AVDiTConfig, VideoCodecConfig

HELD_OUT_SEED = 10**9  # training clips use seeds below this, evaluation clips from it up
STATISTICS_SEED = 5 * 10**8  # training-range clips on which the latent shift and scale are measured
EVAL_CLIPS = 32


def learned_video_config(latent_channels: int = 16) -> VideoCodecConfig:
    """The shipped video codec's shape: 17 frames of 64x64 -> 5 x 8 x 8 latents."""
    return VideoCodecConfig(kind="learned", temporal_stride=4, spatial_stride=8, causal=True,
                            latent_channels=latent_channels, options=dict(VIDEO_OPTIONS))


def learned_audio_config(latent_channels: int = 32) -> AudioCodecConfig:
    """The shipped audio codec's shape: 16 kHz mono, hop 320 (50 latent frames per second)."""
    return AudioCodecConfig(kind="learned", hop=320, latent_channels=latent_channels, channels=1,
                            options=dict(AUDIO_OPTIONS))


# Data ---------------------------------------------------------------------------------------------


def toneshapes_batch(seeds, frames: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    """ToneShapes clips: video (B, F, 64, 64, 3) in 0..1 and audio (B, 1, F * 2000) at 16 kHz."""
    from avdit.data import generate_batch

    clips = generate_batch([int(s) for s in seeds], frames=frames)
    return torch.from_numpy(clips.video), torch.from_numpy(clips.audio)[:, None]


class Clips:
    """Where training, statistics and score clips come from: ToneShapes, or a folder of videos.

    ToneShapes: fresh seeds below HELD_OUT_SEED to train, STATISTICS_SEED.. for the latent scale,
    HELD_OUT_SEED.. to score. A folder: its 2.125 s clips (`avdit.data.VideoFolderDataset`), the
    last tenth (at least one, when there are two or more) held out to score, the rest to train."""

    def __init__(self, data: str = "toneshapes"):
        self.data = data
        self.folder = None
        if data != "toneshapes":
            from avdit.data import VideoFolderDataset

            self.folder = VideoFolderDataset(data)  # 17 frames at 8 fps, 64 x 64, 16 kHz mono: the codecs' shape
            held = len(self.folder) // 10 or (1 if len(self.folder) > 1 else 0)
            self.train_count = len(self.folder) - held
            self.held_out = list(range(self.train_count, len(self.folder))) or [0]

    def _folder_batch(self, indices, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.folder[int(i)] for i in indices]
        return torch.stack([it["video"][:frames] for it in items]), torch.stack([it["audio"] for it in items])

    def train(self, rng, count: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return toneshapes_batch(rng.integers(0, HELD_OUT_SEED, count), frames)
        return self._folder_batch(rng.integers(0, self.train_count, count), frames)

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return toneshapes_batch(range(STATISTICS_SEED, STATISTICS_SEED + 64), 17)
        return self._folder_batch(range(min(64, self.train_count)), 17)

    def scores(self, clips: int = EVAL_CLIPS) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), 17)
        return self._folder_batch(self.held_out[:clips], 17)

    def describe(self) -> str:
        if self.folder is None:
            return (f"ToneShapes v1, fresh seeds < {HELD_OUT_SEED} each step; scores on seeds "
                    f"{HELD_OUT_SEED}..{HELD_OUT_SEED + EVAL_CLIPS - 1}")
        return (f"{len(self.folder)} clips of 2.125 s from {self.data}: {self.train_count} to train, "
                f"{len(self.held_out)} held out to score")


# Losses -------------------------------------------------------------------------------------------


def video_loss(reconstruction: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Squared error on pixels and on horizontal and vertical pixel differences (edges). (B, F, H, W, 3).

    Squared error, not L1: on frames that are mostly flat background, L1's median solution drops a
    small disc it is unsure of, and PSNR is what the codec is judged by.
    """
    def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :, 1:] - x[:, :, :-1], x[:, :, :, 1:] - x[:, :, :, :-1]

    loss = ((reconstruction - frames) ** 2).mean()
    for a, b in zip(edges(reconstruction), edges(frames)):
        loss = loss + ((a - b) ** 2).mean()
    return 10.0 * loss


def spectrum_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 of log magnitudes plus spectral convergence of magnitudes; both (B, bins, T) log(|X| + eps).

    The L1 of logs weighs quiet bins (silence, the floor between harmonics) like loud ones; spectral
    convergence weighs the loud peaks that carry pitch, loudness and timbre. Predictions are capped
    at e**3 above the target's loudest bin inside the exponential, so one wild bin cannot blow up
    the loss (the L1 term still pulls it back).
    """
    cap = target.amax().detach() + 3.0
    magnitude = predicted.clamp(max=cap).exp()
    convergence = torch.linalg.norm(target.exp() - magnitude) / torch.linalg.norm(target.exp())
    return (predicted - target).abs().mean() + convergence


# Scores -------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_video(codec: VideoCodec, clips: int = EVAL_CLIPS, frames: int = 17, video: torch.Tensor | None = None) -> float:
    """PSNR (dB) through the codec of `video` (B, F, H, W, 3), default `clips` held-out ToneShapes clips."""
    if video is None:
        video, _ = toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), frames)
    recon = torch.cat([codec.decode(codec.encode(v))[:, :frames] for v in video.split(8)])
    return video_psnr(video, recon)


def tone_agreement(original, reconstructed) -> dict:
    """How often the ToneShapes scorer hears the same thing in two mono 16 kHz waveforms (..., S).

    Per video frame (2000 samples): `presence` equal; on frames sounding in both, `pitch` within
    1 semitone, `level` within 3 dB, `timbre` class equal; `all` = frames where every check that
    applies passes (presence, and on sounding frames pitch, level and timbre).
    """
    from avdit.data import LEVEL_TOLERANCE, PITCH_TOLERANCE, audio_features

    before, after = audio_features(original), audio_features(reconstructed)
    both = before["present"] & after["present"]
    with np.errstate(invalid="ignore"):
        pitch = np.abs(12.0 * np.log2(after["f0"] / before["f0"])) <= PITCH_TOLERANCE
    level = np.abs(after["level_db"] - before["level_db"]) <= LEVEL_TOLERANCE
    timbre = after["timbre"] == before["timbre"]
    presence = before["present"] == after["present"]
    count = max(int(both.sum()), 1)
    return {
        "pitch": float((pitch & both).sum() / count),
        "level": float((level & both).sum() / count),
        "timbre": float((timbre & both).sum() / count),
        "presence": float(presence.mean()),
        "all": float((presence & (~both | (pitch & level & timbre))).mean()),
        "frames": int(presence.size),
    }


@torch.no_grad()
def evaluate_audio(codec: AudioCodec, clips: int = EVAL_CLIPS, frames: int = 17, audio: torch.Tensor | None = None) -> dict:
    """Scorer agreement before vs after the codec on `audio` (B, 1, S), default `clips` held-out ToneShapes clips."""
    if audio is None:
        _, audio = toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), frames)
    recon = torch.cat([codec.decode(codec.encode(a))[..., : audio.shape[-1]] for a in audio.split(8)])
    return tone_agreement(audio[:, 0], recon[:, 0])


# Training -----------------------------------------------------------------------------------------


def _learning_rate(base: float, step: int, progress: float, warmup: int = 50) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 5 % as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def _train(name: str, codec, loss_of, batch_of, args: argparse.Namespace, seconds: float) -> int:
    """The shared loop: AdamW, clipped gradients, a progress line every 15 s. Returns steps taken."""
    optimizer = torch.optim.AdamW(codec.parameters(), lr=args.lr, weight_decay=1e-4, betas=(0.9, 0.99))
    rng = np.random.default_rng(args.seed + (0 if name == "video" else 1))
    codec.train()
    threads = torch.get_num_threads()
    start, start_cpu, last_print = time.monotonic(), time.process_time(), 0.0
    step, smoothed = 0, None
    while step < args.steps:
        # The budget is compute, not wall time: CPU seconds over the threads used, so other work
        # on a shared machine slows training down but does not cut it short.
        elapsed = (time.process_time() - start_cpu) / threads
        if elapsed >= seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(args.lr, step, max(step / args.steps, elapsed / seconds))
        target = batch_of(rng)
        loss = loss_of(codec, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        optimizer.step()
        step += 1
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
        if time.monotonic() - last_print > 15 or step == args.steps:
            last_print = time.monotonic()
            print(f"{name}: step {step}  {elapsed:4.0f}/{seconds:.0f} s of {threads} core(s) "
                  f"({last_print - start:.0f} s wall)  loss {smoothed:.4f}  lr {optimizer.param_groups[0]['lr']:.2e}",
                  flush=True)
    codec.eval()
    return step


@torch.no_grad()
def _normalise_latents(codec: VideoCodec | AudioCodec, inputs: torch.Tensor) -> None:
    """Set the codec's latent shift and scale so its latents of `inputs` have mean 0 and variance 1."""
    codec.config = replace(codec.config, latent_shift=0.0, latent_scale=1.0)
    raw = torch.cat([codec.encode(x) for x in inputs.split(16)])
    codec.config = replace(codec.config, latent_shift=float(raw.mean()), latent_scale=float(1.0 / raw.std().clamp_min(1e-6)))


def _round_weights(codec: torch.nn.Module, dtype: torch.dtype) -> None:
    """Round the weights to the dtype they are stored in, so scores describe the saved file."""
    with torch.no_grad():
        for p in codec.parameters():
            p.copy_(p.to(dtype))


def train_video(args: argparse.Namespace, seconds: float, clips: Clips) -> tuple[VideoCodec, dict]:
    torch.manual_seed(args.seed)
    codec = build_video_codec(learned_video_config(args.video_latent_channels))

    def batch_of(rng):
        return clips.train(rng, args.batch, args.video_frames)[0]

    def loss_of(codec, video):
        raw = codec._encode_raw(video)
        return video_loss(codec._decode_raw(raw), video)

    start, cpu = time.monotonic(), time.process_time()
    steps = _train("video", codec, loss_of, batch_of, args, seconds)
    _round_weights(codec, args.weights_dtype)
    _normalise_latents(codec, clips.statistics()[0])
    report = {"steps": steps, "batch": args.batch, "seconds": round(time.monotonic() - start),
              "cpu_seconds": round(time.process_time() - cpu),
              "heldout_psnr_db": round(evaluate_video(codec, video=clips.scores()[0]), 2)}
    print(f"video: {steps} steps, held-out PSNR {report['heldout_psnr_db']} dB", flush=True)
    return codec, report


def train_audio(args: argparse.Namespace, seconds: float, clips: Clips) -> tuple[AudioCodec, dict]:
    torch.manual_seed(args.seed + 1)
    codec = build_audio_codec(learned_audio_config(args.audio_latent_channels))

    def batch_of(rng):
        _, audio = clips.train(rng, args.audio_batch, 17)
        with torch.no_grad():
            return codec.log_magnitude(audio)  # (B, bins, T): the spectra are the training target

    def loss_of(codec, spectra):
        return spectrum_loss(codec.decode_log_magnitude(codec.encode_log_magnitude(spectra)), spectra)

    start, cpu = time.monotonic(), time.process_time()
    steps = _train("audio", codec, loss_of, batch_of, args, seconds)
    _round_weights(codec, args.weights_dtype)
    _normalise_latents(codec, clips.statistics()[1])
    agreement = evaluate_audio(codec, audio=clips.scores()[1])
    report = {"steps": steps, "batch": args.audio_batch, "seconds": round(time.monotonic() - start),
              "cpu_seconds": round(time.process_time() - cpu),
              "heldout_agreement": {k: round(v, 4) for k, v in agreement.items()}}
    print(f"audio: {steps} steps, held-out scorer agreement {report['heldout_agreement']}", flush=True)
    return codec, report


# Command ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--which", choices=("both", "video", "audio"), default="both",
                        help="train both codecs, or one (the other is copied from --base)")
    parser.add_argument("--data", default="toneshapes",
                        help="'toneshapes' or a folder of your own videos with sound (cut into 2.125 s clips at 8 fps, "
                             "64 x 64, 16 kHz mono; the last tenth held out for the scores)")
    parser.add_argument("--base", default=None,
                        help="checkpoint to take the untrained codec from with --which video|audio "
                             "(default: the shipped codecs)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="most steps per codec (default: until --minutes)")
    parser.add_argument("--minutes", type=float, default=21.0,
                        help="compute budget for all training, in minutes of --threads cores (CPU time / threads: "
                             "the wall time on an idle machine, longer on a shared one); with --which both, "
                             "--video-share of it goes to video")
    parser.add_argument("--video-share", type=float, default=0.25, help="fraction of --minutes for the video codec")
    parser.add_argument("--batch", type=int, default=4, help="video clips per step")
    parser.add_argument("--video-frames", type=int, default=9, help="frames per training video clip (1 + 4k)")
    parser.add_argument("--audio-batch", type=int, default=16, help="audio clips (2.125 s) per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video-latent-channels", type=int, default=16)
    parser.add_argument("--audio-latent-channels", type=int, default=32)
    parser.add_argument("--weights-dtype", choices=("float16", "float32"), default="float16",
                        help="dtype the weights are stored in (float16 halves the file)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", default="codecs.safetensors", help="where to write the checkpoint")


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.minutes <= 0 or args.batch < 1 or args.audio_batch < 1 or not 0 < args.video_share < 1:
        print("train-codec: --steps, --minutes, --batch and --audio-batch must be positive and "
              "--video-share between 0 and 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    args.weights_dtype = getattr(torch, args.weights_dtype)
    seconds = args.minutes * 60.0
    config = AVDiTConfig()
    report = {}
    if args.which != "both":
        try:
            base_video, base_audio, base_config = load_codecs(args.base)
        except CheckpointError as exc:
            print(f"train-codec: --which {args.which} keeps the other codec from --base: {exc}", file=sys.stderr)
            return 2
        config = replace(base_config)
        report = dict(base_config.training.get("codecs", {}))
    try:
        clips = Clips(args.data)
    except ValueError as exc:
        print(f"train-codec: --data {args.data}: {exc}", file=sys.stderr)
        return 2
    report.update({
        "data": clips.describe(),
        "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "lr": args.lr, "seed": args.seed,
    })
    if args.which in ("both", "video"):
        video, report["video"] = train_video(args, seconds * (args.video_share if args.which == "both" else 1.0), clips)
    else:
        video = base_video
    if args.which in ("both", "audio"):
        audio, report["audio"] = train_audio(args, seconds * (1 - args.video_share if args.which == "both" else 1.0), clips)
    else:
        audio = base_audio
    config.video_codec, config.audio_codec = video.config, audio.config
    config.training = {**config.training, "codecs": report}
    tensors = {f"video_codec.{k}": v.to(args.weights_dtype) for k, v in video.state_dict().items()}
    tensors.update({f"audio_codec.{k}": v.to(args.weights_dtype) for k, v in audio.state_dict().items()})
    path = save_checkpoint(args.output, config, tensors)
    print(f"saved {path} ({os.path.getsize(path) / 1e6:.1f} MB)", flush=True)
    return 0

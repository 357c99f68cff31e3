"""`python -m avdit train-codec`: train the small learned video and audio autoencoders on ToneShapes.

    python -m avdit train-codec --threads 2 --output avdit/assets/codecs.safetensors
    python -m avdit train-codec --data videos/ --size 128 --fps 24 --spatial-stride 16 --output c.safetensors

Each step draws fresh ToneShapes clips (training seeds below HELD_OUT_SEED; held-out clips use
seeds from it up) or clips of a folder of videos. Clips follow the layout the options give
(--size, --fps, --sample-rate, --window-frames; default 64 x 64, 8 fps, 16 kHz mono, 17-frame
windows), which is recorded in the checkpoint's config for every later command. Video: squared
error on pixels and on horizontal and vertical pixel differences (edges), on 9-frame clips (the
first frame alone, then two groups of four). Audio: the codec's own STFT (see
`avdit.codecs.learned.LearnedAudioCodec`), L1 of log magnitudes, spectral convergence per window
and L1 of log mel-band powers (`spectrum_loss`), on whole windows; Griffin-Lim, which turns spectra
back into waveforms, has no weights and is not trained. With `--audio-decoder neural` a phase network (`PhaseVocoder`) is trained after the
audio codec, which stays frozen, on the waveform (`waveform_loss`, STFTs at three resolutions);
`--which vocoder` adds one to --base's audio codec and leaves every other weight as it was.
`--fine-tune` trains --base's video or audio codec on from its weights (its layout, stride, channels
and options kept) instead of from scratch: the shipped general codecs, say, on your own footage. A larger
`--video-latent-channels` or `--audio-latent-channels` grows that codec's latent (`grow_codec`): it starts
decoding what --base decodes, and training puts the new channels to use.
AdamW with warm-up and cosine decay over the step or compute budget, whichever ends first; on the CPU the budget counts CPU time over threads, so a busy machine makes training take
longer rather than train less; on CUDA it is wall time, and steps run under bf16 autocast. Under
torchrun every process trains on its own clips and gradients are averaged (DDP). At the end the
latent shift and scale are measured on training clips (so latents come out about zero-mean,
unit-variance), the codecs are scored on held-out clips, and everything is saved with
`avdit.checkpoint.save_checkpoint` under `video_codec.` / `audio_codec.`, the scores in the
config's `training` section.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from avdit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from avdit.codecs import build_audio_codec, build_codecs, build_video_codec, codecs_path, load_codecs
from avdit.codecs.base import AudioCodec, VideoCodec, mel_filterbank, video_psnr
from avdit.codecs.learned import AUDIO_DECODERS, AUDIO_OPTIONS, LearnedAudioCodec, video_options
from avdit.config import AudioCodecConfig, AVDiTConfig, LayoutConfig, VideoCodecConfig
from avdit.layout import LAYOUT_OPTIONS, add_layout_arguments, grid_problem, size_text, with_layout_options

HELD_OUT_SEED = 10**9  # training clips use seeds below this, evaluation clips from it up
STATISTICS_SEED = 5 * 10**8  # training-range clips on which the latent shift and scale are measured
EVAL_CLIPS = 32


def learned_video_config(latent_channels: int = 16, spatial_stride: int = 8) -> VideoCodecConfig:
    """A learned video codec of `spatial_stride` (a power of 2); the shipped one's shape at 8:
    17 frames of 64x64 -> 5 x 8 x 8 latents."""
    return VideoCodecConfig(kind="learned", temporal_stride=4, spatial_stride=spatial_stride, causal=True,
                            latent_channels=latent_channels, options=video_options(spatial_stride))


def audio_hop(sample_rate: int) -> int:
    """Waveform samples per audio latent frame: about 50 latent frames a second at any sample rate
    (an even number, so the STFT of 4 hops centres on each hop): 320 at 16 kHz, 882 at 44.1 kHz."""
    return max(2, 2 * round(sample_rate / 100))


def learned_audio_config(latent_channels: int = 32, sample_rate: int = 16000, decoder: str = "griffin_lim") -> AudioCodecConfig:
    """A learned mono audio codec for `sample_rate`; the shipped one's shape at 16 kHz: hop 320,
    STFT of 1280 (50 latent frames per second). `decoder`: "griffin_lim" or "neural" (see
    `avdit.codecs.learned.LearnedAudioCodec`)."""
    hop = audio_hop(sample_rate)
    return AudioCodecConfig(kind="learned", hop=hop, latent_channels=latent_channels, channels=1,
                            options={**AUDIO_OPTIONS, "n_fft": 4 * hop, "decoder": decoder})


# Data ---------------------------------------------------------------------------------------------

TONESHAPES_LAYOUT = LayoutConfig()  # ToneShapes' own format: 64 x 64 at 8 fps, 16 kHz mono


def toneshapes_batch(seeds, frames: int = 17, layout: LayoutConfig = TONESHAPES_LAYOUT,
                     channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """ToneShapes clips of `frames` frames: video (B, F, H, W, 3) in 0..1 and audio (B, C, S).

    In ToneShapes' own format (64 x 64, 8 fps, 16 kHz mono: S = F * 2000) the clips are as made;
    in another `layout` they are made long enough and conformed to its size, fps and sample rate
    as footage is (`avdit.media`: centre crop and resize, sample and hold; S = round(F / fps * rate))."""
    from avdit import data, media

    seeds = [int(s) for s in seeds]
    native = (layout.height, layout.width, layout.fps, layout.sample_rate) == (data.SIZE, data.SIZE, data.FPS, data.SAMPLE_RATE)
    if native and channels == 1:
        clips = data.generate_batch(seeds, frames=frames)
        return torch.from_numpy(clips.video), torch.from_numpy(clips.audio)[:, None]
    seconds = frames / layout.fps
    samples = round(seconds * layout.sample_rate)
    videos, audios = [], []
    for clip in (data.generate_clip(s, frames=math.ceil(seconds * data.FPS)) for s in seeds):
        videos.append(media.conform_video(torch.from_numpy(clip.video), data.FPS, layout.fps,
                                          (layout.height, layout.width), num_frames=frames))
        audio = media.conform_audio(torch.from_numpy(clip.audio)[None], data.SAMPLE_RATE, layout.sample_rate, channels)
        audios.append(data._fit_samples(audio, samples))
    return torch.stack(videos), torch.stack(audios)


class Clips:
    """Where training, statistics and score clips come from: ToneShapes, or a folder of videos,
    in `layout` (windows of its window_frames at its fps, size and sample rate, `channels` audio channels).

    ToneShapes: fresh seeds below HELD_OUT_SEED to train, STATISTICS_SEED.. for the latent scale,
    HELD_OUT_SEED.. to score. A folder: its windows (`avdit.data.VideoFolderDataset`), the
    last tenth (at least one, when there are two or more) held out to score, the rest to train."""

    def __init__(self, data: str = "toneshapes", layout: LayoutConfig = TONESHAPES_LAYOUT, channels: int = 1,
                 streams: str = "both", cache_bytes: int = 0):
        self.data, self.layout, self.channels, self.streams = data, layout, channels, streams
        self.window = layout.window_frames
        self.folder = None
        if data != "toneshapes":
            from avdit.data import VideoFolderDataset

            self.folder = VideoFolderDataset(data, clip_seconds=self.window / layout.fps, fps=layout.fps,
                                             sample_rate=layout.sample_rate, size=(layout.height, layout.width),
                                             channels=channels, streams=streams, cache_bytes=cache_bytes)
            held = len(self.folder) // 10 or (1 if len(self.folder) > 1 else 0)
            self.train_count = len(self.folder) - held
            self.held_out = list(range(self.train_count, len(self.folder))) or [0]

    def _folder_batch(self, indices, frames: int, items: list | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Video (B, frames, H, W, 3) and audio (B, C, S) of the folder's windows that decode; None for a
        stream the folder was not read for (streams "video" or "audio")."""
        items = self.folder.readable(indices) if items is None else items
        if not items:
            raise ValueError(f"none of the folder's clips {list(indices)[:4]}... decode (see the skipped files above)")
        video = torch.stack([it["video"][:frames] for it in items]) if "video" in items[0] else None
        audio = torch.stack([it["audio"] for it in items]) if "audio" in items[0] else None
        return video, audio

    def _toneshapes(self, seeds, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        return toneshapes_batch(seeds, frames, self.layout, self.channels)

    def train(self, rng, count: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return self._toneshapes(rng.integers(0, HELD_OUT_SEED, count), frames)
        items = []
        while len(items) < count:  # clips of a file that fails to decode are replaced by others
            if self.folder.unreadable_clips(range(self.train_count)) == self.train_count:
                raise ValueError(f"--data {self.data}: none of its {self.train_count} training clips decode")
            items += self.folder.readable(rng.integers(0, self.train_count, count - len(items)))
        return self._folder_batch(None, frames, items)

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return self._toneshapes(range(STATISTICS_SEED, STATISTICS_SEED + 64), self.window)
        return self._folder_batch(range(min(64, self.train_count)), self.window)

    def scores(self, clips: int = EVAL_CLIPS) -> tuple[torch.Tensor, torch.Tensor]:
        if self.folder is None:
            return self._toneshapes(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), self.window)
        return self._folder_batch(self.held_out[:clips], self.window)

    def describe(self) -> str:
        if self.folder is None:
            return (f"ToneShapes v1, fresh seeds < {HELD_OUT_SEED} each step; scores on seeds "
                    f"{HELD_OUT_SEED}..{HELD_OUT_SEED + EVAL_CLIPS - 1}")
        return (f"{len(self.folder)} clips of {self.folder.clip_seconds:g} s from {self.data}: {self.train_count} to train, "
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


MEL_LOSS_WEIGHT = 3.0  # per nat of mel-band power: what the log-mel distance (the scorer) measures


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int) -> torch.Tensor:
    return mel_filterbank(sample_rate, n_fft).float()


def spectrum_loss(predicted: torch.Tensor, target: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """Audio codec loss on (B, bins, T) log(|X| + eps) spectra: L1 of log magnitudes, plus spectral
    convergence of magnitudes window by window, plus MEL_LOSS_WEIGHT x the L1 of log mel-band powers.

    The L1 of logs weighs quiet bins (silence, the floor between harmonics) like loud ones. Spectral
    convergence weighs the loud peaks that carry pitch, loudness and timbre; it is taken per window
    and averaged, so a quiet window's tone counts as much as a loud window's (over the whole batch
    it would vanish under the loudest window). The mel term (80 bands, `mel_filterbank` of the
    codec's own STFT, powers floored at 1e-6) is what `log_mel_distance` scores: a narrow line the
    decoder leaves out costs a whole band there, not a few of 641 bins. Predictions are capped at
    e**3 above their window's loudest target bin inside the exponentials, so one wild bin cannot
    blow up the loss (the L1 term still pulls it back).
    """
    cap = target.amax(dim=(1, 2), keepdim=True).detach() + 3.0
    magnitude = predicted.clamp(max=cap).exp()
    truth = target.exp()
    convergence = (torch.linalg.norm((truth - magnitude).flatten(1), dim=1)
                   / torch.linalg.norm(truth.flatten(1), dim=1).clamp_min(1e-12))
    filters = _mel_filters(sample_rate, 2 * (target.shape[1] - 1)).to(target.device)
    mel_true = torch.einsum("mb,nbt->nmt", filters, truth**2)
    mel_predicted = torch.einsum("mb,nbt->nmt", filters, magnitude**2)
    mel = (torch.log(mel_predicted + 1e-6) - torch.log(mel_true + 1e-6)).abs().mean()
    return (predicted - target).abs().mean() + convergence.mean() + MEL_LOSS_WEIGHT * mel


WAVEFORM_LOSS_FFTS = (512, 1024, 2048)  # at 16 kHz: 32, 64 and 128 ms windows, hop a quarter of each


def _stft_magnitude(waveform: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(N, S) -> |STFT| (N, bins, frames), Hann window, hop n_fft / 4; smooth at 0 (no NaN gradient)."""
    window = torch.hann_window(n_fft, dtype=waveform.dtype, device=waveform.device)
    spectrum = torch.view_as_real(torch.stft(waveform, n_fft, n_fft // 4, window=window, return_complex=True))
    return (spectrum.pow(2).sum(-1) + 1e-9).sqrt()


def waveform_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss of waveforms (N, S): spectral convergence plus L1 of log magnitudes at
    each of WAVEFORM_LOSS_FFTS, averaged. Phase enters through the STFTs at resolutions other than the
    codec's own: a waveform whose frames' phases disagree loses energy where they overlap."""
    loss = predicted.new_zeros(())
    for n_fft in WAVEFORM_LOSS_FFTS:
        p, t = _stft_magnitude(predicted.float(), n_fft), _stft_magnitude(target.float(), n_fft)
        convergence = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-6)
        loss = loss + convergence + (torch.log(p + 1e-5) - torch.log(t + 1e-5)).abs().mean()
    return loss / len(WAVEFORM_LOSS_FFTS)


# Scores -------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_video(codec: VideoCodec, clips: int = EVAL_CLIPS, frames: int = 17, video: torch.Tensor | None = None) -> float:
    """PSNR (dB) through the codec of `video` (B, F, H, W, 3), default `clips` held-out ToneShapes clips."""
    if video is None:
        video, _ = toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), frames)
    frames = video.shape[1]
    recon = torch.cat([codec.decode(codec.encode(v))[:, :frames].cpu() for v in video.split(8)])
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
def evaluate_audio(codec: AudioCodec, clips: int = EVAL_CLIPS, frames: int = 17, audio: torch.Tensor | None = None,
                   sample_rate: int = 16000) -> dict:
    """Scorer agreement before vs after the codec on `audio` (B, C, S) at `sample_rate`, default `clips`
    held-out ToneShapes clips; the first channel is scored, at the scorer's 16 kHz."""
    if audio is None:
        _, audio = toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + clips), frames)
    recon = torch.cat([codec.decode(codec.encode(a))[..., : audio.shape[-1]].cpu() for a in audio.split(8)])
    return _agreement(audio, recon, sample_rate)


def _agreement(audio: torch.Tensor, recon: torch.Tensor, sample_rate: int) -> dict:
    """`tone_agreement` of the first channels of (B, C, S) waveforms at `sample_rate`, heard at 16 kHz."""
    from avdit.data import SAMPLE_RATE
    from avdit.media import conform_audio

    before, after = audio[:, 0], recon[:, 0].float()
    if sample_rate != SAMPLE_RATE:
        before, after = (torch.cat([conform_audio(row[None], sample_rate, SAMPLE_RATE, 1) for row in x]) for x in (before, after))
    return tone_agreement(before, after)


# Training -----------------------------------------------------------------------------------------


def _learning_rate(base: float, step: int, progress: float, warmup: int = 50) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 5 % as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


@dataclass(frozen=True)
class Processes:
    """Where training runs: the device, and this process's rank among `world` (under torchrun; else 0 of 1)."""

    device: torch.device
    rank: int = 0
    world: int = 1

    def all_agree(self, flag: bool) -> bool:
        """`flag` if any process says so: every process stops at the same step, whatever its clock says."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def finish(self) -> None:
        """Under torchrun: wait for the first process (which scores and saves), then leave the process group."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


class _Objective(torch.nn.Module):
    """`loss_of(codec, batch)` as a module's forward, so DistributedDataParallel can average its gradients."""

    def __init__(self, codec: torch.nn.Module, loss_of):
        super().__init__()
        self.codec, self.loss_of = codec, loss_of

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.loss_of(self.codec, batch)


def _train(name: str, codec, loss_of, batch_of, args: argparse.Namespace, seconds: float, where: Processes) -> int:
    """The shared loop: AdamW, clipped gradients, bf16 autocast on CUDA, a progress line every 15 s.
    Returns steps taken."""
    trained = [p for p in codec.parameters() if p.requires_grad]  # a frozen part (the vocoder's codec) is left out
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=1e-4, betas=(0.9, 0.99))
    seed = args.seed + {"video": 0, "audio": 1}.get(name, 2)
    rng = np.random.default_rng(seed if where.rank == 0 else [seed, where.rank])  # each process its own clips
    objective = _Objective(codec, loss_of)
    if where.world > 1:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[where.device.index] if where.device.type == "cuda" else None)
    cuda = where.device.type == "cuda"
    codec.train()
    threads = torch.get_num_threads()
    budget = f"on {where.device}" if cuda else f"of {threads} core(s)"
    start, start_cpu, last_print = time.monotonic(), time.process_time(), 0.0
    step, smoothed = 0, None
    while step < args.steps:
        # On the CPU the budget is compute, not wall time: CPU seconds over the threads used, so other
        # work on a shared machine slows training down but does not cut it short. On CUDA it is wall time.
        elapsed = time.monotonic() - start if cuda else (time.process_time() - start_cpu) / threads
        if where.all_agree(elapsed >= seconds):
            break
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(args.lr, step, max(step / args.steps, elapsed / seconds))
        target = batch_of(rng).to(where.device)
        with torch.autocast(where.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = objective(target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
        if where.rank == 0 and (time.monotonic() - last_print > 15 or step == args.steps):
            last_print = time.monotonic()
            print(f"{name}: step {step}  {elapsed:4.0f}/{seconds:.0f} s {budget} "
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


def grow_codec(start: VideoCodec | LearnedAudioCodec, latent_channels: int | None = None,
               options: dict | None = None) -> VideoCodec | LearnedAudioCodec:
    """A copy of the learned video or audio codec `start` with `latent_channels` (>= its own; None: its own)
    and `options` updated (decoder options: they change no weight the copy takes from `start`; a neural
    audio decoder `start` lacks starts fresh). The new channels' encoder rows start small and random and
    their decoder columns at zero, so the copy decodes exactly what `start` decodes until training puts the
    new channels to use."""
    has = start.config.latent_channels
    latent_channels = has if latent_channels is None else latent_channels
    if latent_channels < has:
        raise ValueError(f"latent_channels is {latent_channels}; a grown codec keeps its {has} channels or more")
    config = replace(start.config, latent_channels=latent_channels, options={**start.config.options, **(options or {})})
    codec = (build_video_codec if isinstance(start, VideoCodec) else build_audio_codec)(config)
    new = codec.state_dict()
    state = {k: v.clone() for k, v in start.state_dict().items() if k in new}
    if latent_channels > has:
        with torch.no_grad():
            new["enc_out.weight"][:has] = state["enc_out.weight"]
            new["enc_out.weight"][has:] *= 0.1
            new["enc_out.bias"][:has] = state["enc_out.bias"]
            new["enc_out.bias"][has:] = 0
            new["dec_in.weight"].zero_()[:, :has] = state["dec_in.weight"]
            state.update({k: new[k] for k in ("enc_out.weight", "enc_out.bias", "dec_in.weight")})
    missing, _ = codec.load_state_dict(state, strict=False)
    assert all(k.startswith("vocoder.") for k in missing), missing
    return codec


def average_codecs(base: str | os.PathLike, tuned: str | os.PathLike, weight: float,
                   data: str = "toneshapes") -> tuple[AVDiTConfig, dict[str, torch.Tensor]]:
    """The codecs of `tuned` (a fine-tune of `base`) with every weight moved back towards `base`'s:
    (1 - weight) x base + weight x tuned, computed in float32 and stored in `tuned`'s dtypes (WiSE-FT,
    Wortsman et al. 2022: the average keeps much of what fine-tuning gained and much of the base's
    robustness to what the fine-tune did not show). A codec whose weights changed gets its latent scale
    set again on `data`'s statistics clips (as `train-codec` sets it); one whose weights are the same in
    both keeps them and its scale. Both checkpoints must hold codecs of the same shape and layout.
    Returns the config (training record: both files, their weights and records) and the tensors."""
    if not (isinstance(weight, (int, float)) and 0.0 < weight < 1.0):
        raise ValueError(f"weight is {weight!r}; give the fine-tuned codecs' share, above 0 and below 1")
    (base_config, base_tensors), (config, tensors) = (load_checkpoint(codecs_path(p)) for p in (base, tuned))
    config = replace(config)

    def shape(codec_config):
        return replace(codec_config, latent_shift=0.0, latent_scale=1.0)

    for name, ours, theirs in (("layout", config.layout, base_config.layout),
                               ("video codec", shape(config.video_codec), shape(base_config.video_codec)),
                               ("audio codec", shape(config.audio_codec), shape(base_config.audio_codec))):
        if ours != theirs:
            ours, theirs = asdict(ours), asdict(theirs)
            ours, theirs = {**ours.pop("options", {}), **ours}, {**theirs.pop("options", {}), **theirs}
            differ = ", ".join(f"{k} {ours.get(k)!r} against {theirs.get(k)!r}" for k in sorted(ours.keys() | theirs.keys())
                               if ours.get(k) != theirs.get(k))
            raise ValueError(f"{tuned}: its {name} is not that of {base} ({differ}); only codecs of the same shape "
                             f"average (a fine-tune of the other, not a grown or re-shaped one)")
    for file_config, file_tensors, path in ((base_config, base_tensors, base), (config, tensors, tuned)):
        build_codecs(file_config, file_tensors, path)  # each file's weights are those its config needs, or it is refused
    averaged = {}
    for key, value in tensors.items():
        if value.is_floating_point() and key.startswith(("video_codec.", "audio_codec.")):
            value = ((1.0 - weight) * base_tensors[key].float() + weight * value.float()).to(value.dtype)
        averaged[key] = value
    video, audio = build_codecs(config, averaged, tuned)
    report = dict(config.training.get("codecs", {}))
    base_report = base_config.training.get("codecs", {})
    for name, codec, prefix, index in (("video", video, "video_codec.", 0), ("audio", audio, "audio_codec.", 1)):
        if all(torch.equal(tensors[k], base_tensors[k]) for k in tensors if k.startswith(prefix)):
            continue
        clips = Clips(data, config.layout, channels=config.audio_codec.channels, streams=name)
        _normalise_latents(codec, clips.statistics()[index])
        report[name] = {"average": [{"file": str(base), "weight": round(1.0 - weight, 6), "training": base_report.get(name)},
                                    {"file": str(tuned), "weight": round(float(weight), 6), "training": report.get(name)}],
                        "latent_scale_from": clips.describe()}
    config.video_codec, config.audio_codec = video.config, audio.config
    config.training = {**config.training, "codecs": report}
    return config, averaged


def train_video(args: argparse.Namespace, seconds: float, clips: Clips, where: Processes,
                start: VideoCodec | None = None) -> tuple[VideoCodec, dict]:
    """Train a video codec of --spatial-stride, or `start` on from its weights; the first process then sets
    its latent scale and scores it."""
    torch.manual_seed(args.seed)
    if start is None:
        codec = build_video_codec(learned_video_config(args.video_latent_channels, args.spatial_stride))
    else:
        codec = grow_codec(start, args.video_latent_channels)
    codec = codec.to(where.device)

    def batch_of(rng):
        return clips.train(rng, args.batch, args.video_frames)[0]

    def loss_of(codec, video):
        raw = codec._encode_raw(video)
        return video_loss(codec._decode_raw(raw).float(), video)

    began, cpu = time.monotonic(), time.process_time()
    steps = _train("video", codec, loss_of, batch_of, args, seconds, where)
    if where.rank:
        return codec, {}
    _round_weights(codec, args.weights_dtype)
    _normalise_latents(codec, clips.statistics()[0])
    report = {"steps": steps, "batch": args.batch, "seconds": round(time.monotonic() - began),
              "cpu_seconds": round(time.process_time() - cpu),
              "heldout_psnr_db": round(evaluate_video(codec, video=clips.scores()[0]), 2)}
    if start is not None and start.config.latent_channels != codec.config.latent_channels:
        report["latent_channels_grown_from"] = start.config.latent_channels
    print(f"video: {steps} steps, held-out PSNR {report['heldout_psnr_db']} dB", flush=True)
    return codec, report


def train_audio(args: argparse.Namespace, seconds: float, clips: Clips, where: Processes,
                start: LearnedAudioCodec | None = None) -> tuple[AudioCodec, dict]:
    """Train an audio codec for the layout's sample rate, or `start` on from its weights (its decoder, floor
    and channels; a neural decoder it lacks starts fresh); the first process then sets its latent scale
    and scores it."""
    torch.manual_seed(args.seed + 1)
    if start is None:
        config = learned_audio_config(args.audio_latent_channels, clips.layout.sample_rate, args.audio_decoder)
        config.options.update(vocoder_refine=args.vocoder_refine, eps=args.audio_floor)
        codec = build_audio_codec(config)
    else:
        codec = grow_codec(start, args.audio_latent_channels,
                           {"decoder": args.audio_decoder, "vocoder_refine": args.vocoder_refine})
    codec = codec.to(where.device)
    vocoder_seconds = seconds * args.vocoder_share if codec.vocoder is not None else 0.0
    seconds -= vocoder_seconds
    if codec.vocoder is not None:
        codec.vocoder.requires_grad_(False)  # trained in a second stage, on the finished codec

    def batch_of(rng):
        _, audio = clips.train(rng, args.audio_batch, clips.window)
        with torch.no_grad():
            return codec.log_magnitude(audio.to(where.device))  # (B, bins, T): the spectra are the training target

    def loss_of(codec, spectra):
        return spectrum_loss(codec.decode_log_magnitude(codec.encode_log_magnitude(spectra)).float(), spectra,
                             clips.layout.sample_rate)

    began, cpu = time.monotonic(), time.process_time()
    steps = _train("audio", codec, loss_of, batch_of, args, seconds, where)
    if codec.vocoder is not None:
        codec.requires_grad_(False)
        _round_weights(codec, args.weights_dtype)  # the decoder it learns from is the one saved
        vocoder_report = _train_vocoder(codec, args, vocoder_seconds, clips, where)
    if where.rank:
        return codec, {}
    _round_weights(codec, args.weights_dtype)
    _normalise_latents(codec, clips.statistics()[1])
    agreement = evaluate_audio(codec, audio=clips.scores()[1], sample_rate=clips.layout.sample_rate)
    report = {"steps": steps, "batch": args.audio_batch, "seconds": round(time.monotonic() - began),
              "cpu_seconds": round(time.process_time() - cpu), "decoder": codec.decoder,
              "heldout_agreement": {k: round(v, 4) for k, v in agreement.items()}}
    if start is not None and start.config.latent_channels != codec.config.latent_channels:
        report["latent_channels_grown_from"] = start.config.latent_channels
    if codec.vocoder is not None:
        report["vocoder"] = {**vocoder_report, **compare_decoders(codec, clips)}
    print(f"audio: {steps} steps, held-out scorer agreement {report['heldout_agreement']}", flush=True)
    return codec, report


def _train_vocoder(codec: LearnedAudioCodec, args: argparse.Namespace, seconds: float, clips: Clips,
                   where: Processes) -> dict:
    """Train `codec`'s phase network on its own decoded magnitudes, the rest of the codec frozen."""
    torch.manual_seed(args.seed + 2)
    codec.vocoder.requires_grad_(True)
    hop = codec.config.hop

    def batch_of(rng):
        _, audio = clips.train(rng, args.audio_batch, clips.window)
        tail = -audio.shape[-1] % hop
        return F.pad(audio, (0, tail))  # (B, C, S): whole hops, as the codec pads them

    def loss_of(codec, audio):
        with torch.no_grad():
            log_magnitude = codec.decoded_log_magnitude(codec._encode_raw(audio))  # (B*C, bins, T)
        waveform = codec.waveform_from_log_magnitude(log_magnitude, "neural", refine=0)  # (B*C, S): the network's own
        return waveform_loss(waveform, audio.flatten(0, 1))

    start, cpu = time.monotonic(), time.process_time()
    steps = _train("vocoder", codec, loss_of, batch_of, args, seconds, where)
    codec.requires_grad_(False)
    return {"steps": steps, "batch": args.audio_batch, "seconds": round(time.monotonic() - start),
            "cpu_seconds": round(time.process_time() - cpu)}


@torch.no_grad()
def compare_decoders(codec: LearnedAudioCodec, clips: Clips, count: int = EVAL_CLIPS) -> dict:
    """Held-out scorer agreement ("all") and log-spectral distance (dB) of a round trip through each decoder."""
    from avdit.codecs.base import log_spectral_distance

    audio = clips.scores(count)[1]
    report = {}
    for decoder in AUDIO_DECODERS:
        recon = torch.cat([codec.decode(codec.encode(part), decoder=decoder)[..., : part.shape[-1]].float().cpu()
                           for part in audio.split(8)])
        agreement = _agreement(audio, recon, clips.layout.sample_rate)
        report[decoder] = {"agreement": round(agreement["all"], 4), "pitch": round(agreement["pitch"], 4),
                           "log_spectral_distance_db": round(log_spectral_distance(audio, recon), 3)}
    return report


def train_vocoder_of(base: LearnedAudioCodec, args: argparse.Namespace, seconds: float, clips: Clips,
                     where: Processes) -> tuple[LearnedAudioCodec, dict]:
    """`base` with a neural decoder trained for `seconds`: every weight of `base`, and its latent
    shift and scale, kept as they were."""
    options = {**AUDIO_OPTIONS, **base.config.options, "decoder": "neural", "vocoder_refine": args.vocoder_refine}
    codec = build_audio_codec(replace(base.config, options=options))
    missing, unexpected = codec.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("vocoder.") for k in missing), (missing, unexpected)
    codec = codec.to(where.device).requires_grad_(False)
    report = _train_vocoder(codec, args, seconds, clips, where)
    if where.rank:
        return codec, {}
    _round_weights(codec.vocoder, args.weights_dtype)  # the base's weights are stored already
    report.update(compare_decoders(codec.eval(), clips))
    print(f"vocoder: {report['steps']} steps; held-out agreement / log-spectral distance: "
          + ", ".join(f"{d} {report[d]['agreement']} / {report[d]['log_spectral_distance_db']} dB" for d in AUDIO_DECODERS),
          flush=True)
    return codec, report


# Command ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--which", choices=("both", "video", "audio", "vocoder"), default="both",
                        help="train both codecs, or one (the other is copied from --base), or only a neural audio "
                             "decoder for --base's audio codec (both codecs and their latents stay as they were, so "
                             "a denoiser trained on them keeps working)")
    parser.add_argument("--audio-decoder", choices=AUDIO_DECODERS, default=None,
                        help="how audio latents become waveforms: griffin_lim (no weights) or neural (a phase network "
                             "trained after the audio codec, --vocoder-share of its budget; faster, see the README) "
                             "(default: griffin_lim; neural with --which vocoder)")
    parser.add_argument("--vocoder-refine", type=int, default=None,
                        help="Griffin-Lim iterations the neural decoder runs from its own phase when decoding (recorded "
                             "in the checkpoint; 0: none, one inverse STFT). On ToneShapes 4 keep what 32 from a random "
                             "start keep, in a sixth of the time (README, Codecs and data); default 0 (--base's with --fine-tune)")
    parser.add_argument("--vocoder-share", type=float, default=0.5,
                        help="with --audio-decoder neural and --which both|audio: fraction of the audio budget that "
                             "trains the neural decoder")
    parser.add_argument("--data", default="toneshapes",
                        help="'toneshapes' or a folder of your own videos with sound (cut into windows of the layout: "
                             "--window-frames at --fps, --size, --sample-rate mono; the last tenth held out for the scores); "
                             "with --which video, videos with or without sound and photographs (each gives 8 clips of a "
                             "camera moving across it); with --which audio or vocoder, audio files and videos with sound")
    add_layout_arguments(parser, "with --which video|audio, --base's")
    parser.add_argument("--spatial-stride", type=int, default=None,
                        help="the video codec's spatial down-sampling, a power of 2: the latent grid is --size over it "
                             "(128x128 at 16: 8 x 8); larger strides add down-sampling stages (default: 8, or --base's "
                             "with --which audio)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train (default: cuda when there is one); CUDA steps run under bf16 autocast, "
                             "and under torchrun each process takes its own GPU")
    parser.add_argument("--base", default=None,
                        help="checkpoint (or shipped name: toneshapes, general) to take the untrained codec from with "
                             "--which video|audio, or the codec to train on with --fine-tune (default: the shipped codecs)")
    parser.add_argument("--fine-tune", action="store_true",
                        help="with --which video|audio: train --base's codec on from its weights instead of a new one "
                             "from scratch (its layout, --spatial-stride, latent channels, --audio-floor and decoder are "
                             "--base's, its decoder too unless --audio-decoder gives the other; a lower --lr, e.g. 5e-4, keeps more of what it knew). Its latents change, so a "
                             "denoiser trained on --base's codecs needs training again")
    parser.add_argument("--steps", type=int, default=1_000_000, help="most steps per codec (default: until --minutes)")
    parser.add_argument("--minutes", type=float, default=21.0,
                        help="compute budget for all training: on the CPU in minutes of --threads cores (CPU time / "
                             "threads: the wall time on an idle machine, longer on a shared one), on CUDA wall minutes; "
                             "with --which both, --video-share of it goes to video")
    parser.add_argument("--video-share", type=float, default=0.25, help="fraction of --minutes for the video codec")
    parser.add_argument("--batch", type=int, default=4, help="video clips per step")
    parser.add_argument("--video-frames", type=int, default=9, help="frames per training video clip (1 + 4k)")
    parser.add_argument("--audio-batch", type=int, default=16, help="audio clips (whole windows) per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--audio-floor", type=float, default=None,
                        help="the audio codec learns log(|STFT| + FLOOR): spectra far below FLOOR are lost. The "
                             "default 0.1 (ToneShapes' codec) is ~70 dB under a full-scale tone and hides the quiet "
                             "bands of real speech and music; 0.001 keeps them (README, Codecs and data); --base's with --fine-tune")
    parser.add_argument("--cache-gb", type=float, default=4.0,
                        help="with --data FOLDER: keep up to this many GB of decoded clips in memory, so that each is "
                             "decoded once (a window of HD video takes longer to decode than a training step); 0: none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video-latent-channels", type=int, default=None,
                        help="default 16 (--base's with --fine-tune; more than --base's grows its latent, the new "
                             "channels starting unused)")
    parser.add_argument("--audio-latent-channels", type=int, default=None,
                        help="default 32 (--base's with --fine-tune; more than --base's grows its latent, the new "
                             "channels starting unused)")
    parser.add_argument("--weights-dtype", choices=("float16", "float32"), default="float16",
                        help="dtype the weights are stored in (float16 halves the file)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", default="codecs.safetensors", help="where to write the checkpoint")


def _with_layout(args: argparse.Namespace, config: AVDiTConfig) -> tuple[AVDiTConfig, str | None]:
    """`config` with the layout options and --spatial-stride (which gets its default here), or why they are
    refused. With --which video|audio the other codec is kept from --base: the options it depends on must agree."""
    kept = {"both": (), "video": ("sample_rate",), "audio": ("size", "fps"),
            "vocoder": ("size", "fps", "sample_rate")}[args.which]
    if args.fine_tune:
        kept = ("size", "fps", "sample_rate")
    layout, differ = with_layout_options(config.layout, {name: getattr(args, name) for name in LAYOUT_OPTIONS}, kept)
    keeps_stride = args.which in ("audio", "vocoder") or args.fine_tune
    if keeps_stride and args.spatial_stride not in (None, config.video_codec.spatial_stride):
        differ.append(f"--spatial-stride {args.spatial_stride} (it has {config.video_codec.spatial_stride})")
    if differ and args.fine_tune:
        return config, (f"--fine-tune trains the {args.which} codec of --base {args.base or 'the shipped codecs'} on, made "
                        f"for another layout: {'; '.join(differ)}; leave these options out, or train a new codec "
                        "(without --fine-tune)")
    if differ:
        other = {"video": "audio codec", "audio": "video codec", "vocoder": "codecs"}[args.which]
        return config, (f"--which {args.which} keeps the {other} of --base {args.base or 'the shipped codecs'}, made "
                        f"for another layout: {'; '.join(differ)}; leave these options out, or train both codecs (--which both)")
    if args.spatial_stride is None:
        args.spatial_stride = config.video_codec.spatial_stride if keeps_stride else 8
    config = replace(config, layout=layout, video_codec=replace(config.video_codec, spatial_stride=args.spatial_stride))
    problem = grid_problem(config)
    if problem:
        return config, f"--size {size_text(layout)} with --spatial-stride {args.spatial_stride}: {problem}"
    if args.which in ("both", "video") and args.video_frames > layout.window_frames:
        return config, (f"--video-frames {args.video_frames} is longer than the training window (--window-frames "
                        f"{layout.window_frames}); expected at most {layout.window_frames}")
    return config, None


def _fine_tune_problem(args: argparse.Namespace, start, base_config: AVDiTConfig) -> str | None:
    """Why --fine-tune cannot train `start` (--base's codec of --which) on, or None: it must have weights,
    and the options that fix its shape must be left out or agree with it."""
    where = f"--base {args.base or 'the shipped codecs'}"
    kind = (base_config.video_codec if args.which == "video" else base_config.audio_codec).kind
    if kind != "learned":
        return (f"--fine-tune needs a learned {args.which} codec in {where}; its {args.which} codec is of kind {kind!r}, "
                "which has no weights to train (leave --fine-tune out to train a new one)")
    given, has = getattr(args, f"{args.which}_latent_channels"), start.config.latent_channels
    if given is not None and given < has:
        return (f"--fine-tune trains the {args.which} codec of {where} on: --{args.which}-latent-channels {given} is fewer "
                f"than its {has}; give {has} or more (more grow its latent: the new channels start unused, so training "
                "starts from its reconstructions), or train a new codec (without --fine-tune)")
    fixed = [] if args.which == "video" else [
        ("--audio-floor", args.audio_floor, start.config.options.get("eps", AUDIO_OPTIONS["eps"]))]
    differ = [f"{name} {given:g} (it has {has:g})" for name, given, has in fixed if given is not None and given != has]
    if differ:
        return (f"--fine-tune trains the {args.which} codec of {where} on, whose shape these options would change: "
                f"{'; '.join(differ)}; leave them out, or train a new codec (without --fine-tune)")
    return None


def _resolve_codec_options(args: argparse.Namespace, start) -> None:
    """The codec options left out: --base's with --fine-tune (the audio codec's), the defaults otherwise."""
    own = start.config.options if isinstance(start, LearnedAudioCodec) else {}
    if args.audio_decoder is None:
        args.audio_decoder = "neural" if args.which == "vocoder" else own.get("decoder", "griffin_lim")
    for name, key, default in (("vocoder_refine", "vocoder_refine", 0), ("audio_floor", "eps", AUDIO_OPTIONS["eps"])):
        if getattr(args, name) is None:
            setattr(args, name, own.get(key, default))
    if args.video_latent_channels is None:
        args.video_latent_channels = start.config.latent_channels if isinstance(start, VideoCodec) else 16
    if args.audio_latent_channels is None:
        args.audio_latent_channels = start.config.latent_channels if isinstance(start, LearnedAudioCodec) else 32


def run(args: argparse.Namespace) -> int:
    def refuse(message: str) -> int:
        print(f"train-codec: {message}", file=sys.stderr)
        return 2

    if args.steps < 1 or args.minutes <= 0 or args.batch < 1 or args.audio_batch < 1 or not 0 < args.video_share < 1:
        return refuse("--steps, --minutes, --batch and --audio-batch must be positive and --video-share between 0 and 1")
    if args.fine_tune and args.which not in ("video", "audio"):
        return refuse(f"--fine-tune trains one codec of --base on from its weights; give --which video or --which audio, "
                      f"not {args.which}" + (" (--which vocoder trains on --base's audio codec already)"
                                             if args.which == "vocoder" else ""))
    if args.audio_floor is not None and not 0 < args.audio_floor <= 10:
        return refuse(f"--audio-floor is {args.audio_floor:g}; give a number above 0 and at most 10 (STFT magnitude)")
    if not 0 <= args.cache_gb < 1e6:
        return refuse(f"--cache-gb is {args.cache_gb:g}; give 0 (no cache) or more GB of memory for decoded clips")
    if args.which == "vocoder" and args.audio_decoder == "griffin_lim":
        return refuse("--which vocoder trains a neural audio decoder; --audio-decoder griffin_lim has no weights to "
                      "train: leave --audio-decoder out, or give neural")
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
            return refuse(f"--fine-tune trains the {args.which} codec of --base on: {exc}" if args.fine_tune else
                          f"--which {args.which} keeps the other codec from --base: {exc}")
        config = replace(base_config)
        report = dict(base_config.training.get("codecs", {}))
        if args.which == "vocoder" and not isinstance(base_audio, LearnedAudioCodec):
            return refuse(f"--which vocoder needs a learned audio codec in --base {args.base or 'the shipped codecs'}; "
                          f"its audio codec is of kind {base_config.audio_codec.kind!r} (train one with --which audio)")
    start = None
    if args.fine_tune:
        start = base_video if args.which == "video" else base_audio
        refusal = _fine_tune_problem(args, start, base_config)
        if refusal:
            return refuse(refusal)
    _resolve_codec_options(args, start)
    config, refusal = _with_layout(args, config)
    if refusal:
        return refuse(refusal)
    try:  # a folder needs only the streams of the codecs it trains
        clips = Clips(args.data, config.layout, streams={"both": "both", "video": "video"}.get(args.which, "audio"),
                      cache_bytes=round(args.cache_gb * 2**30))
    except ValueError as exc:
        return refuse(f"--data {args.data}: {exc}")
    from avdit.train import _distributed

    rank, world, dist_device = _distributed()
    where = Processes(dist_device or torch.device(args.device), rank, world)
    if where.device.type == "cuda":
        hardware = f"{torch.cuda.get_device_name(where.device)}, bf16 autocast"
    else:
        hardware = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    report.update({"data": clips.describe(), "hardware": f"{hardware}, torch {torch.__version__}",
                   "processes": world, "lr": args.lr, "seed": args.seed})
    if args.which in ("both", "video"):
        base_report = report.get("video")
        video, report["video"] = train_video(args, seconds * (args.video_share if args.which == "both" else 1.0), clips, where,
                                             start=start)
        report["video"]["data"] = clips.describe()  # each codec's own: --which video|audio keep the other's
        if start is not None and rank == 0:
            report["video"]["fine_tuned_from"] = {"base": args.base or "the shipped codecs", "training": base_report}
    else:
        video = base_video
    if args.which in ("both", "audio"):
        base_report = report.get("audio")
        audio, report["audio"] = train_audio(args, seconds * (1 - args.video_share if args.which == "both" else 1.0), clips, where,
                                             start=start)
        report["audio"]["data"] = clips.describe()
        if start is not None and rank == 0:
            report["audio"]["fine_tuned_from"] = {"base": args.base or "the shipped codecs", "training": base_report}
    elif args.which == "vocoder":
        audio, vocoder_report = train_vocoder_of(base_audio, args, seconds, clips, where)
        report["audio"] = {**report.get("audio", {}), "decoder": "neural", "vocoder": {**vocoder_report, "data": clips.describe()}}
    else:
        audio = base_audio
    if rank == 0:
        video, audio = video.cpu(), audio.cpu()
        config.video_codec, config.audio_codec = video.config, audio.config
        config.training = {**config.training, "codecs": report}
        tensors = {f"video_codec.{k}": v.to(args.weights_dtype) for k, v in video.state_dict().items()}
        tensors.update({f"audio_codec.{k}": v.to(args.weights_dtype) for k, v in audio.state_dict().items()})
        path = save_checkpoint(args.output, config, tensors)
        print(f"saved {path} ({os.path.getsize(path) / 1e6:.1f} MB)", flush=True)
    where.finish()
    return 0

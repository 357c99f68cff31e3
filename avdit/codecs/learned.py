"""Small learned autoencoders, trained by `python -m avdit train-codec`.

Video: a causal (2+1)D convolutional autoencoder. Spatial 3x3 convolutions run on each frame and
temporal convolutions see only the past (padded by repeating the first frame), so frame 0 is
encoded alone and latent frame k depends on frames up to 4k only. Time is folded into channels
once, at the lowest resolution: (first frame repeated to fill a group, then groups of
`temporal_stride` frames) -> one latent frame each.

Audio: a 1D convolutional autoencoder on log-magnitude spectra, one latent frame per hop; the
decoder's spectra become waveforms by Griffin-Lim, or (option `decoder: "neural"`) by a small
network that gives every bin its phase, then one inverse STFT (`PhaseVocoder`; see
`LearnedAudioCodec`).

Every architecture choice is in `config.options` (see `VIDEO_OPTIONS` / `AUDIO_OPTIONS` for the
defaults), so a checkpoint's config rebuilds its codec exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avdit.codecs.base import AudioCodec, VideoCodec
from avdit.config import AudioCodecConfig, VideoCodecConfig

# channels[i] is the width at spatial stride patch * 2**i; the last is the latent resolution.
# These are the options at spatial stride 8 (the shipped codec's); `video_options` gives any other.
VIDEO_OPTIONS = {"patch": 4, "channels": [64, 128], "time_kernel": 3}
AUDIO_OPTIONS = {"n_fft": 1280, "width": 192, "blocks": 2, "kernel": 3, "eps": 0.1, "griffin_lim_iterations": 32,
                 "decoder": "griffin_lim", "vocoder_width": 256, "vocoder_blocks": 4, "vocoder_refine": 0}
AUDIO_DECODERS = ("griffin_lim", "neural")


def is_power_of_two(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and not value & (value - 1)


def video_options(spatial_stride: int = 8) -> dict:
    """The video codec's architecture for a spatial down-sampling factor (a power of 2): pixels are
    folded in patches of up to 4 x 4, then every further factor of 2 is one more stage, its width
    doubling from 64 up to 256. Stride 8 gives VIDEO_OPTIONS; 16 adds a 256-wide stage."""
    if not is_power_of_two(spatial_stride):
        raise ValueError(f"video codec 'learned': spatial_stride is {spatial_stride!r}; expected a power of 2 (1, 2, 4, 8, 16, ...)")
    patch = min(spatial_stride, 4)
    stages = 1 + int(math.log2(spatial_stride // patch))
    return {"patch": patch, "channels": [min(64 * 2**i, 256) for i in range(stages)], "time_kernel": 3}


def _options(defaults: dict, given: dict, what: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{what}: unknown options {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


# Video building blocks ---------------------------------------------------------------------------


class SpaceConv(nn.Module):
    """A 2D convolution applied to every frame of (B, C, T, H, W)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]
        y = self.conv(x.transpose(1, 2).flatten(0, 1))  # (B*T, C', H', W')
        return y.unflatten(0, (b, t)).transpose(1, 2)  # (B, C', T, H', W')


class CausalTimeConv(nn.Module):
    """A temporal convolution that sees the current and past frames, the past padded with frame 0."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv3d(channels_in, channels_out, (kernel, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Repeating frame 0 (not zeros) makes a still first frame look like a still video.
        past = x[:, :, :1].expand(-1, -1, self.kernel - 1, -1, -1)
        return self.conv(torch.cat([past, x], dim=2))  # (B, C', T, H, W)


class VideoResBlock(nn.Module):
    """x + TimeConv(SiLU(SpaceConv(SiLU(x)))): one causal (2+1)D residual block."""

    def __init__(self, channels: int, time_kernel: int):
        super().__init__()
        self.space = SpaceConv(channels, channels)
        self.time = CausalTimeConv(channels, channels, time_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.time(F.silu(self.space(F.silu(x))))


def _space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p)."""
    b, _, t = x.shape[:3]
    y = F.pixel_unshuffle(x.transpose(1, 2).flatten(0, 1), p)
    return y.unflatten(0, (b, t)).transpose(1, 2)


def _depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C*p*p, T, H, W) -> (B, C, T, H*p, W*p)."""
    b, _, t = x.shape[:3]
    y = F.pixel_shuffle(x.transpose(1, 2).flatten(0, 1), p)
    return y.unflatten(0, (b, t)).transpose(1, 2)


class LearnedVideoCodec(VideoCodec):
    """Causal (2+1)D conv autoencoder: (1 + 4k) frames of H x W -> (C, 1 + k, H / s, W / s) at spatial stride s
    (64 x 64 -> 8 x 8 at the default 8)."""

    def __init__(self, config: VideoCodecConfig):
        super().__init__(config)
        # options a checkpoint left out follow its spatial stride (one that is not a power of 2 needs them all)
        defaults = video_options(config.spatial_stride) if is_power_of_two(config.spatial_stride) else VIDEO_OPTIONS
        opts = _options(defaults, config.options, "video codec 'learned'")
        patch, widths, time_kernel = opts["patch"], list(opts["channels"]), opts["time_kernel"]
        stride = patch * 2 ** (len(widths) - 1)
        if stride != config.spatial_stride:
            raise ValueError(
                f"video codec 'learned': options patch {patch} and {len(widths)} channel stages give spatial "
                f"stride {stride}, but the config says spatial_stride {config.spatial_stride}"
            )
        if not config.causal:
            raise ValueError("video codec 'learned' is causal; set causal to true")
        self.patch = patch
        group = config.temporal_stride
        deep = widths[-1]

        self.enc_in = SpaceConv(3 * patch * patch, widths[0])
        self.enc_blocks = nn.ModuleList(VideoResBlock(w, time_kernel) for w in widths)
        self.enc_down = nn.ModuleList(SpaceConv(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.enc_group = nn.Conv3d(deep * group, deep, 1)  # time folded into channels
        self.enc_latent_block = VideoResBlock(deep, 2)
        self.enc_out = nn.Conv3d(deep, config.latent_channels, 1)

        self.dec_in = nn.Conv3d(config.latent_channels, deep, 1)
        self.dec_latent_block = VideoResBlock(deep, 2)
        self.dec_ungroup = nn.Conv3d(deep, deep * group, 1)
        self.dec_blocks = nn.ModuleList(VideoResBlock(w, time_kernel) for w in reversed(widths))
        self.dec_up = nn.ModuleList(nn.Conv3d(a, b * 4, 1) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.dec_out = SpaceConv(widths[0], 3 * patch * patch)

    def _encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        group = self.config.temporal_stride
        x = _space_to_depth(frames.permute(0, 4, 1, 2, 3) * 2 - 1, self.patch)  # (B, 3pp, F, H/p, W/p)
        x = self.enc_in(x)
        for i, block in enumerate(self.enc_blocks):
            x = block(x)
            if i < len(self.enc_down):
                x = self.enc_down[i](F.silu(x))  # (B, C_i+1, F, H', W') at half the size
        x = torch.cat([x[:, :, :1].expand(-1, -1, group - 1, -1, -1), x], dim=2)  # frame 0 fills group 0
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // group, group, h, w).transpose(2, 3).reshape(b, c * group, t // group, h, w)
        x = self.enc_latent_block(self.enc_group(x))  # (B, C, Tv, h, w)
        return self.enc_out(F.silu(x))  # (B, latent, Tv, h, w)

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        group = self.config.temporal_stride
        x = self.dec_latent_block(self.dec_in(raw))  # (B, C, Tv, h, w)
        x = self.dec_ungroup(F.silu(x))  # (B, C*group, Tv, h, w)
        b, cg, t, h, w = x.shape
        x = x.reshape(b, cg // group, group, t, h, w).transpose(2, 3).reshape(b, cg // group, t * group, h, w)
        x = x[:, :, group - 1:]  # group 0 holds frame 0 only: keep its last copy
        for i, block in enumerate(self.dec_blocks):
            x = block(x)
            if i < len(self.dec_up):
                x = _depth_to_space(self.dec_up[i](F.silu(x)), 2)  # (B, C_i-1, F, 2H', 2W')
        x = _depth_to_space(self.dec_out(F.silu(x)), self.patch)  # (B, 3, F, H, W)
        return (x.permute(0, 2, 3, 4, 1) + 1) / 2  # (B, F, H, W, 3)


# Audio ------------------------------------------------------------------------------------------


class AudioResBlock(nn.Module):
    """x + Conv(SiLU(Conv(SiLU(x)))) over latent frames."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class ConvNeXtBlock1d(nn.Module):
    """x + gamma * Linear(GELU(Linear(LayerNorm(DepthwiseConv(x))))) over frames (B, C, T), as in Vocos."""

    def __init__(self, width: int, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 3 * width)
        self.down = nn.Linear(3 * width, width)
        self.gamma = nn.Parameter(torch.full((width,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.depthwise(x).transpose(1, 2))  # (B, T, C)
        y = self.down(F.gelu(self.up(y))) * self.gamma
        return x + y.transpose(1, 2)


class PhaseVocoder(nn.Module):
    """The phase of every STFT bin and frame from the frames' log magnitudes, so that one inverse STFT
    gives the waveform (Vocos' head without its magnitude branch: the codec's decoder gives those).

    (N, bins, T) log magnitudes -> (N, bins, T) complex numbers of modulus 1. The network sees
    `blocks` x 6 + 7 frames around each (0.62 s at 50 frames a second with 4 blocks); it predicts
    a 2D vector per bin, and its direction is the phase (no wrap-around for the loss to fight).
    """

    def __init__(self, bins: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv1d(bins, width, 7, padding=3)
        self.norm = nn.LayerNorm(width)
        self.blocks = nn.Sequential(*(ConvNeXtBlock1d(width) for _ in range(blocks)))
        self.out = nn.Conv1d(width, 2 * bins, 1)

    def forward(self, log_magnitude: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.inp(log_magnitude).transpose(1, 2)).transpose(1, 2)
        real, imag = self.out(self.blocks(x)).float().chunk(2, dim=1)  # (N, bins, T) each
        modulus = torch.sqrt(real**2 + imag**2).clamp_min(1e-6)
        return torch.complex(real / modulus, imag / modulus)


class LearnedAudioCodec(AudioCodec):
    """Log-magnitude spectrogram autoencoder; waveforms come back by Griffin-Lim or a phase network.

    Encoder: STFT (Hann window `n_fft`, hop = config.hop, one frame centred on each hop) ->
    log(|X| + eps) -> 1D convolutions over frames -> latent (one frame per hop: 50 per second at
    16 kHz, hop 320). Decoder: 1D convolutions -> log magnitude -> waveform, by one of
    (`decoder`, option "decoder"):

    - "griffin_lim": `griffin_lim_iterations` of fast Griffin-Lim (momentum 0.99, fixed start
      phase, so decoding is deterministic), 2 FFTs of the whole signal per iteration;
    - "neural": `PhaseVocoder` gives each bin its phase, then one inverse STFT (or, with option
      `vocoder_refine` k > 0, k Griffin-Lim iterations that start from that phase instead of a
      random one). It is trained after the autoencoder, which it leaves as it was
      (`train-codec --which vocoder`), so latents and every model trained on them stay valid.

    The latents carry no phase: a round trip keeps what is heard (pitch, loudness, timbre), not
    the waveform's exact shape, so its SNR is low while its log-spectral distance is small.
    """

    def __init__(self, config: AudioCodecConfig):
        super().__init__(config)
        opts = _options(AUDIO_OPTIONS, config.options, "audio codec 'learned'")
        self.n_fft, self.eps, self.iterations = opts["n_fft"], opts["eps"], opts["griffin_lim_iterations"]
        self.refine = opts["vocoder_refine"]
        if self.n_fft < config.hop or (self.n_fft - config.hop) % 2:
            raise ValueError(
                f"audio codec 'learned': n_fft {self.n_fft} must be at least the hop {config.hop} and differ "
                f"from it by an even number of samples"
            )
        width, blocks, kernel = opts["width"], opts["blocks"], opts["kernel"]
        bins = config.channels * (self.n_fft // 2 + 1)
        self.enc_in = nn.Conv1d(bins, width, 1)  # per frame: the blocks add context over time
        self.enc_blocks = nn.Sequential(*(AudioResBlock(width, kernel) for _ in range(blocks)))
        self.enc_out = nn.Conv1d(width, config.latent_channels, 1)
        self.dec_in = nn.Conv1d(config.latent_channels, width, kernel, padding=kernel // 2)
        self.dec_blocks = nn.Sequential(*(AudioResBlock(width, kernel) for _ in range(blocks)))
        self.dec_out = nn.Conv1d(width, bins, 1)
        if opts["decoder"] not in AUDIO_DECODERS:
            raise ValueError(f"audio codec 'learned': decoder is {opts['decoder']!r}; expected one of {list(AUDIO_DECODERS)}")
        self.decoder = opts["decoder"]
        # Only a codec whose config names the neural decoder has (and loads) the vocoder's weights.
        self.vocoder = (PhaseVocoder(self.n_fft // 2 + 1, opts["vocoder_width"], opts["vocoder_blocks"])
                        if self.decoder == "neural" else None)

    # Spectra --------------------------------------------------------------------------------------

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, dtype=like.dtype, device=like.device)

    def _stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """(N, S) with S a multiple of hop -> complex (N, bins, S / hop), frame t centred on hop t."""
        side = (self.n_fft - self.config.hop) // 2
        padded = F.pad(waveform, (side, side))
        return torch.stft(padded, self.n_fft, self.config.hop, window=self._window(waveform),
                          center=False, return_complex=True)

    def _istft(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Inverse of `_stft` by weighted overlap-add: complex (N, bins, T) -> (N, T * hop)."""
        hop, frames = self.config.hop, spectrum.shape[-1]
        window = self._window(spectrum.real)
        pieces = torch.fft.irfft(spectrum, n=self.n_fft, dim=1) * window[:, None]  # (N, n_fft, T)
        size = (1, (frames - 1) * hop + self.n_fft)
        signal = F.fold(pieces, size, (1, self.n_fft), stride=(1, hop)).flatten(1)
        envelope = F.fold((window**2)[None, :, None].expand(1, -1, frames), size, (1, self.n_fft), stride=(1, hop)).flatten(1)
        side = (self.n_fft - hop) // 2
        return (signal / envelope.clamp_min(1e-8))[:, side:side + frames * hop]

    def log_magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, C, S) -> log(|STFT| + eps) as (B, C * bins, S / hop): what the encoder sees."""
        b, c, _ = waveform.shape
        # Spectra in float32 whatever the weights' dtype: CPU FFTs have no half precision.
        magnitude = self._stft(waveform.flatten(0, 1).float()).abs()  # (B*C, bins, T)
        return torch.log(magnitude + self.eps).reshape(b, c * magnitude.shape[1], -1).to(waveform.dtype)

    def griffin_lim(self, magnitude: torch.Tensor, angles: torch.Tensor | None = None,
                    iterations: int | None = None) -> torch.Tensor:
        """A waveform (N, T * hop) whose STFT magnitude is close to `magnitude` (N, bins, T): `iterations`
        (default: the option griffin_lim_iterations) of fast Griffin-Lim from the unit complex phases
        `angles` (default: a fixed random start, so decoding is deterministic)."""
        if angles is None:
            generator = torch.Generator().manual_seed(0)
            phase = torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype) * (2 * math.pi)
            angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
        previous = angles
        for _ in range(self.iterations if iterations is None else iterations):  # momentum 0.99
            rebuilt = self._stft(self._istft(magnitude * angles))
            projected = rebuilt / rebuilt.abs().clamp_min(1e-12)
            angles = projected + 0.99 * (projected - previous)
            angles = angles / angles.abs().clamp_min(1e-12)
            previous = projected
        return self._istft(magnitude * angles)

    # Encode / decode ------------------------------------------------------------------------------

    def encode_log_magnitude(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C * bins, T) log magnitudes -> unnormalised latent (B, Ca, T)."""
        x = self.enc_blocks(self.enc_in(features))  # (B, width, T)
        return self.enc_out(F.silu(x))  # (B, Ca, T)

    def decode_log_magnitude(self, raw: torch.Tensor) -> torch.Tensor:
        """Unnormalised latent (B, Ca, T) -> predicted log magnitudes (B, C * bins, T)."""
        x = self.dec_blocks(self.dec_in(raw))  # (B, width, T)
        return self.dec_out(F.silu(x))  # (B, C*bins, T)

    def _encode_raw(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encode_log_magnitude(self.log_magnitude(waveform))

    def decoded_log_magnitude(self, raw: torch.Tensor) -> torch.Tensor:
        """Unnormalised latent (B, Ca, T) -> float32 log magnitudes per channel (B * C, bins, T), capped."""
        b, channels = raw.shape[0], self.config.channels
        log_magnitude = self.decode_log_magnitude(raw)  # (B, C*bins, T)
        # Capped at the magnitude of a sine of amplitude 4 (n_fft / 4 * 4): a latent far outside
        # what the codec was trained on gives a loud frame, never an infinite one.
        log_magnitude = log_magnitude.float().clamp(max=math.log(self.n_fft)).reshape(b * channels, -1, raw.shape[-1])
        return self._within_full_scale(log_magnitude)

    def _within_full_scale(self, log_magnitude: torch.Tensor) -> torch.Tensor:
        """(N, bins, T) log magnitudes, each frame scaled down (all bins alike) where its power exceeds
        what a signal within [-1, 1] can give: by Parseval, n_fft * sum(window^2) (a full-scale sine
        gives a quarter of it). What an encoder makes of a sound unlike its training set (pure tones
        over digital silence) can decode far louder than the sound; this keeps such frames at full
        scale instead of tens of dB over it. Frames of sound within full scale are left as they are."""
        limit = math.log(self.n_fft * float((self._window(log_magnitude) ** 2).sum()))
        frame_power = torch.logsumexp(2.0 * log_magnitude, dim=1, keepdim=True)  # (N, 1, T)
        return log_magnitude - 0.5 * (frame_power - limit).clamp_min(0.0)

    def waveform_from_log_magnitude(self, log_magnitude: torch.Tensor, decoder: str | None = None,
                                    refine: int | None = None) -> torch.Tensor:
        """(N, bins, T) float32 log magnitudes -> waveforms (N, T * hop), by `decoder` (default: the codec's);
        `refine`: Griffin-Lim iterations after the neural decoder's phase (default: option vocoder_refine)."""
        decoder = decoder or self.decoder
        refine = self.refine if refine is None else refine
        magnitude = (log_magnitude.exp() - self.eps).clamp_min(0.0)
        if decoder == "griffin_lim":
            return self.griffin_lim(magnitude)
        if decoder != "neural" or self.vocoder is None:
            raise ValueError(f"audio codec 'learned': decoder {decoder!r} is not available; this codec has "
                             f"{['griffin_lim'] + (['neural'] if self.vocoder is not None else [])}")
        weight = self.vocoder.out.weight
        phase = self.vocoder(log_magnitude.to(weight.dtype))
        return self.griffin_lim(magnitude, phase, refine) if refine else self._istft(magnitude * phase)

    def _decode_raw(self, raw: torch.Tensor, decoder: str | None = None, refine: int | None = None) -> torch.Tensor:
        b, channels = raw.shape[0], self.config.channels
        waveform = self.waveform_from_log_magnitude(self.decoded_log_magnitude(raw), decoder, refine)
        return waveform.reshape(b, channels, -1).to(raw.dtype)  # (B, C, T*hop)

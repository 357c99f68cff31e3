"""The codec interface: what every video and audio autoencoder promises the rest of AVDiT.

A subclass implements `_encode_raw` and `_decode_raw` on well-formed tensors; this base class
checks shapes with messages that name the problem, pads inputs to whole latent frames, and applies
the latent normalisation from the config so that latents are about unit variance.

Video (causal codecs, `config.causal`): frame 0 is encoded alone, then every `temporal_stride`
frames make one latent frame, so F = 1 + k * temporal_stride frames give 1 + k latent frames.
Any other F is padded by repeating the last frame up to the next 1 + k * temporal_stride; the
decoder then returns `frames_for_latents(latent_frames(F))` frames and the caller keeps the first F.
Non-causal codecs group frames from frame 0 and pad F up to a multiple of `temporal_stride`.

Audio: the waveform's tail is padded with zeros up to a whole number of `hop`-sample frames, so
S samples give ceil(S / hop) latent frames and decode to that many times `hop` samples.
"""
from __future__ import annotations

import math

import torch

from avdit.config import AudioCodecConfig, VideoCodecConfig


def _module_dtype_device(module: torch.nn.Module, like: torch.Tensor) -> tuple[torch.dtype, torch.device]:
    """The codec's weight dtype and device; codecs without weights keep the input's."""
    weight = next(module.parameters(), None)
    if weight is None:
        return like.dtype, like.device
    return weight.dtype, weight.device


class VideoCodec(torch.nn.Module):
    """Frames (B, F, H, W, 3) in 0..1 <-> normalised latents (B, C, Tv, H/s, W/s)."""

    def __init__(self, config: VideoCodecConfig):
        super().__init__()
        self.config = config

    # Frame arithmetic -------------------------------------------------------------------------

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames that `num_frames` video frames encode to (after padding)."""
        if num_frames < 1:
            raise ValueError(f"video codec: num_frames must be at least 1, got {num_frames}")
        stride = self.config.temporal_stride
        if self.config.causal:
            return 1 + math.ceil((num_frames - 1) / stride)
        return math.ceil(num_frames / stride)

    def frames_for_latents(self, num_latent_frames: int) -> int:
        """Video frames that `num_latent_frames` latent frames decode to."""
        if num_latent_frames < 1:
            raise ValueError(f"video codec: num_latent_frames must be at least 1, got {num_latent_frames}")
        stride = self.config.temporal_stride
        if self.config.causal:
            return 1 + (num_latent_frames - 1) * stride
        return num_latent_frames * stride

    # Encode / decode --------------------------------------------------------------------------

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W, 3) float in 0..1 -> normalised latent (B, C, Tv, H/s, W/s).

        F is padded by repeating the last frame up to `frames_for_latents(latent_frames(F))`.
        """
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"video codec: encode expects frames of shape (batch, frames, height, width, 3), got {shape}")
        batch, num_frames, height, width, _ = frames.shape
        stride = self.config.spatial_stride
        if num_frames < 1 or height % stride or width % stride or height == 0 or width == 0:
            raise ValueError(
                f"video codec: frames are {width}x{height} ({num_frames} frames); width and height must be "
                f"positive multiples of the codec's spatial stride {stride} (e.g. "
                f"{max(stride, width // stride * stride)}x{max(stride, height // stride * stride)}), "
                f"with at least one frame"
            )
        dtype, device = _module_dtype_device(self, frames)
        frames = frames.to(device=device, dtype=dtype if dtype.is_floating_point else torch.float32)
        padded = self.frames_for_latents(self.latent_frames(num_frames))
        if padded > num_frames:
            frames = torch.cat([frames, frames[:, -1:].expand(-1, padded - num_frames, -1, -1, -1)], dim=1)
        raw = self._encode_raw(frames)  # (B, C, Tv, h, w)
        return (raw - self.config.latent_shift) * self.config.latent_scale

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, C, Tv, h, w) -> frames (B, frames_for_latents(Tv), h*s, w*s, 3) in 0..1."""
        channels = self.config.latent_channels
        if not isinstance(latent, torch.Tensor) or latent.ndim != 5 or latent.shape[1] != channels:
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(
                f"video codec: decode expects a latent of shape (batch, {channels}, latent_frames, h, w), got {shape}"
            )
        if min(latent.shape[2:]) < 1:
            raise ValueError(f"video codec: decode got an empty latent of shape {tuple(latent.shape)}")
        dtype, device = _module_dtype_device(self, latent)
        raw = latent.to(device=device, dtype=dtype) / self.config.latent_scale + self.config.latent_shift
        return self._decode_raw(raw).clamp(0.0, 1.0)

    def _encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W, 3) with F a whole number of latent frames -> unnormalised (B, C, Tv, h, w)."""
        raise NotImplementedError

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Unnormalised (B, C, Tv, h, w) -> (B, F, H, W, 3), not yet clamped."""
        raise NotImplementedError


class AudioCodec(torch.nn.Module):
    """Waveform (B, C, S) <-> normalised latents (B, Ca, ceil(S / hop))."""

    def __init__(self, config: AudioCodecConfig):
        super().__init__()
        self.config = config

    def latent_frames(self, num_samples: int) -> int:
        """Latent frames that `num_samples` waveform samples encode to (the tail zero-padded)."""
        if num_samples < 1:
            raise ValueError(f"audio codec: num_samples must be at least 1, got {num_samples}")
        return math.ceil(num_samples / self.config.hop)

    def samples_for_latents(self, num_latent_frames: int) -> int:
        """Waveform samples that `num_latent_frames` latent frames decode to."""
        return num_latent_frames * self.config.hop

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, C, S) float -> normalised latent (B, Ca, ceil(S / hop))."""
        channels = self.config.channels
        if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or waveform.shape[1] != channels:
            shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
            raise ValueError(
                f"audio codec: encode expects a waveform of shape (batch, {channels}, samples) "
                f"({channels} channel(s) at the codec's sample rate), got {shape}"
            )
        if waveform.shape[2] < 1:
            raise ValueError("audio codec: encode got a waveform with no samples; give at least one sample")
        dtype, device = _module_dtype_device(self, waveform)
        waveform = waveform.to(device=device, dtype=dtype if dtype.is_floating_point else torch.float32)
        tail = self.latent_frames(waveform.shape[2]) * self.config.hop - waveform.shape[2]
        if tail:
            waveform = torch.nn.functional.pad(waveform, (0, tail))
        raw = self._encode_raw(waveform)  # (B, Ca, Ta)
        return (raw - self.config.latent_shift) * self.config.latent_scale

    def decode(self, latent: torch.Tensor, **options) -> torch.Tensor:
        """Normalised latent (B, Ca, Ta) -> waveform (B, C, Ta * hop). `options` go to the codec's
        decoder (a learned codec's `decoder` and `refine`, see `LearnedAudioCodec`)."""
        channels = self.config.latent_channels
        if not isinstance(latent, torch.Tensor) or latent.ndim != 3 or latent.shape[1] != channels:
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(f"audio codec: decode expects a latent of shape (batch, {channels}, latent_frames), got {shape}")
        if latent.shape[2] < 1:
            raise ValueError(f"audio codec: decode got an empty latent of shape {tuple(latent.shape)}")
        dtype, device = _module_dtype_device(self, latent)
        raw = latent.to(device=device, dtype=dtype) / self.config.latent_scale + self.config.latent_shift
        return self._decode_raw(raw, **options)

    def _encode_raw(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, C, S) with S a multiple of hop -> unnormalised (B, Ca, S / hop)."""
        raise NotImplementedError

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Unnormalised (B, Ca, Ta) -> (B, C, Ta * hop)."""
        raise NotImplementedError


# What a round trip keeps -------------------------------------------------------------------------


def video_psnr(reference: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of frames in 0..1 (peak 1), over all pixels of all frames."""
    mse = torch.mean((reference.double() - reconstruction.double()) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def audio_snr(reference: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Signal-to-noise ratio in dB of a waveform reconstruction (sensitive to phase)."""
    reference, reconstruction = reference.double(), reconstruction.double()
    noise = torch.sum((reference - reconstruction) ** 2).item()
    signal = torch.sum(reference**2).item()
    if noise == 0:
        return float("inf")
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


def log_spectral_distance(reference: torch.Tensor, reconstruction: torch.Tensor, n_fft: int = 1024) -> float:
    """Log-spectral distance in dB (RMS over frequency of the log power difference, mean over frames).

    Waveforms (..., S); frames quieter than 60 dB below the reference's loudest frame are skipped,
    so silence does not dominate (phase-blind, unlike SNR).
    """
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def power(x: torch.Tensor) -> torch.Tensor:
        x = x.double().reshape(-1, x.shape[-1])
        if x.shape[-1] < n_fft:
            x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
        return torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs() ** 2  # (N, bins, T)

    return _log_power_distance(power(reference), power(reconstruction))


def _log_power_distance(ref: torch.Tensor, rec: torch.Tensor) -> float:
    """RMS over bands of the dB difference of powers (N, bands, T), mean over frames no quieter than
    60 dB below the reference's loudest; powers 100 dB below the loudest count as that floor."""
    floor = ref.amax() * 1e-10 + 1e-20
    diff = 10.0 * (torch.log10(ref + floor) - torch.log10(rec + floor))
    frame_power = ref.sum(1)  # (N, T)
    loud = frame_power > frame_power.amax() * 1e-6
    if not loud.any():
        return 0.0
    per_frame = torch.sqrt(torch.mean(diff**2, dim=1))  # (N, T)
    return float(per_frame[loud].mean())


def mel_filterbank(sample_rate: int, n_fft: int, bands: int = 80) -> torch.Tensor:
    """Triangular filters (bands, n_fft // 2 + 1) evenly spaced on the mel scale (HTK's
    2595 log10(1 + f / 700)) from 0 Hz to the Nyquist frequency, each peaking at 1."""
    def mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    edges = 700.0 * (10 ** (torch.linspace(0.0, float(mel(torch.tensor(sample_rate / 2.0))), bands + 2, dtype=torch.float64) / 2595.0) - 1.0)
    edges[-1] = sample_rate / 2.0  # exactly, not as rounded through the mel scale and back
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return torch.minimum(rising, falling).clamp_min(0.0)


def log_mel_distance(reference: torch.Tensor, reconstruction: torch.Tensor, sample_rate: int, n_fft: int = 1024,
                     bands: int = 80) -> float:
    """Log-mel distance in dB: RMS over `bands` mel bands of the difference of 10 log10 band powers, mean
    over frames (Hann window `n_fft`, hop n_fft / 4). Waveforms (..., S); as in `log_spectral_distance`,
    frames more than 60 dB below the reference's loudest are skipped. Phase-blind, and closer to what
    is heard than the linear-frequency distance: low bands, where pitch lives, weigh more."""
    window = torch.hann_window(n_fft, dtype=torch.float64)
    filters = mel_filterbank(sample_rate, n_fft, bands)

    def power(x: torch.Tensor) -> torch.Tensor:
        x = x.double().reshape(-1, x.shape[-1])
        if x.shape[-1] < n_fft:
            x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
        spectrum = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs() ** 2  # (N, bins, T)
        return torch.einsum("mb,nbt->nmt", filters, spectrum)  # (N, bands, T)

    return _log_power_distance(power(reference), power(reconstruction))

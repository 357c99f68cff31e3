"""Codecs: the interface's shapes and frame counts, exact analytic round trips, causality of the
learned video codec, checkpoint round trips, and what the shipped codecs keep of ToneShapes."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from avdit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from avdit.codecs import (
    SHIPPED_CODECS,
    analytic_audio_config,
    analytic_video_config,
    build_audio_codec,
    build_video_codec,
    load_codecs,
)
from avdit.codecs.base import audio_snr, log_mel_distance, log_spectral_distance, mel_filterbank, video_psnr
from avdit.codecs.train import evaluate_audio, evaluate_video, learned_audio_config, learned_video_config, tone_agreement
from avdit.config import AudioCodecConfig, AVDiTConfig, VideoCodecConfig


def space_to_depth_config(**changes) -> VideoCodecConfig:
    return replace(analytic_video_config(), **changes)


def framed_config(**changes) -> AudioCodecConfig:
    return replace(analytic_audio_config(), **changes)


def test_analytic_config_helpers_fill_in_the_latent_channels():
    assert analytic_video_config().latent_channels == 768
    assert analytic_video_config(temporal_stride=2, spatial_stride=4).latent_channels == 96
    assert analytic_audio_config().latent_channels == 320 and analytic_audio_config(hop=160, channels=2).latent_channels == 320


# Analytic codecs: exact ------------------------------------------------------------------------


def test_space_to_depth_round_trip_is_bit_exact():
    codec = build_video_codec(space_to_depth_config())
    frames = torch.rand(2, 17, 64, 48, 3)
    latent = codec.encode(frames)
    assert latent.shape == (2, 768, 5, 8, 6)
    assert torch.equal(codec.decode(latent), frames)


def test_space_to_depth_round_trip_with_normalisation_within_1e6():
    codec = build_video_codec(space_to_depth_config(latent_shift=0.3, latent_scale=3.7))
    frames = torch.rand(1, 9, 32, 32, 3)
    latent = codec.encode(frames)
    assert torch.allclose(latent, (codec._encode_raw(frames) - 0.3) * 3.7)
    assert (codec.decode(latent) - frames).abs().max() <= 1e-6


def test_space_to_depth_encodes_first_frame_alone():
    codec = build_video_codec(space_to_depth_config())
    frames = torch.rand(1, 9, 16, 16, 3)
    latent = codec.encode(frames)
    assert torch.equal(codec.encode(frames[:, :1]), latent[:, :, :1])
    # Frames 1..4 make latent frame 1: changing frames 5.. leaves latents 0 and 1 alone.
    changed = frames.clone()
    changed[:, 5:] = 0.5
    assert torch.equal(codec.encode(changed)[:, :, :2], latent[:, :, :2])


def test_framed_audio_round_trip_is_bit_exact_and_pads_the_tail_with_zeros():
    codec = build_audio_codec(framed_config())
    waveform = torch.randn(2, 1, 34000)
    latent = codec.encode(waveform)
    assert latent.shape == (2, 320, 107)  # ceil(34000 / 320)
    decoded = codec.decode(latent)
    assert decoded.shape == (2, 1, 107 * 320)
    assert torch.equal(decoded[..., :34000], waveform)
    assert torch.equal(decoded[..., 34000:], torch.zeros(2, 1, 240))


def test_framed_audio_stereo_with_normalisation_within_1e6():
    codec = build_audio_codec(framed_config(channels=2, latent_channels=640, latent_shift=-0.1, latent_scale=5.0))
    waveform = torch.randn(1, 2, 640)
    assert (codec.decode(codec.encode(waveform)) - waveform).abs().max() <= 1e-6


def test_analytic_configs_with_the_wrong_latent_channels_say_what_they_need():
    with pytest.raises(ValueError, match="set latent_channels to 768"):
        build_video_codec(VideoCodecConfig(kind="space_to_depth", latent_channels=16))
    with pytest.raises(ValueError, match="set latent_channels to 320"):
        build_audio_codec(AudioCodecConfig(kind="framed", latent_channels=16))


def test_unknown_codec_kinds_are_refused_by_name():
    with pytest.raises(ValueError, match="'vqgan' is unknown; known kinds: \\['learned', 'space_to_depth'\\]"):
        build_video_codec(VideoCodecConfig(kind="vqgan"))
    with pytest.raises(ValueError, match="'mel' is unknown; known kinds: \\['framed', 'learned'\\]"):
        build_audio_codec(AudioCodecConfig(kind="mel"))


# Frame arithmetic and shapes, analytic and learned -----------------------------------------------


@pytest.mark.parametrize("num_frames, latent_frames, decoded_frames", [(17, 5, 17), (1, 1, 1), (5, 2, 5), (18, 6, 21)])
@pytest.mark.parametrize("config", [space_to_depth_config(), learned_video_config()], ids=["space_to_depth", "learned"])
def test_causal_frame_counts(config, num_frames, latent_frames, decoded_frames):
    codec = build_video_codec(config)
    assert codec.latent_frames(num_frames) == latent_frames
    assert codec.frames_for_latents(latent_frames) == decoded_frames
    with torch.no_grad():
        latent = codec.encode(torch.rand(2, num_frames, 64, 64, 3))
        assert latent.shape == (2, config.latent_channels, latent_frames, 8, 8)
        decoded = codec.decode(latent)
    assert decoded.shape == (2, decoded_frames, 64, 64, 3)
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_padding_repeats_the_last_frame():
    codec = build_video_codec(space_to_depth_config())
    frames = torch.rand(1, 18, 16, 16, 3)
    decoded = codec.decode(codec.encode(frames))
    assert torch.equal(decoded[:, :18], frames)
    assert torch.equal(decoded[:, 18:], frames[:, 17:18].expand(-1, 3, -1, -1, -1))


def test_non_causal_codec_groups_from_frame_zero():
    codec = build_video_codec(space_to_depth_config(causal=False))
    assert [codec.latent_frames(f) for f in (1, 4, 5, 16, 17)] == [1, 1, 2, 4, 5]
    assert codec.frames_for_latents(5) == 20
    frames = torch.rand(1, 6, 8, 8, 3)
    decoded = codec.decode(codec.encode(frames))
    assert decoded.shape == (1, 8, 8, 8, 3) and torch.equal(decoded[:, :6], frames)


@pytest.mark.parametrize("config", [space_to_depth_config(), learned_video_config()], ids=["space_to_depth", "learned"])
def test_sizes_that_are_not_multiples_of_the_spatial_stride_are_refused(config):
    codec = build_video_codec(config)
    with pytest.raises(ValueError, match=r"frames are 64x60 .*multiples of the codec's spatial stride 8 \(e.g. 64x56\)"):
        codec.encode(torch.rand(1, 5, 60, 64, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, frames, height, width, 3\), got \(5, 64, 64, 3\)"):
        codec.encode(torch.rand(5, 64, 64, 3))


def test_audio_inputs_of_the_wrong_shape_are_refused():
    codec = build_audio_codec(framed_config())
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\) \(1 channel\(s\) at the codec's sample rate\), got \(1, 2, 100\)"):
        codec.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match=r"latent of shape \(batch, 320, latent_frames\), got \(1, 16, 5\)"):
        codec.decode(torch.zeros(1, 16, 5))


def test_learned_video_codec_is_causal():
    torch.manual_seed(0)
    codec = build_video_codec(learned_video_config()).eval()
    frames = torch.rand(1, 17, 64, 64, 3)
    with torch.no_grad():
        latent = codec.encode(frames)
        assert torch.allclose(codec.encode(frames[:, :1]), latent[:, :, :1], atol=1e-5)
        changed = frames.clone()
        changed[:, 9:] = 0.0  # frames 9.. belong to latent frames 3 and 4
        assert torch.allclose(codec.encode(changed)[:, :, :3], latent[:, :, :3], atol=1e-5)
        assert not torch.allclose(codec.encode(changed)[:, :, 3:], latent[:, :, 3:], atol=1e-5)


def test_learned_audio_codec_shapes():
    codec = build_audio_codec(learned_audio_config())
    assert codec.latent_frames(34000) == 107 and codec.latent_frames(16000) == 50
    with torch.no_grad():
        latent = codec.encode(torch.randn(2, 1, 34000) * 0.1)
        assert latent.shape == (2, 32, 107)
        assert codec.decode(latent).shape == (2, 1, 34240)


def test_learned_codecs_stay_small():
    assert sum(p.numel() for p in build_video_codec(learned_video_config()).parameters()) < 5_000_000
    assert sum(p.numel() for p in build_audio_codec(learned_audio_config()).parameters()) < 5_000_000


# Checkpoints ----------------------------------------------------------------------------------


def test_codecs_checkpoint_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(1)
    video = build_video_codec(replace(learned_video_config(), latent_scale=0.5, latent_shift=0.25))
    audio = build_audio_codec(replace(learned_audio_config(), latent_scale=2.0))
    config = AVDiTConfig(video_codec=video.config, audio_codec=audio.config)
    tensors = {f"video_codec.{k}": v for k, v in video.state_dict().items()}
    tensors.update({f"audio_codec.{k}": v for k, v in audio.state_dict().items()})
    path = save_checkpoint(tmp_path / "codecs.safetensors", config, tensors)

    video2, audio2, config2 = load_codecs(path)
    assert config2.video_codec == video.config and config2.audio_codec == audio.config
    for a, b in ((video, video2), (audio, audio2)):
        state, state2 = a.state_dict(), b.state_dict()
        assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    frames, waveform = torch.rand(1, 5, 64, 64, 3), torch.randn(1, 1, 3200) * 0.1
    with torch.no_grad():
        assert torch.equal(video.eval().encode(frames), video2.encode(frames))
        assert torch.equal(audio.eval().encode(waveform), audio2.encode(waveform))


def test_analytic_codecs_load_from_a_checkpoint_without_tensors(tmp_path):
    config = AVDiTConfig(video_codec=space_to_depth_config(), audio_codec=framed_config())
    path = save_checkpoint(tmp_path / "analytic.safetensors", config, {})
    video, audio, _ = load_codecs(path)
    frames = torch.rand(1, 5, 16, 16, 3)
    assert torch.equal(video.decode(video.encode(frames)), frames)


def test_a_checkpoint_whose_codec_config_cannot_be_built_is_refused_by_name(tmp_path):
    config = AVDiTConfig(video_codec=VideoCodecConfig(kind="space_to_depth", latent_channels=16), audio_codec=framed_config())
    path = save_checkpoint(tmp_path / "bad.safetensors", config, {})
    with pytest.raises(CheckpointError, match=r"bad.safetensors: its video_codec config cannot be built: .*768"):
        load_codecs(path)


def test_a_checkpoint_missing_codec_tensors_is_refused(tmp_path):
    config = AVDiTConfig(video_codec=learned_video_config(), audio_codec=framed_config())
    path = save_checkpoint(tmp_path / "empty.safetensors", config, {})
    with pytest.raises(CheckpointError, match="missing .* tensor\\(s\\) under 'video_codec.'"):
        load_codecs(path)


# Metrics ------------------------------------------------------------------------------------------


def test_round_trip_metrics():
    frames = torch.full((1, 2, 8, 8, 3), 0.5)
    assert video_psnr(frames, frames) == float("inf")
    assert video_psnr(frames, frames + 0.1) == pytest.approx(20.0)
    tone = torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)[None]
    assert audio_snr(tone, tone * 0.9) == pytest.approx(20.0)
    assert log_spectral_distance(tone, tone) == 0.0
    noise = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    assert log_spectral_distance(noise, noise * 0.1) == pytest.approx(20.0, abs=0.01)
    # Silence versus the tone: the scorer hears nothing where it heard a tone.
    assert tone_agreement(tone.numpy(), tone.numpy())["all"] == 1.0
    assert tone_agreement(tone.numpy(), 0 * tone.numpy())["presence"] == 0.0


# The shipped codecs ---------------------------------------------------------------------------


def test_shipped_codecs_keep_toneshapes():
    """The trained codecs in avdit/assets: >= 30 dB PSNR and >= 95 % scorer agreement on held-out clips."""
    assert SHIPPED_CODECS.is_file(), f"{SHIPPED_CODECS} is missing: run python -m avdit train-codec --output {SHIPPED_CODECS}"
    video, audio, config = load_codecs()
    assert config.video_codec.kind == "learned" and config.audio_codec.kind == "learned"
    assert (config.layout.fps, config.layout.sample_rate) == (8.0, 16000)
    assert evaluate_video(video, clips=8) >= 30.0
    agreement = evaluate_audio(audio, clips=8)
    assert agreement["all"] >= 0.95, agreement
    _, tensors = load_checkpoint(SHIPPED_CODECS)
    assert SHIPPED_CODECS.stat().st_size < 8_000_000 and all(k.startswith(("video_codec.", "audio_codec.")) for k in tensors)


def test_shipped_audio_codec_decodes_latents_far_out_of_range_to_finite_sound():
    """A sampler can hand the decoder latents far outside what the codec saw; the sound stays finite."""
    _, audio, _ = load_codecs()
    wild = torch.randn(2, audio.config.latent_channels, 20, generator=torch.Generator().manual_seed(0)) * 40.0
    with torch.no_grad():
        decoded = audio.decode(wild)
    assert decoded.shape == (2, 1, 20 * 320) and bool(torch.isfinite(decoded).all())
    # ... and no louder than full scale (RMS 57 before frames were held to what [-1, 1] allows).
    assert decoded.pow(2).mean(-1).sqrt().max().item() <= 1.5


def test_decoded_frames_louder_than_full_scale_are_brought_down_to_it_and_others_left_alone():
    """A frame's power, summed over bins, is held to n_fft * sum(window^2), all bins scaled alike: a
    full-scale sine or full-scale noise keeps its spectrum bit for bit; the same sine ten times louder
    comes back at exactly the limit, its spectrum's shape kept."""
    codec = build_audio_codec(learned_audio_config())
    t = torch.arange(16000, dtype=torch.float64) / 16000
    sine = torch.sin(2 * math.pi * 1000.0 * t).float()
    noise = torch.rand(16000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for sound in (sine, 0.01 * sine, noise):
        log_magnitude = codec.log_magnitude(sound[None, None])
        assert torch.equal(codec._within_full_scale(log_magnitude), log_magnitude)
    loud = codec.log_magnitude(10 * sine[None, None])
    held = codec._within_full_scale(loud)
    limit = codec.n_fft * float((torch.hann_window(codec.n_fft) ** 2).sum())
    power = (2 * held).exp().sum(1)  # (1, T)
    assert torch.allclose(power, torch.full_like(power, limit), rtol=1e-4)
    shift = loud - held  # the same for every bin of a frame
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5) and shift.min().item() > 0.5


def test_shipped_latents_are_about_unit_variance():
    video, audio, _ = load_codecs()
    from avdit.codecs.train import toneshapes_batch

    frames, waveform = toneshapes_batch(range(2_000_000_000, 2_000_000_008))
    with torch.no_grad():
        for latent in (video.encode(frames), audio.encode(waveform)):
            assert abs(latent.mean().item()) < 0.5 and 0.5 < latent.std().item() < 2.0


def test_mel_filterbank_spans_the_band_with_triangles_peaking_at_one():
    filters = mel_filterbank(16000, 1024, bands=80)
    assert filters.shape == (80, 513)
    assert torch.all(filters.amax(1) > 0.5) and float(filters.max()) <= 1.0  # every band sees at least one bin
    peaks = filters.argmax(1)
    assert torch.all(peaks[1:] >= peaks[:-1])  # ordered from low to high
    assert float(filters[:, 0].sum()) == 0.0 and float(filters[:, -1].sum()) == 0.0  # 0 Hz and Nyquist are edges


def test_log_mel_distance_is_zero_for_a_copy_and_the_gain_change_in_db_for_noise():
    noise = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    assert log_mel_distance(noise, noise.clone(), 16000) == 0.0
    # white noise has power in every band, so halving it moves every band by 20 log10(2) = 6.02 dB
    assert log_mel_distance(noise, noise * 0.5, 16000) == pytest.approx(6.0206, abs=1e-3)
    assert log_mel_distance(noise, noise * 0.5, 16000) == pytest.approx(log_spectral_distance(noise, noise * 0.5), abs=1e-3)


# python -m avdit reconstruct ---------------------------------------------------------------------


def _reconstruct(*argv):
    from avdit.cli import main

    return main(["reconstruct", *argv])


def test_reconstruct_through_exact_codecs_reports_a_lossless_round_trip(tmp_path, capsys):
    import av

    from avdit.data import generate_clip
    from avdit.media import write_mp4

    clip = generate_clip(7)
    source = write_mp4(tmp_path / "clip.mp4", torch.from_numpy(clip.video), 8, torch.from_numpy(clip.audio)[None], 16000)
    config = AVDiTConfig(video_codec=space_to_depth_config(), audio_codec=framed_config())
    checkpoint = save_checkpoint(tmp_path / "analytic.safetensors", config, {})
    output = tmp_path / "out.mp4"
    assert _reconstruct("--input", source, "--output", str(output), "--checkpoint", str(checkpoint)) == 0
    printed = capsys.readouterr().out
    assert "video: 17 frames, 64x64 at 8 fps (from 64x64 at 8 fps): PSNR inf dB" in printed
    assert "SNR inf dB, log-spectral distance 0.00 dB, log-mel distance 0.00 dB" in printed
    with av.open(str(output)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
        assert container.streams.video[0].frames == 17


def test_reconstruct_of_a_sound_without_video_writes_a_wav_of_its_round_trip(tmp_path, capsys):
    from avdit.data import generate_clip
    from avdit.media import decode, write_wav

    clip = generate_clip(7)
    source = write_wav(tmp_path / "tone.wav", torch.from_numpy(clip.audio)[None] * 0.9, 16000)
    config = AVDiTConfig(video_codec=space_to_depth_config(), audio_codec=framed_config())
    codecs = save_checkpoint(tmp_path / "analytic.safetensors", config, {})
    output = tmp_path / "out.wav"
    assert _reconstruct("--input", source, "--output", str(output), "--codecs", str(codecs)) == 0
    printed = capsys.readouterr().out
    assert "video:" not in printed and "audio: 2.12 s at 16000 Hz, 1 channel(s) (from 16000 Hz, 1 channel(s)): SNR" in printed
    back, given = decode(output, video=False, audio=True), decode(source, video=False, audio=True)
    assert back.sample_rate == 16000 and back.waveform.shape == given.waveform.shape
    assert float((back.waveform - given.waveform).abs().max()) <= 2 / 32767  # the exact codecs lose nothing


def test_reconstruct_names_a_missing_input(tmp_path, capsys):
    config = AVDiTConfig(video_codec=space_to_depth_config(), audio_codec=framed_config())
    checkpoint = save_checkpoint(tmp_path / "analytic.safetensors", config, {})
    missing = tmp_path / "nope.mp4"
    assert _reconstruct("--input", str(missing), "--output", str(tmp_path / "o.mp4"), "--checkpoint", str(checkpoint)) == 2
    assert "nope.mp4" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_reconstruct_decodes_audio_by_the_decoder_asked_for_and_refuses_one_the_codec_lacks(tmp_path, capsys):
    from avdit.data import generate_clip
    from avdit.media import write_mp4

    clip = generate_clip(3)
    source = write_mp4(tmp_path / "clip.mp4", torch.from_numpy(clip.video), 8, torch.from_numpy(clip.audio)[None], 16000)
    torch.manual_seed(0)
    audio = build_audio_codec(learned_audio_config(decoder="neural"))
    config = AVDiTConfig(video_codec=space_to_depth_config(), audio_codec=audio.config)
    neural = save_checkpoint(tmp_path / "neural.safetensors", config,
                             {f"audio_codec.{k}": v for k, v in audio.state_dict().items()})
    printed = {}
    for decoder in ("neural", "griffin_lim"):
        output = tmp_path / f"{decoder}.mp4"
        assert _reconstruct("--input", source, "--output", str(output), "--checkpoint", str(neural),
                            "--audio-decoder", decoder) == 0
        printed[decoder] = capsys.readouterr().out
        assert f"(from 16000 Hz, 1 channel(s), {decoder} decoder): SNR" in printed[decoder] and output.is_file()
    assert printed["neural"].split("SNR")[1] != printed["griffin_lim"].split("SNR")[1]

    plain = save_checkpoint(tmp_path / "plain.safetensors", replace(config, audio_codec=learned_audio_config()),
                            {f"audio_codec.{k}": v for k, v in build_audio_codec(learned_audio_config()).state_dict().items()})
    output = tmp_path / "refused.mp4"
    assert _reconstruct("--input", source, "--output", str(output), "--checkpoint", str(plain), "--audio-decoder", "neural") == 2
    assert capsys.readouterr().err == (
        f"python -m avdit reconstruct: --audio-decoder neural: the audio codec of {plain} has griffin_lim only; train a "
        f"neural decoder with `python -m avdit train-codec --which vocoder --base {plain}`\n")
    assert not output.exists()


def test_shipped_codecs_are_found_by_name_and_a_missing_one_is_named(tmp_path, monkeypatch):
    import avdit.codecs as codecs

    assert codecs.codecs_path() == codecs.codecs_path("toneshapes") == codecs.SHIPPED_CODECS
    assert codecs.codecs_path(tmp_path / "mine.safetensors") == tmp_path / "mine.safetensors"
    assert codecs.NAMED_CODECS["general"] == codecs.GENERAL_CODECS == codecs.ASSETS / "general-codecs.safetensors"
    monkeypatch.setitem(codecs.NAMED_CODECS, "general", tmp_path / "general-codecs.safetensors")
    with pytest.raises(CheckpointError, match="general-codecs.safetensors: the shipped codecs are missing from this install"):
        codecs.load_codecs("general")


def _line_spectra(bins_and_levels, frames: int = 10, bins: int = 641) -> torch.Tensor:
    """log(|X| + 0.001) windows (B, bins, frames): silence with one steady line per window at (bin, magnitude)."""
    spectra = torch.full((len(bins_and_levels), bins, frames), math.log(0.001))
    for i, (where, magnitude) in enumerate(bins_and_levels):
        spectra[i, where] = math.log(magnitude + 0.001)
    return spectra


def test_the_audio_codec_loss_counts_a_quiet_windows_tone_and_a_far_miss_over_a_near_one():
    from avdit.codecs.train import spectrum_loss

    target = _line_spectra([(100, 100.0), (100, 1.0)])  # a loud and a quiet window (40 dB apart)
    assert spectrum_loss(target.clone(), target).item() == 0.0
    quiet_missing = target.clone()
    quiet_missing[1, 100] = math.log(0.001)
    # Per window, the quiet window's convergence is 1 (all of its energy missing), so the mean over the
    # two windows is at least 0.5; over the whole batch it would be 1e-4 and the loss would not see it.
    assert spectrum_loss(quiet_missing, target).item() >= 0.5
    # A line put 3 bins (37.5 Hz) off costs less than one put 40 bins off: the bins are wrong either
    # way, the mel bands (what the log-mel distance scores) far less for the near miss.
    near, far = target.clone(), target.clone()
    for shifted, by in ((near, 3), (far, 40)):
        shifted[:, 100] = math.log(0.001)
        shifted[:, 100 + by] = target[:, 100]
    assert spectrum_loss(far, target).item() > spectrum_loss(near, target).item() + 0.1

"""The neural audio decoder (`PhaseVocoder`, option decoder "neural"): what the loss it learns from
can see, how a codec with one loads and decodes, and `train-codec --which vocoder`, which adds one to
trained codecs and leaves every other weight, and so every latent, as it was."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from avdit.cli import main
from avdit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from avdit.codecs import SHIPPED_CODECS, analytic_audio_config, analytic_video_config, build_audio_codec, load_codecs
from avdit.codecs.base import log_spectral_distance
from avdit.codecs.train import learned_audio_config, learned_video_config, toneshapes_batch, waveform_loss
from avdit.config import AVDiTConfig


def neural_config():
    return learned_audio_config(decoder="neural")


def tone(seconds: float = 1.0, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.3 * torch.sin(2 * math.pi * 440.0 * t) + 0.1 * torch.sin(2 * math.pi * 1320.0 * t)).float()


# What the decoder is built from ------------------------------------------------------------------


def test_the_inverse_stft_gives_back_the_waveform_from_its_own_magnitude_and_phase():
    """With the right phase, one inverse STFT is exact: all a phase network has to find is the phase."""
    codec = build_audio_codec(neural_config())
    wave = tone()[None]  # 16000 samples = 50 hops
    rebuilt = codec._istft(codec._stft(wave))
    assert rebuilt.shape == wave.shape
    assert torch.allclose(rebuilt, wave, atol=1e-5)


def test_the_waveform_loss_sees_the_phase_the_codecs_own_spectrum_does_not():
    """A waveform rebuilt from the true magnitudes with random phases has the codec's own magnitudes
    (nearly) but a far larger waveform loss than the true one, which has none."""
    codec = build_audio_codec(neural_config())
    wave = tone()[None]
    spectrum = codec._stft(wave)
    phase = torch.rand(spectrum.shape, generator=torch.Generator().manual_seed(0)) * (2 * math.pi)
    scrambled = codec._istft(spectrum.abs() * torch.polar(torch.ones_like(phase), phase))
    assert waveform_loss(wave, wave).item() == pytest.approx(0.0, abs=1e-6)
    assert waveform_loss(scrambled, wave).item() > 0.3
    assert waveform_loss(scrambled, wave).item() > 20 * waveform_loss(codec._istft(spectrum), wave).item()


# A codec with a neural decoder -------------------------------------------------------------------


def test_a_neural_decoder_decodes_to_the_codecs_length_deterministically_and_finitely():
    torch.manual_seed(0)
    codec = build_audio_codec(neural_config()).eval()
    wild = torch.randn(2, 32, 20, generator=torch.Generator().manual_seed(1)) * 40.0  # far outside training
    with torch.no_grad():
        first, second = codec.decode(wild), codec.decode(wild)
    assert first.shape == (2, 1, 20 * 320)
    assert torch.equal(first, second) and bool(torch.isfinite(first).all())


def test_refining_iterations_start_from_the_networks_phase_and_bring_the_spectrum_to_the_decoded_one():
    torch.manual_seed(0)
    config = neural_config()
    codec = build_audio_codec(config).eval()
    refined = build_audio_codec(replace(config, options={**config.options, "vocoder_refine": 8})).eval()
    refined.load_state_dict(codec.state_dict())
    _, clips = toneshapes_batch(range(1_500_000_000, 1_500_000_002))
    with torch.no_grad():
        raw = codec._encode_raw(torch.nn.functional.pad(clips, (0, -clips.shape[-1] % 320)))
        log_magnitude = codec.decoded_log_magnitude(raw)
        magnitude = (log_magnitude.exp() - codec.eps).clamp_min(0.0)
        phase = codec.vocoder(log_magnitude)
        plain = codec.waveform_from_log_magnitude(log_magnitude)
        eight = refined.waveform_from_log_magnitude(log_magnitude)
        assert torch.equal(plain, codec._istft(magnitude * phase))
        assert torch.equal(eight, codec.griffin_lim(magnitude, phase, 8))
        assert torch.equal(refined.waveform_from_log_magnitude(log_magnitude, refine=0), plain)

        def error(wave):
            return float(torch.linalg.norm(codec._stft(wave).abs() - magnitude) / torch.linalg.norm(magnitude))

        assert error(eight) < 0.7 * error(plain)


def test_an_unknown_decoder_is_refused_by_name():
    config = learned_audio_config()
    with pytest.raises(ValueError, match=r"decoder is 'wavenet'; expected one of \['griffin_lim', 'neural'\]"):
        build_audio_codec(replace(config, options={**config.options, "decoder": "wavenet"}))


def test_a_griffin_lim_codec_has_no_neural_decoder_to_pick():
    codec = build_audio_codec(learned_audio_config())
    assert codec.vocoder is None
    with pytest.raises(ValueError, match=r"decoder 'neural' is not available; this codec has \['griffin_lim'\]"):
        codec.waveform_from_log_magnitude(torch.zeros(1, 641, 4), "neural")


def test_the_shipped_codecs_checkpoint_without_a_decoder_option_still_decodes_by_griffin_lim():
    """Checkpoints written before the option existed load as they always did."""
    _, audio, config = load_codecs()
    assert "decoder" not in config.audio_codec.options
    assert audio.decoder == "griffin_lim" and audio.vocoder is None


def test_a_codec_with_a_neural_decoder_round_trips_through_a_checkpoint_bit_exactly(tmp_path):
    torch.manual_seed(0)
    audio = build_audio_codec(neural_config())
    video_config = analytic_video_config()
    config = AVDiTConfig(video_codec=video_config, audio_codec=audio.config)
    tensors = {f"audio_codec.{k}": v for k, v in audio.state_dict().items()}
    assert any(k.startswith("audio_codec.vocoder.") for k in tensors)
    path = save_checkpoint(tmp_path / "c.safetensors", config, tensors)
    _, loaded, _ = load_codecs(path)
    assert loaded.decoder == "neural"
    latent = torch.randn(1, 32, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded.decode(latent), audio.eval().decode(latent))
    # the same file without the vocoder's weights is refused, not decoded by a random network
    del tensors["audio_codec.vocoder.out.weight"]
    broken = save_checkpoint(tmp_path / "broken.safetensors", config, tensors)
    with pytest.raises(CheckpointError, match="vocoder.out.weight"):
        load_codecs(broken)


# train-codec --which vocoder ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_codecs(tmp_path_factory):
    """A small trained pair of codecs to add a vocoder to (two steps each: latents are what matter here)."""
    path = tmp_path_factory.mktemp("base") / "codecs.safetensors"
    assert main(["train-codec", "--steps", "2", "--batch", "1", "--audio-batch", "2", "--threads", "1",
                 "--output", str(path)]) == 0
    return path


@pytest.mark.slow
def test_train_codec_which_vocoder_adds_a_trained_neural_decoder_and_keeps_every_latent(base_codecs, tmp_path, capsys):
    out = tmp_path / "with-vocoder.safetensors"
    assert main(["train-codec", "--which", "vocoder", "--base", str(base_codecs), "--steps", "40", "--audio-batch", "4",
                 "--lr", "1e-3", "--threads", "1", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocoder: 40 steps; held-out agreement / log-spectral distance: griffin_lim" in printed

    base_config, base_tensors = load_checkpoint(base_codecs)
    config, tensors = load_checkpoint(out)
    # every weight of both codecs is as it was, and so are the latent shift and scale
    assert {k for k in tensors if not k.startswith("audio_codec.vocoder.")} == set(base_tensors)
    assert all(torch.equal(tensors[k], v) for k, v in base_tensors.items())
    assert config.audio_codec == replace(base_config.audio_codec,
                                         options={**base_config.audio_codec.options, "decoder": "neural",
                                                  "vocoder_refine": 0})
    assert config.video_codec == base_config.video_codec and config.layout == base_config.layout
    report = config.training["codecs"]["audio"]["vocoder"]
    assert report["steps"] == 40 and set(report) >= {"griffin_lim", "neural"}

    # the new file encodes to exactly the latents the base gave; it decodes them by the trained network,
    # which is closer to the clips than the same network untrained
    _, base_audio, _ = load_codecs(base_codecs)
    _, audio, _ = load_codecs(out)
    _, clips = toneshapes_batch(range(1_500_000_000, 1_500_000_004))
    with torch.no_grad():
        latent = audio.encode(clips)
        assert torch.equal(latent, base_audio.encode(clips))
        trained = audio.decode(latent)[..., : clips.shape[-1]]
        untrained = build_audio_codec(config.audio_codec)  # the same codec with a fresh vocoder
        untrained.load_state_dict({k: v for k, v in audio.state_dict().items() if not k.startswith("vocoder.")},
                                  strict=False)
        fresh = untrained.eval().decode(latent)[..., : clips.shape[-1]]
    assert trained.shape == clips.shape
    assert log_spectral_distance(clips, trained) < log_spectral_distance(clips, fresh) - 1.0


def test_train_codec_which_vocoder_refuses_a_base_without_a_learned_audio_codec(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "analytic.safetensors",
                           AVDiTConfig(video_codec=analytic_video_config(), audio_codec=analytic_audio_config()), {})
    out = tmp_path / "out.safetensors"
    code = main(["train-codec", "--which", "vocoder", "--base", str(base), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err == (f"train-codec: --which vocoder needs a learned audio codec in --base {base}; its audio codec is of "
                   "kind 'framed' (train one with --which audio)\n")

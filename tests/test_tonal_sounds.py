"""avdit.data.tonal_sound, effect_sound and scripts/make_tonal_sounds.py: the procedural tones the general audio
codec trains on, and the procedural effects it is validated on."""
import os

import numpy as np
import pytest
import torch

from avdit.data import effect_sound, tonal_sound
from avdit.media import decode
from tests.scripts import load_script



def _loudest_frame_peak_over_median_db(sound: np.ndarray) -> float:
    spectra = torch.stft(torch.from_numpy(sound), 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    frame = spectra[:, spectra.pow(2).sum(0).argmax()]
    return float(20 * torch.log10(frame.max() / frame.median().clamp_min(1e-12)))


def test_a_tonal_sound_is_reproducible_in_range_and_tonal():
    sounds = [tonal_sound(seed) for seed in range(12)]
    for seed, sound in enumerate(sounds):
        assert sound.dtype == np.float32 and sound.shape == (68000,)  # 4.25 s at 16 kHz
        assert np.isfinite(sound).all() and 0.0 < np.abs(sound).max() <= 0.99
        assert np.array_equal(sound, tonal_sound(seed))
        # Tones, not noise: the loudest frame's strongest bin stands 30 dB or more over its median bin.
        assert _loudest_frame_peak_over_median_db(sound) > 30.0
    assert not any(np.array_equal(sounds[0], other) for other in sounds[1:])
    assert tonal_sound(3, seconds=1.0, sample_rate=22050).shape == (22050,)


def test_an_effect_sound_is_reproducible_in_range_and_broadband_where_tones_are_not():
    effects = [effect_sound(seed) for seed in range(40)]
    for seed, sound in enumerate(effects[:12]):
        assert sound.dtype == np.float32 and sound.shape == (68000,)
        assert np.isfinite(sound).all() and 0.0 < np.abs(sound).max() <= 0.99
        assert np.array_equal(sound, effect_sound(seed))
    assert not any(np.array_equal(effects[0], other) for other in effects[1:])
    # The loudest frame's strongest bin over its median bin: effects 8-48 dB, half of them under 25
    # (bursts, crackles, whooshes; impacts' thumps stand out); tones all over 38 (seeds 0-39).
    effect_db = [_loudest_frame_peak_over_median_db(sound) for sound in effects]
    tone_db = [_loudest_frame_peak_over_median_db(tonal_sound(seed)) for seed in range(40)]
    assert np.median(effect_db) < 25.0 < 35.0 < min(tone_db)
    clipped = sum(np.sum(np.abs(sound) == np.float32(0.99)) > 10 for sound in effects)  # flat tops at 0.99
    assert 6 <= clipped <= 16  # a quarter are driven into clipping (10 of 40 expected)
    assert effect_sound(3, seconds=1.0, sample_rate=22050).shape == (22050,)


@pytest.mark.parametrize("make", [tonal_sound, effect_sound])
@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed is -1; give a whole number >= 0"),
    ({"seed": 0, "seconds": 0}, "seconds is 0; give a positive number of seconds"),
    ({"seed": 0, "sample_rate": 4000}, "sample_rate is 4000; give a whole number of Hz, at least 8000"),
])
def test_a_procedural_sound_refuses_bad_arguments_by_name(make, kwargs, message):
    with pytest.raises(ValueError) as caught:
        make(**kwargs)
    assert str(caught.value) == message


def test_the_script_writes_each_seed_once_and_refuses_bad_counts(tmp_path, capsys):
    script = load_script("scripts/make_tonal_sounds.py")
    out = tmp_path / "tones"
    assert script.main(["--output", str(out), "--count", "2", "--first-seed", "7", "--seconds", "0.5"]) == 0
    assert sorted(os.listdir(out)) == ["tone_00007.wav", "tone_00008.wav"]
    media = decode(str(out / "tone_00008.wav"), video=False)
    assert media.sample_rate == 16000 and media.waveform.shape == (1, 8000)
    # 16-bit PCM of the generator's samples (written x 32767, read / 32768): equal within one step.
    assert np.abs(media.waveform[0].numpy() - tonal_sound(8, 0.5)).max() <= 1 / 32767
    before = (out / "tone_00007.wav").stat().st_mtime_ns
    assert script.main(["--output", str(out), "--count", "3", "--first-seed", "7", "--seconds", "0.5"]) == 0
    assert "wrote 1 sounds" in capsys.readouterr().out
    assert (out / "tone_00007.wav").stat().st_mtime_ns == before  # left as it was
    assert sorted(os.listdir(out)) == ["tone_00007.wav", "tone_00008.wav", "tone_00009.wav"]

    empty = tmp_path / "none"
    assert script.main(["--output", str(empty), "--count", "0"]) == 2
    assert "--count 0: give at least 1 sound" in capsys.readouterr().err
    assert not empty.exists()
    a_file = tmp_path / "file.wav"
    a_file.write_bytes(b"x")
    assert script.main(["--output", str(a_file)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_the_script_writes_effects_by_kind_and_refuses_an_unknown_kind(tmp_path, capsys):
    script = load_script("scripts/make_tonal_sounds.py")
    out = tmp_path / "effects"
    assert script.main(["--kind", "effects", "--output", str(out), "--count", "2", "--first-seed", "100000",
                        "--seconds", "0.5"]) == 0
    assert sorted(os.listdir(out)) == ["effect_100000.wav", "effect_100001.wav"]
    media = decode(str(out / "effect_100001.wav"), video=False)
    assert np.abs(media.waveform[0].numpy() - effect_sound(100001, 0.5)).max() <= 2 / 32767  # 16-bit, as read back
    assert script.main(["--kind", "noise", "--output", str(tmp_path / "other")]) == 2
    assert "--kind 'noise': give one of ['tones', 'effects']" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()

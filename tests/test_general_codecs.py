"""The shipped general codecs (avdit/assets/general-codecs.safetensors, docs/GENERAL_CODECS.md): the
layout and decoder the model card states, found by name, and better than the ToneShapes codecs on a
picture and a voice unlike ToneShapes (made here; the held-out real media of the card are not in git)."""
import math

import pytest
import torch

from avdit.codecs import GENERAL_CODECS, load_codecs
from avdit.codecs.base import log_mel_distance, video_psnr
from avdit.data import camera_path_clip


def _picture_clip() -> torch.Tensor:
    """17 frames of 128 x 128: a camera moving over colour fields at five scales (a 'natural' picture)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 360, 480)
    for scale in (4, 8, 16, 32, 64):
        noise = torch.randn(1, 3, 360 // scale + 1, 480 // scale + 1, generator=generator)
        image += torch.nn.functional.interpolate(noise, size=(360, 480), mode="bicubic", align_corners=False)[0] * (scale / 64)
    image = (image - image.min()) / (image.max() - image.min())
    return camera_path_clip(image.permute(1, 2, 0), 17, (128, 128), seed=("test", 0))


def _voice() -> torch.Tensor:
    """3 s at 16 kHz of a vowel sung on a gliding pitch (harmonics under a formant), breath noise, pauses."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(16000 * 3) / 16000
    phase = 2 * math.pi * torch.cumsum(140 + 40 * torch.sin(2 * math.pi * 0.7 * t), 0) / 16000
    x = sum(torch.sin(k * phase) * math.exp(-((k * 140 - 700) / 900) ** 2) / k**0.5 for k in range(1, 40))
    x = x + 0.02 * torch.randn(t.shape, generator=generator)
    gate = (torch.sin(2 * math.pi * 1.3 * t) > -0.3).float()
    gate = torch.nn.functional.conv1d(gate[None, None], torch.ones(1, 1, 801) / 801, padding=400)[0, 0]
    return (0.3 * x / x.abs().max() * gate)[None]


@pytest.fixture(scope="module")
def general():
    return load_codecs("general")


def test_the_general_codecs_are_what_their_model_card_says(general):
    video, audio, config = general
    assert load_codecs(GENERAL_CODECS)[2] == config
    layout = config.layout
    assert (layout.width, layout.height, layout.fps, layout.sample_rate, layout.window_frames) == (128, 128, 8.0, 16000, 17)
    assert audio.eps == 0.001 and audio.decoder == "neural" and audio.refine == 4
    latent = video.encode(torch.zeros(1, 17, 128, 128, 3))
    assert latent.shape == (1, 16, 5, 16, 16)  # 17 frames -> 5 x 16 x 16 x 16
    assert set(config.training["codecs"]) >= {"video", "audio"}


@torch.no_grad()
def test_the_general_codecs_keep_a_picture_and_a_voice_the_toneshapes_codecs_lose(general):
    video, audio, _ = general
    toneshapes_video, toneshapes_audio, _ = load_codecs("toneshapes")
    clip = _picture_clip()
    kept = video_psnr(clip, video.decode(video.encode(clip[None]))[0, :17])
    small = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2), size=(64, 64), mode="area").permute(0, 2, 3, 1)
    lost = video_psnr(small, toneshapes_video.decode(toneshapes_video.encode(small[None]))[0, :17])
    assert kept >= 29.0 and lost <= 16.0, (kept, lost)  # measured: 32.6 and 13.4 dB
    voice = _voice()
    distances = [log_mel_distance(voice, codec.decode(codec.encode(voice[None]))[0, :, : voice.shape[1]], 16000)
                 for codec in (audio, toneshapes_audio)]
    assert distances[0] <= 7.0 and distances[1] >= 15.0, distances  # measured: 5.6 (8.3, 7.3, 7.8, 7.5, 5.7 with earlier general codecs) and 19.5 dB


def test_the_capacity_bench_keeps_a_clip_exactly_when_its_blocks_fit_the_latent_and_loses_more_with_less():
    """bench/codec_capacity.py: blocks of a clip built from 6 patterns are kept exactly by 6 components
    (held-out clip, fit on another), and every component fewer loses PSNR; blocks come out in the
    stride x stride x 4-frame grid the latent has."""
    from tests.scripts import load_script

    capacity = load_script("bench/codec_capacity.py")
    generator = torch.Generator().manual_seed(0)
    patterns = torch.rand(6, 4 * 8 * 8 * 3, generator=generator)

    def clip(seed):  # (T, H, W, 3): each 8 x 8 x 4-frame block a mix of the patterns
        g = torch.Generator().manual_seed(seed)
        mix = torch.rand(2 * 4 * 4, 6, generator=g) / 6
        x = (mix @ patterns).reshape(2, 4, 4, 4, 3, 8, 8)  # groups, rows, cols, frames, colour, y, x
        return x.permute(0, 3, 1, 5, 2, 6, 4).reshape(8, 32, 32, 3)

    train, test = clip(1), clip(2)
    b = capacity.blocks(test, 8)
    assert b.shape == (2 * 4 * 4, 4 * 3 * 8 * 8)
    assert torch.equal(b[0].reshape(4, 3, 8, 8), test[:4, :8, :8].permute(0, 3, 1, 2))  # frames 0-3, top-left corner
    mean, directions = capacity.fit(capacity.blocks(train, 8))
    psnr = [capacity.bound_psnr(b, mean, directions, k) for k in (3, 4, 5, 6)]
    assert psnr[-1] > 80
    assert psnr[0] < psnr[1] < psnr[2] < 60
    with pytest.raises(ValueError, match="do not divide into 8 x 8"):
        capacity.blocks(test[:, :30], 8)

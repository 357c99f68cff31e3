import pytest
import torch

from avdit.data import generate_clip
from avdit.pipeline import AVDiTPipeline, make_untrained_checkpoint, with_task


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    path = make_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", codecs="analytic")
    return AVDiTPipeline.load(path)


def clip_tensors(frames=17):
    clip = generate_clip(3, frames=frames)
    return torch.from_numpy(clip.video), torch.from_numpy(clip.audio)[None]


def test_continuation_keeps_the_given_seconds_exactly(pipe):
    frames, waveform = clip_tensors()
    latent = with_task(pipe.encode(frames, 8, waveform, 16000), "continue", given_seconds=0.625)
    out_frames, out_wave, fps, rate = pipe.decode(pipe.sample(latent, steps=2, seed=1))
    assert out_frames.shape == (1, 17, 64, 64, 3) and out_wave.shape == (1, 1, 34000) and (fps, rate) == (8, 16000)
    # analytic codecs are exactly invertible, so the first 5 frames and 0.62 s of audio come back as given
    torch.testing.assert_close(out_frames[0, :5], frames[:5], rtol=0, atol=1e-6)
    torch.testing.assert_close(out_wave[0, :, :9920], waveform[:, :9920], rtol=0, atol=1e-6)
    assert (out_frames[0, 5:] - frames[5:]).abs().max() > 0.1


def test_time_past_the_inputs_is_generated_whatever_the_task(pipe):
    frames, waveform = clip_tensors()
    # 1 s of input video at 8 fps, audio for the whole clip, a 2.125 s latent
    latent = pipe.encode(frames[:8], 8, waveform, 16000, duration=2.125)
    assert latent.available.video.tolist() == [0, 0, 1, 1, 1]  # frames 0..4 lie inside the first second
    assert bool((latent.available.audio[:106] == 0).all())
    a2v = with_task(latent, "a2v")
    assert a2v.effective_mask().video.tolist() == [1, 1, 1, 1, 1]
    v2a = with_task(latent, "v2a")
    assert v2a.effective_mask().video.tolist() == [0, 0, 1, 1, 1]


def test_inputs_at_other_rates_are_converted(pipe):
    frames, waveform = clip_tensors()
    # the same clip at 24 fps (each frame three times) and 48 kHz
    frames24 = frames.repeat_interleave(3, dim=0)
    wave48 = torch.nn.functional.interpolate(waveform[None], scale_factor=3, mode="linear")[0]
    latent = pipe.encode(frames24, 24, wave48, 48000)
    assert latent.layout.num_frames == 17 and latent.duration == pytest.approx(2.125)
    native = pipe.encode(frames, 8, waveform, 16000)
    torch.testing.assert_close(latent.video, native.video, rtol=0, atol=1e-5)


def test_encode_needs_rates_and_shapes(pipe):
    frames, waveform = clip_tensors()
    with pytest.raises(ValueError, match="frames were given without fps"):
        pipe.encode(frames)
    with pytest.raises(ValueError, match=r"frames have shape \(17, 64, 64\); expected \(frames, height, width, 3\)"):
        pipe.encode(frames[..., 0], 8)


def test_decode_returns_the_duration_asked_for(pipe):
    frames, waveform = clip_tensors()
    latent = pipe.encode(frames, 8, waveform, 16000, duration=2.0)  # the layout rounds up to 17 frames
    assert latent.layout.num_frames == 17
    out_frames, out_wave, _, _ = pipe.decode(latent)
    assert out_frames.shape[1] == 16 and out_wave.shape[2] == 32000
    out_frames, out_wave, _, _ = pipe.decode(pipe.sample(with_task(latent, "v2a"), steps=1))
    assert out_frames.shape[1] == 16 and out_wave.shape[2] == 32000

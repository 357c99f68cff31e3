import dataclasses

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


def test_a_long_latent_sampled_windowed_is_made_one_training_window_at_a_time(pipe):
    """Continue a clip's first 2.125 s to 5.125 s window by window: the given blocks come back
    exactly, and the second window (frames 12..28) is what continuing frames 12..16 in one
    2.125 s window makes (the analytic codecs are exact, so the frames can be compared)."""
    frames, waveform = clip_tensors(41)
    latent = with_task(pipe.encode(frames, 8, waveform, 16000), "continue", given_seconds=2.125)
    assert latent.layout.num_frames == 41 and latent.layout.num_frames > pipe.config.layout.window_frames
    out = pipe.sample(latent, steps=2, seed=1, windowed=True)
    given_v, given_a = latent.mask.video == 0, latent.mask.audio == 0
    hop = pipe.config.audio_codec.hop
    assert given_v.sum() == 5 and given_a.sum() == 2.125 * 16000 // hop  # 17 frames; the audio frames inside 2.125 s
    assert torch.equal(out.video[:, :, given_v], latent.video[:, :, given_v])
    assert torch.equal(out.audio[:, :, given_a], latent.audio[:, :, given_a])
    out_frames, out_wave, _, _ = pipe.decode(out)
    window = with_task(pipe.encode(frames[12:29], 8, waveform[:, 24000:58000], 16000), "continue", given_seconds=0.625)
    window_frames, window_wave, _, _ = pipe.decode(pipe.sample(window, steps=2, seed=1))
    torch.testing.assert_close(out_frames[0, 17:29], window_frames[0, 5:], rtol=0, atol=1e-4)
    torch.testing.assert_close(out_wave[0, :, 34000:56000], window_wave[0, :, 10000:32000], rtol=0, atol=1e-4)
    one_pass, _, _, _ = pipe.decode(pipe.sample(latent, steps=2, seed=1))
    assert (one_pass[0, 17:] - out_frames[0, 17:]).abs().max() > 0.1  # one pass is another sampling


def test_windowed_sampling_skips_windows_with_nothing_to_generate(pipe):
    frames, waveform = clip_tensors(41)
    latent = with_task(pipe.encode(frames, 8, waveform, 16000), "continue", given_seconds=4.125)
    calls = []
    out = pipe.sample(latent, steps=3, seed=1, windowed=True, callback=lambda info: calls.append((info["window"], info["windows"], info["i"])))
    # windows start at frames 0, 12 and 24; only the last reaches past 4.125 s (frame 33)
    assert calls == [(2, 3, 0), (2, 3, 1), (2, 3, 2)]
    out_frames, _, _, _ = pipe.decode(out)
    torch.testing.assert_close(out_frames[0, :33], frames[:33], rtol=0, atol=1e-6)
    assert pipe.sample(with_task(latent, "v2a"), steps=1, windowed=True).video.shape == latent.video.shape


def test_a_latent_within_one_window_is_sampled_the_same_windowed_or_not(pipe):
    frames, waveform = clip_tensors()
    latent = with_task(pipe.encode(frames, 8, waveform, 16000), "continue", given_seconds=0.625)
    one, windowed = pipe.sample(latent, steps=2, seed=4), pipe.sample(latent, steps=2, seed=4, windowed=True)
    assert torch.equal(one.video, windowed.video) and torch.equal(one.audio, windowed.audio)


def test_a_batch_of_long_latents_is_sampled_window_by_window_as_a_batch(pipe):
    """Two clips continued from 2.125 s to 5.125 s in one batch: each keeps its given blocks exactly,
    and the second window (frames 12..28) of each is what continuing frames 12..16 of both clips in
    one 2.125 s window of batch 2 makes."""
    clips = [generate_clip(seed, frames=41) for seed in (3, 4)]
    def batch(first, last, given_seconds):
        latents = [pipe.encode(torch.from_numpy(c.video[first:last]), 8, torch.from_numpy(c.audio[first * 2000:last * 2000])[None], 16000)
                   for c in clips]
        both = dataclasses.replace(latents[0], video=torch.cat([x.video for x in latents]), audio=torch.cat([x.audio for x in latents]))
        return with_task(both, "continue", given_seconds=given_seconds)
    latent = batch(0, 41, 2.125)
    out = pipe.sample(latent, steps=2, seed=1, windowed=True)
    given_v, given_a = latent.mask.video == 0, latent.mask.audio == 0
    assert out.video.shape == latent.video.shape and out.audio.shape == latent.audio.shape
    assert torch.equal(out.video[:, :, given_v], latent.video[:, :, given_v])
    assert torch.equal(out.audio[:, :, given_a], latent.audio[:, :, given_a])
    out_frames, out_wave, _, _ = pipe.decode(out)
    window_frames, window_wave, _, _ = pipe.decode(pipe.sample(batch(12, 29, 0.625), steps=2, seed=1))
    torch.testing.assert_close(out_frames[:, 17:29], window_frames[:, 5:], rtol=0, atol=1e-4)
    torch.testing.assert_close(out_wave[:, :, 34000:56000], window_wave[:, :, 10000:32000], rtol=0, atol=1e-4)
    assert (out_frames[0, 17:] - out_frames[1, 17:]).abs().max() > 0.1  # two clips, two continuations


def test_a_model_decodes_with_other_codecs_only_when_they_give_its_latents(tmp_path):
    """generate --codecs: the model's own codecs with a neural audio decoder added are taken; codecs whose
    latents differ (another layout, one weight changed) are refused, naming why."""
    from avdit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from avdit.codecs import build_audio_codec
    from avdit.codecs.train import learned_audio_config

    model = make_untrained_checkpoint(tmp_path / "model.safetensors")  # over the shipped (learned) codecs
    config, tensors = load_checkpoint(model)
    codec_tensors = {k: v for k, v in tensors.items() if k.startswith(("video_codec.", "audio_codec."))}
    torch.manual_seed(0)
    vocoder = {f"audio_codec.{k}": v for k, v in build_audio_codec(learned_audio_config(decoder="neural")).state_dict().items()
               if k.startswith("vocoder.")}
    neural = dataclasses.replace(config.audio_codec, options={**config.audio_codec.options, "decoder": "neural",
                                                             "vocoder_width": 256, "vocoder_blocks": 4, "vocoder_refine": 2})
    upgraded = save_checkpoint(tmp_path / "upgraded.safetensors", dataclasses.replace(config, audio_codec=neural),
                               {**codec_tensors, **vocoder})
    pipe = AVDiTPipeline.load(model, codecs=upgraded)
    assert pipe.audio_codec.decoder == "neural" and pipe.config.audio_codec.options["vocoder_refine"] == 2
    state = pipe.audio_codec.state_dict()
    assert all(torch.equal(state[k.removeprefix("audio_codec.")], v) for k, v in vocoder.items())
    assert AVDiTPipeline.load(model).audio_codec.decoder == "griffin_lim"

    changed = dict(codec_tensors)
    key = next(k for k in changed if k.startswith("audio_codec.enc"))
    changed[key] = changed[key] + 1e-3
    bent = save_checkpoint(tmp_path / "bent.safetensors", config, changed)
    with pytest.raises(CheckpointError, match=r"bent.safetensors: not the codecs model.safetensors was trained on "
                                              r"\(the audio codec's weights differ\)"):
        AVDiTPipeline.load(model, codecs=bent)
    wide = save_checkpoint(tmp_path / "wide.safetensors",
                           dataclasses.replace(config, layout=dataclasses.replace(config.layout, sample_rate=22050)), codec_tensors)
    with pytest.raises(CheckpointError, match=r"\(layout 64x64 at 8 fps and 22050 Hz, not 64x64 at 8 fps and 16000 Hz\)"):
        AVDiTPipeline.load(model, codecs=wide)

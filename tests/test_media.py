"""avdit.media: decode, conform and write, on media made here with PyAV (no downloads)."""
import json
import math
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from avdit import media
from avdit.media import MediaError, conform_audio, conform_video, decode, write_mp4

STEP = 4  # brightness levels per frame index: H.264 at crf 18 stays within 1.5 levels


def frame_pictures(count, height=48, width=64):
    """uint8 (F, H, W, 3): background brightness 16 + STEP * index, a small moving square."""
    pictures = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        pictures[i] = 16 + STEP * i
        x = (2 * i) % (width - 8)
        pictures[i, 4:12, x:x + 8] = 255
    return pictures


def frame_indices(frames):
    """Read back each frame's index from its background brightness (the median pixel)."""
    levels = frames.reshape(frames.shape[0], -1).median(dim=1).values * 255
    return [round((float(v) - 16) / STEP) for v in levels]


def tone(freq, rate, seconds, channels=1, amplitude=0.5):
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float().repeat(channels, 1)


def peak_hz(waveform, rate):
    spectrum = np.abs(np.fft.rfft(waveform[0].numpy()))
    return np.argmax(spectrum) * rate / waveform.shape[1]


def write_with_pyav(path, fmt, video_codec=None, audio_codec=None, frames=12, fps=25,
                    rate=48000, seconds=0.5, freq=1000.0):
    """A small file in any container, written by PyAV directly (independent of write_mp4)."""
    with av.open(str(path), "w", format=fmt) as container:
        vstream = astream = None
        if video_codec:
            vstream = container.add_stream(video_codec, rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
            vstream.bit_rate = 4_000_000  # mpeg4's default rate blurs the brightness code
        if audio_codec:
            astream = container.add_stream(audio_codec, rate=rate, layout="mono")
        if vstream:
            for i, picture in enumerate(frame_pictures(frames, 32, 32)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream:
            wave = tone(freq, rate, seconds).numpy()
            size = astream.codec_context.frame_size or 1024
            for i in range(0, wave.shape[1], size):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, i:i + size]),
                                                   format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, i
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s, 25 fps, 64x48 with a 440 Hz stereo tone at 44.1 kHz, through write_mp4."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = torch.from_numpy(frame_pictures(50))
    return write_mp4(path, frames, 25, tone(440, 44100, 2.0, channels=2), 44100)


# ---------------------------------------------------------------- round trip and ranges


def test_round_trip_keeps_both_streams_and_their_durations(clip):
    with av.open(clip) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (a.codec_context.name, a.codec_context.sample_rate, a.channels) == ("aac", 44100, 2)
    m = decode(clip)
    assert m.frames.shape == (50, 48, 64, 3) and m.frames.dtype == torch.float32
    assert m.fps == 25.0 and m.sample_rate == 44100 and m.waveform.shape == (2, 88200)
    assert abs(m.video_duration - m.audio_duration) < 1 / 25
    assert frame_indices(m.frames) == list(range(50))
    assert abs(peak_hz(m.waveform, 44100) - 440) <= 1


def test_decode_time_range_returns_those_frames_and_samples(clip):
    m = decode(clip, start=0.4, duration=0.4)
    assert m.start == 0.4
    assert frame_indices(m.frames) == list(range(10, 20))
    assert m.waveform.shape == (2, round(0.4 * 44100))
    only_audio = decode(clip, start=1.5, video=False)
    assert only_audio.frames is None and only_audio.waveform.shape == (2, round(0.5 * 44100))


def test_decode_cuts_audio_to_the_sample(tmp_path):
    # A lossless ramp: every sample's value says where it came from.
    rate, path = 16000, str(tmp_path / "ramp.wav")
    ramp = (np.arange(2 * rate) % 30000).astype(np.int16)[None]
    with av.open(path, "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(ramp, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    m = decode(path, start=0.25, duration=0.5, video=False)
    got = (m.waveform[0] * 32768).round().long()
    assert torch.equal(got, torch.arange(4000, 12000))


def test_write_mp4_pads_or_trims_audio_to_the_video(tmp_path):
    frames = torch.from_numpy(frame_pictures(20))  # 0.8 s at 25 fps
    short = write_mp4(tmp_path / "short.mp4", frames, 25, tone(440, 16000, 0.3), 16000)
    long_ = write_mp4(tmp_path / "long.mp4", frames, 25, tone(440, 16000, 3.0), 16000)
    for path in (short, long_):
        m = decode(path)
        assert m.waveform.shape == (1, round(0.8 * 16000))
    quiet_end = decode(short, start=0.5, video=False).waveform
    assert quiet_end.abs().max() < 1e-3


def test_write_mp4_ntsc_rate_odd_size_and_uint8(tmp_path):
    frames = torch.from_numpy(frame_pictures(24, 47, 63))
    path = write_mp4(tmp_path / "ntsc.mp4", frames, 23.976)
    with av.open(path) as container:
        assert container.streams.video[0].average_rate == Fraction(24000, 1001)
        assert not container.streams.audio
    m = decode(path, audio="optional")
    assert m.frames.shape == (24, 48, 64, 3)  # padded by one pixel to even sides
    assert m.waveform is None and frame_indices(m.frames) == list(range(24))


def test_metadata_survives(tmp_path):
    workflow = json.dumps({"nodes": [{"id": 1, "type": "AVDiTSampler"}], "note": "é"})
    tags = {"comment": "made by avdit", "prompt": "a red disc, a 440 Hz tone",
            "workflow": workflow}
    path = write_mp4(tmp_path / "tagged.mp4", torch.rand(4, 16, 16, 3), 8, metadata=tags)
    with av.open(path) as container:
        assert {k: container.metadata.get(k) for k in tags} == tags


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")

    def fail_midway(filename, *args):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise av.error.InvalidDataError(1094995529, "simulated", filename)

    monkeypatch.setattr(media, "_encode", fail_midway)
    with pytest.raises(MediaError, match="nothing was written"):
        write_mp4(target, torch.rand(2, 16, 16, 3), 8)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.mp4"]



def test_write_wav_keeps_the_sound_to_16_bits_clips_what_is_too_loud_and_writes_whole_files(tmp_path, monkeypatch):
    t = torch.arange(8000) / 16000
    waveform = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 1.5 * torch.sin(2 * math.pi * 220 * t)])
    path = media.write_wav(tmp_path / "a.wav", waveform, 16000, metadata={"comment": "avdit"})
    back = decode(path, video=False, audio=True)
    assert back.sample_rate == 16000 and back.waveform.shape == (2, 8000) and back.frames is None
    assert float((back.waveform[0] - waveform[0]).abs().max()) <= 2 / 32767  # 16-bit rounding
    assert float((back.waveform[1] - waveform[1].clamp(-1, 1)).abs().max()) <= 2 / 32767
    with av.open(path) as container:
        assert container.metadata["comment"] == "avdit" and container.streams.audio[0].codec_context.name == "pcm_s16le"
    with pytest.raises(MediaError, match="write_wav: waveform has 3 channels; give 1 \\(mono\\), 2 \\(stereo\\) or 6"):
        media.write_wav(tmp_path / "b.wav", torch.zeros(3, 100), 16000)

    def fail(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "simulated", "x")

    monkeypatch.setattr(av, "open", fail)
    with pytest.raises(MediaError, match="nothing was written"):
        media.write_wav(path, torch.zeros(1, 100), 16000)
    assert sorted(os.listdir(tmp_path)) == ["a.wav"]


CONTAINERS = [  # (file name, format, video codec, audio codec, sample rate)
    ("a.wav", "wav", None, "pcm_s16le", 16000),
    ("a.flac", "flac", None, "flac", 44100),
    ("a.ogg", "ogg", None, "libopus", 48000),
    ("a.mp3", "mp3", None, "libmp3lame", 44100),
    ("v.mkv", "matroska", "libx264", "flac", 48000),
    ("v.webm", "webm", "libvpx-vp9", "libopus", 48000),
    ("v.avi", "avi", "mpeg4", "libmp3lame", 44100),
    ("v.mov", "mov", "libx264", "aac", 48000),
]


@pytest.mark.parametrize("name,fmt,video_codec,audio_codec,rate", CONTAINERS)
def test_containers_are_readable(tmp_path, name, fmt, video_codec, audio_codec, rate):
    path = write_with_pyav(tmp_path / name, fmt, video_codec, audio_codec, rate=rate)
    m = decode(path, video="optional")
    if video_codec:
        assert m.fps == 25.0 and frame_indices(m.frames) == list(range(12))
    else:
        assert m.frames is None
    # Encoder delay and padding are trimmed where the container says how (mp3 without a LAME
    # header in avi does not): within two codec frames.
    assert m.sample_rate == rate and abs(m.audio_duration - 0.5) <= 2 * 1152 / rate
    assert abs(peak_hz(m.waveform, rate) - 1000) <= 2


# ---------------------------------------------------------------- conform_video


def constant_frames(count, size=4):
    """Frame i is filled with i / 1000, so the chosen source index reads back exactly."""
    return (torch.arange(count, dtype=torch.float32) / 1000).view(-1, 1, 1, 1).expand(
        count, size, size, 3).contiguous()


@pytest.mark.parametrize("fps,target,count,expected", [
    (23.976, 8, 48, [0, 2, 5, 8, 11, 14, 17, 20]),
    (Fraction(24000, 1001), 8, 48, [0, 2, 5, 8, 11, 14, 17, 20]),
    (25, 8, 50, [0, 3, 6, 9, 12, 15, 18, 21]),
    (29.97, 8, 60, [0, 3, 7, 11, 14, 18, 22, 26]),
    (60, 8, 120, [0, 7, 15, 22, 30, 37, 45, 52]),
    (8, 25, 8, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7]),
])
def test_conform_video_holds_the_latest_frame(fps, target, count, expected):
    out = conform_video(constant_frames(count), fps, target, size=(4, 4))
    assert out.shape[0] == round(count * target / float(fps))
    picked = (out[:, 0, 0, 0] * 1000).round().long().tolist()
    assert picked[:len(expected)] == expected


def test_conform_video_resize_modes():
    wide = torch.zeros(1, 40, 80, 3)  # red | green (middle half) | blue
    wide[:, :, :20, 0] = 1
    wide[:, :, 20:60, 1] = 1
    wide[:, :, 60:, 2] = 1
    crop = conform_video(wide, 8, 8, size=(20, 20), mode="crop")
    assert torch.equal(crop, torch.tensor([0.0, 1.0, 0.0]).expand(1, 20, 20, 3))
    white = torch.ones(1, 20, 40, 3)
    pad = conform_video(white, 8, 8, size=(40, 40), mode="pad")
    assert pad[:, :10].max() == 0 and pad[:, 30:].max() == 0 and pad[:, 10:30].min() == 1
    stretch = conform_video(white, 8, 8, size=(40, 40), mode="stretch")
    assert stretch.shape == (1, 40, 40, 3) and torch.allclose(stretch, torch.ones(1))
    checker = (torch.arange(8).view(-1, 1) + torch.arange(8)) % 2  # area averages it to 0.5
    area = conform_video(checker.float()[None, :, :, None].expand(1, 8, 8, 3), 8, 8, (4, 4))
    assert torch.allclose(area, torch.full((1, 4, 4, 3), 0.5))


# ---------------------------------------------------------------- conform_audio


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_conform_audio_keeps_pitch_and_exact_length(rate):
    wave = tone(1000, rate, 1.1, channels=2)[:, :rate + 7]
    out = conform_audio(wave, rate, 16000, 1)
    assert out.shape == (1, round((rate + 7) * 16000 / rate)) and out.dtype == torch.float32
    assert abs(peak_hz(out, 16000) - 1000) <= 1
    middle = out[0, 800:-800]  # away from the resampler's edges
    assert abs(middle.pow(2).mean().sqrt().item() - 0.5 / math.sqrt(2)) < 0.01


def test_conform_audio_mixes_channels():
    # 5.1 in FFmpeg's order FL FR FC LFE BL BR: ITU downmix, LFE dropped, cannot clip.
    unit = torch.eye(6).repeat_interleave(10, dim=1)  # each channel alone for 10 samples
    mono = conform_audio(unit, 48000, 48000, 1)[0, ::10]
    norm = 1 + 2 * math.sqrt(0.5)
    c = math.sqrt(0.5) / norm
    expected = [0.5 / norm, 0.5 / norm, c, 0.0, c / 2, c / 2]
    assert torch.allclose(mono, torch.tensor(expected))
    assert conform_audio(torch.ones(6, 100), 48000, 48000, 1).max() <= 1.0
    resampled = conform_audio(tone(440, 48000, 0.5, channels=6), 48000, 16000, 1)
    assert resampled.shape == (1, 8000) and abs(peak_hz(resampled, 16000) - 440) <= 2
    stereo = torch.stack([torch.full((5,), 0.2), torch.full((5,), 0.6)])
    assert torch.allclose(conform_audio(stereo, 16000, 16000, 1), torch.full((1, 5), 0.4))
    assert torch.equal(conform_audio(stereo[:1], 16000, 16000, 2), stereo[[0, 0]])


# ---------------------------------------------------------------- bad input: one test each


def test_error_missing_file(tmp_path):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="file not found") as e:
        decode(missing)
    assert missing in str(e.value) and "mp4, mov" in str(e.value)


def test_error_no_video_stream(tmp_path):
    path = write_with_pyav(tmp_path / "a.wav", "wav", None, "pcm_s16le", rate=16000)
    with pytest.raises(MediaError, match="has no video stream") as e:
        decode(path)
    assert path in str(e.value) and "video='optional'" in str(e.value)


def test_error_no_audio_stream(tmp_path):
    path = write_mp4(tmp_path / "silent.mp4", torch.rand(4, 16, 16, 3), 8)
    with pytest.raises(MediaError, match="has no audio stream") as e:
        decode(path, audio=True)
    assert path in str(e.value) and "audio=False" in str(e.value)


def test_error_zero_length_media(tmp_path):
    path = str(tmp_path / "empty.wav")
    with av.open(path, "w") as container:  # a valid header with no samples
        container.add_stream("pcm_s16le", rate=16000, layout="mono")
        container.start_encoding()
    with pytest.raises(MediaError, match="no audio samples") as e:
        decode(path, video=False)
    assert path in str(e.value) and "at least one sample" in str(e.value)


def test_error_range_shorter_than_one_frame(clip):
    with pytest.raises(MediaError, match=r"no video frames in 0\.41\.\.0\.42 s") as e:
        decode(clip, start=0.41, duration=0.01)
    assert clip in str(e.value) and "at least one frame" in str(e.value)


def test_error_range_past_the_end(clip):
    with pytest.raises(MediaError, match=r"start=5 s is past the end") as e:
        decode(clip, start=5.0)
    assert clip in str(e.value) and "give a start below 2.0" in str(e.value)


def test_error_truncated_file(tmp_path):
    whole = open(write_mp4(tmp_path / "whole.mp4", torch.rand(25, 32, 32, 3), 25), "rb").read()
    cut = tmp_path / "cut.mp4"  # the index (moov) is at the front: the frames are missing
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(MediaError, match="corrupt or truncated") as e:
        decode(cut, audio="optional")
    assert str(cut) in str(e.value) and "complete" in str(e.value)


def test_error_not_a_media_file(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are notes, not a video\n" * 20)
    with pytest.raises(MediaError, match="not a readable media file") as e:
        decode(text)
    assert str(text) in str(e.value) and "mp4, mov" in str(e.value)


def test_error_unsupported_codec(tmp_path):
    path = write_with_pyav(tmp_path / "v.mkv", "matroska", "libx264")
    data = open(path, "rb").read()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    unknown = tmp_path / "unknown.mkv"  # the same file, its codec renamed to one nobody has
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))
    with pytest.raises(MediaError, match="codec is not supported") as e:
        decode(unknown, audio="optional")
    assert str(unknown) in str(e.value) and "H.264" in str(e.value)


@pytest.mark.parametrize("fps", [0, -25, float("nan"), float("inf"), Fraction(0)])
def test_error_bad_fps(tmp_path, fps):
    for call in (lambda: conform_video(torch.rand(4, 8, 8, 3), fps, 8, size=(8, 8)),
                 lambda: write_mp4(tmp_path / "x.mp4", torch.rand(4, 8, 8, 3), fps)):
        with pytest.raises(MediaError, match=r"fps=.* positive finite number") as e:
            call()
        assert f"fps={fps!r}" in str(e.value)
    assert not os.listdir(tmp_path)


def test_error_durations_that_do_not_match(tmp_path):
    frames = torch.rand(50, 16, 16, 3)  # 2 s at 25 fps; the audio says 0.5 s
    with pytest.raises(MediaError, match=r"audio is 0\.500 s .* video is 2\.000 s") as e:
        write_mp4(tmp_path / "x.mp4", frames, 25, tone(440, 16000, 0.5), 16000,
                  max_duration_mismatch=0.1)
    assert "max_duration_mismatch=0.1" in str(e.value) and "check fps and sample_rate" in str(
        e.value)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("size", [(0, 64), (64, 10000), (64,), (8.5, 8)])
def test_error_absurd_sizes(size):
    with pytest.raises(MediaError, match=r"size=.* from 1 to 8192") as e:
        conform_video(torch.rand(2, 8, 8, 3), 8, 8, size=size)
    assert repr(size) in str(e.value)


def test_error_bad_sample_rate_and_channels():
    with pytest.raises(MediaError, match=r"sample_rate=0 is not a sample rate; give a whole"):
        conform_audio(torch.zeros(1, 100), 0, 16000, 1)
    with pytest.raises(MediaError, match=r"channels=3; give 1 \(mono\), 2 \(stereo\) or 6"):
        conform_audio(torch.zeros(1, 100), 16000, 16000, 3)

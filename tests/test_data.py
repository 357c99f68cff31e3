"""ToneShapes v1 (generator and scorer, per TONESHAPES.md) and the data sets."""
import math

import numpy as np
import pytest
import torch

from avdit import data

BACKGROUND = np.array(data.BACKGROUND, dtype=np.float32) / 255.0


def steady(color=0, y=32.0, r=8.0, x=32.0, frames=17, present=None):
    """A clip whose disc stands still: its sound is one steady tone."""
    present = np.ones(frames, bool) if present is None else np.asarray(present)
    return data.render_clip(color, np.full(frames, x), np.full(frames, y), np.full(frames, r),
                            present)


def semitones(f, reference):
    return 12.0 * np.log2(np.asarray(f) / reference)


# -- generator ----------------------------------------------------------------------------------

def test_same_seed_same_clip_and_different_seeds_differ():
    a, b, c = data.generate_clip(7), data.generate_clip(7), data.generate_clip(8)
    for field in ("video", "audio", "x", "y", "r", "present"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.color == b.color
    assert not np.array_equal(a.video, c.video)
    assert not np.array_equal(a.audio, c.audio)


@pytest.mark.parametrize("frames", [17, 41, 1])
def test_shapes_types_and_ranges(frames):
    clip = data.generate_clip(3, frames)
    assert clip.video.shape == (frames, 64, 64, 3) and clip.video.dtype == np.float32
    assert clip.audio.shape == (frames * 2000,) and clip.audio.dtype == np.float32
    assert clip.x.shape == clip.y.shape == clip.r.shape == clip.present.shape == (frames,)
    assert 0.0 <= clip.video.min() and clip.video.max() <= 1.0
    assert clip.color in (0, 1, 2)
    assert np.all((12 <= clip.y) & (clip.y <= 52) & (12 <= clip.x) & (clip.x <= 52))
    assert np.all((3 <= clip.r) & (clip.r <= 12))
    assert np.abs(clip.audio).max() <= 10 ** (-6 / 20) + 1e-6  # never above -6 dBFS peak


def test_batch_stacks_clips():
    batch = data.generate_batch([4, 5, 6], frames=9)
    assert batch.video.shape == (3, 9, 64, 64, 3) and batch.audio.shape == (3, 18000)
    assert batch.color.shape == (3,) and batch.present.shape == (3, 9)
    np.testing.assert_array_equal(batch.audio[1], data.generate_clip(5, 9).audio)


def test_motion_is_smooth_and_gaps_are_as_specified():
    clips = [data.generate_clip(s) for s in range(400)]
    steps = np.concatenate([np.diff(np.stack([c.x, c.y, c.r]), axis=1) for c in clips], axis=1)
    # Step spreads (clipping at the walls makes them a little smaller than the draws' 2, 3, 0.8).
    assert np.allclose(steps.std(axis=1), [2.0, 3.0, 0.8], rtol=0.2)
    with_gap = np.mean([not c.present.all() for c in clips])
    assert 0.4 <= with_gap <= 0.6  # about half of the clips
    runs = []
    for c in clips:
        edges = np.diff(np.concatenate([[1], c.present.astype(int), [1]]))
        runs += list(np.flatnonzero(edges == 1) - np.flatnonzero(edges == -1))
    assert set(runs) <= {1, 2, 3}


def test_disc_is_drawn_antialiased_at_its_place_and_colour():
    clip = steady(color=2, x=20.0, y=40.0, r=5.3, frames=1)
    frame = clip.video[0]
    np.testing.assert_allclose(frame[40, 20], np.array(data.COLORS[2]) / 255.0, atol=1e-6)
    np.testing.assert_allclose(frame[0, 0], BACKGROUND, atol=1e-6)
    # Pixel (row 40, column 25) has its centre at (25.5, 40.5): distance sqrt(5.5^2 + 0.5^2).
    coverage = np.clip(5.3 + 0.5 - math.hypot(5.5, 0.5), 0, 1)
    expected = BACKGROUND + coverage * (np.array(data.COLORS[2]) / 255.0 - BACKGROUND)
    np.testing.assert_allclose(frame[40, 25], expected, atol=1e-6)
    assert 0 < coverage < 1


@pytest.mark.parametrize("y, hz", [(52.0, 220.0), (32.0, 440.0), (12.0, 880.0)])
def test_pitch_follows_height(y, hz):
    assert data.pitch_from_height(y) == pytest.approx(hz)
    assert data.height_from_pitch(hz) == pytest.approx(y)
    for color in (0, 1, 2):
        heard = data.audio_features(steady(color=color, y=y).audio, 17)
        assert np.all(np.abs(semitones(heard["f0"], hz)) < 0.05)  # 5 cents


def test_a_still_red_disc_is_an_exact_sine_with_continuous_phase():
    clip = steady(color=0, y=32.0, r=12.0, frames=5)
    n = np.arange(5 * 2000)
    np.testing.assert_allclose(clip.audio, 10 ** (-6 / 20) * np.sin(2 * np.pi * 440 * n / 16000),
                               atol=1e-6)


@pytest.mark.parametrize("r, db", [(3.0, -30.0), (7.5, -18.0), (12.0, -6.0)])
def test_level_follows_radius_as_peak_amplitude(r, db):
    assert data.level_from_radius(r) == pytest.approx(db)
    for color in (0, 1, 2):
        clip = steady(color=color, y=40.0, r=r)
        # Peak-equivalent level: the waveform's peak is 10 ** (dB / 20), for every timbre.
        assert np.abs(clip.audio).max() == pytest.approx(10 ** (db / 20), rel=0.01)
        heard = data.audio_features(clip.audio, 17)
        np.testing.assert_allclose(heard["level_db"], db, atol=0.3)


@pytest.mark.parametrize("color", [0, 1, 2])
def test_timbre_classes_are_recovered_across_the_pitch_range(color):
    for y in (12.0, 25.0, 40.0, 52.0):
        clip = steady(color=color, y=y, r=4.0)
        assert np.all(data.audio_features(clip.audio, 17)["timbre"] == color)
        assert np.all(data.video_features(clip.video)["color"] == color)


def test_a_gap_is_silence_and_an_empty_frame_with_short_fades():
    present = np.ones(17, bool)
    present[5:8] = False
    clip = steady(color=1, y=30.0, r=10.0, present=present)
    gap = slice(5 * 2000, 8 * 2000)
    assert np.all(clip.audio[gap] == 0.0)
    np.testing.assert_allclose(clip.video[5:8], np.broadcast_to(BACKGROUND, (3, 64, 64, 3)),
                               atol=1e-6)
    peak = np.abs(clip.audio).max()
    # 5 ms fades: nearly silent right at the edges, full level 5 ms away from them.
    assert np.abs(clip.audio[gap.start - 4:gap.start]).max() < 0.1 * peak
    assert np.abs(clip.audio[gap.stop:gap.stop + 4]).max() < 0.1 * peak
    assert np.abs(clip.audio[gap.start - 200:gap.start - 80]).max() > 0.9 * peak
    seen, heard = data.video_features(clip.video), data.audio_features(clip.audio, 17)
    np.testing.assert_array_equal(seen["present"], present)
    np.testing.assert_array_equal(heard["present"], present)
    assert np.all(np.isnan(seen["y"][5:8])) and np.all(heard["timbre"][5:8] == -1)


def test_noise_floor_is_optional_and_changes_nothing_else():
    quiet, noisy = data.generate_clip(11), data.generate_clip(11, noise_floor_db=-80)
    np.testing.assert_array_equal(quiet.video, noisy.video)
    residual = noisy.audio - quiet.audio
    assert 20 * np.log10(np.sqrt(np.mean(residual**2))) == pytest.approx(-80, abs=0.5)
    np.testing.assert_array_equal(data.audio_features(noisy.audio)["present"], quiet.present)


# -- scorer -------------------------------------------------------------------------------------

def test_video_features_recover_the_ground_truth():
    batch = data.generate_batch(range(100, 120))
    seen = data.video_features(batch.video)
    np.testing.assert_array_equal(seen["present"], batch.present)
    on = batch.present
    assert np.abs(seen["y"][on] - batch.y[on]).max() < 0.1
    assert np.abs(seen["x"][on] - batch.x[on]).max() < 0.1
    assert np.abs(seen["r"][on] - batch.r[on]).max() < 0.1
    np.testing.assert_array_equal(seen["color"], np.where(on, batch.color[:, None], -1))


def test_scorer_agrees_on_matched_pairs_and_not_on_shuffled_ones():
    batch = data.generate_batch(range(1000, 1050))
    matched = data.agreement(batch.video, batch.audio)
    assert matched["pitch"] >= 0.95 and matched["level"] >= 0.95
    assert matched["timbre"] == 1.0 and matched["presence"] == 1.0
    assert matched["frames"] == 50 * 17 and matched["both_present"] == batch.present.sum()
    shuffled = data.agreement(batch.video, np.roll(batch.audio, 1, axis=0))
    assert shuffled["pitch"] < 0.3  # chance: about 0.08 for heights uniform on [12, 52]
    assert shuffled["timbre"] < 0.6 and shuffled["level"] < 0.5
    assert all(0.0 <= shuffled[k] <= 1.0 for k in ("pitch", "level", "timbre", "presence"))


def test_scorer_takes_torch_and_uint8_like_numpy():
    clip = data.generate_clip(21)
    as_numpy = data.agreement(clip.video, clip.audio)
    as_torch = data.agreement(torch.from_numpy(clip.video), torch.from_numpy(clip.audio))
    assert as_numpy == as_torch
    eight_bit = np.round(clip.video * 255).astype(np.uint8)
    seen = data.video_features(eight_bit)
    np.testing.assert_array_equal(seen["present"], clip.present)
    assert np.nanmax(np.abs(seen["y"] - np.where(clip.present, clip.y, np.nan))) < 0.2


def test_silence_and_empty_video_score_nan_pitch_but_agree_on_presence():
    video = np.broadcast_to(BACKGROUND, (17, 64, 64, 3)).copy()
    result = data.agreement(video, np.zeros(34000, np.float32))
    assert math.isnan(result["pitch"]) and result["presence"] == 1.0
    assert result["both_present"] == 0


@pytest.mark.parametrize("call, names", [
    (lambda: data.generate_clip(-1), "seed"),
    (lambda: data.generate_clip(1, frames=0), "frames"),
    (lambda: data.generate_clip(1, frames=2.5), "frames"),
    (lambda: data.generate_batch([]), "seeds"),
    (lambda: data.render_clip(3, [1], [1], [1], [True]), "color"),
    (lambda: data.render_clip(0, [20, 20], [20], [5], [True]), "x, y, r, present"),
    (lambda: data.video_features(np.zeros((17, 64, 64))), "video"),
    (lambda: data.audio_features(np.zeros(100)), "audio"),
    (lambda: data.audio_features(np.zeros(34000), frames=18), "frames=18"),
    (lambda: data.agreement(np.zeros((2, 17, 64, 64, 3)), np.zeros((3, 34000))), "audio"),
    (lambda: data.ToneShapesDataset(0), "length"),
])
def test_bad_input_is_refused_with_a_message_naming_it(call, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(")) as error:
        call()
    assert "give" in str(error.value)  # and says what would be accepted


# -- data sets ----------------------------------------------------------------------------------

def test_toneshapes_dataset_items_and_batches():
    dataset = data.ToneShapesDataset(length=6, frames=9, seed_offset=500)
    assert len(dataset) == 6
    item = dataset[2]
    clip = data.generate_clip(502, 9)
    np.testing.assert_array_equal(item["video"].numpy(), clip.video)
    assert item["audio"].shape == (1, 18000) and item["video"].shape == (9, 64, 64, 3)
    assert int(item["color"]) == clip.color and item["present"].dtype == torch.bool
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 9, 64, 64, 3) and batch["audio"].shape == (4, 1, 18000)
    with pytest.raises(IndexError):
        dataset[6]


def _write_clip_mp4(path, seconds, fps=25, rate=44100):
    """A ToneShapes clip as an ordinary user file: 25 fps, 96 x 128, 44.1 kHz stereo AAC."""
    import av

    frames = int(seconds * 8)
    clip = data.generate_clip(3, frames)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            image = clip.video[min(int(i * 8 / fps), frames - 1)]
            image = np.kron(image, np.ones((2, 2, 1)))[16:112]  # 128 x 128 -> 96 x 128
            picture = av.VideoFrame.from_ndarray((image * 255).astype(np.uint8), format="rgb24")
            container.mux(video.encode(picture))
        tone = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 0.3
        for start in range(0, len(tone), 1024):
            block = np.stack([tone[start:start + 1024]] * 2).astype(np.float32)
            sound = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            sound.sample_rate = rate
            container.mux(audio.encode(sound))
        container.mux(video.encode())
        container.mux(audio.encode())


def test_video_folder_dataset_cuts_clips_of_the_model_length(tmp_path):
    try:
        import avdit.media  # noqa: F401
    except ImportError as error:
        pytest.skip(f"avdit.media is not importable yet ({error}); the folder data set needs it")
    _write_clip_mp4(tmp_path / "a.mp4", seconds=5.0)
    (tmp_path / "notes.txt").write_text("not a video")
    dataset = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, sample_rate=16000,
                                      size=64)
    assert len(dataset) == 2  # 5 s holds two clips of 2.125 s
    item = dataset[1]
    assert item["video"].shape == (17, 64, 64, 3) and item["audio"].shape == (1, 34000)
    assert item["start"] == pytest.approx(2.125)
    assert 0.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
    heard = data.audio_features(item["audio"][0], 17)
    assert np.all(np.abs(semitones(heard["f0"][1:-1], 440.0)) < 0.2)


def test_video_folder_dataset_refuses_a_folder_without_clips(tmp_path):
    try:
        import avdit.media  # noqa: F401
    except ImportError as error:
        pytest.skip(f"avdit.media is not importable yet ({error}); the folder data set needs it")
    with pytest.raises(ValueError, match="folder"):
        data.VideoFolderDataset(tmp_path / "missing")
    (tmp_path / "broken.mp4").write_bytes(b"not really an mp4")
    with pytest.raises(ValueError, match="no usable video clips"):
        data.VideoFolderDataset(tmp_path)


def _write_silent_mp4(path, seconds, fps=8):
    """A video file with no sound: a grey ramp, 64 x 48."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.full((48, 64, 3), (i * 9) % 255, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())


def _write_wav(path, seconds, rate=16000, hz=440.0):
    import av

    with av.open(str(path), "w") as container:
        audio = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        tone = (np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate) * 0.3 * 32767).astype(np.int16)
        sound = av.AudioFrame.from_ndarray(tone[None], format="s16", layout="mono")
        sound.sample_rate = rate
        container.mux(audio.encode(sound))
        container.mux(audio.encode())


def _write_ramp_png(path, height=120, width=200):
    """A photograph stand-in whose red channel is the column / width and green the row / height."""
    import av

    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([xs * 255 // (width - 1), ys * 255 // (height - 1), np.zeros_like(xs)], -1).astype(np.uint8)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return image


def test_a_video_folder_data_set_takes_silent_videos_and_photographs(tmp_path):
    _write_silent_mp4(tmp_path / "silent.mp4", seconds=4.5)
    _write_ramp_png(tmp_path / "photo.png")
    _write_wav(tmp_path / "tone.wav", seconds=3.0)  # not looked at for video
    dataset = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, size=(32, 48), streams="video")
    assert dataset.clips == [(str(tmp_path / "photo.png"), float(k)) for k in range(data.PHOTO_CLIPS)] + [
        (str(tmp_path / "silent.mp4"), 0.0), (str(tmp_path / "silent.mp4"), 2.125)]
    item = dataset[len(dataset) - 1]
    assert set(item) == {"video", "path", "start"} and item["video"].shape == (17, 32, 48, 3)
    photo = dataset[3]
    assert photo["video"].shape == (17, 32, 48, 3) and torch.equal(photo["video"], dataset[3]["video"])
    assert not torch.equal(photo["video"], dataset[4]["video"])  # each clip of a photo has its own path
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="has no usable sound of 2.125 s or more"):
        data.VideoFolderDataset(tmp_path / "nothing", streams="audio")
    with pytest.raises(ValueError, match=r"streams is 'sound'; expected one of \['audio', 'both', 'video'\]"):
        data.VideoFolderDataset(tmp_path, streams="sound")


def test_an_audio_folder_data_set_takes_audio_files_and_the_sound_of_videos(tmp_path):
    _write_silent_mp4(tmp_path / "silent.mp4", seconds=4.5)
    _write_clip_mp4(tmp_path / "clip.mp4", seconds=2.5)
    _write_wav(tmp_path / "tone.wav", seconds=4.4, hz=880.0)
    _write_wav(tmp_path / "word.wav", seconds=0.5, hz=220.0)
    dataset = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, sample_rate=16000, streams="audio")
    assert dataset.clips == [(str(tmp_path / "clip.mp4"), 0.0), (str(tmp_path / "tone.wav"), 0.0),
                             (str(tmp_path / "tone.wav"), 2.125), (str(tmp_path / "word.wav"), 0.0)]
    word = dataset[3]["audio"]  # a short sound is one clip: the sound, then silence
    assert word.shape == (1, 34000) and float(word[:, :7000].abs().max()) > 0.2 and float(word[:, 9000:].abs().max()) == 0.0
    assert dataset.skipped == [(str(tmp_path / "silent.mp4"), "no audio stream")]
    item = dataset[2]
    assert set(item) == {"audio", "path", "start"} and item["audio"].shape == (1, 34000)
    heard = data.audio_features(item["audio"][0], 17)
    assert np.all(np.abs(semitones(heard["f0"][1:-1], 880.0)) < 0.2)


def test_a_camera_path_pans_and_zooms_inside_the_photograph():
    height, width = 120, 200
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    photo = torch.stack([xs / (width - 1), ys / (height - 1), torch.zeros_like(xs, dtype=torch.float32)], -1).float()
    clip = data.camera_path_clip(photo, 17, (32, 48), seed=("photo.png", 3))
    assert clip.shape == (17, 32, 48, 3) and torch.equal(clip, data.camera_path_clip(photo, 17, (32, 48), ("photo.png", 3)))
    # the red channel is the photo's column: across each frame it rises left to right, as a window onto the photo does
    assert bool((clip[:, :, 1:, 0] >= clip[:, :, :-1, 0] - 1e-6).all())
    centre_x = clip[:, :, :, 0].mean(dim=(1, 2))  # where the window is, frame by frame
    span_x = clip[:, :, -1, 0].mean(1) - clip[:, :, 0, 0].mean(1)  # how wide it is
    steps, zoom = centre_x.diff(), span_x.diff()
    # a straight pan at constant speed and a steady zoom: equal steps from frame to frame
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=2e-3)
    assert torch.allclose(zoom, zoom.mean().expand_as(zoom), atol=2e-3)
    # the window stays inside the photo, between 45 % and 90 % of its largest window (120 of 200 x 120 here)
    assert 0.45 * 180 / 199 - 0.02 <= float(span_x.min()) and float(span_x.max()) <= 0.9 * 180 / 199 + 0.02
    other = data.camera_path_clip(photo, 17, (32, 48), seed=("photo.png", 4))
    assert not torch.allclose(other, clip, atol=0.05)


def test_a_file_that_fails_to_decode_is_skipped_named_once_and_its_clips_replaced(tmp_path, monkeypatch, capsys):
    """Probing reads headers only; a stream FFmpeg cannot decode shows up while training, and must not stop it."""
    from avdit import media
    from avdit.codecs.train import Clips
    from avdit.config import LayoutConfig

    for name in ("a.wav", "b.wav", "c.wav"):
        _write_wav(tmp_path / name, seconds=2.2)
    broken = str(tmp_path / "b.wav")
    decode = media.decode

    def failing(path, *args, **kwargs):
        if str(path) == broken:
            raise media.MediaError(f"decode: {path!r} is corrupt or truncated: FFmpeg failed while decoding")
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(media, "decode", failing)
    dataset = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, sample_rate=16000, streams="audio")
    items = dataset.readable([0, 1, 2, 1])
    assert [it["path"] for it in items] == [str(tmp_path / "a.wav"), str(tmp_path / "c.wav")]
    assert dataset.skipped == [(broken, f"decode: {broken!r} is corrupt or truncated: FFmpeg failed while decoding")]
    assert capsys.readouterr().err.count(f"skipping {broken} from now on") == 1  # once, then left out untried
    assert dataset.unreadable_clips(range(3)) == 1

    # codec training draws replacements from the training clips (a.wav, b.wav; c.wav is held out)
    clips = Clips(str(tmp_path), LayoutConfig(), streams="audio")
    clips.folder = dataset
    clips.train_count, clips.held_out = 2, [2]
    video, audio = clips.train(np.random.default_rng(0), 4, 17)
    assert video is None and audio.shape == (4, 1, 34000)
    monkeypatch.setattr(media, "decode", lambda *a, **k: (_ for _ in ()).throw(media.MediaError("decode: broken")))
    dataset._unreadable.add(str(tmp_path / "a.wav"))
    with pytest.raises(ValueError, match="none of its 2 training clips decode"):
        clips.train(np.random.default_rng(0), 4, 17)


def test_a_cached_folder_data_set_decodes_each_clip_once_up_to_its_byte_budget(tmp_path, monkeypatch):
    from avdit import media

    _write_silent_mp4(tmp_path / "silent.mp4", seconds=4.5)
    _write_ramp_png(tmp_path / "photo.png")
    plain = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, size=(32, 48), streams="video")
    clip_bytes = 17 * 32 * 48 * 3 * 4  # one clip's float32 frames
    cached = data.VideoFolderDataset(tmp_path, clip_seconds=2.125, fps=8, size=(32, 48), streams="video",
                                     cache_bytes=3 * clip_bytes)
    decode, calls = media.decode, []
    monkeypatch.setattr(media, "decode", lambda path, *a, **k: calls.append(path) or decode(path, *a, **k))
    first = [cached[i]["video"] for i in (9, 0, 9, 0)]
    assert len(calls) == 2 and cached.cached_bytes == 2 * clip_bytes  # the second reads decode nothing
    assert torch.equal(first[0], plain[9]["video"]) and torch.equal(first[1], plain[0]["video"])
    assert torch.equal(first[2], first[0]) and torch.equal(first[3], first[1])
    first[2].zero_()  # what a caller does to its clip does not reach the cache
    assert torch.equal(cached[9]["video"], plain[9]["video"])
    calls.clear()
    cached[1], cached[2], cached[2]  # room for one more clip: clip 2 is decoded each time it is read
    assert calls == [str(tmp_path / "photo.png")] * 3 and cached.cached_bytes == 3 * clip_bytes
    with pytest.raises(ValueError, match=r"cache_bytes is -1; give a whole number of bytes, 0 \(no cache\) or more"):
        data.VideoFolderDataset(tmp_path, streams="video", cache_bytes=-1)

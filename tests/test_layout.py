import pytest
import torch

from avdit.config import AVDiTConfig, AudioCodecConfig, LayoutConfig
from avdit.layout import Layout
from avdit.monl import task_mask


def causal_layout(hop=320, frames=17, fps=8.0, sample_rate=16000):
    config = AVDiTConfig(audio_codec=AudioCodecConfig(hop=hop), layout=LayoutConfig(fps=fps, sample_rate=sample_rate))
    return Layout.from_config(config, num_frames=frames)


def test_causal_17_frames_make_5_latent_frames_one_per_segment():
    layout = causal_layout()
    assert layout.video_latent_frames == 5
    assert layout.video_spans.tolist() == [[0.0, 0.125], [0.125, 0.625], [0.625, 1.125], [1.125, 1.625], [1.625, 2.125]]
    assert layout.video_segments.tolist() == [0, 1, 2, 3, 4]
    assert layout.segment_spans().tolist() == layout.video_spans.tolist()


def test_audio_hop_that_does_not_divide_a_segment():
    # 384 samples = 24 ms; 0.5 s segments hold 20.83 hops, so frames straddle segment boundaries
    layout = causal_layout(hop=384)
    assert layout.num_samples == 34000 and layout.audio_latent_frames == 89  # ceil(34000 / 384)
    mids = layout.audio_times
    seg = layout.audio_segments
    # each audio frame sits in the segment holding its midpoint
    # midpoints 12, 36, 60, 84, 108 ms lie in the first segment [0, 125 ms); 132 ms in the next
    assert seg[:7].tolist() == [0, 0, 0, 0, 0, 1, 1]
    for n, (a, b) in enumerate(layout.segment_spans().tolist()):
        inside = (mids >= a) & (mids < b)
        expected = inside if n < layout.num_segments - 1 else mids >= a
        assert torch.equal(seg == n, expected), n


def test_continue_mask_in_seconds_lands_on_latent_frames():
    layout = causal_layout(hop=384)
    mask = task_mask("continue", layout, given_seconds=0.625)
    assert mask.video.tolist() == [0, 0, 1, 1, 1]
    # audio frame j spans [j, j+1) * 24 ms: wholly inside [0, 625 ms) up to j = 25 (ends 624 ms)
    assert (mask.audio == 0).nonzero().flatten().tolist() == list(range(26))
    assert bool((mask.audio[26:] == 1).all())


def test_inpaint_and_interpolate_masks():
    layout = causal_layout()
    inpaint = task_mask("inpaint", layout, start=0.625, end=1.625)
    assert inpaint.video.tolist() == [0, 0, 1, 1, 0]
    # 20 ms audio frames: [0, 0.62) -> frames 0..30; frame 81 straddles 1.625 s, so 82..106 are
    # given (the last one's padding past the clip's end does not count against it)
    assert (inpaint.audio == 0).nonzero().flatten().tolist() == list(range(31)) + list(range(82, 107))
    interp = task_mask("interpolate", layout, head_seconds=0.125, tail_seconds=0.5)
    assert interp.video.tolist() == [0, 1, 1, 1, 0]


def test_cross_modal_and_custom_masks():
    layout = causal_layout()
    assert task_mask("a2v", layout).video.tolist() == [1] * 5
    assert task_mask("a2v", layout).audio.sum() == 0
    assert task_mask("v2a", layout).video.sum() == 0
    levels = [[0, 1, 1, 0.5, 0], [1, 0, 0, 1, 1]]
    custom = task_mask("custom", layout, levels=levels)
    assert custom.video.tolist() == [0, 1, 1, 0.5, 0]
    assert custom.audio[:6].tolist() == [1] * 6 and custom.audio[6:31].tolist() == [0] * 25
    with pytest.raises(ValueError, match=r"shape \(2, 3\); this 2.125 s clip needs \(2, 5\)"):
        task_mask("custom", layout, levels=[[0, 1, 1], [1, 1, 1]])


@pytest.mark.parametrize("fps", [8, 23.976, 25, 29.97, 60])
@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100, 48000])
def test_any_rate_covers_its_duration(fps, sample_rate):
    config = AVDiTConfig(layout=LayoutConfig(fps=fps, sample_rate=sample_rate))
    layout = Layout.from_config(config, duration=3.0)
    # a causal codec needs 1 + 4k frames: the smallest such count covering 3 s
    assert (layout.num_frames - 1) % 4 == 0
    assert layout.duration >= 3.0 - 1 / fps and layout.duration < 3.0 + 4 / fps
    assert layout.audio_spans[-1, 1] >= layout.duration - 1e-9
    assert layout.video_spans[-1, 1] == pytest.approx(layout.duration)


def test_bad_times_are_refused_with_their_value():
    layout = causal_layout()
    with pytest.raises(ValueError, match=r"given_seconds is 3.0 s; the clip is 2.125 s long"):
        task_mask("continue", layout, given_seconds=3.0)
    with pytest.raises(ValueError, match=r"inpaint end \(0.5 s\) is before start \(1.0 s\)"):
        task_mask("inpaint", layout, start=1.0, end=0.5)
    with pytest.raises(ValueError, match=r"duration is -1.0; expected a finite number of seconds > 0"):
        Layout.from_config(AVDiTConfig(), duration=-1)
    with pytest.raises(ValueError, match=r"task is 'dance'; expected one of"):
        task_mask("dance", layout)


def test_touching_or_overlapping_spans_cover_what_one_span_would():
    layout = causal_layout()  # video latent frames 0..0.125, 0.125..0.625, 0.625..1.125, ...
    for modality in ("video", "audio"):
        whole = layout.covered([(0.0, 2.125)], modality)
        assert bool(whole.all())
        # split at 1.0 s, inside video latent frame 0.625..1.125: the frame across the join is still covered
        assert torch.equal(layout.covered([(1.0, 2.125), (0.0, 1.0)], modality), whole)
        assert torch.equal(layout.covered([(0.0, 1.2), (0.9, 2.125)], modality), whole)
    # a real gap is not bridged: 0.95..1.05 s is not given, so the video frame holding it is not covered
    gap = layout.covered([(0.0, 0.95), (1.05, 2.125)], "video")
    assert gap.tolist() == [True, True, False, True, True]

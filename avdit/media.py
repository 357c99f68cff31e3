"""Media I/O with PyAV: decode video and audio, convert to the model's rates and size, write MP4.

Conventions: frames are float32 (F, H, W, 3) in 0..1, waveforms float32 (C, S) in -1..1, and
every time is in seconds of the original file. No ffmpeg subprocess, no torchaudio: PyAV does all
decoding, encoding and audio resampling.
"""
from __future__ import annotations

import functools
import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F

READABLE = "mp4, mov, mkv, webm, avi, wav, flac, mp3 or ogg"
MAX_SIDE = 8192
MAX_FPS = 1000
MIN_RATE, MAX_RATE = 1000, 768_000  # audio sample rates (Hz) we accept
RESIZE_MODES = ("crop", "pad", "stretch")
AUDIO_PREROLL = 0.25  # seconds decoded before a seek target so lossy audio starts exact
# Channel orders follow FFmpeg's default layouts (5.1 = FL FR FC LFE BL BR).
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
             7350)


class MediaError(ValueError):
    """Bad media input: the message names the input, its value and what would be accepted."""


@dataclass
class Media:
    """Decoded media. `start` is where it begins, in seconds of the original file."""

    frames: torch.Tensor | None  # (F, H, W, 3) float32 in 0..1
    fps: float | None  # the video stream's average rate
    waveform: torch.Tensor | None  # (C, S) float32 in -1..1
    sample_rate: int | None
    start: float = 0.0

    @property
    def video_duration(self) -> float | None:
        return None if self.frames is None else self.frames.shape[0] / self.fps

    @property
    def audio_duration(self) -> float | None:
        return None if self.waveform is None else self.waveform.shape[1] / self.sample_rate


# ---------------------------------------------------------------- validation


def _check_rate(where: str, name: str, value) -> float:
    """A frame rate: a positive finite number (int, float or Fraction) up to MAX_FPS."""
    ok = isinstance(value, (int, float, Fraction)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not 0 < float(value) <= MAX_FPS:
        raise MediaError(f"{where}: {name}={value!r} is not a frame rate; give a positive "
                         f"finite number of frames per second, at most {MAX_FPS} "
                         f"(e.g. 8, 24, 29.97)")
    return float(value)


def _check_sample_rate(where: str, name: str, value) -> int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (not ok or not math.isfinite(value) or value != int(value)
            or not MIN_RATE <= value <= MAX_RATE):
        raise MediaError(f"{where}: {name}={value!r} is not a sample rate; give a whole number "
                         f"of Hz from {MIN_RATE} to {MAX_RATE} (e.g. 16000, 44100, 48000)")
    return int(value)


def _check_size(where: str, size) -> tuple[int, int]:
    ok = isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) for s in size)
    if not ok or not all(1 <= s <= MAX_SIDE for s in size):
        raise MediaError(f"{where}: size={size!r} is not a frame size; give (height, width) "
                         f"as two whole numbers from 1 to {MAX_SIDE}")
    return int(size[0]), int(size[1])


def _check_frames(where: str, frames) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise MediaError(f"{where}: frames has shape {got}; give a tensor (F, H, W, 3) of RGB "
                         f"frames, float in 0..1")
    n, h, w, _ = frames.shape
    if n < 1:
        raise MediaError(f"{where}: frames is empty (0 frames); give at least one frame")
    if not 1 <= h <= MAX_SIDE or not 1 <= w <= MAX_SIDE:
        raise MediaError(f"{where}: frames are {h}x{w} (HxW); give frames whose sides are "
                         f"1 to {MAX_SIDE} pixels")
    if frames.dtype == torch.uint8:
        return frames.float() / 255
    if not frames.is_floating_point():
        raise MediaError(f"{where}: frames has dtype {frames.dtype}; give float frames in 0..1 "
                         f"or uint8 frames in 0..255")
    _check_finite(where, "frames", frames, "0..1")
    return frames.float()


def _check_waveform(where: str, waveform) -> torch.Tensor:
    if (not isinstance(waveform, torch.Tensor) or waveform.ndim != 2
            or not waveform.is_floating_point()):
        got = (f"{tuple(waveform.shape)} {waveform.dtype}" if isinstance(waveform, torch.Tensor)
               else type(waveform).__name__)
        raise MediaError(f"{where}: waveform is {got}; give a float tensor (channels, samples) "
                         f"in -1..1")
    c, s = waveform.shape
    if not 1 <= c <= 8:
        raise MediaError(f"{where}: waveform has {c} channels; give 1 to 8 channels "
                         f"(mono, stereo or 5.1), shaped (channels, samples)")
    if s < 1:
        raise MediaError(f"{where}: waveform has 0 samples; give at least one sample "
                         f"(or no waveform at all)")
    _check_finite(where, "waveform", waveform, "-1..1")
    return waveform.float()


def _check_finite(where: str, name: str, x: torch.Tensor, accepted: str) -> None:
    if not torch.isfinite(x).all():
        raise MediaError(f"{where}: {name} contains NaN or infinite values; give finite "
                         f"values in {accepted}")


def _check_seconds(where: str, name: str, value, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float, Fraction)) and not isinstance(value, bool)
    if (not ok or not math.isfinite(float(value)) or float(value) < 0
            or (not allow_zero and float(value) == 0)):
        need = "zero or more" if allow_zero else "more than zero"
        raise MediaError(f"{where}: {name}={value!r} is not a time; give a finite number of "
                         f"seconds, {need}")
    return float(value)


# ---------------------------------------------------------------- decode


def _want(name: str, value) -> str:
    if value is True or value is False or value == "optional":
        return {True: "yes", False: "no"}.get(value, "optional")
    raise MediaError(f"decode: {name}={value!r}; give True (required), False (skip) "
                     f"or 'optional' (take it if the file has one)")


def _describe(container) -> str:
    """What the file holds, for error messages."""
    parts = []
    for s in container.streams:
        ctx = s.codec_context
        if ctx is None:  # no decoder for it in this FFmpeg build
            parts.append(f"{s.type} (unsupported codec)")
        elif s.type == "video":
            parts.append(f"video {ctx.width}x{ctx.height}")
        elif s.type == "audio":
            parts.append(f"audio {ctx.sample_rate} Hz {ctx.channels} ch")
        else:
            parts.append(s.type)
    return ", ".join(parts) or "no streams"


def _first_stream(container, kind: str):
    for s in container.streams:
        # Cover art in mp3/m4a files is a one-picture "video" stream: not a video.
        if s.type == kind and not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return None


def _check_decodable(path: str, stream) -> None:
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None or ctx.codec.name in ("", "none"):
        raise MediaError(f"decode: {path!r}: the {stream.type} codec is not supported by this "
                         f"FFmpeg build; re-encode it as H.264/VP9 video or AAC/FLAC/PCM audio")


def _audio_array(frame) -> np.ndarray:
    """One decoded audio frame as float32 (C, n) in -1..1, whatever the sample format."""
    x = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: (1, n * C), samples interleaved
        x = x.reshape(-1, channels).T
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128) / 128
    if x.dtype.kind == "i":
        return x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    return x.astype(np.float32)


def decode(path, start=0.0, duration=None, video=True, audio=True) -> Media:
    """Decode [start, start + duration) seconds of a file's first video and audio streams.

    video / audio: True (required: an error if the file has none), False (skip) or "optional".
    Seeks to `start`, then decodes frame by frame, keeping only the range. Video keeps the source
    frames whose timestamps fall in the range; audio is cut to the sample. A range that runs past
    the end of the file gives what the file has.
    """
    want_video, want_audio = _want("video", video), _want("audio", audio)
    if want_video == "no" and want_audio == "no":
        raise MediaError("decode: video=False and audio=False; ask for at least one of them")
    if not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"decode: path={path!r} is not a file path; give a str or Path")
    path = os.fspath(path)
    start = _check_seconds("decode", "start", start, allow_zero=True)
    if duration is not None:
        duration = _check_seconds("decode", "duration", duration, allow_zero=False)
    if not os.path.isfile(path):
        raise MediaError(f"decode: file not found: {path!r}; give the path of an existing "
                         f"{READABLE} file")
    try:
        container = av.open(path, "r")
    except av.FFmpegError as e:
        raise MediaError(f"decode: {path!r} is not a readable media file ({e.strerror or e}); "
                         f"give a {READABLE} file that is complete and not corrupt") from e
    with container:
        return _decode_open(container, path, start, duration, want_video, want_audio)


def _decode_open(container, path, start, duration, want_video, want_audio) -> Media:
    vstream = _first_stream(container, "video") if want_video != "no" else None
    astream = _first_stream(container, "audio") if want_audio != "no" else None
    for kind, want, stream in (("video", want_video, vstream), ("audio", want_audio, astream)):
        if want == "yes" and stream is None:
            raise MediaError(f"decode: {path!r} has no {kind} stream (it has: "
                             f"{_describe(container)}); give a file with {kind}, or pass "
                             f"{kind}=False or {kind}='optional'")
    streams = [s for s in (vstream, astream) if s is not None]
    if not streams:
        # Both optional and neither present: nothing to return is not a useful answer.
        raise MediaError(f"decode: {path!r} has neither video nor audio (it has: "
                         f"{_describe(container)}); give a {READABLE} file")
    for s in streams:
        _check_decodable(path, s)
    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    length = container.duration / av.time_base if container.duration else None
    if length is not None and start >= length:
        raise MediaError(f"decode: start={start:g} s is past the end of {path!r}, which is "
                         f"{length:.3f} s long; give a start below {length:.3f}")
    end = math.inf if duration is None else start + duration

    fps = None
    if vstream is not None:
        rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        fps = float(rate) if rate else None
    audio_end = min(end, _edit_list_end(container, astream, origin)) if astream is not None else end

    def keepers():
        return (_VideoKeeper(start, end, fps, vstream) if vstream is not None else None,
                _AudioKeeper(start, audio_end) if astream is not None else None)

    video, sound = keepers()
    seeked = False
    if start > 0:
        # Seek a little early: audio decoders (AAC, MP3) need a frame or two of pre-roll before
        # their output is exact. Seeking lands on the keyframe at or before that time; frames
        # and samples before `start` are dropped below.
        try:
            target = origin + max(0.0, start - AUDIO_PREROLL)
            container.seek(int(target * av.time_base), backward=True)
            seeked = True
        except av.FFmpegError:
            pass  # unseekable input: decoding from the beginning gives the same result, slower
    _demux(container, streams, vstream, video, sound, origin, path)
    if seeked and (_landed_late(video, vstream, origin) or _landed_late(sound, astream, origin)):
        # Some demuxers (MPEG-TS) seek past the keyframe before the target, and the frames
        # between are lost: decode from the beginning instead.
        video, sound = keepers()
        with av.open(path, "r") as again:
            _demux(again, [again.streams[s.index] for s in streams], vstream, video, sound, origin, path)

    span = f"{start:g}..{'end' if duration is None else f'{end:g}'} s"
    long_ = f", which is {length:.3f} s long" if length is not None else ""
    for kind, keeper in (("video", video), ("audio", sound)):
        if keeper is not None and keeper.empty:
            raise MediaError(f"decode: {path!r} has no {kind} {keeper.unit} in {span}{long_}; "
                             f"give a start and duration that cover at least one "
                             f"{keeper.unit[:-1]}")
    if video is not None and fps is None:
        fps = video.measured_fps()
    frames, waveform, sample_rate = None, None, None
    if video is not None:
        frames = torch.from_numpy(np.stack(video.kept)).float().div_(255)
    if sound is not None:
        waveform = torch.from_numpy(np.concatenate(sound.kept, axis=1))
        sample_rate = sound.rate
    return Media(frames=frames, fps=fps, waveform=waveform, sample_rate=sample_rate, start=start)


def _demux(container, streams, vstream, video, sound, origin, path) -> None:
    """Decode `streams` of an open container into the keepers, until both are done."""
    try:
        for packet in container.demux(streams):
            keeper = video if vstream is not None and packet.stream.index == vstream.index \
                else sound
            if keeper.done:
                if (video is None or video.done) and (sound is None or sound.done):
                    break
                continue
            for frame in packet.decode():
                t = frame.time - origin if frame.time is not None else None
                keeper.add(frame, t)
    except av.FFmpegError as e:
        raise MediaError(f"decode: {path!r} is corrupt or truncated: FFmpeg failed while "
                         f"decoding ({e.strerror or e}); give a complete {READABLE} file "
                         f"(re-export or re-download it)") from e


def _landed_late(keeper, stream, origin) -> bool:
    """Whether decoding after a seek began past the range's start (and the stream's own start)."""
    if keeper is None or keeper.first_t is None:
        return False
    stream_start = float(stream.start_time * stream.time_base) - origin if stream.start_time is not None else 0.0
    slack = keeper.tolerance if isinstance(keeper, _VideoKeeper) else 1.5 / keeper.rate
    return keeper.first_t > max(keeper.start, stream_start) + slack


def _edit_list_end(container, stream, origin) -> float:
    """Where an MP4/MOV audio stream ends by its declared duration, else infinity.

    MP4 decoders return the encoder's padding after the last real sample; the edit list's
    duration (the stream's duration) says where the real audio stops. Other formats' durations
    can be estimates (mp3), so they are not trusted.
    """
    if "mp4" not in container.format.name or not stream.duration:
        return math.inf
    return float(((stream.start_time or 0) + stream.duration) * stream.time_base) - origin


class _VideoKeeper:
    """Keeps the decoded frames whose timestamps fall in [start, end), as uint8 RGB."""

    unit = "frames"

    def __init__(self, start, end, fps, stream):
        self.start, self.end, self.fps = start, end, fps
        # Timestamps are rounded to the container's clock (1 ms in mkv/webm): allow half a tick.
        tick = float(stream.time_base) if stream.time_base else 1e-6
        self.tolerance = min(max(0.5 * tick, 1e-6), 0.25 / fps if fps else 1e-3)
        self.kept, self.times, self.done, self.size, self.last_t = [], [], False, None, None
        self.first_t = None  # the first decoded frame's time, kept or not

    @property
    def empty(self):
        return not self.kept

    def add(self, frame, t):
        if t is None:  # no timestamp: assume a steady rate after the previous frame
            t = 0.0 if self.last_t is None else self.last_t + 1 / (self.fps or 25)
        self.last_t = t
        if self.first_t is None:
            self.first_t = t
        if t < self.start - self.tolerance:
            return
        if t >= self.end - self.tolerance:
            self.done = True
            return
        if self.size is None:
            self.size = (frame.width, frame.height)
        # A mid-stream size change is scaled back to the first frame's size so frames stack.
        image = frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1])
        # Rotation metadata (a phone's portrait video): turn the frame the way players show it.
        # `rotation` is FFmpeg's display-matrix angle, counter-clockwise in degrees.
        rotation = getattr(frame, "rotation", 0) or 0
        if rotation % 90 == 0 and rotation % 360:
            image = np.ascontiguousarray(np.rot90(image, k=int(rotation // 90) % 4))
        self.kept.append(image)
        self.times.append(t)

    def measured_fps(self):
        if len(self.times) > 1 and self.times[-1] > self.times[0]:
            return (len(self.times) - 1) / (self.times[-1] - self.times[0])
        return 25.0  # one frame without a declared rate: any rate describes it


class _AudioKeeper:
    """Keeps the samples in [start, end), counted from the first decoded frame's timestamp."""

    unit = "samples"

    def __init__(self, start, end):
        self.start, self.end = start, end
        self.kept, self.done, self.rate, self.position = [], False, None, None
        self.first_t = None  # the first decoded frame's time, kept or not

    @property
    def empty(self):
        return sum(x.shape[1] for x in self.kept) == 0

    def add(self, frame, t):
        if self.rate is None:
            self.rate = frame.sample_rate
            # Later frames are placed by counting samples, not by their timestamps, so rounding
            # in the container's clock never opens gaps or overlaps.
            self.position = round((t or 0.0) * self.rate)
            self.first_t = self.position / self.rate
        first = round(self.start * self.rate)
        last = round(self.end * self.rate) if math.isfinite(self.end) else None
        x = _audio_array(frame)
        lo, hi = self.position, self.position + x.shape[1]
        self.position = hi
        if last is not None and lo >= last:
            self.done = True
            return
        a = max(first - lo, 0)
        b = x.shape[1] if last is None else min(last - lo, x.shape[1])
        if b > a:
            self.kept.append(x[:, a:b])


# ---------------------------------------------------------------- video conversion


def conform_video(frames, fps, target_fps, size, mode="crop", num_frames=None) -> torch.Tensor:
    """Convert frames to `target_fps` and `size` = (height, width).

    Frames are chosen by sample and hold: output frame i (at time i / target_fps) is the latest
    source frame whose time j / fps is <= that time, so nothing is blended and a frame rate
    conversion never invents images. The output has round(F * target_fps / fps) frames, or
    `num_frames` (the last frame is held past the end). Resize `mode`: "crop" (centre crop to the
    target aspect, then area resize, or antialiased bilinear when enlarging), "pad" (fit inside,
    black bars) or "stretch" (resize, ignoring the aspect).
    """
    where = "conform_video"
    frames = _check_frames(where, frames)
    fps = _check_rate(where, "fps", fps)
    target_fps = _check_rate(where, "target_fps", target_fps)
    height, width = _check_size(where, size)
    if mode not in RESIZE_MODES:
        raise MediaError(f"{where}: mode={mode!r}; give one of {', '.join(RESIZE_MODES)}")
    count = frames.shape[0]
    if num_frames is None:
        num_frames = round(count * target_fps / fps)
        if num_frames < 1:
            raise MediaError(f"{where}: frames are {count} frame(s) at fps={fps:g}, "
                             f"{count / fps:.4f} s, shorter than one frame at "
                             f"target_fps={target_fps:g}; give at least "
                             f"{math.ceil(fps / target_fps / 2)} frames or set num_frames")
    elif (not isinstance(num_frames, int) or isinstance(num_frames, bool)
          or not 1 <= num_frames <= 10_000_000):
        raise MediaError(f"{where}: num_frames={num_frames!r}; give a whole number of frames, "
                         f"1 or more, or None")
    # The small epsilon makes a source frame that lands exactly on an output time count as <=.
    times = torch.arange(num_frames, dtype=torch.float64) * (fps / target_fps)
    index = torch.floor(times + 1e-6).long().clamp_(max=count - 1)
    # Resize each chosen source frame once, even when frames repeat (upsampling the rate).
    unique, inverse = torch.unique(index, return_inverse=True)
    resized = _resize(frames, unique, height, width, mode)
    return resized[inverse]


def _resize(frames, index, height, width, mode, chunk=32) -> torch.Tensor:
    """Resize frames[index] (N, H, W, 3) -> (N, height, width, 3), `chunk` frames at a time."""
    out = torch.empty(len(index), height, width, 3, dtype=torch.float32)
    for i in range(0, len(index), chunk):
        x = frames[index[i:i + chunk]].permute(0, 3, 1, 2)  # (n, 3, H, W)
        h, w = x.shape[-2:]
        if mode == "crop":
            if w * height > h * width:  # source wider than the target: crop the sides
                cw = max(1, round(h * width / height))
                x = x[..., (w - cw) // 2:(w - cw) // 2 + cw]
            else:
                ch = max(1, round(w * height / width))
                x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, :]
            x = _scale(x, height, width)
        elif mode == "pad":
            scale = min(height / h, width / w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            canvas = torch.zeros(x.shape[0], 3, height, width)
            top, left = (height - nh) // 2, (width - nw) // 2
            canvas[..., top:top + nh, left:left + nw] = _scale(x, nh, nw)
            x = canvas
        else:
            x = _scale(x, height, width)
        out[i:i + chunk] = x.permute(0, 2, 3, 1)
    return out


def _scale(x, height, width) -> torch.Tensor:
    """(n, 3, h, w) -> (n, 3, height, width): area average when shrinking, else antialiased."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    if height <= h and width <= w:
        return F.interpolate(x, size=(height, width), mode="area")
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                      antialias=True)
    return y.clamp_(0, 1)


# ---------------------------------------------------------------- audio conversion

_C = math.sqrt(0.5)  # -3 dB, the ITU-R BS.775 centre and surround level
# 5.1 (FL FR FC LFE BL BR) to stereo, LFE dropped, scaled by 1 / (1 + 2 * 0.707) so a full-scale
# signal in every channel cannot clip (FFmpeg's default normalisation).
_51_TO_STEREO = [[1, 0, _C, 0, _C, 0], [0, 1, _C, 0, 0, _C]]
_51_TO_STEREO = [[v / (1 + 2 * _C) for v in row] for row in _51_TO_STEREO]


def _mix_matrix(where: str, have: int, want: int) -> torch.Tensor:
    """(want, have) channel mix. Stereo to mono averages; mono to stereo copies."""
    if have == want:
        return torch.eye(have)
    stereo_from = {1: [[1.0], [1.0]], 6: _51_TO_STEREO}
    if want == 2 and have in stereo_from:
        return torch.tensor(stereo_from[have])
    if want == 2 and have in _DEFAULT_LAYOUTS:
        return torch.tensor(_ffmpeg_stereo_mix(have))
    if want == 1 and have == 6:
        return torch.tensor(_51_TO_STEREO).mean(0, keepdim=True)
    if want == 1:
        return torch.full((1, have), 1.0 / have)
    if want == 6 and have in (1, 2):  # mono to the centre speaker; stereo to front left/right
        m = torch.zeros(6, have)
        if have == 1:
            m[2, 0] = 1.0
        else:
            m[0, 0] = m[1, 1] = 1.0
        return m
    raise MediaError(f"{where}: cannot mix {have} channels to channels={want}; give channels=1 "
                     f"(mono, from any input), 2 (stereo, from 1 to 7 channels) or 6 "
                     f"(5.1, from mono, stereo or 5.1)")


# FFmpeg's default layout of a channel count, for the channel counts downmixed to stereo by
# FFmpeg's own matrix (5.1 has its ITU matrix above; both agree on it).
_DEFAULT_LAYOUTS = {3: "2.1", 4: "4.0", 5: "5.0", 7: "6.1"}


@functools.lru_cache(maxsize=None)
def _ffmpeg_stereo_mix(have: int) -> list:
    """FFmpeg's (2, have) downmix of its default `have`-channel layout, scaled so it cannot clip:
    measured by passing each channel alone through its resampler."""
    layout = _DEFAULT_LAYOUTS[have]
    impulses = np.ascontiguousarray(np.repeat(np.eye(have, dtype=np.float32), 2, axis=1))
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
    frame = av.AudioFrame.from_ndarray(impulses, format="fltp", layout=layout)
    frame.sample_rate = 48000
    out = np.concatenate([f.to_ndarray() for f in resampler.resample(frame)]
                         + [f.to_ndarray() for f in resampler.resample(None)], axis=1)
    matrix = out[:, : 2 * have : 2].astype(np.float64)
    return (matrix / np.abs(matrix).sum(axis=1).max()).tolist()


def conform_audio(waveform, sample_rate, target_rate, channels) -> torch.Tensor:
    """Mix `waveform` (C, S) to `channels` and resample it to `target_rate` with PyAV's resampler.

    Returns (channels, round(S * target_rate / sample_rate)) float32. Mixing: stereo to mono
    averages, mono to stereo copies, 5.1 (FL FR FC LFE BL BR) to stereo or mono is the ITU
    downmix (centre and surrounds at -3 dB, LFE dropped) scaled so it cannot clip; 3, 4, 5 and 7
    channels (FFmpeg's default layouts 2.1, 4.0, 5.0, 6.1) to stereo is FFmpeg's downmix, scaled
    the same way; other counts to mono average.
    """
    where = "conform_audio"
    waveform = _check_waveform(where, waveform)
    sample_rate = _check_sample_rate(where, "sample_rate", sample_rate)
    target_rate = _check_sample_rate(where, "target_rate", target_rate)
    if channels not in LAYOUTS:
        raise MediaError(f"{where}: channels={channels!r}; give 1 (mono), 2 (stereo) "
                         f"or 6 (5.1)")
    have, samples = waveform.shape
    length = round(samples * target_rate / sample_rate)
    if length < 1:
        raise MediaError(f"{where}: waveform is {samples} sample(s) at {sample_rate} Hz, less "
                         f"than one sample at target_rate={target_rate}; give a longer waveform")
    mixed = _mix_matrix(where, have, channels) @ waveform  # (channels, S)
    if sample_rate == target_rate:
        return mixed.contiguous()
    return _resample(mixed, sample_rate, target_rate, length)


def _resample(x: torch.Tensor, rate: int, target: int, length: int, chunk=1 << 16):
    """Resample (C, S) with FFmpeg's swresample, fed in chunks, trimmed or padded to `length`."""
    layout = LAYOUTS[x.shape[0]]
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=target)
    data = x.numpy()
    out = []
    for i in range(0, data.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i:i + chunk]),
                                           format="fltp", layout=layout)
        frame.sample_rate = rate
        out += [f.to_ndarray() for f in resampler.resample(frame)]
    out += [f.to_ndarray() for f in resampler.resample(None)]  # flush the filter's tail
    y = np.concatenate(out, axis=1)[:, :length]
    # The resampler's output can differ from the exact length by a sample or so: pad with zeros.
    if y.shape[1] < length:
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


# ---------------------------------------------------------------- MP4 writing


def _fps_fraction(fps: float) -> Fraction:
    """An exact rate for the container. NTSC rates (23.976, 29.97, 59.94) become N*1000/1001."""
    for base in (24, 30, 48, 60, 120, 240):
        if abs(fps - base * 1000 / 1001) < 0.0015:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in metadata.items()):
        raise MediaError(f"write_mp4: metadata={metadata!r:.200}; give a dict of str to str, "
                         f"e.g. {{'comment': '...', 'workflow': json.dumps(workflow)}}")
    return dict(metadata)


def write_mp4(path, frames, fps, waveform=None, sample_rate=None, metadata=None, *,
              crf=18, max_duration_mismatch=None) -> str:
    """Write one MP4: H.264 yuv420p video (+ AAC audio) and `metadata` (str -> str) tags.

    Audio is trimmed or zero-padded to exactly the video's duration F / fps; pass
    `max_duration_mismatch` (seconds) to refuse audio whose length differs by more than that.
    Odd frame sizes are padded by one pixel (edge repeated) because yuv420p needs even sizes.
    A sample rate AAC cannot store is resampled to 48 kHz. The file is written to a temporary
    name in the same folder and renamed, so a failure never leaves a half-written file.
    Custom metadata keys are kept (movflags=use_metadata_tags); read them with av.open().metadata.
    Returns the path written.
    """
    where = "write_mp4"
    path = _output_path(where, path)
    frames = _check_frames(where, frames)
    fps_value = _check_rate(where, "fps", fps)
    # A Fraction is taken as the exact rate; a float is snapped to one (23.976 -> 24000/1001).
    rate = fps if isinstance(fps, Fraction) else _fps_fraction(fps_value)
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise MediaError(f"{where}: crf={crf!r}; give a whole number from 0 (lossless) to 51")
    tags = _check_metadata(metadata)
    count = frames.shape[0]
    if waveform is not None:
        waveform = _check_waveform(where, waveform)
        if sample_rate is None:
            raise MediaError(f"{where}: waveform is given without sample_rate; give its sample "
                             f"rate in Hz (e.g. 16000)")
        sample_rate = _check_sample_rate(where, "sample_rate", sample_rate)
        if waveform.shape[0] not in LAYOUTS:
            raise MediaError(f"{where}: waveform has {waveform.shape[0]} channels; give 1 "
                             f"(mono), 2 (stereo) or 6 (5.1)")
        video_seconds = count / float(rate)
        audio_seconds = waveform.shape[1] / sample_rate
        if (max_duration_mismatch is not None
                and abs(audio_seconds - video_seconds) > max_duration_mismatch):
            raise MediaError(
                f"{where}: audio is {audio_seconds:.3f} s ({waveform.shape[1]} samples at "
                f"{sample_rate} Hz) but video is {video_seconds:.3f} s ({count} frames at "
                f"{float(rate):g} fps), more than max_duration_mismatch="
                f"{max_duration_mismatch:g} s apart; check fps and sample_rate, or give "
                f"streams of the same length")
        if sample_rate not in AAC_RATES:
            waveform = conform_audio(waveform, sample_rate, 48000, waveform.shape[0])
            sample_rate = 48000
        # Exactly the video's duration, computed with the exact frame rate.
        samples = round(count * sample_rate / rate)
        waveform = waveform[:, :samples]
        if waveform.shape[1] < samples:
            waveform = F.pad(waveform, (0, samples - waveform.shape[1]))
    return _write_then_rename(where, path, lambda temporary: _encode(temporary, frames, rate, waveform,
                                                                     sample_rate, tags, crf))


def _output_path(where: str, path) -> str:
    """`path` made absolute, refused unless it names a file in an existing folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"{where}: path={path!r} is not a file path; give a str or Path")
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise MediaError(f"{where}: folder {folder!r} does not exist; create it or give a path "
                         f"in an existing folder")
    return path


def _write_then_rename(where: str, path: str, encode) -> str:
    """Run encode(temporary) on a temporary name in `path`'s folder, then rename it to `path`, so that a
    failure never leaves a half-written file (nor touches one already at `path`)."""
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        encode(temporary)
        os.replace(temporary, path)
    except av.FFmpegError as e:
        raise MediaError(f"{where}: FFmpeg failed writing {path!r} ({e.strerror or e}); "
                         f"nothing was written") from e
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_wav(path, waveform, sample_rate, metadata=None) -> str:
    """Write one WAV file: 16-bit PCM of `waveform` (C, S), float in -1..1 (louder samples are clipped),
    at `sample_rate` Hz, with `metadata` (str -> str) as RIFF INFO tags where WAV has one (e.g.
    "comment", "title"). Written to a temporary name and renamed, like `write_mp4`. Returns the path."""
    where = "write_wav"
    path = _output_path(where, path)
    waveform = _check_waveform(where, waveform)
    sample_rate = _check_sample_rate(where, "sample_rate", sample_rate)
    if waveform.shape[0] not in LAYOUTS:
        raise MediaError(f"{where}: waveform has {waveform.shape[0]} channels; give 1 (mono), 2 (stereo) or 6 (5.1)")
    tags = _check_metadata(metadata)
    pcm = (waveform.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous().numpy()  # (S, C) interleaved

    def encode(filename: str) -> None:
        with av.open(filename, "w", format="wav") as container:
            container.metadata.update(tags)
            stream = container.add_stream("pcm_s16le", rate=sample_rate, layout=LAYOUTS[waveform.shape[0]])
            for start in range(0, pcm.shape[0], 4096):
                block = pcm[start:start + 4096]
                frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=LAYOUTS[waveform.shape[0]])
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))

    return _write_then_rename(where, path, encode)


def _encode(filename, frames, rate, waveform, sample_rate, tags, crf) -> None:
    count, height, width, _ = frames.shape
    options = {"movflags": "+faststart+use_metadata_tags"}
    with av.open(filename, "w", format="mp4", options=options) as container:
        container.metadata.update(tags)
        video = container.add_stream("libx264", rate=rate,
                                     options={"crf": str(crf), "preset": "medium"})
        video.width, video.height = width + width % 2, height + height % 2
        video.pix_fmt = "yuv420p"
        # swscale's RGB -> YUV is BT.601 limited range; say so, so players invert the same way.
        ctx = video.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 6  # SMPTE 170M (BT.601)
        ctx.color_range = 1  # limited ("MPEG") range
        audio = None
        if waveform is not None:
            audio = container.add_stream("aac", rate=sample_rate,
                                         layout=LAYOUTS[waveform.shape[0]])
            audio.bit_rate = 128_000 * max(1, waveform.shape[0] // 2)
        written = 0  # audio samples encoded so far
        for i in range(count):
            picture = (frames[i].clamp(0, 1) * 255).round_().to(torch.uint8).numpy()
            if height % 2 or width % 2:
                picture = np.pad(picture, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
                format="yuv420p")
            frame.pts = i
            container.mux(video.encode(frame))
            if audio is not None:
                # Interleave: encode the audio up to the end of this video frame.
                until = round((i + 1) * sample_rate / rate)
                written = _encode_audio(container, audio, waveform, written, until)
        container.mux(video.encode(None))
        if audio is not None:
            _encode_audio(container, audio, waveform, written, waveform.shape[1])
            container.mux(audio.encode(None))


def _encode_audio(container, stream, waveform, start, stop, block=1024) -> int:
    """Encode waveform[:, start:stop] in AAC-sized blocks; returns the next unencoded sample."""
    layout = LAYOUTS[waveform.shape[0]]
    while stop - start >= block or (stop == waveform.shape[1] and start < stop):
        n = min(block, stop - start)
        chunk = np.ascontiguousarray(waveform[:, start:start + n].numpy(), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = stream.rate
        frame.pts = start
        frame.time_base = Fraction(1, stream.rate)
        container.mux(stream.encode(frame))
        start += n
    return start

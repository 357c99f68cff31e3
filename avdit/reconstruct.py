"""`python -m avdit reconstruct`: what the codecs keep of a file.

    python -m avdit reconstruct --input clip.mp4 --output clip_codec.mp4 [--codecs general]
    python -m avdit reconstruct --input speech.flac --output speech_codec.wav --codecs general

Decodes the input with `avdit.media`, converts it to the codecs' native format (their fps, frame
size, sample rate and channels; frames chosen by sample-and-hold, centre crop + area resize by
default), encodes and decodes it, writes the result (a video as one MP4, a sound without video as
a WAV) and prints video PSNR and audio SNR, log-spectral and log-mel distance against the
converted input. `--audio-decoder`
picks how a learned audio codec turns spectra into sound (Griffin-Lim, or its neural decoder when
the checkpoint has one).
"""
from __future__ import annotations

import argparse
import sys

import torch

from avdit.checkpoint import CheckpointError
from avdit.codecs import AudioCodec, VideoCodec, load_codecs
from avdit.codecs.base import audio_snr, log_mel_distance, log_spectral_distance, video_psnr


@torch.no_grad()
def round_trip_video(codec: VideoCodec, frames: torch.Tensor) -> torch.Tensor:
    """Frames (F, H, W, 3) through the codec: the first F decoded frames."""
    return codec.decode(codec.encode(frames[None]))[0, : frames.shape[0]]


@torch.no_grad()
def round_trip_audio(codec: AudioCodec, waveform: torch.Tensor, **options) -> torch.Tensor:
    """Waveform (C, S) through the codec (`options` to its decoder): the first S decoded samples."""
    return codec.decode(codec.encode(waveform[None]), **options)[0, :, : waveform.shape[1]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="a video file (mp4, mov, mkv, webm, avi; its sound is optional) "
                                                        "or an audio file (wav, flac, mp3, ogg, ...)")
    parser.add_argument("--output", required=True, help="the file to write: .mp4 for a video, .wav for a sound")
    parser.add_argument("--codecs", "--checkpoint", dest="codecs", default=None,
                        help="'toneshapes' (the default: the demo model's, 64x64), 'general' (real footage, "
                             "128x128), or a checkpoint with codecs (a codecs file or a model)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds into the input to start")
    parser.add_argument("--duration", type=float, default=None, help="seconds to take (default: to the end)")
    parser.add_argument("--resize", choices=("crop", "pad", "stretch"), default="crop",
                        help="how frames are fitted to the codec's size")
    parser.add_argument("--audio-decoder", choices=("griffin_lim", "neural"), default=None,
                        help="how a learned audio codec's spectra become sound (default: the checkpoint's; neural "
                             "needs a codec trained with one, see train-codec --which vocoder)")


def run(args: argparse.Namespace) -> int:
    from avdit.media import MediaError, conform_audio, conform_video, decode, write_mp4, write_wav

    def refuse(message: str) -> int:
        print(f"python -m avdit reconstruct: {message}", file=sys.stderr)
        return 2

    try:  # every check before any work
        media = decode(args.input, start=args.start, duration=args.duration, video="optional", audio="optional")
    except MediaError as exc:
        return refuse(f"--input {args.input!r}: {exc}")
    if media.frames is None and media.waveform is None:
        return refuse(f"--input {args.input!r} has neither a video nor an audio stream; give a video or audio file")
    wanted = ".mp4" if media.frames is not None else ".wav"
    if not args.output.lower().endswith(wanted):
        return refuse(f"--output {args.output!r}: the input is {'a video' if media.frames is not None else 'a sound without video'}"
                      f", so the output is written as {wanted}; give a file name ending in {wanted}")
    try:
        video_codec, audio_codec, config = load_codecs(args.codecs)
    except CheckpointError as exc:
        return refuse(f"--codecs {args.codecs!r}: {exc}" if args.codecs else str(exc))
    if args.audio_decoder is not None:
        available = ["griffin_lim"] + (["neural"] if getattr(audio_codec, "vocoder", None) is not None else [])
        if args.audio_decoder not in available or config.audio_codec.kind != "learned":
            where = args.codecs or "the shipped codecs"
            return refuse(f"--audio-decoder {args.audio_decoder}: the audio codec of {where} "
                          + (f"(kind {config.audio_codec.kind!r}) has no spectra to decode; leave the option out"
                             if config.audio_codec.kind != "learned" else
                             f"has {' and '.join(available)} only; train a neural decoder with "
                             f"`python -m avdit train-codec --which vocoder --base {where if args.codecs else 'CHECKPOINT'}`"))
    layout = config.layout
    try:
        frames = None
        if media.frames is not None:
            frames = conform_video(media.frames, media.fps, layout.fps, (layout.height, layout.width), mode=args.resize)
        waveform = None
        if media.waveform is not None:
            waveform = conform_audio(media.waveform, media.sample_rate, layout.sample_rate, audio_codec.config.channels)
    except MediaError as exc:
        return refuse(str(exc))

    decoded_frames = None
    if frames is not None:
        decoded_frames = round_trip_video(video_codec, frames)
        source = f"{media.frames.shape[2]}x{media.frames.shape[1]} at {media.fps:g} fps"
        print(f"video: {frames.shape[0]} frames, {layout.width}x{layout.height} at {layout.fps:g} fps (from {source}): "
              f"PSNR {video_psnr(frames, decoded_frames):.2f} dB")
    decoded_waveform = None
    if waveform is not None:
        options = {"decoder": args.audio_decoder} if args.audio_decoder else {}
        decoded_waveform = round_trip_audio(audio_codec, waveform, **options)
        snr = audio_snr(waveform, decoded_waveform)
        lsd = log_spectral_distance(waveform, decoded_waveform)
        mel = log_mel_distance(waveform, decoded_waveform, layout.sample_rate)
        decoder = f", {args.audio_decoder or audio_codec.decoder} decoder" if config.audio_codec.kind == "learned" else ""
        print(f"audio: {waveform.shape[1] / layout.sample_rate:.2f} s at {layout.sample_rate} Hz, "
              f"{waveform.shape[0]} channel(s) (from {media.sample_rate} Hz, {media.waveform.shape[0]} channel(s){decoder}): "
              f"SNR {snr:.2f} dB, log-spectral distance {lsd:.2f} dB, log-mel distance {mel:.2f} dB"
              + (" (the audio codec keeps no phase, so SNR stays low)" if audio_codec.config.kind == "learned" else ""))
    else:
        print("audio: the input has no audio stream")
    tags = {"comment": f"avdit reconstruct of {args.input}"}
    try:
        if decoded_frames is None:
            path = write_wav(args.output, decoded_waveform, layout.sample_rate, metadata=tags)
        else:
            path = write_mp4(args.output, decoded_frames, layout.fps, decoded_waveform,
                             layout.sample_rate if decoded_waveform is not None else None, metadata=tags)
    except MediaError as exc:
        return refuse(str(exc))
    print(f"wrote {path}")
    return 0

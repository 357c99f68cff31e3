"""The neural audio decoder against Griffin-Lim: speed and what each keeps.

    python bench/bench_audio_decoder.py CHECKPOINT [--device cuda] [--seconds 10] [--clips 32] [--refine 0,4] [FILE ...]

CHECKPOINT holds a learned audio codec with a neural decoder (`train-codec --which vocoder`). Speed:
decoding a batch of 4 latents of --seconds each, best of three runs (the machine may be shared),
as seconds of audio per second and as Griffin-Lim's time over the neural decoder's (a ratio that
stays meaningful from one machine to another). Quality, through the same encoder and decoded
magnitudes, so only the phase differs: ToneShapes scorer agreement (all checks, level, timbre) and
log-spectral distance on --clips held-out clips, and log-mel and log-spectral distance of each
FILE's audio (its first 30 s, at the codec's sample rate). The neural decoder is run with each
--refine count of Griffin-Lim iterations after its phase.
"""
import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from avdit.codecs import load_codecs  # noqa: E402
from avdit.codecs.base import log_mel_distance, log_spectral_distance  # noqa: E402
from avdit.codecs.train import Clips, tone_agreement  # noqa: E402


def timed(fn, repeats=3):
    best = math.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - begin)
    return out, best


@torch.no_grad()
def decode_with(codec, latent, decoder):
    """`decoder` is ("griffin_lim", None) or ("neural", refine iterations)."""
    return codec.decode(latent, decoder=decoder[0], refine=decoder[1])


def name(decoder):
    return decoder[0] if decoder[1] is None else f"{decoder[0]}+{decoder[1]}GL"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("files", nargs="*")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--refine", default="0,4", help="Griffin-Lim iterations after the neural phase, comma-separated")
    args = parser.parse_intermixed_args()
    _, codec, config = load_codecs(args.checkpoint)
    if getattr(codec, "vocoder", None) is None:
        sys.exit(f"{args.checkpoint}: its audio codec has no neural decoder (train one with train-codec --which vocoder)")
    codec = codec.to(args.device)
    rate = config.layout.sample_rate
    frames = round(args.seconds * rate / codec.config.hop)
    latent = torch.randn(4, codec.config.latent_channels, frames, generator=torch.Generator().manual_seed(0)).to(args.device)
    print(f"decoding 4 x {args.seconds:g} s at {rate} Hz on {args.device}, torch threads {torch.get_num_threads()}")
    decoders = [("griffin_lim", None)] + [("neural", int(k)) for k in args.refine.split(",")]
    speed = {}
    for decoder in decoders:
        _, seconds = timed(lambda: decode_with(codec, latent, decoder))
        speed[decoder] = seconds
        print(f"  {name(decoder):>14}: {seconds:7.3f} s, {4 * args.seconds / seconds:8.1f} s of audio per second, "
              f"Griffin-Lim's time / this: {speed[decoders[0]] / seconds:.1f}x")

    codec = codec.cpu()
    from avdit.codecs.train import HELD_OUT_SEED, toneshapes_batch

    _, clips = toneshapes_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + args.clips), layout=config.layout)
    latent = codec.encode(clips)
    for decoder in decoders:
        out = decode_with(codec, latent, decoder)[..., : clips.shape[-1]]
        agreement = tone_agreement(clips[:, 0].numpy(), out[:, 0].numpy())
        print(f"held-out ToneShapes, {args.clips} clips, {name(decoder):>14}: agreement {agreement['all']:.3f} "
              f"(level {agreement['level']:.3f}, timbre {agreement['timbre']:.3f}), "
              f"log-spectral distance {log_spectral_distance(clips, out):.2f} dB")
    from avdit.media import conform_audio, decode

    for path in args.files:
        media = decode(path, duration=30.0, video=False, audio=True)
        wave = conform_audio(media.waveform, media.sample_rate, rate, codec.config.channels)[None]
        latent = codec.encode(wave)
        parts = []
        for decoder in decoders:
            out = decode_with(codec, latent, decoder)[..., : wave.shape[-1]]
            parts.append(f"{name(decoder)} log-mel {log_mel_distance(wave, out, rate):.2f} dB, "
                         f"LSD {log_spectral_distance(wave, out):.2f} dB")
        print(f"{os.path.basename(path)} ({wave.shape[-1] / rate:.1f} s): " + "; ".join(parts))


if __name__ == "__main__":
    main()

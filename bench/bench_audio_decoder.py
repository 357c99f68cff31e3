"""The neural audio decoder against Griffin-Lim: speed and what each keeps.

    python bench/bench_audio_decoder.py CHECKPOINT [--device cuda] [--seconds 10] [--clips 32] [FILE ...]

CHECKPOINT holds a learned audio codec with a neural decoder (`train-codec --which vocoder`). Speed:
decoding a batch of 4 latents of --seconds each, best of three runs (the machine may be shared),
as seconds of audio per second and as Griffin-Lim's time over the neural decoder's (a ratio that
stays meaningful from one machine to another). Quality, through the same encoder and decoded
magnitudes, so only the phase differs: ToneShapes scorer agreement (all checks, and pitch) and
log-spectral distance on --clips held-out clips, and log-mel and log-spectral distance of each
FILE's audio (its first 30 s, at the codec's sample rate).
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
from avdit.codecs.learned import AUDIO_DECODERS  # noqa: E402
from avdit.codecs.train import Clips, compare_decoders  # noqa: E402


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
    raw = latent / codec.config.latent_scale + codec.config.latent_shift
    return codec.waveform_from_log_magnitude(codec.decoded_log_magnitude(raw), decoder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("files", nargs="*")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=32)
    args = parser.parse_args()
    _, codec, config = load_codecs(args.checkpoint)
    if getattr(codec, "vocoder", None) is None:
        sys.exit(f"{args.checkpoint}: its audio codec has no neural decoder (train one with train-codec --which vocoder)")
    codec = codec.to(args.device)
    rate = config.layout.sample_rate
    frames = round(args.seconds * rate / codec.config.hop)
    latent = torch.randn(4, codec.config.latent_channels, frames, generator=torch.Generator().manual_seed(0)).to(args.device)
    print(f"decoding 4 x {args.seconds:g} s at {rate} Hz on {args.device}, torch threads {torch.get_num_threads()}")
    speed = {}
    for decoder in AUDIO_DECODERS:
        _, seconds = timed(lambda: decode_with(codec, latent, decoder))
        speed[decoder] = seconds
        print(f"  {decoder:>11}: {seconds:7.3f} s, {4 * args.seconds / seconds:8.1f} s of audio per second")
    print(f"  Griffin-Lim / neural time: {speed['griffin_lim'] / speed['neural']:.1f}x")

    codec = codec.cpu()
    print(f"held-out ToneShapes ({args.clips} clips): " + ", ".join(
        f"{d} agreement {r['agreement']:.3f} pitch {r['pitch']:.3f} LSD {r['log_spectral_distance_db']:.2f} dB"
        for d, r in compare_decoders(codec, Clips("toneshapes", config.layout), args.clips).items()))
    from avdit.media import conform_audio, decode

    for path in args.files:
        media = decode(path, duration=30.0, video=False, audio=True)
        wave = conform_audio(media.waveform, media.sample_rate, rate, codec.config.channels)[None]
        latent = codec.encode(wave)
        parts = []
        for decoder in AUDIO_DECODERS:
            out = decode_with(codec, latent, decoder).reshape(1, wave.shape[1], -1)[..., : wave.shape[-1]]
            parts.append(f"{decoder} log-mel {log_mel_distance(wave, out, rate):.2f} dB, "
                         f"LSD {log_spectral_distance(wave, out):.2f} dB")
        print(f"{os.path.basename(path)} ({wave.shape[-1] / rate:.1f} s): " + "; ".join(parts))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write a folder of procedural tonal sounds (WAV, 16-bit mono) for training audio codecs.

    python scripts/make_tonal_sounds.py --output DIR/train/audio/tones [--count 400] [--first-seed 0]
    python scripts/make_tonal_sounds.py --kind effects --output DIR/validation/effects --first-seed 100000

Sound I of the folder is `avdit.data.tonal_sound(first_seed + I)`: beeps, chimes, harmonic and
inharmonic tones, sweeps and FM tones over silence or faint noise, what speech and music rarely
hold; with `--kind effects`, `avdit.data.effect_sound(first_seed + I)`: bursts, impacts, crackles and
whooshes, broadband, often loud or clipped. Files are named tone_SEED.wav (effect_SEED.wav) and written
to a temporary name, then renamed; a file already there with that name is left as it is, so a rerun
(or a larger --count) only adds what is missing. Seeds 100000 and up are left for validation sets
(`--first-seed 100000`).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from avdit.data import effect_sound, tonal_sound
from avdit.media import MediaError, write_wav


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="tones", help="tones (default) or effects")
    parser.add_argument("--output", required=True, help="folder to write the WAV files to (made if missing)")
    parser.add_argument("--count", type=int, default=400, help="how many sounds (default 400)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first sound (default 0)")
    parser.add_argument("--seconds", type=float, default=4.25, help="length of each sound (default 4.25: two 2.125 s windows)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    args = parser.parse_args(argv)

    def refuse(message: str) -> int:
        print(f"make_tonal_sounds: {message}", file=sys.stderr)
        return 2

    kinds = {"tones": (tonal_sound, "tone"), "effects": (effect_sound, "effect")}
    if args.kind not in kinds:
        return refuse(f"--kind {args.kind!r}: give one of {list(kinds)}")
    make, prefix = kinds[args.kind]
    if args.count < 1:
        return refuse(f"--count {args.count}: give at least 1 sound")
    if args.first_seed < 0:
        return refuse(f"--first-seed {args.first_seed}: give a whole number >= 0")
    if not args.seconds > 0 or args.seconds > 600:
        return refuse(f"--seconds {args.seconds:g}: give a length above 0 and at most 600 seconds")
    if args.sample_rate < 8000 or args.sample_rate > 192000:
        return refuse(f"--sample-rate {args.sample_rate}: give 8000 to 192000 Hz")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        return refuse(f"--output {args.output!r} is a file; give a folder")
    os.makedirs(args.output, exist_ok=True)
    written = 0
    for seed in range(args.first_seed, args.first_seed + args.count):
        path = os.path.join(args.output, f"{prefix}_{seed:05d}.wav")
        if os.path.exists(path):
            continue
        sound = torch.from_numpy(make(seed, args.seconds, args.sample_rate))[None]
        try:
            write_wav(path, sound, args.sample_rate, metadata={"comment": f"avdit.data.{make.__name__}({seed})"})
        except MediaError as exc:
            return refuse(str(exc))
        written += 1
    print(f"wrote {written} sounds to {args.output} ({args.count - written} were there already)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

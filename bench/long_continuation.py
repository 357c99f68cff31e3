"""Does a long continuation keep its audio-video agreement? (issue 15)

Continues held-out ToneShapes clips from their first GIVEN seconds to SECONDS seconds, window by
window as `python -m avdit generate --task continue --duration SECONDS` does
(`AVDiTPipeline.sample(windowed=True)`), then scores the A/V agreement of each CHUNK seconds of the
generated part with the weight-free scorer (`avdit.evaluate`: mean of pitch, level, timbre and
presence agreement, pooled over the clips). Prints one line per chunk and the last chunk's agreement
as a fraction of the first's.

    python bench/long_continuation.py                                 # the demo model, validation clips
    python bench/long_continuation.py --checkpoint my.safetensors --split test --clips 16 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def continue_clips(pipe, seeds, seconds: float, given: float, steps: int, guidance: float, seed: int):
    """-> decoded video (B, F, H, W, 3) and audio (B, S) numpy of the clips `seeds` continued to `seconds`."""
    import dataclasses

    from avdit.codecs.train import toneshapes_batch
    from avdit.evaluate import encode_cut
    from avdit.monl import given_spans_mask

    lay = pipe.config.layout
    real_video, real_audio = toneshapes_batch(seeds, frames=lay.window_frames)
    # each clip cut where its given part ends and encoded as `generate` encodes an input (the audio
    # encoder looks ahead: the whole clip's latents there would hear the real continuation)
    latent = encode_cut(pipe, real_video, real_audio, given, seconds)
    mask = given_spans_mask(latent.layout, {"video": [(0.0, given)], "audio": [(0.0, given)]})
    latent = dataclasses.replace(latent, mask=mask)
    out = pipe.sample(latent, steps=steps, seed=seed, video_guidance=guidance, audio_guidance=guidance, windowed=True)
    frames, waveform, _, _ = pipe.decode(out)
    return frames.clamp(0, 1).numpy(), waveform[:, 0].numpy()


def chunk_scores(video: np.ndarray, audio: np.ndarray, fps: float, given: float, chunk: float) -> list[dict]:
    """Agreement of each `chunk` seconds after the first `given` seconds (pooled over the clips)."""
    from avdit.evaluate import clip_counts, pooled_agreement

    per_frame = audio.shape[-1] // video.shape[1]
    first, size, rows = math.ceil(given * fps - 1e-9), max(1, round(chunk * fps)), []
    for start in range(first, video.shape[1] - size + 1, size):
        counts = clip_counts(video[:, start:start + size], audio[:, start * per_frame:(start + size) * per_frame])
        scores = {k: float(v) for k, v in pooled_agreement(counts).items()}
        rows.append({"start": start / fps, "end": (start + size) / fps, **scores})
    return rows


def main(argv=None) -> int:
    from avdit.evaluate import clip_seeds
    from avdit.pipeline import AVDiTPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model to continue with (default: the bundled demo model)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each continued clip")
    parser.add_argument("--given", type=float, default=1.125, help="seconds of each real clip given")
    parser.add_argument("--chunk", type=float, default=2.0, help="seconds per scored chunk of the generated part")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    pipe = AVDiTPipeline.load(args.checkpoint)
    if not args.given < args.seconds or not args.given <= pipe.config.layout.window_frames / pipe.config.layout.fps:
        parser.error(f"--given is {args.given}; expected less than --seconds ({args.seconds}) and at most one window")
    seeds, _ = clip_seeds(args.split, args.clips, 2)
    started = time.time()
    video, audio = continue_clips(pipe, list(seeds), args.seconds, args.given, args.steps, args.guidance, args.seed)
    rows = chunk_scores(video, audio, pipe.native_fps, args.given, args.chunk)
    print(f"{args.clips} {args.split} clips continued from {args.given:g} s to {args.seconds:g} s "
          f"({args.steps} steps, guidance {args.guidance:g}) in {time.time() - started:.0f} s")
    print(f"{'seconds':>14} {'agreement':>10} {'pitch':>6} {'level':>6} {'timbre':>7} {'presence':>9}")
    for row in rows:
        print(f"{row['start']:6.2f}..{row['end']:6.2f} {row['agreement']:10.3f} {row['pitch']:6.3f} {row['level']:6.3f} "
              f"{row['timbre']:7.3f} {row['presence']:9.3f}")
    ratio = rows[-1]["agreement"] / rows[0]["agreement"] if rows[0]["agreement"] > 0 else float("nan")
    print(f"last chunk / first chunk agreement: {ratio:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "chunks": rows, "ratio": ratio}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

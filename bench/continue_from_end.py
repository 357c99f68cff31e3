"""Does a continuation start cleanly when the input ends where its given part ends? (issue 15)

`avdit eval` and bench/long_continuation.py encode whole held-out clips and give only their first part,
so the given latents near the boundary were encoded with the real continuation in the audio encoder's
look-ahead. `generate --task continue` and the ComfyUI `continue` example encode an input that ends
where its given part ends. This bench continues the same held-out clips from their first GIVEN seconds
to SECONDS seconds, window by window (`AVDiTPipeline.generate`), both ways: the clip going on past the
given part (as scored elsewhere) and the clip cut at its end (as users give it), over several sampling
seeds, and prints for each way how often the disc vanishes at the first generated frame although the
last given frame shows it (a gap where the given part ends), and the continuity scores of
`avdit.evaluate` (colour kept, timbre kept, no jump), pooled over clips and seeds.

    python bench/continue_from_end.py                                    # the demo model, 6 validation clips x 4 seeds
    python bench/continue_from_end.py --checkpoint my.safetensors --clips 16 --seeds 8 --json out.json

With `--clips 6 --seeds 2` (79 s on one core each): the shipped demo model gaps in 0.167 of the
continuations either way (timbre kept 0.905 / 0.886); the unshipped GPU candidate (RESULTS.md, "At the
demo size on a GPU") in 0.083 when the input goes on and 0.750 when it is cut (timbre kept 0.973 / 0.970).
Run it before shipping a model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def boundary_counts(video: np.ndarray, audio: np.ndarray, given_frames: int) -> np.ndarray:
    """(clips, 7) counts: `avdit.evaluate.continuity_counts` (6) and 1 where the last given frame shows
    the disc and the first generated one does not. video (B, F, H, W, 3) in 0..1, audio (B, S)."""
    from avdit.data import video_features
    from avdit.evaluate import continuity_counts

    frames = np.arange(video.shape[1])
    given = frames < given_frames
    counts = continuity_counts(video, audio, given, given)
    present = video_features(video[:, given_frames - 1 : given_frames + 1])["present"]  # the two frames at the boundary
    gap = present[:, 0] & ~present[:, 1]
    return np.concatenate([counts, gap[:, None].astype(np.int64)], 1)


def summary(counts: np.ndarray) -> dict:
    from avdit.evaluate import pooled_continuity

    return {"gap_at_boundary": float(counts[:, 6].mean()), **{k: float(v) for k, v in pooled_continuity(counts[:, :6]).items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled demo model)")
    parser.add_argument("--clips", type=int, default=6, help="held-out clips")
    parser.add_argument("--seeds", type=int, default=4, help="sampling seeds per clip")
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--given", type=float, default=2.125, help="seconds given")
    parser.add_argument("--seconds", type=float, default=4.125, help="seconds of output")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda, ...)")
    parser.add_argument("--json", default=None, help="write the numbers here too")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.seeds < 1 or args.steps < 1 or not 0 < args.given < args.seconds:
        print(f"continue_from_end: --clips {args.clips}, --seeds {args.seeds}, --steps {args.steps} must be >= 1 and "
              f"--given {args.given:g} between 0 and --seconds {args.seconds:g}", file=sys.stderr)
        return 2
    from avdit import data
    from avdit.evaluate import clip_seeds
    from avdit.pipeline import AVDiTPipeline

    pipe = AVDiTPipeline.load(args.checkpoint, device=args.device)
    lay = pipe.config.layout
    total_frames = round(args.seconds * lay.fps)
    given_frames = round(args.given * lay.fps)
    given_samples = round(args.given * lay.sample_rate)
    seeds, _ = clip_seeds(args.split, args.clips, 2)
    spans = {"video": [(0.0, args.given)], "audio": [(0.0, args.given)]}
    counts = {"input goes on": [], "input cut at the given part": []}
    started = time.time()
    for index, clip_seed in enumerate(seeds):
        clip = data.generate_clip(int(clip_seed), frames=total_frames)
        frames, wave = torch.from_numpy(clip.video), torch.from_numpy(clip.audio)[None]
        for way, (f_in, a_in) in (("input goes on", (frames, wave)),
                                  ("input cut at the given part", (frames[:given_frames], wave[:, :given_samples]))):
            for seed in range(index * args.seeds, (index + 1) * args.seeds):  # every continuation its own noise (both ways the same)
                out_f, out_a = pipe.generate(f_in, lay.fps, a_in, lay.sample_rate, spans, args.seconds, steps=args.steps,
                                             seed=seed, video_guidance=args.guidance, audio_guidance=args.guidance)
                counts[way].append(boundary_counts(out_f[None].clamp(0, 1).numpy(), out_a[:1].numpy(), given_frames))
    result = {way: summary(np.concatenate(rows)) for way, rows in counts.items()}
    print(f"{args.clips} {args.split} clips x {args.seeds} seeds, given {args.given:g} s, continued to {args.seconds:g} s "
          f"window by window ({args.steps} steps, guidance {args.guidance:g}) in {time.time() - started:.0f} s")
    print(f"{'':>30} {'gap at boundary':>16} {'colour kept':>12} {'timbre kept':>12} {'no jump':>8}")
    for way, row in result.items():
        print(f"{way:>30} {row['gap_at_boundary']:16.3f} {row['colour_kept']:12.3f} {row['timbre_kept']:12.3f} {row['no_jump']:8.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "result": result}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

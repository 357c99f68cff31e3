"""Long latents, one pass against window by window, on the demo model: `python bench/bench_long_latents.py`.

The MoNL KSampler's `long_latents` choice (`AVDiTPipeline.sample(windowed=...)`), measured the way
`python -m avdit eval` scores continuations (`avdit.evaluate.continuity_score`: the generated
part keeps the given part's colour and timbre, and the disc does not jump where the given part
ends). Two continuations, each with 6 seeds at 10 steps: the bundled 2.125 s clip to 4.125 s (the
`continue` example) and an 8.125 s ToneShapes clip to 10.125 s (the last step of `extend_10s`).
Prints the mean of each score per case and mode, and seconds per clip.
"""
import dataclasses
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from avdit import data, media  # noqa: E402
from avdit.evaluate import continuity_score  # noqa: E402
from avdit.monl import task_mask  # noqa: E402
from avdit.pipeline import AVDiTPipeline  # noqa: E402

SEEDS, STEPS = range(6), 10
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows", "input", "avdit_toneshapes.mp4")


def main() -> None:
    pipe = AVDiTPipeline.load()
    fps, rate = pipe.native_fps, pipe.native_sample_rate
    per_frame = round(rate / fps)
    bundled = media.decode(EXAMPLE)
    long_clip = data.generate_clip(12345, frames=81)
    cases = {"2.125 s -> 4.125 s (bundled clip)": (bundled.frames, bundled.waveform, 2.125, 4.125),
             "8.125 s -> 10.125 s (ToneShapes 12345)": (torch.from_numpy(long_clip.video), torch.from_numpy(long_clip.audio)[None], 8.125, 10.125)}
    for name, (frames, waveform, given, total) in cases.items():
        count = round(given * fps)
        for mode, windowed in (("one pass", False), ("window by window", True)):
            scores, start = [], time.perf_counter()
            for seed in SEEDS:
                latent = pipe.encode(frames[:count], fps, waveform[:, : count * per_frame], rate, duration=total)
                latent = dataclasses.replace(latent, mask=task_mask("continue", latent.layout, given_seconds=given))
                video, audio, _, _ = pipe.decode(pipe.sample(latent, steps=STEPS, seed=seed, windowed=windowed))
                video, audio = video[0].clamp(0, 1).numpy(), audio[0].numpy()
                kept = np.arange(video.shape[0]) < count
                scores.append(continuity_score(video[None], audio[:1, : video.shape[0] * per_frame], kept, kept))
            seconds = (time.perf_counter() - start) / len(SEEDS)
            means = ", ".join(f"{k} {np.mean([s[k] for s in scores]):.3f}" for k in scores[0])
            print(f"{name}, {mode}: {means}; {seconds:.1f} s per clip", flush=True)


if __name__ == "__main__":
    main()

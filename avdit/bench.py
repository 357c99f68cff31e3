"""`python -m avdit bench`: how well the denoiser and sampler use this machine.

Reports, at the small preset for a 2.125 s and a 10 s clip:
- flop_ratio: the denoiser forward's achieved FLOP rate over this machine's dense matmul rate,
  both measured in this run (fp32 on CPU, bf16 on a GPU; FLOPs = 2 per multiply-add of every
  matmul and of attention);
- sampler_overhead: time outside model calls over total sampling time;
- model calls per step with nothing given (joint) and with given blocks and guidance (continue).
Timings are best-of-N with the two rates measured alternately, so load from other processes
affects both sides alike. Ratios, not seconds, are the result.
"""
from __future__ import annotations

import json
import time

import torch

from avdit.config import AVDiTConfig
from avdit.layout import Layout
from avdit.model import AVDiT, model_config
from avdit.monl import task_mask
from avdit.sampling import Guidance, sample
from avdit.schedule import Schedule

CLIPS = {"2.125 s": 2.125, "10 s": 10.0}


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="small", help="model size preset (default: small)")
    parser.add_argument("--batch", type=int, default=2, help="batch of the forward timing (default 2: a guided step)")
    parser.add_argument("--repeats", type=int, default=10, help="timing rounds; the best is kept (default 10)")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps for the sampler measurements")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_rate(device, dtype, size: int = 1024) -> tuple[float, callable]:
    """FLOP/s of one square matmul of `size` (returns a thunk to re-time it)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    reps = 8 if device.type == "cpu" else 50

    def run():
        for _ in range(reps):
            a @ b

    run()
    return 2 * size**3 * reps, run


def measure(preset="small", batch=2, repeats=5, steps=10, device="cpu") -> dict:
    device = torch.device(device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    config = AVDiTConfig(model=model_config(preset))
    torch.manual_seed(0)
    model = AVDiT(config).to(device=device, dtype=dtype).eval().requires_grad_(False)
    with torch.no_grad():  # non-zero modulations, as in a trained model
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    mm_flops, mm_run = matmul_rate(device, dtype)
    results = {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "preset": preset, "batch": batch,
               "threads": torch.get_num_threads(), "clips": {}}
    best_mm = 0.0
    for name, seconds in CLIPS.items():
        layout = Layout.from_config(config, duration=seconds)
        s = config.video_codec.spatial_stride
        video = torch.randn(batch, config.video_codec.latent_channels, layout.video_latent_frames,
                            config.layout.height // s, config.layout.width // s, device=device)
        audio = torch.randn(batch, config.audio_codec.latent_channels, layout.audio_latent_frames, device=device)
        levels_v = torch.rand(batch, layout.video_latent_frames, device=device)
        levels_a = torch.rand(batch, layout.audio_latent_frames, device=device)
        flops = model.flops_per_forward(batch, tuple(video.shape[2:]), audio.shape[2])

        def forward():
            with torch.no_grad():
                model(video, audio, levels_v, levels_a)

        forward()
        best_fwd = float("inf")
        for _ in range(repeats):  # alternate, so other load hits both measurements alike
            best_mm = max(best_mm, mm_flops / _timed(mm_run, device))
            best_fwd = min(best_fwd, _timed(forward, device))
        tokens = layout.video_latent_frames * (video.shape[3] // model.patch) * (video.shape[4] // model.patch) + layout.audio_latent_frames
        results["clips"][name] = {"tokens": tokens, "forward_s": best_fwd, "forward_flops": flops,
                                  "forward_flop_rate": flops / best_fwd}
        results["clips"][name].update(_sampler_numbers(model, config, layout, video[:1], audio[:1], steps, device))
    results["matmul_flop_rate"] = best_mm
    for clip in results["clips"].values():
        clip["flop_ratio"] = clip["forward_flop_rate"] / best_mm
    first = results["clips"]["2.125 s"]
    for key in ("flop_ratio", "sampler_overhead", "calls_per_step_unconditioned", "calls_per_step_conditioned"):
        results[key] = first[key]
    return results


def _sampler_numbers(model, config, layout, video, audio, steps, device) -> dict:
    """Sampler overhead and model calls per step (euler), joint and guided continuation."""
    schedule = Schedule(config.schedule)
    inside = {"calls": 0, "seconds": 0.0}

    def counted(*args, **kwargs):
        start = time.perf_counter()
        out = model(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        inside["calls"] += 1
        inside["seconds"] += time.perf_counter() - start
        return out

    counted.parameters = model.parameters
    numbers = {}
    for key, task, kwargs, guidance in [
        ("unconditioned", "joint", {}, Guidance(3.0, 3.0)),
        ("conditioned", "continue", {"given_seconds": min(1.0, layout.duration / 2)}, Guidance(3.0, 3.0)),
    ]:
        mask = task_mask(task, layout, **kwargs)
        inside.update(calls=0, seconds=0.0)
        total = _timed(lambda: sample(counted, schedule, mask, video, audio, steps=steps, sampler="euler", guidance=guidance), device)
        numbers[f"calls_per_step_{key}"] = inside["calls"] / steps
        if key == "conditioned":
            numbers["sampler_overhead"] = (total - inside["seconds"]) / total
    return numbers


def run(args) -> int:
    results = measure(args.preset, args.batch, args.repeats, args.steps, args.device)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"AVDiT bench: preset {results['preset']}, {results['device']} {results['dtype']}, "
          f"{results['threads']} threads, forward batch {results['batch']}")
    print(f"dense matmul rate: {results['matmul_flop_rate'] / 1e9:.1f} GFLOP/s")
    header = f"{'clip':>8} {'tokens':>7} {'forward ms':>11} {'GFLOP/s':>8} {'flop ratio':>11} {'sampler overhead':>17} {'calls/step joint':>17} {'calls/step given':>17}"
    print(header)
    for name, c in results["clips"].items():
        print(f"{name:>8} {c['tokens']:>7} {c['forward_s'] * 1e3:>11.1f} {c['forward_flop_rate'] / 1e9:>8.1f} "
              f"{c['flop_ratio']:>11.3f} {c['sampler_overhead'] * 100:>16.2f}% {c['calls_per_step_unconditioned']:>17.1f} "
              f"{c['calls_per_step_conditioned']:>17.1f}")
    return 0

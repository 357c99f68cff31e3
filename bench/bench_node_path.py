"""The node path's overhead: the same clip sampled by the MoNL KSampler node (ComfyUI's samplers,
model management and the MoNL Guider) and by `AVDiTPipeline.sample` (the library's own sampler).

Run it with a ComfyUI copy's python (ComfyUI's modules need its environment):

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/.venv/bin/python bench/bench_node_path.py [--steps 10] [--repeats 5]

Prints the best time of each path over the repeats and the ratio node / pipeline (1.05 = 5 % overhead).
"""
import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    comfy_path = os.environ.get("COMFYUI_PATH", "").split(":")[0]
    if not comfy_path:
        sys.exit("bench_node_path: set COMFYUI_PATH to a ComfyUI copy and run with its python")
    sys.path.insert(0, comfy_path)
    sys.path.insert(1, str(REPO))
    from comfy.cli_args import args

    args.cpu = True
    import nodes
    import torch

    from avdit import media
    from avdit.pipeline import with_task

    asyncio.run(nodes.load_custom_node(str(REPO)))
    mapping = nodes.NODE_CLASS_MAPPINGS
    model, codecs = mapping["AVDiTLoader"].execute("avdit-toneshapes-demo.safetensors", "fp32").args
    clip = media.decode(REPO / "example_workflows" / "input" / "avdit_toneshapes.mp4")
    audio = {"waveform": clip.waveform[None], "sample_rate": clip.sample_rate}
    latent = mapping["AVDiTEncode"].execute(codecs, fps=clip.fps, duration=0.0, resize="crop", images=clip.frames, audio=audio).args[0]
    latent = mapping["AVDiTNoiseLevelMask"].execute(latent, "continue", 0.625, 0.5, 1.5, 0.5, 0.5, "both", 0.0, 0.0, "").args[0]
    pipeline = codecs.pipeline
    av = with_task(pipeline.encode(clip.frames, clip.fps, clip.waveform, clip.sample_rate), "continue", given_seconds=0.625)

    def node():
        mapping["AVDiTSampler"].execute(model, latent, 0, options.steps, "euler", "simple", 3.0, 3.0, "all", 1.0)

    def library():
        pipeline.sample(av, steps=options.steps, sampler="euler", seed=0)

    best = {}
    with torch.inference_mode():
        for name, run in (("node", node), ("pipeline", library)) * options.repeats:
            start = time.perf_counter()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    print(f"continue, 2.125 s clip, {options.steps} euler steps, guidance 3, torch threads {torch.get_num_threads()}")
    print(f"MoNL KSampler node: {best['node']:.3f} s   AVDiTPipeline.sample: {best['pipeline']:.3f} s   "
          f"node / pipeline: {best['node'] / best['pipeline']:.3f}")


if __name__ == "__main__":
    main()

"""Plant the bugs issue 17 names, one at a time, in a temporary copy of the repository, and check
that the fast tests catch each (a failing test that takes under 10 s).

    python bench/plant_bugs.py            # every bug, against tests/test_invariants.py
    python bench/plant_bugs.py --tests tests/test_invariants.py tests/test_sampling.py

The working tree is never modified: `avdit/` and `tests/` are copied to a temporary folder, one
edit is made there, pytest runs there (the copy's `avdit` comes first on sys.path), and the copy
is thrown away. Prints one line per bug: caught or not, by which tests, and the slowest of them.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file, text in the file, what it becomes)
BUGS = [
    ("guidance combination's sign", "avdit/sampling.py",
     "denoised = uncond + scale * (cond - uncond)", "denoised = uncond + scale * (uncond - cond)"),
    ("guidance_drop drops the other modality", "avdit/sampling.py",
     'if self.guidance.drop == "video" else', 'if self.guidance.drop == "audio" else'),
    ("loss counts given (level-0) blocks", "avdit/train.py",
     "** 2 * (tv > 0)\n    err_a = (out_a.float() - schedule.training_target(audio, noise_a, ta)) ** 2 * (ta > 0)\n"
     "    count = (tv > 0).expand_as(video).sum() + (ta > 0).expand_as(audio).sum()",
     "** 2 * (tv >= 0)\n    err_a = (out_a.float() - schedule.training_target(audio, noise_a, ta)) ** 2 * (ta >= 0)\n"
     "    count = (tv >= 0).expand_as(video).sum() + (ta >= 0).expand_as(audio).sum()"),
    ("eps-target x0 formula", "avdit/schedule.py",
     "return (x_t - sigma * output) / alpha", "return (x_t + sigma * output) / alpha"),
    ("v-target x0 formula", "avdit/schedule.py",
     "return alpha * x_t - sigma * output", "return alpha * x_t + sigma * output"),
    ("v-target training target", "avdit/schedule.py",
     "return alpha * noise - sigma * x0", "return sigma * noise - alpha * x0"),
    ("task baseline gives one modality where it should give both (continue)", "avdit/monl.py",
     "given[:, : max(1, num_segments // 2)] = True", "given[0, : max(1, num_segments // 2)] = True"),
    ("task baseline gives one modality where it should give both (inpaint)", "avdit/monl.py",
     "given[:, 0] = given[:, -1] = True", "given[1, 0] = given[1, -1] = True"),
    ("every batch item uses item 0's levels (loss)", "avdit/train.py",
     "per_frame_levels(levels.to(video.device), layout)", "per_frame_levels(levels[:1].expand_as(levels).to(video.device), layout)"),
    ("every batch item uses item 0's levels (model)", "avdit/model.py",
     "return F.silu(self.level_embed(distinct)), index", "return F.silu(self.level_embed(distinct)), index[:1].expand_as(index)"),
    ("every batch item uses item 0's levels (sampler's flow denoising)", "avdit/sampling.py",
     "schedule.denoised(x_video, out_video.float(), video_levels.float()[:, None, :, None, None])",
     "schedule.denoised(x_video, out_video.float(), video_levels.float()[:1, None, :, None, None])"),
    ("EMA update inverted", "avdit/train.py",
     "p_ema.lerp_(p, 1 - d)", "p_ema.lerp_(p, d)"),
]


def run_one(name, path, old, new, tests, workdir) -> str:
    target = workdir / path
    original = target.read_text()
    if original.count(old) != 1:
        return f"NOT PLANTED  {name}: the text to change is not in {path} exactly once (the code moved on?)"
    target.write_text(original.replace(old, new))
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                                 "--durations-min=0", *tests], cwd=workdir, env=env, capture_output=True, text=True)
    finally:
        target.write_text(original)
    failed = sorted(set(re.findall(r"^FAILED (\S+)", result.stdout, re.M)))
    times = {m[1]: float(m[0]) for m in re.findall(r"^([\d.]+)s call\s+(\S+)", result.stdout, re.M)}
    if not failed:
        return f"MISSED       {name}"
    slowest = max(times.get(f, 0.0) for f in failed)
    shown = ", ".join(f.split("::")[-1] for f in failed[:3]) + (f" (+{len(failed) - 3} more)" if len(failed) > 3 else "")
    return f"caught       {name}: {len(failed)} failing, slowest {slowest:.2f} s: {shown}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", nargs="+", default=["tests/test_invariants.py"])
    parser.add_argument("--only", default=None, help="plant only the bugs whose name contains this")
    args = parser.parse_args()
    missed = 0
    with tempfile.TemporaryDirectory(prefix="avdit-plant-") as tmp:
        workdir = Path(tmp)
        for item in ("avdit", "tests", "pyproject.toml"):
            source = ROOT / item
            (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / item)
        for bug in BUGS:
            if args.only and args.only not in bug[0]:
                continue
            line = run_one(*bug, args.tests, workdir)
            missed += not line.startswith("caught")
            print(line, flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-check mutmut's survivors by hand: apply each surviving mutant's diff to a plain copy of the
code and run the fast tests on it, outside mutmut's trampolines and test selection.

    python bench/mutation_recheck.py [--skip EARLIER_OUTPUT] WORKDIR [TEST ...]

WORKDIR is the folder bench/mutation.sh ran mutmut in. The code and the tests are this
repository's as they are now (avdit/, tests/, bench/), so tests written after the run count, and
a run on older code is re-checked against the code and tests of today (other modules may have
moved on, with tests to match). For each mutant `mutmut results` lists as survived, `mutmut
show` gives a diff of one function; its removed lines are found in that function in a temporary
copy, replaced by the added lines, and pytest -x runs the given tests (default: the ones
bench/mutation.sh uses). A mutant whose lines are no longer in its function (the code changed
since the run) is reported 'not applied'. First the unmutated copy must pass the tests. Prints
one line per survivor, 'killed', 'survived' or 'not applied', and a count.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_invariants.py", "tests/test_sampling.py", "tests/test_monl.py", "tests/test_model.py",
         "tests/test_layout.py", "tests/test_protocol.py"]


def mutmut(workdir: Path, *args: str) -> str:
    return subprocess.run(["mutmut", *args], cwd=workdir, capture_output=True, text=True, timeout=600).stdout


def survivors(workdir: Path) -> list[str]:
    out = mutmut(workdir, "results")
    return [m.group(1) for m in re.finditer(r"^\s*(\S+): survived\s*$", out, re.M)]


def apply(diff: str, copy: Path, name: str) -> bool:
    """Apply mutmut's function-relative diff to the file it names in `copy`."""
    path = re.search(r"^--- (\S+)", diff, re.M).group(1)
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "#"))]
    removed = [line[1:] for line in body if line.startswith("-")]
    added = [line[1:] for line in body if line.startswith("+")]
    if not removed:
        return False
    target = copy / path
    lines = target.read_text().split("\n")
    function = name.split(".")[-1].split("__mutmut_")[0]
    function = function.split("ǁ")[-1] if "ǁ" in function else function[2:]  # x_name or xǁClassǁname
    start = next((i for i, line in enumerate(lines) if re.match(rf"\s*def {re.escape(function)}\(", line)), 0)
    want = [line.strip() for line in removed]
    for i in range(start, len(lines) - len(removed) + 1):
        if [line.strip() for line in lines[i:i + len(removed)]] == want:
            shift = len(lines[i]) - len(lines[i].lstrip()) - (len(removed[0]) - len(removed[0].lstrip()))
            pad = " " * max(shift, 0)
            lines[i:i + len(removed)] = [pad + line if line.strip() else line for line in added]
            target.write_text("\n".join(lines))
            return True
    return False


def main() -> int:
    args = sys.argv[1:]
    skip = set()
    if args[:1] == ["--skip"]:  # a previous re-check's output: its mutants are not checked again
        skip = set(re.findall(r"^(?:killed|survived|not applied)\s+(\S+)", Path(args[1]).read_text(), re.M))
        args = args[2:]
    workdir = Path(args[0]).resolve()
    tests = args[1:] or TESTS
    names = [n for n in survivors(workdir) if n not in skip]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def run_tests(diff=None, name=None):
        with tempfile.TemporaryDirectory(prefix="avdit-recheck-") as tmp:
            copy = Path(tmp)
            shutil.copytree(ROOT / "avdit", copy / "avdit", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(ROOT / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(ROOT / "bench", copy / "bench", ignore=shutil.ignore_patterns("__pycache__"))  # a test loads a script from it
            shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
            if diff is not None and not apply(diff, copy, name):
                return None
            return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                                   *tests], cwd=copy, env=env, capture_output=True, text=True, timeout=900)

    baseline = run_tests()
    if baseline.returncode != 0:
        print("the unmutated code fails these tests; nothing to re-check:\n" + baseline.stdout[-2000:])
        return 1
    still = 0
    for name in names:
        result = run_tests(mutmut(workdir, "show", name), name)
        if result is None:
            print(f"not applied  {name}")
            still += 1
            continue
        killed = result.returncode != 0
        still += not killed
        print(f"{'killed' if killed else 'survived':<12} {name}", flush=True)
    print(f"{len(names)} survivors of the mutmut run re-checked: {len(names) - still} killed by the tests, {still} not")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Mutation score of the core maths against the fast tests, with mutmut (pip install mutmut; 3.x).
#
#   bench/mutation.sh                      # schedule, sampling, monl, model and train (loss, EMA)
#   bench/mutation.sh avdit/schedule.py    # one file (or several)
#   JOBS=2 bench/mutation.sh               # mutants run in parallel (default 1: a shared 2-core box)
#   RECHECK=0 MUTATION_TESTS="tests/test_invariants.py tests/test_model.py" bench/mutation.sh avdit/model.py
#   MUTANTS="avdit.sampling.x_schedule_levels* avdit.sampling.x__report*" bench/mutation.sh avdit/sampling.py
#
# MUTANTS: only these mutants are run (mutmut's names, fnmatch patterns, space-separated; the others
# are listed as "not checked" and left out of the table). Names: avdit.MODULE.x_FUNCTION__mutmut_N,
# and avdit.MODULE.xǁCLASSǁMETHOD__mutmut_N for methods ("avdit.model.x*AVDiT*__init__*" spares
# typing ǁ). A pattern with * must also match the function's own name, as these do (mutmut picks
# the clean run's tests by it): "avdit.model.x_sinusoid*", not "avdit.model.x_sinusoid__mutmut_1*";
# exact names work too. `mutmut results --all true` in the work folder lists every name.
#
# Works on a copy (avdit/, tests/, bench/, pyproject.toml) in $MUTATION_WORKDIR (default
# ${TMPDIR:-/tmp}/avdit-mutation), so mutmut's mutants/ folder and cache never land in the
# repository. Prints mutmut's summary, then survivors per file; `mutmut show NAME` in the work
# folder shows one. Which survivors are equivalent, and why: docs/mutation.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORKDIR:-${TMPDIR:-/tmp}/avdit-mutation}
FILES=("$@")
[ ${#FILES[@]} -gt 0 ] || FILES=(avdit/schedule.py avdit/sampling.py avdit/monl.py avdit/model.py avdit/train.py)
# the fast tests that exercise these modules (the slow tier, `-m slow`, is left out);
# MUTATION_TESTS="tests/a.py tests/b.py" runs others (fewer tests: a faster, weaker run)
read -r -a TESTS <<< "${MUTATION_TESTS:-tests/test_invariants.py tests/test_sampling.py tests/test_monl.py tests/test_model.py tests/test_layout.py tests/test_protocol.py}"

rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$ROOT/avdit" "$ROOT/tests" "$ROOT/bench" "$ROOT/pyproject.toml" "$WORK/"  # bench/: a test loads a script from it
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
{
  echo "[mutmut]"
  echo "source_paths = avdit"
  echo "only_mutate ="
  printf '    %s\n' "${FILES[@]}"
  echo "pytest_add_cli_args_test_selection ="
  printf '    %s\n' "${TESTS[@]}"
  echo "pytest_add_cli_args ="
  printf '    %s\n' -m "not slow" -p no:cacheprovider -q
  echo "process_isolation = forkserver"
  echo "use_git_change_detection = false"
  echo "also_copy ="
  echo "    bench"
} > "$WORK/setup.cfg"
cd "$WORK"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Some mutants (a size or a loop bound changed) allocate without end: cap each process's address
# space (a normal worker needs about 1.2 GB) so such a mutant dies with MemoryError, counted killed.
ulimit -v $(( ${MUTATION_MEMORY_GB:-6} * 1024 * 1024 ))
start=$(date +%s)
read -r -a MUTANT_PATTERNS <<< "${MUTANTS:-}"
mutmut run --max-children "${JOBS:-1}" ${MUTANT_PATTERNS[@]+"${MUTANT_PATTERNS[@]}"} || true
echo "mutmut run took $(( $(date +%s) - start )) s"
mutmut results --all true > results.txt 2>&1 || mutmut results > results.txt 2>&1 || true
python - "$WORK/results.txt" ${MUTANT_PATTERNS[@]+"${MUTANT_PATTERNS[@]}"} <<'PY'
import collections, fnmatch, re, sys
patterns = sys.argv[2:]  # MUTANTS: count only the chosen mutants
counts = collections.defaultdict(collections.Counter)
survivors = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"\s*(avdit\.[\w.]+?)\.(x[\w]+?__mutmut_\d+|x.+?)\s*:\s*(\w[\w ]*)", line)
    if not m:
        continue
    module, name, status = m.group(1), m.group(2), m.group(3).strip()
    if patterns and not any(fnmatch.fnmatchcase(f"{module}.{name}", p) for p in patterns):
        continue
    counts[module][status] += 1
    if status == "survived":
        survivors[module].append(name)
print(f"{'module':<20} {'killed':>7} {'survived':>9} {'other':>6}  score")
for module, c in sorted(counts.items()):
    killed, survived = c["killed"] + c["timeout"] + c["segfault"], c["survived"]
    other = sum(c.values()) - killed - survived
    print(f"{module:<20} {killed:>7} {survived:>9} {other:>6}  {100 * killed / max(1, killed + survived):.1f} %  {dict(c)}")
for module, names in sorted(survivors.items()):
    print(f"\nsurvived in {module}:", " ".join(names))
PY
# mutmut's verdicts on survivors are re-checked on a plain copy with the current tests (a few of
# its survivors fail the tests when applied by hand); RECHECK=0 skips this step
if [ "${RECHECK:-1}" != 0 ]; then
  python "$ROOT/bench/mutation_recheck.py" "$WORK" | tee "$WORK/recheck.txt"
fi

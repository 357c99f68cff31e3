"""Loss against step from a training log: `python bench/plot_training_log.py LOG.jsonl OUT.png [TITLE]`.

`python -m avdit train` writes one JSON line per logged step ({"step", "loss", "loss_avg", ...}) to
OUTPUT with .jsonl (or --log). The plot shows each logged step's batch loss and the running average
the trainer prints, on a log scale. Needs matplotlib. docs/demo-training-loss.png was made from the
demo model's log (docs/demo-training-log.jsonl, in git history up to commit c04c371) by

    python bench/plot_training_log.py demo-training-log.jsonl docs/demo-training-loss.png \
        "avdit-toneshapes-demo: training loss"
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    with open(argv[0]) as log:
        rows = [json.loads(line) for line in log if line.strip()]
    if not rows:
        print(f"{argv[0]}: no logged steps", file=sys.stderr)
        return 1
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], color="0.7", linewidth=0.8, label="batch loss (logged step)")
    if all("loss_avg" in r for r in rows):
        ax.plot(steps, [r["loss_avg"] for r in rows], color="tab:orange", linewidth=1.6, label="running average")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 3, 5)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_title(argv[2] if len(argv) == 3 else argv[0])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

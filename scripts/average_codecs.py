#!/usr/bin/env python3
"""Average a fine-tuned codecs file with the codecs it was fine-tuned from (WiSE-FT).

    python scripts/average_codecs.py --base BASE.safetensors --fine-tuned TUNED.safetensors \
        --weight 0.5 --data DIR --output OUT.safetensors

Every codec weight becomes (1 - weight) x BASE's + weight x TUNED's. A fine-tune on a narrow mix can
gain on what it saw and lose on what it did not (sounds decoded louder than they are); the average
keeps much of the gain and much of the base's robustness, and costs no training. A codec whose
weights changed gets its latent scale set again on the first 64 windows of --data (as
`train-codec` does); the file records both inputs, their weights and their training records. Both
files must hold codecs of the same shape and layout (a `train-codec --fine-tune` of the other,
without a grown latent). OUT is written to a temporary name, then renamed.
"""
from __future__ import annotations

import argparse
import os
import sys

from avdit.checkpoint import CheckpointError, save_checkpoint
from avdit.codecs.train import average_codecs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the codecs the fine-tune started from (a file, or 'general')")
    parser.add_argument("--fine-tuned", required=True, help="the fine-tuned codecs (a file)")
    parser.add_argument("--weight", type=float, default=0.5,
                        help="the fine-tuned codecs' share, above 0 and below 1 (default 0.5)")
    parser.add_argument("--data", default="toneshapes",
                        help="folder (or 'toneshapes') whose first windows set the latent scale (default toneshapes)")
    parser.add_argument("--output", required=True, help="the averaged codecs file to write")
    args = parser.parse_args(argv)

    def refuse(message: str) -> int:
        print(f"average_codecs: {message}", file=sys.stderr)
        return 2

    if os.path.isdir(args.output):
        return refuse(f"--output {args.output!r} is a folder; give a file name such as codecs.safetensors")
    if not 0.0 < args.weight < 1.0:
        return refuse(f"--weight {args.weight:g}: give the fine-tuned codecs' share, above 0 and below 1")
    if args.data != "toneshapes" and not os.path.isdir(args.data):
        return refuse(f"--data {args.data!r} is not a folder; give the folder the fine-tune trained on, or toneshapes")
    try:
        config, tensors = average_codecs(args.base, args.fine_tuned, args.weight, args.data)
    except (CheckpointError, ValueError) as exc:
        return refuse(str(exc))
    path = save_checkpoint(args.output, config, tensors)
    print(f"saved {path} ({os.path.getsize(path) / 1e6:.1f} MB): {1 - args.weight:g} x {args.base} + "
          f"{args.weight:g} x {args.fine_tuned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m avdit <command>`: each command lives in its own module.

A command module provides `add_arguments(parser)` and `run(args) -> int`; it is imported only
when its command runs, so `python -m avdit --help` stays fast and one broken command cannot
break the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "bench": ("avdit.bench", "benchmark the denoiser and sampler on this machine"),
    "train-codec": ("avdit.codecs.train", "train the small audio and video autoencoders"),
    "reconstruct": ("avdit.reconstruct", "encode and decode a file through the codecs"),
    "train": ("avdit.train", "train the AVDiT denoiser with MoNL"),
    "generate": ("avdit.generate", "generate, continue, inpaint or translate a clip"),
    "eval": ("avdit.evaluate", "score every training strategy on every task"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m avdit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"python -m avdit {name}: this command is not available in this version", file=sys.stderr)
            return 2
        raise
    command_parser = argparse.ArgumentParser(prog=f"python -m avdit {name}", description=help_text)
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)

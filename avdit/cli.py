"""`python -m avdit <command>`: each command lives in its own module.

A command module provides `add_arguments(parser)` and `run(args) -> int`; it is imported only
when its command runs, so `python -m avdit --help` stays fast and one broken command cannot
break the others.

Every option of every command is checked here, by name (`CHECKS`), as argparse reads it: before
the command imports a model, reads data or writes anything. A bad value ends the command with
one line on stderr naming the option, the value and what is accepted, and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

COMMANDS = {
    "bench": ("avdit.bench", "benchmark the denoiser and sampler on this machine"),
    "train-codec": ("avdit.codecs.train", "train the small audio and video autoencoders"),
    "reconstruct": ("avdit.reconstruct", "encode and decode a file through the codecs"),
    "train": ("avdit.train", "train the AVDiT denoiser with MoNL"),
    "generate": ("avdit.generate", "generate, continue, inpaint or translate a clip"),
    "eval": ("avdit.evaluate", "score every training strategy on every task"),
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `PROG: --option is VALUE; expected ...`."""

    def error(self, message: str):
        choice = re.fullmatch(r"argument (\S+): invalid choice: (.*) \(choose from (.*)\)", message, re.S)
        named = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (.*)", message, re.S)
        if choice:
            message = f"{choice[1]}: invalid choice: {choice[2]}; expected one of {choice[3]}"
        elif named and named[2] == "expected one argument":
            message = f"{named[1]} needs a value"
        elif named:  # the checks below say 'is VALUE; ...' or repeat the option's name
            rest = named[2]
            message = rest if rest.startswith(named[1]) else f"{named[1]} {rest}"
        self.exit(2, f"{self.prog}: {message}\n")


def refuse(value, accepted: str, why: str = ""):
    """The error of a check: '--option is VALUE[, why]; expected ACCEPTED' once argparse names the option."""
    return argparse.ArgumentTypeError(f"is {value!r}{', ' + why if why else ''}; expected {accepted}")


# --- checks: each takes the option's text and returns its value, or raises `refuse(...)` -----------

def whole(low: int = 0, high: int | None = None):
    accepted = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise refuse(text, accepted) from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"is {value}; expected {accepted}")
        return value
    return check


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    bounds = [f"> {low:g}" if low_open else f">= {low:g}"] if low > -math.inf else []
    bounds += [f"< {high:g}" if high_open else f"<= {high:g}"] if high < math.inf else []
    accepted = "a finite number" + (" " + " and ".join(bounds) if bounds else "")

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise refuse(text, accepted) from None
        if (not math.isfinite(value) or value < low or value > high
                or (low_open and value == low) or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"is {text}; expected {accepted}")
        return value
    return check


def span_seconds(text: str) -> tuple[float, float]:
    """'1.5-2' -> (1.5, 2.0): a span of seconds, START < END, both finite."""
    try:
        start, end = (float(part) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START-END in seconds, e.g. 0-1.5") from None
    if not (0 <= start < end < math.inf):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 <= START < END seconds")
    return start, end


def _span(text: str) -> str:
    span_seconds(text)
    return text


def input_file(accepted: str):
    def check(text: str) -> str:
        if not os.path.exists(text):
            raise refuse(text, accepted, "which does not exist")
        if not os.path.isfile(text):
            raise refuse(text, accepted, "which is not a file")
        if not os.access(text, os.R_OK):
            raise refuse(text, accepted, "which cannot be read")
        return text
    return check


def checkpoint_with(*parts: str):
    """An avdit checkpoint holding `parts` ("denoiser", "codecs"): only its header is read here."""
    accepted = "an avdit .safetensors checkpoint" + (f" with {' and '.join(parts)}" if parts else "")

    def check(text: str) -> str:
        from safetensors import safe_open

        from avdit.checkpoint import CheckpointError, read_config

        input_file(accepted)(text)
        try:
            config = read_config(text)
        except CheckpointError as exc:
            raise refuse(text, accepted, str(exc).removeprefix(f"{Path(text)}: ").split("; ")[0]) from None
        with safe_open(text, framework="pt") as handle:
            prefixes = {key.split(".", 1)[0] for key in handle.keys()}
        wanted = ["denoiser"] if "denoiser" in parts else []
        if "codecs" in parts:  # the weight-free codecs have no weights to hold
            wanted += [f"{m}_codec" for m, codec in (("video", config.video_codec), ("audio", config.audio_codec))
                       if codec.kind == "learned"]
        missing = [prefix for prefix in wanted if prefix not in prefixes]
        if missing:
            raise refuse(text, accepted, f"which holds no {' or '.join(missing)} weights")
        return text
    return check


def widen(error: argparse.ArgumentTypeError, more: str) -> argparse.ArgumentTypeError:
    """`error` with `more` added to what it says is accepted."""
    head, _, accepted = str(error).partition("; expected ")
    return argparse.ArgumentTypeError(f"{head}; expected {more}{accepted}")


def named_or(names: tuple[str, ...], other, on_name=None):
    """One of `names` (passed through `on_name`, which may refuse it, when given), or what `other` accepts."""
    def check(text: str) -> str:
        if text in names:
            return on_name(text) if on_name else text
        try:
            return other(text)
        except argparse.ArgumentTypeError as exc:
            raise widen(exc, " or ".join(repr(n) for n in names) + " or ") from None
    return check


def shipped_or(other):
    """The name of codecs shipped with the package (avdit.codecs.NAMED_CODECS), kept as a name once its
    installed file passes `other`, or what `other` accepts."""
    def check(text: str) -> str:
        from avdit.codecs import NAMED_CODECS

        def installed(name: str) -> str:
            if not NAMED_CODECS[name].is_file():
                raise refuse(name, "codecs this install has, or a checkpoint with codecs",
                             f"whose file {NAMED_CODECS[name]} is missing from this install (reinstall avdit)")
            other(str(NAMED_CODECS[name]))
            return name

        return named_or(tuple(NAMED_CODECS), other, on_name=installed)(text)
    return check


def media_folder(what: str, extensions_of: str):
    """A folder with at least one file of `extensions_of` (a name in avdit.data) in it (or below it)."""
    def check(text: str) -> str:
        from avdit import data

        extensions = getattr(data, extensions_of)
        accepted = f"a folder of {what} files ({', '.join(extensions)})"
        if not os.path.isdir(text):
            raise refuse(text, accepted, "which does not exist" if not os.path.exists(text) else "which is not a folder")
        if not any(name.lower().endswith(extensions) for _, _, names in os.walk(text) for name in names):
            raise refuse(text, accepted, f"which holds no {what} file")
        return text
    return check


video_folder = media_folder("video", "VIDEO_EXTENSIONS")


def output_file(*suffixes: str, make_folders: bool = False):
    """A file the command may write: the right ending, not a folder, in a folder it can write to
    (with `make_folders`, the command creates missing folders: the nearest existing one counts)."""
    ending = " or ".join(suffixes)
    accepted = f"a file name ending in {ending}" if suffixes else "a file name"

    def check(text: str) -> str:
        if os.path.isdir(text):
            raise refuse(text, accepted, "which is a folder")
        if suffixes and not text.lower().endswith(suffixes):
            raise refuse(text, accepted)
        parent = os.path.dirname(os.path.abspath(text))
        while make_folders and not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise refuse(text, f"{accepted} in an existing folder", f"but {parent} is not a folder")
        writable(parent, text, f"{accepted} in a folder you can write to")
        return text
    return check


def writable(folder: str, text: str, accepted: str) -> None:
    """Refuse `text` unless a file can be made in `folder` (tried: permissions alone mislead root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise refuse(text, accepted, f"but {folder} cannot be written to ({exc.strerror})") from None


def output_folder(text: str) -> str:
    """A folder the command makes if missing."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise refuse(text, "a folder (made if missing)", "which is a file")
    parent = os.path.abspath(text)
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    writable(parent, text, "a folder you can write to (made if missing)")
    return text


def one_of(names_of):
    """One of the names `names_of()` lists (imported only when the option is checked)."""
    def check(text: str) -> str:
        names = tuple(names_of())
        if text not in names:
            raise refuse(text, f"one of {', '.join(names)}")
        return text
    return check


def each_of(check_one):
    """A comma-separated list, each item checked by `check_one`."""
    def check(text: str) -> str:
        for item in text.split(","):
            try:
                check_one(item.strip())
            except argparse.ArgumentTypeError as exc:
                accepted = str(exc).partition("; expected ")[2].removeprefix("one of ")
                raise refuse(text, f"a comma-separated list of: {accepted}",
                             f"in which {item.strip()!r} is not") from None
        return text
    return check


def device(text: str) -> str:
    import torch

    accepted = "cpu" + (f", cuda or cuda:0..{torch.cuda.device_count() - 1}" if torch.cuda.is_available() else
                        " (no CUDA device is available here)")
    try:
        where = torch.device(text)
    except (RuntimeError, ValueError):
        raise refuse(text, accepted) from None
    if where.type == "cuda" and not (torch.cuda.is_available() and (where.index or 0) < torch.cuda.device_count()):
        raise refuse(text, accepted, "which this machine does not have")
    if where.type == "mps" and not torch.backends.mps.is_available():
        raise refuse(text, accepted, "which this machine does not have")
    if where.type not in ("cpu", "cuda", "mps"):
        raise refuse(text, accepted)
    return text


def schedule(text: str) -> str:
    from avdit.schedule import TARGETS

    kind, _, target = text.partition(":")
    accepted = "KIND[:TARGET], one of " + ", ".join(f"{k}:{t}" for k, ts in TARGETS.items() for t in ts)
    if kind not in TARGETS or (target and target not in TARGETS[kind]):
        raise refuse(text, accepted)
    return text


def _presets():
    from avdit.model import PRESETS
    return PRESETS


def _strategies():
    from avdit.train import STRATEGY_CHOICES
    return STRATEGY_CHOICES


def _samplers():
    from avdit.sampling import SAMPLERS
    return sorted(SAMPLERS)


def video_frames(text: str) -> int:
    value = whole(1, 17)(text)
    if value % 4 != 1:
        raise refuse(value, "1 + 4k frames: 1, 5, 9, 13 or 17")
    return value


def frame_size(text: str) -> str:
    from avdit.layout import SIZE_ACCEPTED, parse_size

    try:
        parse_size(text)
    except ValueError:
        raise refuse(text, SIZE_ACCEPTED) from None
    return text


def window_frames(text: str) -> int:
    accepted = "1 + 4k video frames with k >= 1: 5, 9, 13, 17, ..."
    try:
        value = int(text)
    except ValueError:
        raise refuse(text, accepted) from None
    if value < 5 or value % 4 != 1:
        raise refuse(value, accepted)
    return value


def spatial_stride(text: str) -> int:
    if text not in ("1", "2", "4", "8", "16", "32", "64"):
        raise refuse(text, "a power of 2 from 1 to 64: 1, 2, 4, 8, 16, 32 or 64")
    return int(text)


AT_LEAST_ONE = whole(1)
PROBABILITY = number(0, 1)
MODEL = checkpoint_with("denoiser", "codecs")
CODECS_FILE = shipped_or(checkpoint_with("codecs"))  # 'toneshapes', 'general' or a checkpoint with codecs
CODECS = named_or(("analytic",), CODECS_FILE)
DATA = named_or(("toneshapes",), video_folder)
# train-codec: --which video also takes photographs, --which audio audio files (avdit.data.STREAMS)
CODEC_DATA = named_or(("toneshapes",), media_folder("video, photo or audio", "MEDIA_EXTENSIONS"))

# What each option accepts, by name; ("command", "--option") entries are for one command only.
CHECKS = {
    "--steps": AT_LEAST_ONE, "--batch": AT_LEAST_ONE, "--repeats": AT_LEAST_ONE, "--clips": AT_LEAST_ONE,
    "--train-steps": AT_LEAST_ONE, "--save-every": AT_LEAST_ONE, "--audio-batch": AT_LEAST_ONE,
    "--video-latent-channels": AT_LEAST_ONE, "--audio-latent-channels": AT_LEAST_ONE, "--threads": AT_LEAST_ONE, "--jobs": AT_LEAST_ONE,
    "--warmup": whole(0), "--vocoder-refine": whole(0, 256), "--seed": whole(0, 2**32 - 1),
    "--duration": number(0, low_open=True), "--minutes": number(0, low_open=True), "--lr": number(0, low_open=True),
    "--start": number(0), "--weight-decay": number(0), "--ema": number(0, 1, high_open=True),
    "--clean-probability": PROBABILITY, "--task-probability": PROBABILITY, "--cut-probability": PROBABILITY, "--time-scale": number(0, low_open=True), "--video-share": number(0, 1, low_open=True, high_open=True), "--vocoder-share": number(0, 1, low_open=True, high_open=True),
    "--guidance": number(0), "--video-guidance": number(0), "--audio-guidance": number(0),
    "--keep": _span, "--device": device, "--schedule": schedule,
    "--preset": one_of(_presets), "--sampler": one_of(_samplers), "--strategies": each_of(one_of(_strategies)),
    "--input": input_file("a video or audio file"), ("reconstruct", "--input"): input_file("a video or audio file"),
    "--checkpoint": MODEL, "--resume": MODEL, "--fine-tune": MODEL, "--base": CODECS_FILE,
    ("reconstruct", "--codecs"): CODECS_FILE, ("generate", "--codecs"): CODECS_FILE,
    "--codecs": CODECS, "--data": DATA, "--workdir": output_folder,
    "--cache": output_file(make_folders=True), "--log": output_file(make_folders=True),
    "--sheet": output_file(".png"),
    ("generate", "--output"): output_file(".mp4"), ("reconstruct", "--output"): output_file(".mp4", ".wav"),
    ("train", "--output"): output_file(".safetensors", make_folders=True),
    ("train-codec", "--output"): output_file(".safetensors", make_folders=True),
    ("eval", "--output"): output_file(".md", make_folders=True),
    ("train-codec", "--video-frames"): video_frames, ("train-codec", "--data"): CODEC_DATA,
    # the clip layout (train-codec records it; train takes it from its codecs)
    "--size": frame_size, "--fps": number(0, 1000, low_open=True), "--sample-rate": whole(1000, 768_000),
    "--window-frames": window_frames, "--spatial-stride": spatial_stride,
    # train: 0 stops after the first step, saving first (how a run is stopped to be resumed, e.g. in the tests)
    ("train", "--minutes"): number(0),
}


def add_checks(name: str, parser: argparse.ArgumentParser) -> None:
    """Give each option of command `name` its check from CHECKS (where the module has no parser of its own)."""
    for action in parser._actions:
        for option in action.option_strings:
            check = CHECKS.get((name, option)) or CHECKS.get(option)
            if check is not None and action.type in (None, int, float, str):
                action.type = check


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="python -m avdit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        return parse(parser, argv) or 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"python -m avdit {name}: this command is not available in this version", file=sys.stderr)
            return 2
        raise
    command_parser = Parser(prog=f"python -m avdit {name}", description=help_text)
    module.add_arguments(command_parser)
    add_checks(name, command_parser)
    args = parse(command_parser, argv[1:])
    return args if isinstance(args, int) else int(module.run(args) or 0)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed options, or the exit status argparse ends with (2 for a bad input, 0 after --help)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2

"""The repository's scripts and benchmarks (scripts/, bench/: plain files, not packages), imported for tests."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """REPO/<relative> (e.g. "bench/codec_capacity.py") imported as a module named after the file, and kept in
    sys.modules under that name (dataclasses look their module up there while it is executed)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module

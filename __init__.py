"""ComfyUI entry point of the AVDiT node pack (V3 schema): the nodes are in nodes/.

ComfyUI imports this folder as a package under its full path, so `avdit` (beside this file) is
not importable by name unless the pack is pip-installed; the folder is then put on sys.path.
Importing this file needs no ComfyUI; the nodes are imported when ComfyUI asks for them.
"""
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if importlib.util.find_spec("avdit") is None:
    sys.path.append(_HERE)  # appended, so the pack never shadows ComfyUI's own modules


async def comfy_entrypoint():
    from .nodes.avdit_nodes import AVDiTExtension

    return AVDiTExtension()

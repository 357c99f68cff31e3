"""The AVDiT ComfyUI nodes: `avdit_nodes` (V3 node classes, imports ComfyUI) over `adapters`
(plain functions, no ComfyUI import, tested without it)."""

"""AVDiT with Mixture of Noise Levels: joint audio-video diffusion (Kim et al., NeurIPS 2024).

Pure PyTorch; never imports ComfyUI. See README.md and the modules' docstrings.
"""
__version__ = "0.1.0"

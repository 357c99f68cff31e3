import pytest
import torch

from avdit.config import AVDiTConfig, ScheduleConfig
from avdit.model import AVDiT, model_config


def tiny_config(**schedule) -> AVDiTConfig:
    """The tiny preset over the analytic-codec default layout (16 latent channels each)."""
    return AVDiTConfig(model=model_config("tiny"), schedule=ScheduleConfig(**schedule) if schedule else ScheduleConfig())


@pytest.fixture
def tiny_model():
    """A tiny AVDiT with random (non-zero) weights, so outputs depend on every input."""
    torch.manual_seed(0)
    model = AVDiT(tiny_config()).eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model

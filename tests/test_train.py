import pytest
import torch

from avdit.config import AVDiTConfig, AudioCodecConfig, LayoutConfig, MonlConfig, VideoCodecConfig
from avdit.layout import Layout
from avdit.model import AVDiT, model_config
from avdit.schedule import Schedule
from avdit.train import monl_loss


def toy_batch(batch, generator):
    """Correlated toy latents: a per-clip 'pitch' drives both the video and the audio latents."""
    pitch = torch.rand(batch, 1, generator=generator) * 2 - 1  # (B, 1)
    drift = torch.linspace(0, 1, 5)[None] * (torch.rand(batch, 1, generator=generator) - 0.5)  # (B, 5)
    per_frame = pitch + drift  # (B, Tv)
    video = per_frame[:, None, :, None, None].expand(batch, 4, 5, 4, 4) * torch.tensor([1.0, -1.0, 0.5, 0.0])[None, :, None, None, None]
    audio_track = torch.repeat_interleave(per_frame, torch.tensor([6, 25, 25, 25, 26]), dim=1)  # (B, 107)
    audio = audio_track[:, None, :] * torch.tensor([1.0, 0.5])[None, :, None]
    return video.contiguous(), audio.contiguous()


@pytest.mark.slow
def test_tiny_model_learns_a_correlated_toy_set_with_monl():
    torch.manual_seed(0)
    config = AVDiTConfig(
        model=model_config("tiny"),
        video_codec=VideoCodecConfig(latent_channels=4),
        audio_codec=AudioCodecConfig(latent_channels=2),
        layout=LayoutConfig(height=32, width=32),
        monl=MonlConfig(clean_probability=0.3),
    )
    model = AVDiT(config)
    layout = Layout.from_config(config)
    schedule = Schedule(config.schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    eval_g = lambda: torch.Generator().manual_seed(123)
    eval_batch = toy_batch(256, eval_g())

    def eval_loss():
        with torch.no_grad():
            return float(monl_loss(model, schedule, config.monl, *eval_batch, layout, eval_g()))

    start = eval_loss()
    for _ in range(300):
        loss = monl_loss(model, schedule, config.monl, *toy_batch(32, g), layout, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = eval_loss()
    assert end < 0.5 * start, (start, end)

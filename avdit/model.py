"""AVDiT: one transformer that denoises video and audio latents together, with a noise level
per token (Kim et al., NeurIPS 2024, with the deviations named below).

Sections: embedders, block, final layer, model, positional embeddings, size presets.

Deviations from the paper, on purpose:
- Positions: both modalities share one time axis in seconds (the midpoint of each latent frame),
  so audio and video of the same moment get the same time embedding and the model runs at
  durations other than its training window. Video adds a 2D spatial sinusoid, and each modality
  a learned embedding. The paper draws separate encodings per modality.
- The final layer is adaLN-modulated by the token's level, as in DiT (the paper's figure omits it).
- The MLP uses SiLU rather than DiT's tanh-GELU: on a CPU tanh-GELU alone took 5 % of a forward
  (4x exact GELU's time, 6x SiLU's), and the benchmark holds the forward to the matmul rate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from avdit.config import AVDiTConfig, ModelConfig
from avdit.layout import Layout


# --- embedders -------------------------------------------------------------------------------
def sinusoid(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(...,) float -> (..., dim) [cos | sin] features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    angles = values.float()[..., None] * freqs  # (..., half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


class LevelEmbedder(nn.Module):
    """Noise level in [0, 1] -> a width-D conditioning vector (sinusoid + MLP, as DiT's timestep)."""

    def __init__(self, width: int, frequencies: int):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        # levels (U,) -> (U, D); scaled to DDPM's 0..1000 so the sinusoid resolves small steps
        return self.mlp(sinusoid(levels * 1000.0, self.frequencies).to(self.mlp[0].weight.dtype))


# --- per-token modulation ------------------------------------------------------------------------
class TokenModulation:
    """Modulation vectors per latent frame, standing for one per token without copying them out:
    video (B, Tv, 1, K) broadcasts over each frame's h*w tokens, audio (B, Ta, K) is per token.
    Gathering a (B, L, 6D) tensor per block would move 6x the activations through memory."""

    def __init__(self, video: torch.Tensor, audio: torch.Tensor):
        self.video, self.audio = video, audio
        self.tokens_per_frame = None  # set from the activations when applied

    @property
    def num_video(self) -> int:
        return self.video.shape[1] * self.tokens_per_frame

    def chunk(self, n: int) -> list["TokenModulation"]:
        parts = []
        for v, a in zip(self.video.chunk(n, dim=-1), self.audio.chunk(n, dim=-1)):
            part = TokenModulation(v, a)
            part.tokens_per_frame = self.tokens_per_frame
            parts.append(part)
        return parts

    def dense(self) -> torch.Tensor:
        """(B, L, K): the same values written out per token (for inspection and tests)."""
        b, tv, _, k = self.video.shape
        video = self.video.expand(b, tv, self.tokens_per_frame, k).reshape(b, -1, k)
        return torch.cat([video, self.audio], dim=1)


def addcmul(a, b, c) -> torch.Tensor:
    """a + b * c over (B, L, D) activations, where any argument may be a TokenModulation."""
    mod = next(t for t in (a, b, c) if isinstance(t, TokenModulation))
    full = next(t for t in (a, b, c) if isinstance(t, torch.Tensor))
    lv = mod.num_video
    tv = mod.video.shape[1]

    def part(t, video: bool):
        if isinstance(t, TokenModulation):
            return t.video if video else t.audio
        return t[:, :lv].unflatten(1, (tv, -1)) if video else t[:, lv:]

    if torch.is_grad_enabled() and any(t.requires_grad for t in (full, mod.video)):
        # out= cannot be differentiated: training pays for one concatenation instead
        video = torch.addcmul(part(a, True), part(b, True), part(c, True)).flatten(1, 2)
        return torch.cat([video, torch.addcmul(part(a, False), part(b, False), part(c, False))], dim=1)
    out = torch.empty_like(full)
    for video in (True, False):
        torch.addcmul(part(a, video), part(b, video), part(c, video), out=part(out, video))
    return out


# --- transformer block ---------------------------------------------------------------------------
class Block(nn.Module):
    """adaLN-Zero transformer block whose shift, scale and gate come per token."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        hidden = int(width * mlp_ratio)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        # level embedding -> (shift1, scale1, gate1, shift2, scale2, gate2); zero-initialised
        self.modulation = nn.Linear(width, 6 * width)

    def modulation_table(self, level_cond: torch.Tensor) -> torch.Tensor:
        """(U, D) SiLU'd level embeddings -> (U, 6D) modulations, with 1 added to the scales."""
        table = self.modulation(level_cond)
        d = table.shape[-1] // 6
        # fold adaLN's (1 + scale) in here, once per distinct level rather than once per token
        table[:, d : 2 * d] += 1
        table[:, 4 * d : 5 * d] += 1
        return table

    def forward(self, x: torch.Tensor, modulation: "TokenModulation") -> torch.Tensor:
        # x (B, L, D); modulation: this block's (shift1, scale1, gate1, shift2, scale2, gate2) per frame
        b, length, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6)
        h = addcmul(shift1, F.layer_norm(x, (d,), eps=1e-6), scale1)  # (B, L, D)
        q, k, v = self.qkv(h).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        h = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, hd)
        h = self.proj(h.transpose(1, 2).reshape(b, length, d))  # (B, L, D)
        x = addcmul(x, gate1, h)
        h = addcmul(shift2, F.layer_norm(x, (d,), eps=1e-6), scale2)  # (B, L, D)
        h = self.fc2(F.silu(self.fc1(h), inplace=not torch.is_grad_enabled()))  # (B, L, D)
        return addcmul(x, gate2, h)


class FinalLayer(nn.Module):
    """Level-modulated LayerNorm, then one linear head per modality."""

    def __init__(self, width: int, video_out: int, audio_out: int):
        super().__init__()
        self.modulation = nn.Linear(width, 2 * width)
        self.video = nn.Linear(width, video_out)
        self.audio = nn.Linear(width, audio_out)

    def modulation_table(self, level_cond: torch.Tensor) -> torch.Tensor:
        table = self.modulation(level_cond)  # (U, 2D): shift, scale
        table[:, table.shape[-1] // 2 :] += 1
        return table

    def forward(self, x: torch.Tensor, modulation: "TokenModulation") -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale = modulation.chunk(2)
        x = addcmul(shift, F.layer_norm(x, (x.shape[-1],), eps=1e-6), scale)  # (B, L, D)
        return self.video(x[:, : modulation.num_video]), self.audio(x[:, modulation.num_video :])


# --- the model -----------------------------------------------------------------------------------
class AVDiT(nn.Module):
    """The denoiser: (noisy video latent, noisy audio latent, per-frame levels) -> network output.

    The output is the schedule's target (velocity, eps or v) for every latent element; see
    `avdit.schedule.Schedule.denoised` for the x0 it implies.
    """

    def __init__(self, config: AVDiTConfig):
        super().__init__()
        self.config = config
        m: ModelConfig = config.model
        d, p = m.width, m.video_patch
        self.width, self.patch = d, p
        self.video_channels = config.video_codec.latent_channels
        self.audio_channels = config.audio_codec.latent_channels
        self.video_embed = nn.Linear(self.video_channels * p * p, d)
        self.audio_embed = nn.Linear(self.audio_channels, d)
        self.modality_embed = nn.Parameter(torch.zeros(2, d))
        self.level_embed = LevelEmbedder(d, m.level_frequencies)
        self.blocks = nn.ModuleList(Block(d, m.heads, m.mlp_ratio) for _ in range(m.depth))
        self.final = FinalLayer(d, self.video_channels * p * p, self.audio_channels)
        self.gradient_checkpointing = False  # recompute block activations in backward (saves memory)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears; level MLP N(0, 0.02); modality embedding N(0, 0.02); and zeros for
        every modulation and both output heads, so each block starts as the identity
        (adaLN-Zero) and the model's first output is 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.level_embed.mlp[0], self.level_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        nn.init.normal_(self.modality_embed, std=0.02)
        for module in [b.modulation for b in self.blocks] + [self.final.modulation, self.final.video, self.final.audio]:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    # --- conditioning -------------------------------------------------------------------------
    def level_conditioning(self, video_levels: torch.Tensor, audio_levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct levels' SiLU'd embeddings (U, D) and each latent frame's row in them (B, Tv + Ta)."""
        levels = torch.cat([video_levels, audio_levels], dim=1).float()  # (B, Tv + Ta)
        distinct, index = torch.unique(levels, return_inverse=True)  # (U,), (B, Tv + Ta)
        return F.silu(self.level_embed(distinct)), index

    @staticmethod
    def gather(table: torch.Tensor, index: torch.Tensor, tv: int, tokens_per_frame: int) -> TokenModulation:
        """Rows of a (U, K) modulation table for every latent frame, as a TokenModulation."""
        # index_select, not table[index]: the backward of advanced indexing accumulates rows in parallel on the
        # CPU in no fixed order, so two identical training runs could differ in the last bit (seen in the tests)
        per_frame = table.index_select(0, index.flatten()).view(*index.shape, table.shape[1])  # (B, Tv + Ta, K)
        mod = TokenModulation(per_frame[:, :tv, None], per_frame[:, tv:])
        mod.tokens_per_frame = tokens_per_frame
        return mod

    def token_modulation(self, video_levels, audio_levels, tokens_per_frame: int, block: int = 0) -> torch.Tensor:
        """(B, L, 6D) modulation of every token in one block (for inspection and tests)."""
        cond, index = self.level_conditioning(video_levels, audio_levels)
        table = self.blocks[block].modulation_table(cond)
        return self.gather(table, index, video_levels.shape[1], tokens_per_frame).dense()

    def positions(self, layout_times: tuple[torch.Tensor, torch.Tensor], grid: tuple[int, int], device, dtype) -> torch.Tensor:
        """(Lv + La, D) fixed positional embedding: [time | row | column] sinusoids + modality."""
        d = self.width
        d_time = d // 2
        d_space = (d - d_time) // 2
        video_times, audio_times = (t.to(device) * self.config.model.time_scale for t in layout_times)
        gh, gw = grid
        rows = torch.arange(gh, device=device).repeat_interleave(gw).float()  # (h*w,)
        cols = torch.arange(gw, device=device).repeat(gh).float()
        space = torch.cat([sinusoid(rows, d_space), sinusoid(cols, d - d_time - d_space)], dim=-1)  # (h*w, D - d_time)
        video = torch.cat(
            [sinusoid(video_times, d_time).repeat_interleave(gh * gw, dim=0), space.repeat(len(video_times), 1)], dim=-1
        )  # (Tv*h*w, D)
        audio = F.pad(sinusoid(audio_times, d_time), (0, d - d_time))  # (Ta, D)
        pos = torch.cat([video + self.modality_embed[0].float(), audio + self.modality_embed[1].float()], dim=0)
        return pos.to(dtype)

    # --- forward --------------------------------------------------------------------------------
    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        video_levels: torch.Tensor,
        audio_levels: torch.Tensor,
        times: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, Cv, Tv, h, w), audio (B, Ca, Ta), levels (B, Tv) and (B, Ta) in [0, 1].

        `times` overrides each latent frame's position in seconds ((Tv,), (Ta,)); by default it
        comes from the checkpoint's layout. Returns outputs shaped like `video` and `audio`.
        """
        b, cv, tv, h, w = video.shape
        ta = audio.shape[2]
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"video latent is {h}x{w}; it must be a multiple of the patch size {p}")
        if cv != self.video_channels or audio.shape[1] != self.audio_channels:
            raise ValueError(
                f"latents have {cv} video and {audio.shape[1]} audio channels; "
                f"this model takes {self.video_channels} and {self.audio_channels}"
            )
        if video_levels.shape != (b, tv) or audio_levels.shape != (b, ta):
            raise ValueError(
                f"levels have shapes {tuple(video_levels.shape)} and {tuple(audio_levels.shape)}; expected ({b}, {tv}) and ({b}, {ta})"
            )
        dtype = self.video_embed.weight.dtype
        gh, gw = h // p, w // p
        if times is None:
            times = latent_times(self.config, tv, ta)
        tokens_v = rearrange(video.to(dtype), "b c t (gh p) (gw q) -> b (t gh gw) (c p q)", p=p, q=p)  # (B, Lv, Cv*p*p)
        tokens_a = rearrange(audio.to(dtype), "b c t -> b t c")  # (B, La, Ca)
        x = torch.cat([self.video_embed(tokens_v), self.audio_embed(tokens_a)], dim=1)  # (B, L, D)
        x = x + self.positions(times, (gh, gw), x.device, dtype)  # (B, L, D)
        cond, index = self.level_conditioning(video_levels, audio_levels)  # (U, D), (B, Tv + Ta)
        for block in self.blocks:
            modulation = self.gather(block.modulation_table(cond), index, tv, gh * gw)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, modulation, use_reentrant=False)  # (B, L, D)
            else:
                x = block(x, modulation)  # (B, L, D)
        out_v, out_a = self.final(x, self.gather(self.final.modulation_table(cond), index, tv, gh * gw))
        out_v = rearrange(out_v, "b (t gh gw) (c p q) -> b c t (gh p) (gw q)", t=tv, gh=gh, gw=gw, p=p, q=p)
        return out_v, rearrange(out_a, "b t c -> b c t")

    def flops_per_forward(self, batch: int, video_shape: tuple[int, int, int], audio_frames: int) -> int:
        """FLOPs of one forward (2 per multiply-add of every matmul and of attention)."""
        tv, h, w = video_shape
        lv = tv * (h // self.patch) * (w // self.patch)
        length = lv + audio_frames
        d = self.width
        hidden = self.blocks[0].fc1.out_features
        per_token_block = 2 * (3 * d * d + d * d + 2 * d * hidden)
        attention = 2 * 2 * length * length * d  # QK^T and AV
        blocks = len(self.blocks) * (length * per_token_block + attention)
        embed = 2 * lv * self.video_embed.in_features * d + 2 * audio_frames * self.audio_channels * d
        head = 2 * lv * d * self.final.video.out_features + 2 * audio_frames * d * self.audio_channels
        return batch * (blocks + embed + head)


def latent_times(config: AVDiTConfig, video_latent_frames: int, audio_latent_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint in seconds of each latent frame, for latents of the given lengths."""
    s = config.video_codec.temporal_stride
    frames = 1 + s * (video_latent_frames - 1) if config.video_codec.causal else s * video_latent_frames
    layout = Layout.from_config(config, num_frames=frames)
    audio = torch.arange(audio_latent_frames, dtype=torch.float64)
    audio_times = (audio + 0.5) * config.audio_codec.hop / config.layout.sample_rate
    return layout.video_times.float(), audio_times.float()


# --- size presets ---------------------------------------------------------------------------------
PRESETS = {
    "tiny": dict(width=64, depth=2, heads=2),  # tests
    "mini": dict(width=128, depth=4, heads=1, video_patch=2),  # 1.3 M: the models `python -m avdit eval` compares
    "demo": dict(width=256, depth=6, heads=2, video_patch=2),  # 7.4 M: the shipped model, trained on one CPU core (2.2 s per step of 32)
    "small": dict(width=384, depth=8, heads=3),  # about 21 M parameters; head dim 128 runs attention ~15 % faster on CPU than 64
    "paper": dict(width=1024, depth=24, heads=16),  # DiT-L sized
}


def model_config(preset: str, **overrides) -> ModelConfig:
    """The ModelConfig of a named size preset."""
    if preset not in PRESETS:
        raise ValueError(f"model preset is {preset!r}; expected one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[preset], **overrides})

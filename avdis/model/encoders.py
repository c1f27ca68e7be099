"""Audio and visual encoders: a convolutional stem, then a small transformer, masked mean-pooled.

Both take padded windows with masks (see `avdis.data.stream.collate`) and return one
vector per clip. Sizes come from the preset (`avdis.model.multitask.PRESETS`). No batch
norm anywhere: padding rows (valid=False) must not change what real rows compute.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of `x [B, T, D]` where `mask [B, T]` is True; zero for empty rows."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


class _Temporal(nn.Module):
    """Transformer layers over time with a learned position embedding."""

    def __init__(self, width: int, depth: int, heads: int, ffn: int, max_len: int, dropout: float):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        layer = nn.TransformerEncoderLayer(width, heads, ffn * width, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False) if depth else None
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.pos[:, : x.shape[1]]
        if self.layers is not None:
            # an all-padding row would make attention NaN: let it attend to its first frame
            safe = mask.clone()
            safe[:, 0] |= ~mask.any(1)
            x = self.layers(x, src_key_padding_mask=~safe)
        return masked_mean(self.norm(x), mask)


class AudioEncoder(nn.Module):
    """Log-mel frames [B, T, n_mels] -> [B, width]; the stem downsamples time by 4."""

    def __init__(self, n_mels: int, frames: int, width: int, depth: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
        )
        self.temporal = _Temporal(width, depth, heads, ffn, frames // 4 + 2, dropout)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = ((mel + 7.0) / 4.0).to(self.stem[0].weight.dtype)  # fixed scale: loudness is a real cue
        x = self.stem(x.transpose(1, 2)).transpose(1, 2)
        mask = mask[:, ::4][:, : x.shape[1]]
        return self.temporal(x, mask)


class VisualEncoder(nn.Module):
    """Face crops [B, F, S, S, 3] uint8 -> [B, width]; a CNN per frame, then time."""

    def __init__(self, frames: int, width: int, depth: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        c1, c2 = max(8, width // 4), max(16, width // 2)
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c2, width, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.temporal = _Temporal(width, depth, heads, ffn, frames, dropout)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, f = video.shape[:2]
        x = video.flatten(0, 1).permute(0, 3, 1, 2).to(self.stem[0].weight.dtype) / 255.0 - 0.5
        x = self.stem(x).flatten(1).view(b, f, -1)
        return self.temporal(x, mask)

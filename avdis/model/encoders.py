"""Audio and visual encoders: a convolutional stem, then a small transformer, masked mean-pooled.

Both take padded windows with masks (see `avdis.data.stream.collate`) and return one
vector per clip. Sizes come from the preset (`avdis.model.multitask.PRESET_SIZES`). No batch
norm anywhere: padding rows (valid=False) must not change what real rows compute.

The audio encoder adds prosodic contour features (`ContourFeatures`): much of the emotion
in speech (arousal above all) lives in how the voice moves over time (syllable rate,
tremor, melody) rather than in its average spectrum. A conv stem with a 130 ms receptive
field and a mean-pooled transformer learns such rates only after many epochs (at chance
for 12 epochs on a corpus whose emotion is only in its dynamics); the modulation spectrum
and the slow shape of a few energy and pitch contours make them readable from the start,
as the functionals of eGeMAPS-style paralinguistic features do.
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


class ContourFeatures(nn.Module):
    """Scaled log-mel frames [B, T, n_mels] -> [B, width] from the clip's prosodic contours.

    Contours: the log energy of `BANDS` mel bands and the spectral centroid (which follows
    pitch and formants), frame by frame. Per contour, over the valid frames (mean removed):
    - the modulation spectrum, |FFT| bins 1..`RATES` of the Hann-windowed contour (at a 10 ms
      hop and a 1 s window, 1..16 Hz: syllable rate, tremor), normalised to sum 1 so the
      level (loudness, a speaker cue) does not scale it, as log;
    - the contour's shape: its projections on the first `SHAPES` cosines over the clip
      (rise, fall, rise-fall ...).
    A LayerNorm and a small MLP map them to the encoder width.
    """

    BANDS, RATES, SHAPES = 4, 16, 4

    def __init__(self, width: int):
        super().__init__()
        n = (self.BANDS + 1) * (self.RATES + self.SHAPES)
        self.net = nn.Sequential(nn.LayerNorm(n), nn.Linear(n, width), nn.GELU(), nn.Linear(width, width))

    def describe(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The contours' modulation spectra (log shares, [B, RATES, BANDS + 1] flattened), then their shapes."""
        w = mask.to(x.dtype).unsqueeze(-1)  # [B, T, 1]
        n = w.sum(1, keepdim=True).clamp(min=1.0)
        bands = torch.stack([part.mean(-1) for part in x.tensor_split(self.BANDS, dim=-1)], -1)
        # the mel positions made here in x's dtype: a buffer is cast with the weights (bf16 under DeepSpeed's engine)
        mel_pos = torch.linspace(0.0, 1.0, x.shape[-1], device=x.device, dtype=x.dtype)
        centroid = (torch.softmax(4.0 * x, -1) * mel_pos).sum(-1, keepdim=True) * 8.0
        c = torch.cat([bands, centroid], -1)
        c = (c - (c * w).sum(1, keepdim=True) / n) * w
        # a Hann window over the clip's own frames (the window's periodic form, as torch.hann_window): one over the
        # padded length cut a shorter clip off at its peak, and the edge spread its spectrum by the clip's length
        k = torch.cumsum(w, 1)  # 1..n over the valid frames
        window = torch.sin(torch.pi * (k - 1.0) / n) ** 2 * w
        spec = torch.fft.rfft(c * window, dim=1).abs()[:, 1 : self.RATES + 1]
        if spec.shape[1] < self.RATES:  # windows shorter than 2 * RATES frames
            spec = nn.functional.pad(spec, (0, 0, 0, self.RATES - spec.shape[1]))
        spec = torch.log(spec / (spec.sum(1, keepdim=True) + 1e-4) + 1e-3)
        pos = (k - 0.5) / n  # 0..1 over the valid frames
        basis = torch.cat([torch.cos(torch.pi * j * pos) for j in range(1, self.SHAPES + 1)], -1) * w
        shape = torch.einsum("bts,btk->bsk", basis, c) / n
        return torch.cat([spec.flatten(1), shape.flatten(1)], -1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # the description in float32 whatever the weights and autocast: the FFT takes no bf16 (DeepSpeed's bf16
        # engine, the GPU default, failed here), and bf16 counts frames past 256 in steps of 2 or more
        with torch.autocast(x.device.type, enabled=False):
            described = self.describe(x.float(), mask)
        return self.net(described.to(self.net[1].weight.dtype))


class AudioEncoder(nn.Module):
    """Log-mel frames [B, T, n_mels] -> [B, width]; the stem downsamples time by 4.

    The transformer's pooled output plus, with `contours`, the `ContourFeatures` of the clip.
    """

    def __init__(self, n_mels: int, frames: int, width: int, depth: int, heads: int, ffn: int, dropout: float,
                 contours: bool = True):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
        )
        self.temporal = _Temporal(width, depth, heads, ffn, frames // 4 + 2, dropout)
        self.contours = ContourFeatures(width) if contours else None

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scaled = (mel + 7.0) / 4.0  # fixed scale: loudness is a real cue
        # Padding is zeroed before each strided conv, as the conv's own padding is at the clip's end: the frames next
        # to it read the padding (1.75 once scaled, then GELU(bias)), so a clip's embedding depended on frames its
        # mask drops and every short clip carried a loud edge where it ended, a cue to its length.
        x = (scaled * mask[..., None]).to(self.stem[0].weight.dtype).transpose(1, 2)
        x = self.stem[1](self.stem[0](x))
        x = x * mask[:, ::2][:, None, : x.shape[2]].to(x.dtype)
        h = self.stem[3](self.stem[2](x)).transpose(1, 2)
        out = self.temporal(h, mask[:, ::4][:, : h.shape[1]])
        # the contours from the float32 frames: rounded to bf16 weights' dtype, they moved by up to 1/128 of their level
        return out if self.contours is None else out + self.contours(scaled, mask)


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

"""The multitask audio-visual model: encoders -> fusion -> z_emo and z_id, each with its head.

`z_emo` and `z_id` are linear projections of one fused representation: multitask
training shapes that shared representation for both tasks, which is how identity gets
into `z_emo` (and what the methods in `avdis.model.disentangle` fight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avdis.config import Config, FeatureConfig, ModelConfig
from avdis.model.encoders import AudioEncoder, VisualEncoder


@dataclass(frozen=True)
class Preset:
    width: int  # encoder width
    depth: int  # transformer layers per encoder
    heads: int
    ffn: int  # feed-forward expansion
    fuse: int  # fused representation width


PRESET_SIZES: dict[str, Preset] = {  # keyed by config.PRESETS
    "tiny": Preset(width=32, depth=1, heads=2, ffn=2, fuse=64),  # CPU tests: a run in well under a minute
    "base": Preset(width=256, depth=4, heads=4, ffn=4, fuse=256),
    "large": Preset(width=1024, depth=12, heads=16, ffn=4, fuse=1024),  # ~0.3 B parameters: ZeRO territory
}

MODALITY_INPUTS = {"audio": ("audio",), "visual": ("visual",), "av": ("audio", "visual")}


class AVModel(nn.Module):
    def __init__(self, cfg: ModelConfig, feat: FeatureConfig, n_emotions: int, n_speakers: int):
        super().__init__()
        p = PRESET_SIZES[cfg.preset]
        self.modalities = MODALITY_INPUTS[cfg.modality]
        self.audio = (AudioEncoder(feat.n_mels, feat.audio_frames, p.width, p.depth, p.heads, p.ffn, cfg.dropout,
                                   contours=cfg.contours)
                      if "audio" in self.modalities else None)
        self.visual = (VisualEncoder(feat.video_frames, p.width, p.depth, p.heads, p.ffn, cfg.dropout)
                       if "visual" in self.modalities else None)
        self.fusion = nn.Sequential(
            nn.Linear(p.width * len(self.modalities), p.fuse), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(p.fuse, p.fuse), nn.GELU(),
        )
        self.to_emo = nn.Linear(p.fuse, cfg.emb_dim)
        self.to_id = nn.Linear(p.fuse, cfg.emb_dim)
        self.emo_head = nn.Linear(cfg.emb_dim, n_emotions)
        self.id_head = nn.Linear(cfg.emb_dim, n_speakers)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = []
        if self.audio is not None:
            parts.append(self.audio(batch["audio"], batch["audio_mask"]))
        if self.visual is not None:
            parts.append(self.visual(batch["video"], batch["video_mask"]))
        h = self.fusion(torch.cat(parts, dim=-1))
        z_emo, z_id = self.to_emo(h), self.to_id(h)
        return {"z_emo": z_emo, "z_id": z_id, "emo_logits": self.emo_head(z_emo), "id_logits": self.id_head(z_id)}


def build_model(cfg: ModelConfig, feat: FeatureConfig, n_emotions: int, n_speakers: int) -> AVModel:
    return AVModel(cfg, feat, n_emotions, n_speakers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


EXAMPLE_HEADS = (8, 24)  # emotions and speakers `describe_presets` counts heads for without shards (RAVDESS's)
# the data.features each input's shapes are made of (`AudioEncoder`, `VisualEncoder`): the others are pooled away
SHAPING_FEATURES = {"audio": ("n_mels", "hop_ms", "window_s"), "visual": ("window_s", "fps")}


def shaping_features(modality: str) -> tuple[str, ...]:
    """The data.features that decide the parameter counts of a model of `modality`, in a fixed order."""
    return tuple(dict.fromkeys(k for m in MODALITY_INPUTS[modality] for k in SHAPING_FEATURES[m]))


def describe_presets(cfg: Config, n_emotions: int = EXAMPLE_HEADS[0], n_speakers: int = EXAMPLE_HEADS[1],
                     shards: str | None = None) -> str:
    """A table of the presets with parameter counts at cfg's data.features and modality, its header saying whose
    features and heads they count: those of `shards` (the shards at data.shards, say: `avdis model` passes their
    features in cfg and their emotions and speakers, as a run on them has, `loop.run`), else the config's features
    and an example's heads (RAVDESS's, by default), said as one. The table named the example's heads as if they were
    the corpus's, and counted them, and the config's features, even for a config whose shards have their own."""
    feat = cfg.data.features
    sizes = ", ".join(f"{k}={getattr(feat, k):g}" for k in shaping_features(cfg.model.modality))
    heads = (f"{sizes} and heads for the {n_emotions} emotions and {n_speakers} speakers of {shards}" if shards else
             f"the config's {sizes}, heads for an example {n_emotions} emotions and {n_speakers} speakers: a run's "
             "follow its shards")
    lines = [f"{'preset':<8}{'width':>7}{'depth':>7}{'params':>16}   (modality={cfg.model.modality}, "
             f"emb_dim={cfg.model.emb_dim}, {heads}, emb_dim+1 parameters each)"]
    for name, p in PRESET_SIZES.items():
        with torch.device("meta"):
            model = AVModel(cfg.model.model_copy(update={"preset": name}), feat, n_emotions, n_speakers)
        lines.append(f"{name:<8}{p.width:>7}{p.depth:>7}{count_parameters(model):>16,}")
    return "\n".join(lines)

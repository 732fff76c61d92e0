"""Vision encoder: any Hugging Face backbone that yields patch tokens (DINOv2 by default).

CapeLLM (Sec. 3.1) feeds the LLM the encoder's patch features of the 224 px crop, projected to the
LLM's width. We read `last_hidden_state` and, by default, keep only the patch tokens: the last
`grid_side(S)**2` tokens, which drops the CLS token and any register tokens (DINOv2 with
registers) without knowing each model's layout. `features="all"` keeps them.

The patch grid depends on the architecture: a plain ViT (DINOv2) has one token per patch,
(S / patch)^2; a hierarchical encoder (Hiera) pools its tokens stage by stage and ends with
(S / patch_stride / query_stride^num_query_pool)^2, with no CLS token (Table 6's Hiera row:
7 x 7 = 49 tokens at 224 px for the released configurations, not 256).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from capellm.config import VisionConfig, resolve_model_path


def build_vision_backbone(cfg: VisionConfig) -> nn.Module:
    if cfg.name_or_path == "random":
        rc = dict(cfg.random_config)
        sincos = rc.pop("sincos_position_scale", None)
        hf_cfg = AutoConfig.for_model(rc.pop("model_type"), **rc)
        model = AutoModel.from_config(hf_cfg)
        if sincos is not None:
            init_position_embeddings_2d(model, float(sincos))
        return model
    return AutoModel.from_pretrained(resolve_model_path(cfg.name_or_path))


def init_position_embeddings_2d(model: nn.Module, scale: float = 1.0) -> None:
    """Give a randomly initialised ViT 2-D sine-cosine position embeddings (as in MAE), `scale`
    times the unit table. Opt in with `random_config: {sincos_position_scale: S}`.

    Hugging Face initialises DINOv2's learned position embeddings with std 0.02, about 1/30 of the
    features of a random patch embedding, so the tokens of a random encoder say little about where
    in the crop they come from. Measured on a toy task (a white square on noise, 300 steps): a
    linear probe on the MEAN of the demo encoder's tokens does not learn the square's position with
    the default embeddings and does (RMS error 0.04 of the side) with sine-cosine ones at scale 4.
    Deterministic: draws nothing from the random number generator. Models without a
    `position_embeddings` parameter of shape [1, 1 + rows * cols, D] are left as they are.
    """
    pe = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    if not isinstance(pe, nn.Parameter) or pe.dim() != 3:
        return
    n, d = pe.shape[1] - 1, pe.shape[2]
    side = math.isqrt(n)
    if side * side != n or d % 4:
        return
    with torch.no_grad():
        pe[0, 0].zero_()                                             # the CLS token's slot
        pe[0, 1:] = (scale * sincos_2d(side, d)).to(pe.dtype)


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """[side*side, dim] float64: sine and cosine of each patch's row, then of its column, over
    dim/4 frequencies each (patches in row-major order; dim divisible by 4)."""
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                                indexing="ij")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None] * freqs[None]                       # [side*side, dim/4]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)


def _first(v) -> int:
    return v if isinstance(v, int) else int(v[0])


class VisionEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, features: str = "patch"):
        super().__init__()
        self.backbone = backbone
        self.features = features
        c = backbone.config
        self.hidden_size = c.hidden_size
        self.patch_size = _first(c.patch_size)
        self.hierarchical = hasattr(c, "query_stride")       # Hiera: tokens pooled stage by stage

    def grid_side(self, image_size: int) -> int:
        """Side of the grid of patch tokens the encoder yields for an image_size x image_size crop."""
        c = self.backbone.config
        if self.hierarchical:
            return image_size // _first(c.patch_stride) // _first(c.query_stride) ** c.num_query_pool
        return image_size // self.patch_size

    def num_tokens(self, image_size: int) -> int:
        n = self.grid_side(image_size) ** 2
        if self.features == "all" and not self.hierarchical:
            n += 1 + getattr(self.backbone.config, "num_register_tokens", 0)
        return n

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> tokens [B, N, D_vision]."""
        h = self.backbone(pixel_values=pixel_values).last_hidden_state  # [B, prefix + N, D]
        if self.features == "patch":
            h = h[:, -self.grid_side(pixel_values.shape[-1]) ** 2:]
        return h

"""Vision encoder: any Hugging Face backbone that yields patch tokens (DINOv2 by default).

CapeLLM (Sec. 3.1) feeds the LLM the encoder's patch features of the 224 px crop, projected to the
LLM's width. We read `last_hidden_state` and, by default, keep only the patch tokens: the last
(H/p)*(W/p) tokens, which drops the CLS token and any register tokens (DINOv2 with registers)
without knowing each model's layout. `features="all"` keeps them.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from capellm.config import VisionConfig, resolve_model_path


def build_vision_backbone(cfg: VisionConfig) -> nn.Module:
    if cfg.name_or_path == "random":
        rc = dict(cfg.random_config)
        hf_cfg = AutoConfig.for_model(rc.pop("model_type"), **rc)
        return AutoModel.from_config(hf_cfg)
    return AutoModel.from_pretrained(resolve_model_path(cfg.name_or_path))


class VisionEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, features: str = "patch"):
        super().__init__()
        self.backbone = backbone
        self.features = features
        c = backbone.config
        self.hidden_size = c.hidden_size
        self.patch_size = c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0]

    def num_tokens(self, image_size: int) -> int:
        n = (image_size // self.patch_size) ** 2
        if self.features == "all":
            n += 1 + getattr(self.backbone.config, "num_register_tokens", 0)
        return n

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> tokens [B, N, D_vision]."""
        h = self.backbone(pixel_values=pixel_values).last_hidden_state  # [B, prefix + N, D]
        if self.features == "patch":
            n = (pixel_values.shape[-2] // self.patch_size) * (pixel_values.shape[-1] // self.patch_size)
            h = h[:, -n:]
        return h

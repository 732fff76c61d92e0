"""Projector: one linear layer from the vision encoder's width to the LLM's (CapeLLM Sec. 3.1,
Eq. 2), as in LLaVA-1 and the official code."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.proj = nn.Linear(vision_dim, llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D_vision] -> [B, N, D_llm]"""
        return self.proj(x)

"""LoRA: low-rank adapters on chosen linear layers (Hu et al. 2021), as CapeLLM applies them.

CapeLLM puts rank-8 adapters on the query and value projections of both the vision encoder and
the LLM. We implement LoRA here rather than through `peft` because it is small, because the
adapters must live in our own checkpoint format (safetensors of trainable tensors only), and so
that any Hugging Face module tree works the same way: targets are matched by the last component
of a module's name (`q_proj`, `v_proj`, `query`, `value`, ...).

    y = W x + (alpha / r) * B(A(dropout(x)))      A: [r, in], B: [out, r], B initialised to 0

so a freshly wrapped model computes exactly what the base model computes.

Fused projections: encoders that compute query, key and value in one linear layer (Hiera's
`qkv`, output [q; k; v]) get one rank-r adapter on the query third and one on the value third
(targets named in `FUSED_QKV`), so "LoRA on query and value" means the same on every encoder.
The two adapters are stored as one A [2r, in] and one B [out, 2r] whose blocks outside q and v are
held at zero by a fixed mask.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from capellm.config import LoRAConfig


FUSED_QKV = ("qkv",)   # module names of fused [q; k; v] projections


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (on `parts` of a fused output)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float,
                 parts: tuple[int, ...] | None = None, n_parts: int = 1):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        k = len(parts) if parts else 1
        # adapters stay float32 whatever the base holds (bf16, or packed 4-bit integers): they are
        # the trained weights, and AdamW on bf16 parameters loses small updates
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(k * rank, base.in_features, dtype=torch.float32, device=dev))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, k * rank, dtype=torch.float32, device=dev))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.register_buffer("mask", None, persistent=False)
        if parts:
            if base.out_features % n_parts:
                raise ValueError(f"a fused layer of {base.out_features} outputs is not {n_parts} equal parts")
            seg = base.out_features // n_parts
            mask = torch.zeros(base.out_features, k * rank, device=dev)
            for j, p in enumerate(parts):
                mask[p * seg:(p + 1) * seg, j * rank:(j + 1) * rank] = 1
            self.register_buffer("mask", mask, persistent=False)   # [out, k r]: each adapter's rows

    def _b(self) -> torch.Tensor:
        return self.lora_B if self.mask is None else self.lora_B * self.mask

    @property
    def weight(self) -> torch.Tensor:  # some HF code reads .weight of projections (dtype checks)
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        a = self.lora_A.to(x.dtype)
        b = self._b().to(x.dtype)
        return out + (self.dropout(x) @ a.t() @ b.t()) * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        """Fold B @ A into the base weight (for fast inference); `unmerge` undoes it."""
        if not self.merged:
            if not self.base.weight.is_floating_point():
                raise TypeError("cannot merge LoRA into quantised base weights; keep the adapters unmerged")
            self.base.weight += (self._b() @ self.lora_A * self.scale).to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= (self._b() @ self.lora_A * self.scale).to(self.base.weight.dtype)
            self.merged = False


def apply_lora(module: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Wrap every nn.Linear whose name ends with one of cfg.targets; returns the wrapped names.

    Raises if nothing matched: a typo in `targets` must not silently train nothing.
    """
    wrapped = []
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Linear) and name.split(".")[-1] in cfg.targets:
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            fused = dict(parts=(0, 2), n_parts=3) if attr in FUSED_QKV else {}      # q and v of [q; k; v]
            setattr(parent, attr, LoRALinear(child, cfg.rank, cfg.alpha, cfg.dropout, **fused))
            wrapped.append(name)
    if not wrapped:
        linear = sorted({n.split(".")[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {list(cfg.targets)} match no linear layer of "
                         f"{type(module).__name__}; its linear layers are named {linear}")
    return wrapped


def lora_modules(module: nn.Module) -> list[LoRALinear]:
    return [m for m in module.modules() if isinstance(m, LoRALinear)]


def set_merged(module: nn.Module, merged: bool) -> None:
    for m in lora_modules(module):
        m.merge() if merged else m.unmerge()

"""LoRA adapters (Hu et al. 2021) through PEFT, as CapeLLM applies them.

CapeLLM puts rank-8 adapters on the query and value projections of both the vision encoder and
the LLM. The adapters are PEFT's (`peft.inject_adapter_in_model` with a `peft.LoraConfig`), so
everything PEFT offers applies: DoRA and rsLoRA by config (`lora.use_dora`, `lora.use_rslora`),
4-bit base weights through bitsandbytes, merging, and the LLM adapter saved as a standard PEFT
adapter folder that `PeftModel.from_pretrained` loads (capellm.model.capellm). Targets are
matched by the last component of a module's name (`q_proj`, `v_proj`, `query`, `value`, ...),
PEFT's suffix rule.

    y = W x + (alpha / r) * B(A(dropout(x)))      A: [r, in], B: [out, r], B initialised to 0

so a freshly wrapped model computes exactly what the base model computes. The adapters are held
in float32 whatever the base holds (bf16, or packed 4-bit integers): they are the trained
weights, and AdamW on bf16 parameters loses small updates.

Fused projections: encoders that compute query, key and value in one linear layer (Hiera's
`qkv`, output [q; k; v]) have that layer split into `query`, `key` and `value` layers of the
same weights first (`SplitQKV`, targets named in `FUSED_QKV`), so "LoRA on query and value" is
PEFT's plain LoRA on the query and value thirds and means the same on every encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from capellm.config import LoRAConfig

FUSED_QKV = ("qkv",)   # module names of fused [q; k; v] projections
ADAPTER = "default"    # PEFT's adapter name: one adapter per component


class SplitQKV(nn.Module):
    """A fused [q; k; v] projection as three linear layers of its weights, outputs concatenated."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        if fused.out_features % 3:
            raise ValueError(f"a fused qkv layer of {fused.out_features} outputs is not three equal parts")
        d = fused.out_features // 3
        for i, part in enumerate(("query", "key", "value")):
            lin = nn.Linear(fused.in_features, d, bias=fused.bias is not None, device=fused.weight.device,
                            dtype=fused.weight.dtype)
            with torch.no_grad():
                lin.weight.copy_(fused.weight[i * d:(i + 1) * d])
                if fused.bias is not None:
                    lin.bias.copy_(fused.bias[i * d:(i + 1) * d])
            lin.weight.requires_grad_(fused.weight.requires_grad)
            if lin.bias is not None:
                lin.bias.requires_grad_(fused.bias.requires_grad)
            setattr(self, part, lin)
        self.in_features, self.out_features = fused.in_features, fused.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1)


def split_fused_qkv(module: nn.Module) -> list[str]:
    """Replace every fused qkv linear layer of `module` by a SplitQKV; returns their names."""
    done = []
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Linear) and name.split(".")[-1] in FUSED_QKV:
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, SplitQKV(child))
            done.append(name)
    return done


def peft_config(cfg: LoRAConfig, targets: list[str]):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                          use_dora=cfg.use_dora, use_rslora=cfg.use_rslora, bias="none")


def apply_lora(module: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Add PEFT LoRA adapters to every nn.Linear whose name ends with one of cfg.targets (fused
    qkv layers: to their query and value thirds); returns the wrapped layers' names.

    Raises if nothing matched: a typo in `targets` must not silently train nothing.
    """
    from peft import inject_adapter_in_model

    targets = [t for t in cfg.targets if t not in FUSED_QKV]
    if any(t in FUSED_QKV for t in cfg.targets) and split_fused_qkv(module):
        targets += [t for t in ("query", "value") if t not in targets]
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]
    if not names:
        linear = sorted({n.split(".")[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {list(cfg.targets)} match no linear layer of "
                         f"{type(module).__name__}; its linear layers are named {linear}")
    trainable = {n: p.requires_grad for n, p in module.named_parameters()}
    inject_adapter_in_model(peft_config(cfg, sorted({n.split('.')[-1] for n in names})), module, ADAPTER)
    for layer in lora_modules(module):             # PEFT makes them in the base's dtype
        for part in (layer.lora_A, layer.lora_B, layer.lora_magnitude_vector):
            if ADAPTER in part and part[ADAPTER].weight.dtype in (torch.bfloat16, torch.float16):
                part[ADAPTER].float()
    # PEFT freezes everything but the adapters of `module`; the caller decided what else trains
    for n, p in module.named_parameters():
        before = n.replace(".base_layer.", ".")
        if ".lora_" not in n and before in trainable:
            p.requires_grad_(trainable[before])
    return names


def lora_modules(module: nn.Module) -> list[nn.Module]:
    """The LoRA layers of `module` (PEFT's LoraLayer)."""
    from peft.tuners.lora import LoraLayer

    return [m for m in module.modules() if isinstance(m, LoraLayer)]


def set_merged(module: nn.Module, merged: bool) -> None:
    """Fold every adapter into its base weight (fast inference) or take it out again."""
    for m in lora_modules(module):
        if merged and not m.merged:
            m.merge()
        elif not merged and m.merged:
            m.unmerge()

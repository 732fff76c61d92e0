"""Attention paths for the CPU: grouped-query attention without KV copies for decoding, and plain
matrix-product attention for bf16 training.

Decoding. When more than one token is fed with a padding mask, transformers' SDPA path copies the
whole KV cache once per query head (`repeat_kv`). On CPU the engine runs those calls through SDPA's
own GQA (`enable_gqa=True`) instead: same arithmetic, no copy (docs/performance.md: 13-14 % of the
engine's time with SmolLM2). On CUDA the model's attention is used unchanged.

Training. Under bf16 autocast on the CPU, torch's fused SDPA kernel is slow in bf16 (its backward
most) and its math kernel upcasts, masks fully masked rows and checks them on every call; for the
short sequences of CPU training both cost more than the attention itself. `training_attention`
runs the model's SDPA layers as two matrix products around a float32 softmax, as transformers'
eager attention computes it (docs/performance.md: the demo's training step).

Leans on transformers internals: the attention registry (`AttentionInterface`,
`AttentionMaskInterface`, `masking_utils.ALL_MASK_ATTENTION_FUNCTIONS`) and the signature of
`integrations.sdpa_attention.sdpa_attention_forward`. Written and tested against transformers
5.24; where the registry cannot be imported, the model's own attention is kept.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

_GQA_SDPA = "capellm_sdpa_gqa"
USE_GQA_KERNEL = True      # switch for measuring its share (benchmarks/decode.py --ablations)


def _gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, except that a masked multi-token call with grouped KV heads
    uses the kernel's GQA instead of repeating the KV cache per query head."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (getattr(module, "num_key_value_groups", 1) > 1 and query.shape[2] > 1 and attention_mask is not None
            and attention_mask.dtype == torch.bool and dropout == 0.0 and kwargs.get("position_bias") is None
            and kwargs.get("softcap") is None):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                             enable_gqa=True)                      # [B, H, T, d]
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def _matmul_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    """softmax(q k^T * scale + mask) v as two matrix products, the softmax in float32 (query, key,
    value [B, H, T, d], KV heads repeated for grouped queries); returns [B, T, H, d], None."""
    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        raise ValueError("capellm's CPU training attention supports neither softcap nor a position bias")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale                  # [B, H, T, S]
    if attention_mask is None:
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
        if causal and query.shape[2] > 1:
            t, s = query.shape[2], key.shape[2]
            attention_mask = torch.ones(t, s, dtype=torch.bool, device=scores.device).tril(s - t)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:    # the dtype's minimum, as eager: a fully masked row stays finite
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = scores.softmax(-1, dtype=torch.float32).to(value.dtype)
    if dropout > 0.0 and module.training:
        weights = F.dropout(weights, p=dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


_MATMUL = "capellm_matmul"
_OWN_ATTENTION = {_GQA_SDPA: _gqa_sdpa, _MATMUL: _matmul_attention}


def _register(name: str) -> bool:
    """Register one of ours under `name`, with SDPA's masks; False where transformers has no registry."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:                                    # older transformers: keep its attention
        return False
    if name not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(name, _OWN_ATTENTION[name])
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return True


class _SdpaReplaced:
    """While entered, run every model whose config said "sdpa" when this was made through our
    attention `name`. Made once and entered at every step (the models are looked up only once)."""

    def __init__(self, configs: list, name: str):
        swapped = [c for c in configs if getattr(c, "_attn_implementation", None) == "sdpa"]
        self.swapped = swapped if swapped and _register(name) else []
        self.name = name

    def __enter__(self):
        for c in self.swapped:
            c._attn_implementation = self.name
        return self

    def __exit__(self, *exc):
        for c in self.swapped:
            c._attn_implementation = "sdpa"
        return False


def decoding_attention(llm: nn.Module, device: torch.device):
    """A context: on CPU it runs the LLM's SDPA attention through `_gqa_sdpa` (for decoding)."""
    if not USE_GQA_KERNEL or device.type != "cpu":
        return contextlib.nullcontext()
    return _SdpaReplaced([llm.config], _GQA_SDPA)


def training_attention(model: nn.Module, device: torch.device, mixed_precision: str):
    """A context, reusable across steps: on the CPU under bf16 autocast it runs every SDPA model
    inside `model` (a CapeLLM's LLM and vision backbone, or an encoder alone) as
    `_matmul_attention` (module docstring); elsewhere their own attention."""
    if device.type != "cpu" or mixed_precision != "bf16":
        return contextlib.nullcontext()
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None
               and hasattr(c, "_attn_implementation")}
    return _SdpaReplaced(list(configs.values()), _MATMUL)

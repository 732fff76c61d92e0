"""Grouped-query attention without KV copies, for decoding on CPU.

When more than one token is fed with a padding mask, transformers' SDPA path copies the whole KV
cache once per query head (`repeat_kv`). On CPU the engine runs those calls through SDPA's own
GQA (`enable_gqa=True`) instead: same arithmetic, no copy (docs/performance.md: 13-14 % of the
engine's time with SmolLM2). On CUDA the model's attention is used unchanged.

Leans on transformers internals: the attention registry (`AttentionInterface`,
`AttentionMaskInterface`, `masking_utils.ALL_MASK_ATTENTION_FUNCTIONS`) and the signature of
`integrations.sdpa_attention.sdpa_attention_forward`. Written and tested against transformers
5.24; where the registry cannot be imported, the model's own attention is kept.
"""

from __future__ import annotations

from contextlib import contextmanager

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


def _register_gqa_sdpa() -> bool:
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:                                    # older transformers: keep its attention
        return False
    if _GQA_SDPA not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(_GQA_SDPA, _gqa_sdpa)
        AttentionMaskInterface.register(_GQA_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return True


@contextmanager
def decoding_attention(llm: nn.Module, device: torch.device):
    """On CPU, run the LLM's SDPA attention through `_gqa_sdpa` for the duration of decoding."""
    cfg = llm.config
    if (not USE_GQA_KERNEL or device.type != "cpu" or getattr(cfg, "_attn_implementation", None) != "sdpa"
            or not _register_gqa_sdpa()):
        yield
        return
    cfg._attn_implementation = _GQA_SDPA
    try:
        yield
    finally:
        cfg._attn_implementation = "sdpa"



"""Calling a Hugging Face decoder body: hidden states and KV cache, without the output head.

Training (capellm.model.capellm) and decoding (capellm.inference.engine) both run the transformer
body on `inputs_embeds` (image tokens, then text) and apply the output head only where they need
logits. transformers 5.x renamed the cache argument and output from `past_key_values` to `cache`;
`run_decoder` accepts both (it reads the body's `forward` signature once per class).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def decoder_body(llm: nn.Module) -> nn.Module:
    """The transformer without its output head (`model.model` for Llama-style models)."""
    return getattr(llm, llm.base_model_prefix)


def run_decoder(body: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, cache=None, use_cache: bool = False):
    """Run the decoder body; returns (hidden states [B, T, D], KV cache or None)."""
    name = _cache_arg(type(body))
    kw = {name: cache} if cache is not None else {}
    out = body(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
               use_cache=use_cache, **kw)
    new_cache = getattr(out, "cache", None) if name == "cache" else getattr(out, "past_key_values", None)
    return out.last_hidden_state, new_cache


_CACHE_ARGS: dict[type, str] = {}


def _cache_arg(cls: type) -> str:
    if cls not in _CACHE_ARGS:
        params = inspect.signature(cls.forward).parameters
        _CACHE_ARGS[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_ARGS[cls]

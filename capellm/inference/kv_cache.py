"""KV-cache layers with room reserved for the tokens decoding will append.

transformers' `DynamicLayer` concatenates at every forward call: a fresh allocation and a copy of
the whole cache, in every layer. `ReservedLayer` keeps keys and values as views into buffers with
spare room, so appending writes in place and bucketed prefill can write rows' KV straight into
their final columns; row selection keeps the spare room.

Leans on transformers internals: `transformers.cache_utils.DynamicLayer` (its `keys`, `values`,
`is_initialized`, `device` attributes, `update`, `reorder_cache` and `batch_select_indices`) and
`DynamicCache.layers`. Written and tested against transformers 5.24. transformers before 4.54 has
no cache layers: there `reserve` returns False and the engine uses the plain cache.
"""

from __future__ import annotations

import torch

_RESERVED_LAYER = None


def reserved_layer_class():
    """A DynamicCache layer whose keys/values are views into buffers with spare room: appending
    writes in place (DynamicLayer concatenates: a fresh allocation and a copy of the whole cache
    at every forward call, in every layer), and bucketed prefill can write rows' KV at their
    final columns. Row selection keeps the spare room."""
    global _RESERVED_LAYER
    if _RESERVED_LAYER is None:
        from transformers.cache_utils import DynamicLayer

        class ReservedLayer(DynamicLayer):
            def __init__(self, kbuf: torch.Tensor, vbuf: torch.Tensor, length: int):
                super().__init__()
                self.device, self.is_initialized = kbuf.device, True
                self._kbuf, self._vbuf = kbuf, vbuf                      # [R, H, capacity, d]
                self._view(length)

            def _view(self, n: int) -> None:
                self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

            def update(self, key_states, value_states, *args, **kwargs):
                n, m = self.keys.shape[-2], key_states.shape[-2]
                if n + m > self._kbuf.shape[-2]:                        # out of room: double it
                    grow = lambda b: torch.cat([b[:, :, :n], b.new_empty(*b.shape[:2], max(n, m), b.shape[-1])], 2)
                    self._kbuf, self._vbuf = grow(self._kbuf), grow(self._vbuf)
                self._kbuf[:, :, n:n + m] = key_states
                self._vbuf[:, :, n:n + m] = value_states
                self._view(n + m)
                return self.keys, self.values

            def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
                n = self.keys.shape[-2]
                self._kbuf = self._kbuf.index_select(0, beam_idx.to(self._kbuf.device))
                self._vbuf = self._vbuf.index_select(0, beam_idx.to(self._vbuf.device))
                self._view(n)

            batch_select_indices = reorder_cache

        _RESERVED_LAYER = ReservedLayer
    return _RESERVED_LAYER


def reserve(cache, index: torch.Tensor, extra: int) -> bool:
    """Replace the layers of a DynamicCache by reserved ones holding rows `index` of the old
    layers plus room for `extra` tokens. False (nothing done) for other caches."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:                                    # transformers < 4.54: no cache layers
        return False
    layers = getattr(cache, "layers", None)
    if not layers or any(type(l) is not DynamicLayer or not l.is_initialized for l in layers):
        return False
    cls = reserved_layer_class()
    groups = [(int(b), (index == b).nonzero()[:, 0]) for b in index.unique()]
    for i, l in enumerate(layers):
        bufs = []
        for t in (l.keys, l.values):
            n = t.shape[-2]
            buf = t.new_empty(len(index), t.shape[1], n + extra, t.shape[-1])
            for b, rows in groups:                          # broadcast copy, no [R, ...] temporary
                buf[rows, :, :n] = t[b]
            bufs.append(buf)
        layers[i] = cls(bufs[0], bufs[1], l.keys.shape[-2])
    return True

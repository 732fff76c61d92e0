"""The decoding engine: keypoint answers from image tokens plus text prompts, for predict,
evaluation and the app alike.

Work is shared wherever the official decoding repeats it (every keypoint a separate prompt with
its own copy of the image tokens, the vision encoder run again at every generated token):

- Shared prefix. The caller encodes each instance's image once. Here the image tokens and the
  longest common token prefix of all of that instance's first prompts are prefilled once, at a
  batch of one row per instance; the KV cache is then copied out to one row per query, and only
  each query's own suffix is prefilled. The prefix is found on token ids (LCP), not by
  assumptions about the prompt text. The copied-out cache (`_reserve`) has room for every token
  decoding will append, so appending writes in place instead of reallocating the cache per call,
  and rows sorted by suffix length are prefilled in buckets of similar widths
  (`_Rows._feed_buckets`), so the suffix prefill computes little padding.
- Constrained answers. Where the tokenizer spells the coordinate format token by token
  ("[0.123,0.456]" + end marker as single tokens for "[", each digit, ".", ",", "]" and the
  marker), `CoordinateGrammar` holds the answer as a template: tokens fixed by the format, and
  digit slots. Fixed tokens get no decoding step of their own: they are fed together with the
  preceding choice in one forward call (SmolLM2: 8 forward calls per answer instead of 14). A slot
  takes the argmax over the digit tokens it admits only: the integer digit is 0 or 1, and after an
  integer 1 the decimals are 0, so every answer parses and lies in [0, 1]. Wherever unconstrained
  greedy decoding produces a well-formed answer, the constrained one is the same answer (the
  argmax over all tokens was an admitted token). The grammar is derived from the tokenizer by
  encoding sample answers with the same `SegmentTokenizer` training uses, and verified on every
  digit value, so the answer tokens are exactly those of training. Digit groups (a tokenizer that
  spells "123" as one token, e.g. Llama 3) become one slot over the 10^n group tokens. Where the
  format is not token-aligned (a merge such as "00" that changes the token count with the value,
  digits of x and y in one token, more than 3 digits per token), `CoordinateGrammar.build` returns
  None and the engine decodes unconstrained greedy up to the end marker (same sharing and
  batching; such answers may fail to parse and are then reported missing).
- Multi-round conversations (k keypoints per conversation, as trained) keep their KV cache from
  round to round: the answer's tokens and the next round's prompt are fed as one chunk.
- Grouped-query attention without copies (CPU). When more than one token is fed with a padding
  mask, transformers' SDPA path copies the whole KV cache once per query head (`repeat_kv`); on
  CPU the engine runs those calls through SDPA's own GQA (`enable_gqa`) instead: same
  arithmetic, no copy (see docs/performance.md for what it saves). On CUDA the model's attention
  is used unchanged.
- Batches across instances. Every chunk is left-padded, so each row's next token sits in the last
  column; padding therefore appears both before the image and between chunks, and is masked out.
  Position ids count only unmasked tokens (cumulative sum of the attention mask), so a row sees
  the same positions as when decoded alone.

Confidence: the geometric mean of the chosen tokens' probabilities under the full softmax (the
digits only for constrained answers, since the fixed tokens are not chosen).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from capellm.model.language_model import decoder_body, run_decoder


@dataclass
class Answer:
    text: str                # decoded answer without the end marker
    token_ids: list[int]     # answer ids, the end marker included if reached
    logprob: float           # sum of log-probabilities of the chosen (scored) tokens
    finished: bool           # the end marker was produced within the budget
    n_scored: int = 0        # how many tokens `logprob` sums over (0: all of token_ids)

    @property
    def confidence(self) -> float:
        n = max(self.n_scored or len(self.token_ids), 1)
        return math.exp(self.logprob / n)


@dataclass
class Conversation:
    """One decoding row: an image and the prompts of its rounds.

    rounds[0] holds every token after the image tokens up to the first answer; rounds[r] (r >= 1)
    the tokens between answer r-1 and answer r. Each round is answered, the answer staying in
    context for the next round.
    """

    image: int                    # row of image_embeds
    rounds: list[list[int]]


# ---------------------------------------------------------------------------------------------
# The coordinate format as tokens
# ---------------------------------------------------------------------------------------------

_LAYOUT_RE = re.compile(r"^\[(\d)\.(\d+),(\d)\.(\d+)\]")
_MAX_GROUP = 3                     # digits per token the grammar accepts (Llama 3 groups by 3)


@dataclass
class _Slot:
    """A token position the model chooses: one of `ids`, spelling the digits `fills`."""

    fills: list[str]              # digit string of each candidate, e.g. "0".."9"
    ids: list[int]                # its token id
    after: list[int]              # fixed tokens that follow, up to the next slot
    number: int                   # 0: x, 1: y
    has_int: bool                 # the slot covers the number's integer digit
    int_at: int                   # index of the integer digit within the fill (if has_int)
    ok_free: torch.Tensor = field(default=None)  # bool [F]: admitted candidates
    ok_one: torch.Tensor = field(default=None)   # bool [F]: admitted after the integer digit 1


class CoordinateGrammar:
    """The answer "[x,y]" + end marker as fixed tokens and digit slots (see the module docstring).

    `lead` are the fixed tokens before the first slot; each slot's `after` the fixed tokens up to
    the next slot (the last slot's: "]" and the end marker).
    """

    def __init__(self, lead: list[int], slots: list[_Slot]):
        self.lead = lead
        self.slots = slots
        self._device_ids: dict[torch.device, list[torch.Tensor]] = {}

    def template_length(self) -> int:
        return len(self.lead) + sum(1 + len(s.after) for s in self.slots)

    def ids_on(self, device: torch.device) -> list[torch.Tensor]:
        if device not in self._device_ids:
            self._device_ids[device] = [torch.tensor(s.ids, dtype=torch.long, device=device) for s in self.slots]
        return self._device_ids[device]

    @classmethod
    def build(cls, encode, answer_end: str, decimals: int) -> "CoordinateGrammar | None":
        """Derive the grammar from `encode` (SegmentTokenizer.encode: text -> ids, as in training).

        Returns None where the format is not token-aligned; the caller then decodes unconstrained.
        """
        from capellm.data.instructions import format_coords

        base = format_coords(0.0, 0.0, decimals) + answer_end
        m = _LAYOUT_RE.match(base)
        if m is None:
            return None
        digit_role = {}                                    # char index -> (number, is integer digit)
        for g, (number, is_int) in enumerate(((0, True), (0, False), (1, True), (1, False)), start=1):
            for p in range(m.start(g), m.end(g)):
                digit_role[p] = (number, is_int)
        ids0 = encode(base)

        def with_digits(chars: dict[int, str]) -> str:
            s = list(base)
            for p, c in chars.items():
                s[p] = c
            return "".join(s)

        def differing(ids: list[int]) -> list[int] | None:
            if len(ids) != len(ids0):
                return None
            return [t for t, (a, b) in enumerate(zip(ids, ids0)) if a != b]

        # which token spells each digit: changing that digit must change exactly that token
        token_of: dict[int, int] = {}
        for p in digit_role:
            for c in "0123456789":
                if c == base[p]:
                    continue
                diff = differing(encode(with_digits({p: c})))
                if diff is None or len(diff) != 1 or token_of.setdefault(p, diff[0]) != diff[0]:
                    return None
        slots: list[_Slot] = []
        positions = sorted(set(token_of.values()))
        for n, t in enumerate(positions):
            chars = sorted(p for p in token_of if token_of[p] == t)
            numbers = {digit_role[p][0] for p in chars}
            if len(numbers) != 1 or len(chars) > _MAX_GROUP or chars != list(range(chars[0], chars[-1] + 1)):
                return None
            ints = [i for i, p in enumerate(chars) if digit_role[p][1]]
            fills, ids = [], []
            for digits in itertools.product("0123456789", repeat=len(chars)):
                enc = encode(with_digits(dict(zip(chars, digits))))
                diff = differing(enc)
                if diff is None or any(d != t for d in diff):
                    return None
                fills.append("".join(digits))
                ids.append(enc[t])
            if len(set(ids)) != len(ids):
                return None
            end = positions[n + 1] if n + 1 < len(positions) else len(ids0)
            has_int = bool(ints)
            int_at = ints[0] if has_int else -1
            ok_free = torch.tensor([not has_int or (f[int_at] in "01" and (f[int_at] == "0" or
                                    set(f[int_at + 1:]) <= {"0"})) for f in fills])
            ok_one = torch.tensor([set(f) <= {"0"} for f in fills])
            slots.append(_Slot(fills, ids, list(ids0[t + 1:end]), numbers.pop(), has_int, int_at, ok_free, ok_one))
        if not slots:
            return None
        grammar = cls(list(ids0[:positions[0]]), slots)
        # the slots compose: whole answers encode exactly as the template spells them
        for x, y in ((0.0, 0.0), (1.0, 1.0), (0.123, 0.987), (0.5, 1.0), (0.999, 0.001), (0.707, 0.31)):
            text = format_coords(x, y, decimals)
            if encode(text + answer_end) != grammar.spell(text[1:-1].replace(".", "").split(",")):
                return None
        return grammar

    def spell(self, numbers: list[str]) -> list[int] | None:
        """Token ids of the answer whose numbers have the digits `numbers` (e.g. ["0123", "0456"])."""
        ids = list(self.lead)
        used = [0, 0]
        for s in self.slots:
            w = len(s.fills[0])
            f = numbers[s.number][used[s.number]:used[s.number] + w]
            used[s.number] += w
            if f not in s.fills:
                return None
            ids.append(s.ids[s.fills.index(f)])
            ids.extend(s.after)
        return ids


# ---------------------------------------------------------------------------------------------
# The batch: rows sharing one KV cache
# ---------------------------------------------------------------------------------------------


class _Rows:
    """Rows of a decoding batch: KV cache, attention mask [R, T] and per-row token counts [R]."""

    def __init__(self, llm: nn.Module, pad_id: int, device: torch.device):
        self.body = decoder_body(llm)
        self.emb = llm.get_input_embeddings()
        self.head = llm.get_output_embeddings()
        self.pad_id = pad_id
        self.device = device
        self.cache = None
        self.reserved = False                    # cache layers are `_reserved_layer_class()`
        self.mask: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def embed(self, lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad token lists to one width: embeddings [R, W, D], mask [R, W]."""
        width = max(1, max(len(t) for t in lists))
        ids = torch.full((len(lists), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(lists), width), dtype=torch.long)
        for i, t in enumerate(lists):
            if t:
                ids[i, width - len(t):] = torch.tensor(t, dtype=torch.long)
                mask[i, width - len(t):] = 1
        return self.emb(ids.to(self.device)), mask.to(self.device)

    def feed(self, x: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """Append a chunk [R, W, D] (mask [R, W]); returns the next-token logits [R, V] (float32)."""
        if self.mask is None:
            self.mask = chunk_mask
            self.count = torch.zeros(x.shape[0], dtype=torch.long, device=self.device)
        else:
            self.mask = torch.cat([self.mask, chunk_mask], dim=1)
        pos = (self.count[:, None] + chunk_mask.cumsum(-1) - 1).clamp(min=0)
        h, self.cache = run_decoder(self.body, x, self.mask, pos, cache=self.cache, use_cache=True)
        self.count = self.count + chunk_mask.sum(-1)
        return self.head(h[:, -1]).float()

    def feed_tokens(self, lists: list[list[int]], buckets: bool = False) -> torch.Tensor:
        """Feed token lists (left-padded to one width). buckets: rows sorted by length may be
        prefilled in several calls of their own widths (see `_feed_buckets`)."""
        if buckets and self.reserved:
            spans = _length_buckets([len(t) for t in lists], _CALL_COST[self.device.type == "cuda"])
            if len(spans) > 1:
                return self._feed_buckets(lists, spans)
        return self.feed(*self.embed(lists))

    def _feed_buckets(self, lists: list[list[int]], spans: list[slice]) -> torch.Tensor:
        """Feed a chunk of very different row lengths bucket by bucket, each bucket at its own
        width: the rows' KV is written into the shared reserved buffers at the columns the full
        chunk would give them, the narrower buckets' missing columns are zeros and masked out.
        Same result as one call over the full width, without computing its padding."""
        x, chunk_mask = self.embed(lists)                                        # [R, W, D], [R, W]
        width, n0 = x.shape[1], self.mask.shape[1]
        layers = self.cache.layers
        if any(layer._kbuf.shape[-2] < n0 + width for layer in layers):         # no room: one call
            return self.feed(x, chunk_mask)
        logits = []
        for sl in spans:
            gap = width - max(len(t) for t in lists[sl])
            sub = copy.copy(self.cache)
            sub.layers = []
            for layer in layers:
                layer._kbuf[sl, :, n0:n0 + gap] = 0
                layer._vbuf[sl, :, n0:n0 + gap] = 0
                sub.layers.append(type(layer)(layer._kbuf[sl], layer._vbuf[sl], n0 + gap))
            part = chunk_mask[sl, gap:]
            pos = (self.count[sl, None] + part.cumsum(-1) - 1).clamp(min=0)
            h, _ = run_decoder(self.body, x[sl, gap:], torch.cat([self.mask[sl], chunk_mask[sl]], 1), pos,
                               cache=sub, use_cache=True)
            logits.append(self.head(h[:, -1]).float())
        for layer in layers:
            layer._view(n0 + width)
        self.mask = torch.cat([self.mask, chunk_mask], dim=1)
        self.count = self.count + chunk_mask.sum(-1)
        return torch.cat(logits)

    def select(self, index: torch.Tensor, reserve: int = 0) -> None:
        """Keep (and repeat) rows: row i becomes old row index[i]. reserve: room for this many
        more tokens per row, allocated now (see `_reserve`)."""
        if reserve and _reserve(self.cache, index, reserve):
            self.reserved = True
        else:
            self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.count = self.count.index_select(0, index)


_RESERVED_LAYER = None


def _reserved_layer_class():
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


def _reserve(cache, index: torch.Tensor, extra: int) -> bool:
    """Replace the layers of a DynamicCache by reserved ones holding rows `index` of the old
    layers plus room for `extra` tokens. False (nothing done) for other caches."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:                                    # transformers < 4.54: no cache layers
        return False
    layers = getattr(cache, "layers", None)
    if not layers or any(type(l) is not DynamicLayer or not l.is_initialized for l in layers):
        return False
    cls = _reserved_layer_class()
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
def _decoding_attention(llm: nn.Module, device: torch.device):
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


# Per extra forward call, the padded tokens a bucket must save (CPU: a call costs little beyond
# its tokens; CUDA: kernel launches of a whole forward pass, a guess not yet measured).
_CALL_COST = {False: 32, True: 512}


def _length_buckets(lengths: list[int], call_cost: int, max_buckets: int = 4) -> list[slice]:
    """Split rows (sorted by length, ascending) into contiguous buckets minimising the tokens
    computed, sum(rows x widest row) + call_cost per bucket; at most `max_buckets`."""
    if any(a > b for a, b in zip(lengths, lengths[1:])):
        return [slice(0, len(lengths))]
    ends = [i + 1 for i in range(len(lengths)) if i + 1 == len(lengths) or lengths[i + 1] != lengths[i]]
    inf = float("inf")
    # best[b][j]: cost of rows [0, ends[j]) in b + 1 buckets
    best = [[inf] * len(ends) for _ in range(max_buckets)]
    back = [[-1] * len(ends) for _ in range(max_buckets)]
    for j, e in enumerate(ends):
        best[0][j] = e * lengths[e - 1] + call_cost
    for b in range(1, max_buckets):
        for j, e in enumerate(ends):
            for i in range(j):
                c = best[b - 1][i] + (e - ends[i]) * lengths[e - 1] + call_cost
                if c < best[b][j]:
                    best[b][j], back[b][j] = c, i
    b = min(range(max_buckets), key=lambda b: best[b][-1])
    spans, j = [], len(ends) - 1
    while b >= 0:
        i = back[b][j] if b else -1
        spans.append(slice(ends[i] if i >= 0 else 0, ends[j]))
        j, b = i, b - 1
    return spans[::-1]


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def decode(llm: nn.Module, image_embeds: torch.Tensor, conversations: list[Conversation], *,
           grammar: CoordinateGrammar | None, end_ids: list[int], pad_id: int, tokenizer,
           max_new_tokens: int) -> list[list[Answer]]:
    """Answer every round of every conversation; returns answers[conversation][round].

    image_embeds: [B_img, N, D] projected image tokens. grammar: constrained answers, or None for
    unconstrained greedy decoding up to `end_ids` or `max_new_tokens` (the constrained answer has
    the fixed length of its template and needs no budget).
    """
    if not conversations:
        return []
    with _decoding_attention(llm, image_embeds.device):
        return _decode(llm, image_embeds, conversations, grammar, end_ids, pad_id, tokenizer, max_new_tokens)


def _decode(llm, image_embeds, conversations, grammar, end_ids, pad_id, tokenizer, max_new_tokens):
    device = image_embeds.device
    rows = _Rows(llm, pad_id, device)
    dtype = rows.emb.weight.dtype
    n_img = image_embeds.shape[1]

    # 1. image tokens + each instance's common prompt prefix, once per instance
    images = sorted({c.image for c in conversations})
    slot_of = {b: i for i, b in enumerate(images)}
    prefix = {}
    for b in images:
        firsts = [c.rounds[0] for c in conversations if c.image == b]
        # keep >= 1 token per query for its own chunk, whose last column gives its first logits
        prefix[b] = max(0, min(_common_prefix(firsts), min(len(f) for f in firsts) - 1))
    text, text_mask = rows.embed([conversations[next(i for i, c in enumerate(conversations) if c.image == b)]
                                  .rounds[0][:prefix[b]] for b in images])       # [B, L, D]
    width = text.shape[1]
    x = torch.zeros(len(images), n_img + width, text.shape[-1], dtype=dtype, device=device)
    mask = torch.zeros(len(images), n_img + width, dtype=torch.long, device=device)
    for i, b in enumerate(images):
        pad = width - prefix[b]
        x[i, :pad] = text[i, :pad]                                                 # pad embeddings
        x[i, pad:pad + n_img] = image_embeds[b].to(dtype)                          # [pad][image][prefix]
        x[i, pad + n_img:] = text[i, pad:]
        mask[i, pad:] = 1
    rows.feed(x, mask)

    # 2. one row per conversation, sharing its instance's cache; rows ordered by the length of
    #    their own first chunk, so that it can be prefilled in buckets of similar lengths
    pending = [c.rounds[0][prefix[c.image]:] for c in conversations]             # tokens not yet fed
    alive = sorted(range(len(conversations)), key=lambda ci: len(pending[ci]))   # conversation of each row
    rows.select(torch.tensor([slot_of[conversations[ci].image] for ci in alive], device=device),
                reserve=_columns_needed(conversations, pending, grammar, max_new_tokens))
    answers: list[list[Answer]] = [[] for _ in conversations]

    # 3. round by round; the cache carries the conversation from one round to the next
    for r in range(max(len(c.rounds) for c in conversations)):
        keep = [j for j, ci in enumerate(alive) if r < len(conversations[ci].rounds)]
        if len(keep) < len(alive):
            rows.select(torch.tensor(keep, device=device))
            alive = [alive[j] for j in keep]
        chunk = [pending[ci] + (conversations[ci].rounds[r] if r else []) for ci in alive]
        if grammar is not None:
            got, carry = _constrained_round(rows, chunk, grammar, tokenizer, end_ids, buckets=r == 0)
        else:
            got, carry = _greedy_round(rows, chunk, end_ids, tokenizer, max_new_tokens, buckets=r == 0)
        for ci, a, c in zip(alive, got, carry):
            answers[ci].append(a)
            pending[ci] = c
    return answers


def _columns_needed(conversations: list[Conversation], pending: list[list[int]],
                    grammar: CoordinateGrammar | None, max_new_tokens: int) -> int:
    """Cache columns that decoding will append (an upper bound): per round the widest chunk,
    then the answer's decoding steps."""
    if grammar is not None:
        carry = 1 + len(grammar.slots[-1].after)
        answer = len(grammar.lead) + sum(1 + len(s.after) for s in grammar.slots[:-1])
    else:
        carry, answer = 1, max_new_tokens
    total = 0
    for r in range(max(len(c.rounds) for c in conversations)):
        total += answer + max((len(p) if r == 0 else carry + len(c.rounds[r]))
                              for c, p in zip(conversations, pending) if r < len(c.rounds))
    return total


def _constrained_round(rows: _Rows, chunk: list[list[int]], grammar: CoordinateGrammar, tokenizer,
                       end_ids: list[int], buckets: bool = False) -> tuple[list[Answer], list[list[int]]]:
    """One answer per row under the grammar; returns the answers and each row's unfed tokens."""
    q = len(chunk)
    device = rows.device
    logits = rows.feed_tokens([c + grammar.lead for c in chunk], buckets)       # [Q, V]
    ids_dev = grammar.ids_on(device)
    one = torch.zeros(q, 2, dtype=torch.bool, device=device)                     # integer digit was 1
    logprob = torch.zeros(q, dtype=torch.float64, device=device)
    chosen = []
    for s, (slot, cand_ids) in enumerate(zip(grammar.slots, ids_dev)):
        cand = logits.index_select(1, cand_ids)                                   # [Q, F]
        if slot.has_int:
            ok = slot.ok_free.to(device).expand(q, -1)
        else:
            ok = torch.where(one[:, slot.number, None], slot.ok_one.to(device), slot.ok_free.to(device))
        pick = cand.masked_fill(~ok, float("-inf")).argmax(-1)                   # [Q]
        tok = cand_ids[pick]
        logprob += (cand.gather(1, pick[:, None])[:, 0] - torch.logsumexp(logits, -1)).double()
        if slot.has_int:
            is_one = torch.tensor([f[slot.int_at] == "1" for f in slot.fills], device=device)[pick]
            one[:, slot.number] |= is_one
        chosen.append(tok)
        if s + 1 < len(grammar.slots):
            # the choice and the fixed tokens after it, in one forward call
            after = torch.tensor(slot.after, dtype=torch.long, device=device).expand(q, -1)
            ids = torch.cat([tok[:, None], after], dim=1)
            logits = rows.feed(rows.emb(ids), torch.ones_like(ids))
    picks = torch.stack(chosen, 1).tolist()                                       # [Q, S]
    lps = logprob.tolist()
    answers, carry = [], []
    n_end = len(end_ids)
    for i in range(q):
        ids = list(grammar.lead)
        for slot, t in zip(grammar.slots, picks[i]):
            ids.append(t)
            ids.extend(slot.after)
        fin = bool(n_end) and ids[-n_end:] == end_ids
        text = tokenizer.decode(ids[:-n_end] if fin else ids, skip_special_tokens=False)
        answers.append(Answer(text=text, token_ids=ids, logprob=lps[i], finished=True,
                              n_scored=len(grammar.slots)))
        carry.append([picks[i][-1]] + grammar.slots[-1].after)
    return answers, carry


def _greedy_round(rows: _Rows, chunk: list[list[int]], end_ids: list[int], tokenizer,
                  max_new_tokens: int, buckets: bool = False) -> tuple[list[Answer], list[list[int]]]:
    """Unconstrained greedy answers up to the end marker; returns answers and unfed tokens."""
    q = len(chunk)
    logits = rows.feed_tokens(chunk, buckets)
    generated: list[list[int]] = [[] for _ in range(q)]
    logprob = [0.0] * q
    done = [False] * q
    n_end = len(end_ids)
    carry: list[list[int]] = [[] for _ in range(q)]
    for step in range(max_new_tokens):
        lp = torch.log_softmax(logits, dim=-1)
        nxt = lp.argmax(-1)                                                     # [Q]
        nxt_lp = lp.gather(1, nxt[:, None])[:, 0].tolist()
        feed = [[] for _ in range(q)]
        for i, t in enumerate(nxt.tolist()):
            if done[i]:
                continue
            generated[i].append(t)
            logprob[i] += nxt_lp[i]
            feed[i] = [t]
            if n_end and generated[i][-n_end:] == end_ids:
                done[i] = True
        if all(done) or step + 1 == max_new_tokens:
            carry = feed
            break
        logits = rows.feed_tokens(feed)
    answers = []
    for i, g in enumerate(generated):
        fin = bool(n_end) and g[-n_end:] == end_ids
        text = tokenizer.decode(g[:-n_end] if fin else g, skip_special_tokens=False)
        answers.append(Answer(text=text, token_ids=g, logprob=logprob[i], finished=fin))
    return answers, carry


"""The decoding engine: keypoint answers from image tokens plus text prompts, for predict,
evaluation and the app alike.

Work is shared wherever the official decoding repeats it (every keypoint a separate prompt with
its own copy of the image tokens, the vision encoder run again at every generated token):

- Shared prefix. The caller encodes each instance's image once. Here the image tokens and the
  longest common token prefix of all of that instance's first prompts are prefilled once, at a
  batch of one row per instance; the KV cache is then copied out to one row per query, and only
  each query's own suffix is prefilled. The prefix is found on token ids (LCP), not by
  assumptions about the prompt text. The copied-out cache has room for every token decoding will
  append (capellm.inference.kv_cache), and rows sorted by suffix length are prefilled in buckets
  of similar widths (`_Rows._feed_buckets`), so the suffix prefill computes little padding.
- Constrained answers (capellm.inference.grammar). Fixed tokens of the coordinate format get no
  decoding step of their own: they are fed together with the preceding digit choice in one
  forward call (SmolLM2: 8 forward calls per answer instead of 14), and each digit slot takes the
  argmax over the digits it admits, so every answer parses and lies in [0, 1]. Where the
  tokenizer does not spell the format token by token, the engine decodes unconstrained greedy up
  to the end marker (same sharing and batching; such answers may fail to parse and are then
  reported missing).
- Multi-round conversations (k keypoints per conversation, as trained) keep their KV cache from
  round to round: the answer's tokens and the next round's prompt are fed as one chunk.
- Grouped-query attention without copies on CPU (capellm.inference.attention).
- Batches across instances. Every chunk is left-padded, so each row's next token sits in the last
  column; padding therefore appears both before the image and between chunks, and is masked out.
  Position ids count only unmasked tokens (cumulative sum of the attention mask), so a row sees
  the same positions as when decoded alone.

Confidence: the geometric mean of the chosen tokens' probabilities under the full softmax (the
digits only for constrained answers, since the fixed tokens are not chosen).

Distribution (optional, constrained answers): each answer also carries the distribution of x and
of y read from its digit slots (capellm.inference.uncertainty); the first decimal slot's
candidates are enumerated in one forward call per number, as sibling branches of every row
(tree attention, `_Rows.branch`), then dropped from the cache.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from capellm.inference.attention import decoding_attention
from capellm.inference.decoder import decoder_body, run_decoder
from capellm.inference.grammar import CoordinateGrammar
from capellm.inference import kv_cache
from capellm.inference.uncertainty import number_distributions


@dataclass
class Answer:
    text: str                # decoded answer without the end marker
    token_ids: list[int]     # answer ids, the end marker included if reached
    logprob: float           # sum of log-probabilities of the chosen (scored) tokens
    finished: bool           # the end marker was produced within the budget
    n_scored: int = 0        # how many tokens `logprob` sums over (0: all of token_ids)
    dist: list | None = None  # [x, y] NumberDistribution (decode(distribution=True) only)

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
# The batch: rows sharing one KV cache
# ---------------------------------------------------------------------------------------------


class _Rows:
    """Rows of a decoding batch: KV cache, attention mask [R, T] and per-row token counts [R]."""

    def __init__(self, llm: nn.Module, pad_id: int, device: torch.device, embed=None):
        """embed: token ids -> input embeddings where the model has its own (default: the LLM's)."""
        self.body = decoder_body(llm)
        self.emb = embed if embed is not None else llm.get_input_embeddings()
        self.dtype = llm.get_input_embeddings().weight.dtype
        self.head = llm.get_output_embeddings()
        self.pad_id = pad_id
        self.device = device
        self.cache = None
        self.reserved = False                    # cache layers are kv_cache.ReservedLayer
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
        return self.head(self.feed_hidden(x, chunk_mask)[:, -1]).float()

    def feed_hidden(self, x: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """Append a chunk [R, W, D] (mask [R, W]); returns its hidden states [R, W, D]."""
        if self.mask is None:
            self.mask = chunk_mask
            self.count = torch.zeros(x.shape[0], dtype=torch.long, device=self.device)
        else:
            self.mask = torch.cat([self.mask, chunk_mask], dim=1)
        pos = (self.count[:, None] + chunk_mask.cumsum(-1) - 1).clamp(min=0)
        h, self.cache = run_decoder(self.body, x, self.mask, pos, cache=self.cache, use_cache=True)
        self.count = self.count + chunk_mask.sum(-1)
        return h

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

    def branch(self, branches: torch.Tensor) -> torch.Tensor | None:
        """Next-token logits [R, F, V] after each of F alternative continuations [F, L] of every
        row, from one forward call: the F * L tokens are fed as siblings (tree attention: each
        sees the row's context and its own branch only, at the positions it would have alone),
        then dropped from the cache again. None where the cache cannot be rolled back."""
        layers = getattr(self.cache, "layers", None)
        if layers is None or not all(hasattr(layer, "keys") for layer in layers):
            return None
        f, length = branches.shape
        r, n0 = self.mask.shape
        ids = branches.reshape(1, -1).expand(r, -1)                               # [R, F*L]
        own = torch.arange(f * length, device=self.device)
        same = (own[:, None] // length == own[None, :] // length) & (own[None, :] <= own[:, None])
        mask = torch.cat([self.mask.bool()[:, None, None, :].expand(r, 1, f * length, n0),
                          same[None, None].expand(r, 1, -1, -1)], dim=-1)         # [R, 1, F*L, n0+F*L]
        pos = self.count[:, None] + (own % length)[None, :]
        h, _ = run_decoder(self.body, self.emb(ids), mask, pos, cache=self.cache, use_cache=True)
        for layer in layers:                                                      # drop the branches
            if hasattr(layer, "_view"):
                layer._view(n0)
            else:
                layer.keys, layer.values = layer.keys[:, :, :n0], layer.values[:, :, :n0]
        last = own.view(f, length)[:, -1]
        return self.head(h[:, last]).float()                                      # [R, F, V]

    def select(self, index: torch.Tensor, reserve: int = 0) -> None:
        """Keep (and repeat) rows: row i becomes old row index[i]. reserve: room for this many
        more tokens per row, allocated now (capellm.inference.kv_cache)."""
        if reserve and kv_cache.reserve(self.cache, index, reserve):
            self.reserved = True
        else:
            self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.count = self.count.index_select(0, index)


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
           max_new_tokens: int, distribution: bool = False) -> list[list[Answer]]:
    """Answer every round of every conversation; returns answers[conversation][round].

    image_embeds: [B_img, N, D] projected image tokens. grammar: constrained answers, or None for
    unconstrained greedy decoding up to `end_ids` or `max_new_tokens` (the constrained answer has
    the fixed length of its template and needs no budget). distribution: constrained answers also
    carry `Answer.dist`, the distributions of x and y (capellm.inference.uncertainty).
    """
    if not conversations:
        return []
    with decoding_attention(llm, image_embeds.device):
        return _decode(llm, image_embeds, conversations, grammar, end_ids, pad_id, tokenizer, max_new_tokens,
                       distribution)


def _decode(llm, image_embeds, conversations, grammar, end_ids, pad_id, tokenizer, max_new_tokens,
            distribution=False):
    device = image_embeds.device
    rows = _Rows(llm, pad_id, device)
    # 1. image tokens + each instance's common prompt prefix, once per instance
    prefix, slot_of = _prefill_shared(rows, image_embeds, conversations)

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
            got, carry = _constrained_round(rows, chunk, grammar, tokenizer, end_ids, buckets=r == 0,
                                            distribution=distribution)
        else:
            got, carry = _greedy_round(rows, chunk, end_ids, tokenizer, max_new_tokens, buckets=r == 0)
        for ci, a, c in zip(alive, got, carry):
            answers[ci].append(a)
            pending[ci] = c
    return answers


@torch.no_grad()
def hidden_at_token(llm: nn.Module, image_embeds: torch.Tensor, conversations: list[Conversation], *,
                    token_id: int, pad_id: int, embed) -> list[torch.Tensor]:
    """The LLM's hidden states at every `token_id` of each conversation, in one prefill and no
    decoding step: conversations whose answers are given (the <KEYPOINT> answer, App. B.2) are
    fed whole (`rounds[0]` holds all of it). The image tokens and each instance's common prefix
    are prefilled once, as for decoding, and each conversation's rest on its copy of that cache.
    embed: token ids [R, W] -> input embeddings (the model's, which embed `token_id` itself).
    Returns one [n_i, D] tensor per conversation."""
    if not conversations:
        return []
    device = image_embeds.device
    with decoding_attention(llm, device):
        rows = _Rows(llm, pad_id, device, embed=embed)
        prefix, slot_of = _prefill_shared(rows, image_embeds, conversations, stop_at=token_id)
        rest = [c.rounds[0][prefix[c.image]:] for c in conversations]
        rows.select(torch.tensor([slot_of[c.image] for c in conversations], device=device))
        h = rows.feed_hidden(*rows.embed(rest))                                    # [R, W, D], left-padded
    width = h.shape[1]
    return [h[i, width - len(t):][torch.tensor(t, device=device) == token_id] for i, t in enumerate(rest)]


def _prefill_shared(rows: _Rows, image_embeds: torch.Tensor, conversations: list[Conversation],
                    stop_at: int | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """Feed each instance's image tokens and the common token prefix of its conversations' first
    chunks, one row per instance; the prefix ends before the first `stop_at` token, whose hidden
    state the caller wants. Returns (prefix length per image, row of each image)."""
    device, dtype = image_embeds.device, rows.dtype
    n_img = image_embeds.shape[1]
    images = sorted({c.image for c in conversations})
    slot_of = {b: i for i, b in enumerate(images)}
    prefix = {}
    for b in images:
        firsts = [c.rounds[0] for c in conversations if c.image == b]
        # keep >= 1 token per query for its own chunk, whose last column gives its first logits
        prefix[b] = max(0, min(_common_prefix(firsts), min(len(f) for f in firsts) - 1))
        if stop_at is not None:
            prefix[b] = min([prefix[b]] + [f.index(stop_at) for f in firsts if stop_at in f])
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
    rows.feed_hidden(x, mask)
    return prefix, slot_of


def _columns_needed(conversations: list[Conversation], pending: list[list[int]],
                    grammar: CoordinateGrammar | None, max_new_tokens: int) -> int:
    """Cache columns that decoding will append (an upper bound): per round the widest chunk,
    then the answer's decoding steps."""
    if grammar is not None:
        carry = max(1 + len(grammar.slots[-1].after), 1 + len(grammar.nv_rest))
        answer = len(grammar.lead) + sum(1 + len(s.after) for s in grammar.slots[:-1])
    else:
        carry, answer = 1, max_new_tokens
    total = 0
    for r in range(max(len(c.rounds) for c in conversations)):
        total += answer + max((len(p) if r == 0 else carry + len(c.rounds[r]))
                              for c, p in zip(conversations, pending) if r < len(c.rounds))
    return total


def _constrained_round(rows: _Rows, chunk: list[list[int]], grammar: CoordinateGrammar, tokenizer,
                       end_ids: list[int], buckets: bool = False,
                       distribution: bool = False) -> tuple[list[Answer], list[list[int]]]:
    """One answer per row under the grammar; returns the answers and each row's unfed tokens.
    distribution: also the answers' distributions (`Answer.dist`)."""
    q = len(chunk)
    device = rows.device
    logits = rows.feed_tokens([c + grammar.lead for c in chunk], buckets)       # [Q, V]
    ids_dev = grammar.ids_on(device)
    one = torch.zeros(q, 2, dtype=torch.bool, device=device)                     # integer digit was 1
    logprob = torch.zeros(q, dtype=torch.float64, device=device)
    nv = torch.zeros(q, dtype=torch.bool, device=device)                         # answered "not visible"
    nv_lp = logprob
    chosen, pick_index = [], []
    probs: list[torch.Tensor] = []              # distribution: each slot's admitted soft-max
    second: dict[int, torch.Tensor] = {}        # distribution: next slot's soft-max per candidate
    for s, (slot, cand_ids) in enumerate(zip(grammar.slots, ids_dev)):
        cand = logits.index_select(1, cand_ids)                                   # [Q, F]
        if slot.has_int:
            ok = slot.ok_free.to(device).expand(q, -1)
        else:
            ok = torch.where(one[:, slot.number, None], slot.ok_one.to(device), slot.ok_free.to(device))
        masked = cand.masked_fill(~ok, float("-inf"))
        pick = masked.argmax(-1)                                                  # [Q]
        norm = torch.logsumexp(logits, -1)                                        # [Q]
        if s == 0 and grammar.nv_first is not None:                             # "not visible" wins?
            nv_logit = logits[:, grammar.nv_first]
            nv = nv_logit > masked.max(-1).values
            nv_lp = (nv_logit - norm).double()
        if distribution:
            probs.append(masked.softmax(-1))
            if _enumerated(grammar, s):
                second[s] = _next_slot_probs(rows, grammar, s, cand_ids, device)
        tok = cand_ids[pick]
        logprob += (cand.gather(1, pick[:, None])[:, 0] - norm).double()
        if slot.has_int:
            is_one = torch.tensor([f[slot.int_at] == "1" for f in slot.fills], device=device)[pick]
            one[:, slot.number] |= is_one
        chosen.append(tok)
        pick_index.append(pick)
        if s + 1 < len(grammar.slots):
            # the choice and the fixed tokens after it, in one forward call
            after = torch.tensor(slot.after, dtype=torch.long, device=device).expand(q, -1)
            ids = torch.cat([tok[:, None], after], dim=1)
            # rows that answered "not visible" take no part (masked out); their answer's tokens
            # are fed with the next round's prompt
            logits = rows.feed(rows.emb(ids), (~nv)[:, None].long().expand_as(ids).contiguous())
    picks = torch.stack(chosen, 1).tolist()                                       # [Q, S]
    lps = torch.where(nv, nv_lp, logprob).tolist()
    nv = nv.tolist()
    dists = (number_distributions(grammar, probs, second, torch.stack(pick_index, 1)) if distribution
             else [None] * q)
    answers, carry = [], []
    n_end = len(end_ids)
    for i in range(q):
        ids = list(grammar.lead)
        if nv[i]:
            ids += [grammar.nv_first, *grammar.nv_rest]
        else:
            for slot, t in zip(grammar.slots, picks[i]):
                ids.append(t)
                ids.extend(slot.after)
        fin = bool(n_end) and ids[-n_end:] == end_ids
        text = tokenizer.decode(ids[:-n_end] if fin else ids, skip_special_tokens=False)
        answers.append(Answer(text=text, token_ids=ids, logprob=lps[i], finished=True,
                              n_scored=1 if nv[i] else len(grammar.slots), dist=None if nv[i] else dists[i]))
        carry.append(ids[len(grammar.lead):] if nv[i] else [picks[i][-1]] + grammar.slots[-1].after)
    return answers, carry


def _enumerated(grammar: CoordinateGrammar, s: int) -> bool:
    """Slot s is a number's first decimal slot and another decimal slot of it follows."""
    slots = grammar.slots
    return (not slots[s].has_int and s > 0 and slots[s - 1].has_int and s + 1 < len(slots)
            and slots[s + 1].number == slots[s].number)


def _next_slot_probs(rows: _Rows, grammar: CoordinateGrammar, s: int, cand_ids: torch.Tensor,
                     device: torch.device) -> torch.Tensor:
    """[Q, F_s, F_{s+1}]: the soft-max of slot s+1 (over the digits it admits after an integer
    digit 0) under each candidate of slot s (and the fixed tokens after it), in one forward call
    (`_Rows.branch`)."""
    slot, nxt = grammar.slots[s], grammar.slots[s + 1]
    after = torch.tensor(slot.after, dtype=torch.long, device=device).expand(len(cand_ids), -1)
    logits = rows.branch(torch.cat([cand_ids[:, None], after], dim=1))            # [Q, F, V]
    if logits is None:
        raise RuntimeError("the answer's distribution needs transformers' cache layers (transformers >= 4.54)")
    cand = logits.index_select(2, grammar.ids_on(device)[s + 1])
    cand = cand.masked_fill(~nxt.ok_free.to(device), float("-inf"))
    return cand.softmax(-1)


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

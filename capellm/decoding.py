"""Greedy decoding of keypoint answers from image tokens plus a text prompt.

Each query is one sequence: [left padding] [image tokens] [prompt tokens] -> answer tokens. The
image features are computed once per instance and shared by all of that instance's queries
(`image_index` maps query -> instance), so K keypoints cost one encoder pass, not K.

Padding is on the left so that every sequence's next token sits in the last column; position ids
come from the attention mask, so padded and unpadded sequences see the same positions and a
batch decodes exactly as its sequences would alone. Decoding stops at the format's end-of-answer
marker. Token probabilities are kept for a confidence score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from capellm.model.language_model import decoder_body, run_decoder


@dataclass
class Answer:
    text: str                # decoded answer without the end marker
    token_ids: list[int]     # generated ids, the end marker included if reached
    logprob: float           # sum of log-probabilities of the generated tokens
    finished: bool           # the end marker was produced within the budget

    @property
    def confidence(self) -> float:
        n = max(len(self.token_ids), 1)
        return float(torch.tensor(self.logprob / n).exp())


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def greedy_decode(llm: nn.Module, image_embeds: torch.Tensor, image_index: list[int],
                  prompts: list[list[int]], end_ids: list[int], pad_id: int, tokenizer,
                  max_new_tokens: int) -> list[Answer]:
    """Answer each prompt.

    image_embeds: [B_img, N, D] projected image tokens; image_index[q] picks query q's image.
    prompts: token ids per query (everything after the image tokens).
    """
    device = image_embeds.device
    emb = llm.get_input_embeddings()
    q = len(prompts)
    n_img = image_embeds.shape[1]
    lens = [len(p) for p in prompts]
    width = max(lens)
    ids = torch.full((q, width), pad_id, dtype=torch.long, device=device)
    text_mask = torch.zeros((q, width), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
        text_mask[i, width - len(p):] = 1
    # left padding goes before the image: [pad][image][prompt]
    img = image_embeds[torch.tensor(image_index, device=device)]  # [Q, N, D]
    tok = emb(ids)                                                # [Q, W, D]
    x = torch.zeros(q, width + n_img, tok.shape[-1], dtype=tok.dtype, device=device)
    mask = torch.zeros(q, width + n_img, dtype=torch.long, device=device)
    for i, n in enumerate(lens):
        pad = width - n
        x[i, pad:pad + n_img] = img[i].to(tok.dtype)
        x[i, pad + n_img:] = tok[i, pad:]
        mask[i, pad:] = 1
    body = decoder_body(llm)
    head = llm.get_output_embeddings()
    h, cache = run_decoder(body, x, mask, _positions(mask), use_cache=True)
    logits = head(h[:, -1]).float()                        # [Q, V]

    generated: list[list[int]] = [[] for _ in range(q)]
    logprob = torch.zeros(q, dtype=torch.float64, device=device)
    done = torch.zeros(q, dtype=torch.bool, device=device)
    n_end = len(end_ids)
    for _ in range(max_new_tokens):
        lp = torch.log_softmax(logits, dim=-1)
        nxt = lp.argmax(-1)                                # [Q]
        logprob += torch.where(done, 0.0, lp.gather(1, nxt[:, None])[:, 0].double())
        nxt_list = nxt.tolist()
        for i in range(q):
            if not done[i]:
                generated[i].append(nxt_list[i])
                if n_end and generated[i][-n_end:] == end_ids:
                    done[i] = True
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(q, 1, dtype=mask.dtype, device=device)], dim=1)
        pos = mask.sum(-1, keepdim=True) - 1
        h, cache = run_decoder(body, emb(nxt[:, None]), mask, pos, cache=cache, use_cache=True)
        logits = head(h[:, -1]).float()

    answers = []
    for i in range(q):
        g = generated[i]
        fin = bool(n_end) and g[-n_end:] == end_ids
        body_ids = g[:-n_end] if fin else g
        text = tokenizer.decode(body_ids, skip_special_tokens=False)
        answers.append(Answer(text=text, token_ids=g, logprob=float(logprob[i]), finished=fin))
    return answers

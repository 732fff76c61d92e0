"""The <KEYPOINT> answer (paper App. B.2, Table 8): a special token and a small decoder.

With `model.instruction.answer: keypoint_token` every keypoint round is answered with the one
token `KEYPOINT_TOKEN` instead of "[x,y]" text. The token is added to the tokenizer (the
vocabulary grows by one) and gets an input embedding of its own, trained; the LLM's output hidden
state at that token goes to the decoder of `KeypointHead`, an MLP trained from scratch that
returns (x, y) normalised to the crop. The coordinates carry the loss (L1 by default); text
answers elsewhere in the conversation (the step-by-step instruction's object name) keep their
next-token loss.

Because an answer no longer depends on what the model said before, a whole conversation, every
round of it, runs in ONE forward pass at inference: no decoding steps
(capellm.inference.hidden_at_token).

The embedding is a parameter of its own rather than a new row of the LLM's embedding matrix, so
it trains whatever `model.llm.mode` says (a frozen or LoRA-wrapped matrix stays untouched) and a
checkpoint stores it beside the decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from capellm.config import KeypointDecoderConfig
from capellm.data.instructions import KEYPOINT_TOKEN


def add_keypoint_token(tokenizer) -> int:
    """The id of KEYPOINT_TOKEN in `tokenizer`, added as a special token where it is missing (a
    tokenizer saved with a checkpoint has it already)."""
    vocab = tokenizer.get_vocab()
    if KEYPOINT_TOKEN not in vocab:
        tokenizer.add_tokens([KEYPOINT_TOKEN], special_tokens=True)
        vocab = tokenizer.get_vocab()
    return int(vocab[KEYPOINT_TOKEN])


class KeypointHead(nn.Module):
    """The <KEYPOINT> token's own input embedding and the decoder that reads (x, y) off the
    LLM's hidden state there: LayerNorm, `num_layers` GELU layers of `hidden_size`, a linear map
    to 2 and a sigmoid. The last layer starts at zero, so every first answer is the crop's centre."""

    def __init__(self, dim: int, cfg: KeypointDecoderConfig, embedding_std: float = 0.02):
        super().__init__()
        self.token_embedding = nn.Parameter(torch.randn(dim) * embedding_std)
        layers: list[nn.Module] = [nn.LayerNorm(dim)]
        width = dim
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_size), nn.GELU()]
            width = cfg.hidden_size
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., D] -> (x, y) [..., 2] in [0, 1] of the crop."""
        return torch.sigmoid(self.out(self.mlp(h.to(self.out.weight.dtype))))


def coordinate_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over keypoints and both coordinates of |pred - target| ("l1") or its square ("mse")."""
    return F.l1_loss(pred, target) if kind == "l1" else F.mse_loss(pred, target)


def embed_with_keypoint_token(embedding: nn.Module, input_ids: torch.Tensor, token_id: int,
                              token_embedding: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Input embeddings [B, T, D] where every KEYPOINT_TOKEN gets `token_embedding` (its id may lie
    beyond the LLM's embedding matrix: it is looked up as the pad token, then replaced)."""
    is_kp = input_ids == token_id
    emb = embedding(input_ids.masked_fill(is_kp, pad_id))
    return torch.where(is_kp.unsqueeze(-1), token_embedding.to(emb.dtype), emb)

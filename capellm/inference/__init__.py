"""Inference: the decoding engine and the parts it is built from.

- `engine`: `decode` answers every round of every conversation (shared image prefix, batching,
  multi-round KV reuse); `hidden_at_token` prefills whole conversations and returns the hidden
  states at one token (the <KEYPOINT> answer); `Answer`, `Conversation`.
- `grammar`: the coordinate answer as fixed tokens and digit slots (`CoordinateGrammar`).
- `kv_cache`: cache layers with reserved room (leans on transformers' cache internals).
- `attention`: grouped-query attention without KV copies on CPU (leans on transformers'
  attention registry).
- `decoder`: running a Hugging Face decoder body for hidden states and its cache.
"""

from capellm.inference.engine import Answer, Conversation, decode, hidden_at_token
from capellm.inference.grammar import CoordinateGrammar

__all__ = ["Answer", "Conversation", "CoordinateGrammar", "decode", "hidden_at_token"]

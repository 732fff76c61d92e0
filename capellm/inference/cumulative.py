"""Confidence-ordered cumulative inference: keypoints asked again with the model's surest answers
in the conversation.

The paper's model is trained on multi-round conversations (k keypoints, each answer staying in
context for the next question), yet the official evaluation asks every keypoint alone. Here:

1. every keypoint is answered alone (one keypoint per prompt, as the official evaluation does);
2. keypoints are ranked by that answer's confidence;
3. the keypoints to re-ask (all of them, or the least confident fraction `refine`) are asked
   again, each in a conversation whose earlier rounds are the `context` most confident other
   keypoints with their answers from step 1, most confident first: the multi-round format of
   training, with the surest answers as the earlier rounds. With `context` = k - 1 the
   conversation has the trained length k; a larger `context` (up to all other keypoints) goes
   beyond what the model saw in training.

All conversations of step 3 are known after step 1, so they are decoded in one pass of the
engine (batched across keypoints and instances), not one round after another.
"""

from __future__ import annotations

import numpy as np
import torch

from capellm.data.instructions import parse_coords, render_conversation
from capellm.inference.engine import Answer, Conversation


@torch.no_grad()
def cumulative_predict(model, crops, categories, context: int = 3, refine: float = 1.0,
                       by: str = "confidence"):
    """Predictions (capellm.model.capellm.Prediction) after re-asking keypoints with context.

    context: how many other keypoints' answers precede each question. refine: the fraction of
    each instance's keypoints re-asked, least confident first (1.0: all). by: "confidence" or
    "spread" (the answer distribution's spread, smaller = surer; capellm.inference.uncertainty).
    """
    if context < 1:
        raise ValueError(f"context must be at least 1, got {context}")
    if not 0.0 < refine <= 1.0:
        raise ValueError(f"refine must be in (0, 1], got {refine}")
    if by not in ("confidence", "spread"):
        raise ValueError(f"by must be 'confidence' or 'spread', got '{by}'")
    was_training = model.training
    model.eval()
    pix = model.encode_images(torch.stack([c.pixel_values for c in crops]).to(model.device))   # once for both passes
    first = model.predict_crops(crops, categories, mode="single", distribution=by == "spread", image_embeds=pix)
    icfg, fmt, st = model.cfg.instruction, model.fmt, model.segment_tokenizer
    convs, where = [], []
    answered: list[dict[int, Answer]] = []
    for i, (cat, pred) in enumerate(zip(categories, first)):
        ok = [kp for kp in range(cat.num_keypoints) if kp not in pred.missing]
        sure = (pred.confidence if by == "confidence"
                else -np.linalg.norm(np.nan_to_num(pred.spread, nan=np.inf), axis=-1))
        order = sorted(ok, key=lambda kp: -sure[kp])                      # surest first
        norm = {kp: parse_coords(pred.answers[kp]) for kp in ok}
        n_refine = max(1, round(refine * len(order))) if order else 0
        for kp in order[len(order) - n_refine:]:                           # least sure last in order
            before = [o for o in order if o != kp][:context]
            coords = np.array([norm[o] for o in before] + [(0.0, 0.0)])
            segs = render_conversation(cat, before + [kp], coords, icfg, fmt)[:-1]   # up to kp's answer
            convs.append(Conversation(i, [st(segs)[0]]))
            where.append((i, kp))
        answered.append({})
    got = model._decode(pix, convs, "grammar") if convs else []
    for (i, kp), a in zip(where, got):
        answered[i][kp] = a[0]
    model.train(was_training)
    out = []
    for i, (crop, cat, pred) in enumerate(zip(crops, categories, first)):
        ans = {kp: _as_answer(pred, kp) for kp in range(cat.num_keypoints)}
        ans.update(answered[i])
        out.append(model._to_prediction(crop, cat, ans))
    return out


def _as_answer(pred, kp: int) -> Answer:
    """A step-1 answer in the form `_to_prediction` reads (its confidence kept)."""
    conf = float(pred.confidence[kp])
    return Answer(text=pred.answers[kp], token_ids=[], logprob=float(np.log(max(conf, 1e-300))), finished=True,
                  n_scored=1)


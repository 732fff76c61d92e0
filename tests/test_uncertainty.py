"""The answer's distribution (capellm.inference.uncertainty): exact against full forward passes,
unchanged answers, and its summaries in image pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_decoding import CAT, random_crops, untrained

from capellm.data.instructions import render_conversation
from capellm.inference.uncertainty import NumberDistribution


def _admitted_softmax(model, img, ids, slot, after_int_one=False):
    """Soft-max of `slot` over the digits it admits, from one full forward pass over `ids`."""
    x = torch.cat([img[None], model.llm.get_input_embeddings()(torch.tensor([ids]))], 1)
    logits = model.llm(inputs_embeds=x).logits[0, -1].float()
    cand = logits[torch.tensor(slot.ids)]
    ok = slot.ok_one if after_int_one else slot.ok_free
    return cand.masked_fill(~ok, float("-inf")).softmax(-1)


def test_distribution_is_exact_against_full_forward_passes():
    model = untrained(4)          # its x answer starts "0.", so x's decimals are read under 0
    g = model.answer_grammar()
    crop = random_crops(model, 1, seed=4)[0]
    pred_with = model.predict_crops([crop], [CAT], keypoints=[[1]], distribution=True)[0]
    pred_without = model.predict_crops([crop], [CAT], keypoints=[[1]])[0]
    assert pred_with.answers == pred_without.answers                   # answers do not change
    with torch.no_grad():
        img = model.encode_images(crop.pixel_values[None])[0]
        ctx = model.segment_tokenizer(render_conversation(CAT, [1], None, model.cfg.instruction, model.fmt))[0]
        ctx = ctx + g.lead
        s_int, s1, s2, s3 = g.slots[:4]                                 # x: "0" "." d1 d2 d3 (3 decimals)
        p_int = _admitted_softmax(model, img, ctx, s_int)
        zero = ctx + [s_int.ids[0]] + s_int.after
        p1 = _admitted_softmax(model, img, zero, s1)
        p2 = torch.stack([_admitted_softmax(model, img, zero + [s1.ids[a]] + s1.after, s2) for a in range(10)])
    expected = {}
    for a in range(10):
        for b in range(10):
            expected[round(a / 10 + b / 100 + 0.0045, 6)] = float((1 - p_int[1]) * p1[a] * p2[a, b])
    expected[1.0] = float(p_int[1])
    # the engine's distribution of x for that keypoint, re-read from a direct decode
    from capellm.inference.engine import Conversation, decode

    with torch.no_grad():
        ans = decode(model.llm, img[None], [Conversation(0, [ctx[:len(ctx) - len(g.lead)]])], grammar=g,
                     end_ids=model.end_ids(), pad_id=model.tokenizer.pad_token_id, tokenizer=model.tokenizer,
                     max_new_tokens=model.cfg.max_new_tokens, distribution=True)[0][0]
    assert ans.text.startswith("[0.") and ans.text == pred_with.answers[1]
    got = {round(float(v), 6): float(p) for v, p in zip(ans.dist[0].values, ans.dist[0].probs)}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-4, atol=1e-7)
    assert abs(sum(got.values()) - 1) < 1e-9


def test_multi_round_and_batches_carry_the_same_distributions():
    model = untrained(0)
    crops = random_crops(model, 3, seed=1)
    batch = model.predict_crops(crops, [CAT] * 3, mode="multi", distribution=True)
    alone = [model.predict_crops([c], [CAT], mode="multi", distribution=True)[0] for c in crops]
    for a, b in zip(batch, alone):
        assert a.answers == b.answers
        np.testing.assert_allclose(a.spread, b.spread, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-3)
    plain = model.predict_crops(crops, [CAT] * 3, mode="multi")
    assert [p.answers for p in plain] == [p.answers for p in batch]


def test_summaries_and_pixels():
    d = NumberDistribution(np.array([0.1, 0.3, 1.0]), np.array([0.5, 0.3, 0.2]))
    assert d.mode == pytest.approx(0.1) and d.mean == pytest.approx(0.34)
    assert d.std == pytest.approx(np.sqrt(0.5 * 0.24 ** 2 + 0.3 * 0.04 ** 2 + 0.2 * 0.66 ** 2))
    model = untrained(0)
    crop = random_crops(model, 1)[0]
    pred = model.predict_crops([crop], [CAT], distribution=True)[0]
    k = CAT.num_keypoints
    assert pred.spread.shape == pred.mean.shape == pred.mode.shape == (k, 2)
    assert np.all(pred.spread > 0) and np.isfinite(pred.mean).all()
    # crop units -> pixels: the crop covers the box plus padding, so the spread of a uniform
    # distribution over [0, 1] would be about box side * padding / sqrt(12)
    side = crop.to_image(np.array([[1.0, 1.0]])) - crop.to_image(np.array([[0.0, 0.0]]))
    assert np.all(pred.spread <= np.abs(side) * 0.5 + 1e-6)
    row = pred.to_dict()["keypoints"][0]
    assert set(row) >= {"spread", "mean", "mode"} and len(row["spread"]) == 2
    assert "spread" not in model.predict_crops([crop], [CAT])[0].to_dict()["keypoints"][0]

"""'Not visible' answers (instruction.not_visible_rate): training rounds, the grammar, the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_decoding import CAT, random_crops

from capellm.config import preset
from capellm.data.dataset import not_visible_rounds
from capellm.data.instructions import NOT_VISIBLE, NotVisible, parse_coords, render_conversation
from capellm.inference.engine import Conversation, decode
from capellm.model.capellm import CapeLLM


def nv_model(seed=0) -> CapeLLM:
    from dataclasses import replace

    cfg = preset("tiny").model
    cfg.instruction = replace(cfg.instruction, not_visible_rate=0.25)
    torch.manual_seed(seed)
    return CapeLLM(cfg).eval()


def test_training_rounds_ask_unseen_keypoints_at_the_rate():
    coords = np.arange(8.0).reshape(4, 2) / 10
    hits, rounds = 0, 0
    for seed in range(400):
        ask, c = not_visible_rounds([0, 1, 2, 3], coords, np.array([5, 6, 7]), 0.25, np.random.default_rng(seed))
        nv = np.isnan(c[:, 0])
        assert (~nv).sum() >= 1                                      # coordinates are still learnt
        assert all(a in (5, 6, 7) for a in np.array(ask)[nv]) and len(set(np.array(ask)[nv])) == nv.sum()
        assert np.array_equal(c[~nv], coords[~nv]) and list(np.array(ask)[~nv]) == list(np.arange(4)[~nv])
        hits += nv.sum()
        rounds += 4
    assert 0.2 < hits / rounds < 0.3
    # nothing unseen, or rate 0: the rounds are unchanged
    ask, c = not_visible_rounds([0, 1], coords[:2], np.array([], int), 0.9, np.random.default_rng(0))
    assert ask == [0, 1] and not np.isnan(c).any()


def test_answer_text_and_parse():
    model = nv_model()
    segs = render_conversation(CAT, [0, 1], np.array([[0.5, 0.25], [np.nan, np.nan]]), model.cfg.instruction,
                               model.fmt)
    assert segs[-1].role == "answer" and segs[-1].text == model.fmt.answer_start + NOT_VISIBLE + model.fmt.answer_end
    with pytest.raises(NotVisible):
        parse_coords(NOT_VISIBLE)
    g = model.answer_grammar()
    assert g.nv_first is not None and g.nv_first not in g.slots[0].ids
    assert preset("tiny").model.instruction.not_visible_rate == 0       # off by default
    assert CapeLLM(preset("tiny").model).answer_grammar().nv_first is None


def _favour_not_visible(model, rounds=None):
    """Make the first 'not visible' token win over the digits (a forward hook on the head); with
    `rounds` (a dict the caller updates), only while rounds["now"] is in rounds["nv"]."""
    g = model.answer_grammar()

    def hook(_, __, out):
        if rounds is not None and rounds["now"] not in rounds["nv"]:
            return out
        out = out.clone()
        out[..., g.nv_first] += 1e4
        return out

    return model.llm.get_output_embeddings().register_forward_hook(hook)


def test_engine_answers_not_visible():
    model = nv_model(1)
    crops = random_crops(model, 2, seed=3)
    handle = _favour_not_visible(model)
    try:
        preds = model.predict_crops(crops, [CAT] * 2, mode="multi")
    finally:
        handle.remove()
    for p in preds:
        assert set(p.missing) == set(range(CAT.num_keypoints))
        assert all(why == "not visible" for why in p.missing.values()) and np.isnan(p.keypoints).all()
        assert p.to_dict()["keypoints"][0]["missing"] == "not visible"


def test_the_conversation_goes_on_after_a_not_visible_answer(monkeypatch):
    """Round 1 answered 'not visible' (forced), round 2 free: round 2's answer equals decoding
    the same context spelled out as one prompt, so the answer's tokens reached the cache."""
    import capellm.inference.engine as engine

    model = nv_model(2)
    g = model.answer_grammar()
    st, icfg, fmt = model.segment_tokenizer, model.cfg.instruction, model.fmt
    crop = random_crops(model, 1, seed=5)[0]
    rounds = {"now": -1, "nv": {0}}
    real = engine._constrained_round

    def counted(*a, **kw):
        rounds["now"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(engine, "_constrained_round", counted)
    args = dict(grammar=g, end_ids=model.end_ids(), pad_id=model.tokenizer.pad_token_id, tokenizer=model.tokenizer,
                max_new_tokens=model.cfg.max_new_tokens)
    nan2 = np.array([[np.nan, np.nan], [0.0, 0.0]])
    with torch.no_grad():
        img = model.encode_images(crop.pixel_values[None])
        first = st(render_conversation(CAT, [0], None, icfg, fmt))[0]
        later = st.encode(render_conversation(CAT, [0, 1], nan2, icfg, fmt)[-2].text)  # round 2's prompt
        handle = _favour_not_visible(model, rounds)
        try:
            got = decode(model.llm, img, [Conversation(0, [first, later])], **args)[0]
        finally:
            handle.remove()
        rounds["nv"] = set()
        spelled = st(render_conversation(CAT, [0, 1], nan2, icfg, fmt)[:-1])[0]
        alone = decode(model.llm, img, [Conversation(0, [spelled])], **args)[0][0]
    assert got[0].text == fmt.answer_start + NOT_VISIBLE or got[0].text.endswith(NOT_VISIBLE)
    assert got[0].token_ids == st.encode(fmt.answer_start + NOT_VISIBLE + fmt.answer_end)
    assert got[1].text == alone.text and got[1].logprob == pytest.approx(alone.logprob, abs=1e-4)

"""Confidence-ordered cumulative inference (capellm.inference.cumulative)."""

from __future__ import annotations

import numpy as np
import pytest
from capellm.inference.cumulative import cumulative_predict


def test_each_keypoint_is_asked_after_the_surest_others(trained):
    model, crops, cats = trained
    crops, cats = crops[:3], cats[:3]
    single = model.predict_crops(crops, cats, mode="single")
    got = cumulative_predict(model, crops, cats, context=1)
    changed = 0
    for crop, cat, s, g in zip(crops, cats, single, got):
        for kp in range(cat.num_keypoints):
            surest = max((o for o in range(cat.num_keypoints) if o != kp), key=lambda o: s.confidence[o])
            # a two-round conversation [surest, kp]: its first round is the single prompt of
            # `surest`, so its answer is the single answer, and kp is then asked after it
            ref = model.predict_crops([crop], [cat], mode="multi", keypoints=[[surest, kp]])[0]
            assert ref.answers[surest] == s.answers[surest]
            assert g.answers[kp] == ref.answers[kp], (kp, surest)
            changed += g.answers[kp] != s.answers[kp]
    assert changed > 0              # the context changes answers: the comparison is not vacuous


def test_refine_reasks_only_the_least_confident(trained):
    model, crops, cats = trained
    single = model.predict_crops(crops, cats)
    got = cumulative_predict(model, crops, cats, context=2, refine=0.5)
    for cat, s, g in zip(cats, single, got):
        order = np.argsort(-s.confidence, kind="stable")
        kept = order[:cat.num_keypoints - max(1, round(0.5 * cat.num_keypoints))]
        for kp in kept:
            assert g.answers[kp] == s.answers[kp]
    with pytest.raises(ValueError, match="refine"):
        cumulative_predict(model, crops, cats, refine=0.0)
    with pytest.raises(ValueError, match="context"):
        cumulative_predict(model, crops, cats, context=0)

"""Checkpoints written by earlier versions load and predict what they predicted then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from capellm.data.categories import load_category
from capellm.model.capellm import CapeLLM

FIXTURES = Path(__file__).parent / "fixtures"


def test_checkpoint_written_by_0_1_0_loads_and_predicts_the_same():
    expected = json.loads((FIXTURES / "checkpoint_v0_expected.json").read_text())
    model = CapeLLM.from_pretrained(FIXTURES / "checkpoint_v0")
    pred = model.predict(FIXTURES / expected["image"], load_category(FIXTURES / expected["category"]),
                         box=expected["box"])
    assert pred.answers == expected["answers"]
    np.testing.assert_allclose(pred.keypoints, np.array(expected["keypoints"]), atol=1e-6)
    np.testing.assert_allclose(pred.confidence, np.array(expected["confidence"]), rtol=1e-4)

"""Projector pre-training (capellm.projector_pretrain): the questions, only the projector
trains, one `train` run does both stages, and resume across the stage boundary is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_train import assert_same_weights, weights

from capellm.config import ConfigError, ProjectorPretrainConfig
from capellm.data.categories import Category, Keypoint
from capellm.data.instructions import OBJECT_QUESTION, PromptFormat
from capellm.projector_pretrain import NO, YES, qa_segments
from capellm.train import PROJECTOR_STAGE, train


def test_questions_give_coordinates_and_ask_names():
    cat = Category("horse_body", [Keypoint("nose", ""), Keypoint("tail", ""), Keypoint("left eye", "")])
    fmt = PromptFormat.preset("plain")
    segs = qa_segments(cat, [2, 0], np.array([[0.25, 0.5], [0.125, 1.0]]), [1], "direct", fmt, 3)
    assert [s.text for s in segs] == ["Q: Which keypoint is at [0.250,0.500]?\nA:", "left eye</s>",
                                      "Q: Which keypoint is at [0.125,1.000]?\nA:", "nose</s>"]
    segs = qa_segments(cat, [2], np.array([[0.25, 0.5]]), [1], "step-by-step", fmt, 3)
    answers = [s.text for s in segs if s.role == "answer"]
    assert answers == ["horse body</s>", NO + "</s>", YES + "</s>", "left eye</s>"]
    assert OBJECT_QUESTION in segs[0].text and "Is there a tail in this image?" in segs[2].text
    with pytest.raises(ConfigError, match="task must be one of"):
        ProjectorPretrainConfig(task="other")


def _config(tiny_data, out: Path, steps: int, **train):
    cfg = tiny_config(tiny_data, out, max_steps=steps, save_every=1000, **train)
    cfg.train.projector_pretrain = ProjectorPretrainConfig(steps=6, batch_size=4, lr=1e-2, task="step-by-step")
    return cfg


def test_only_the_projector_trains_and_fine_tuning_starts_from_it(tiny_data, tmp_path, monkeypatch):
    import capellm.train as training

    seen = {}
    real = training._projector_stage

    def spy(cfg, model, ds, accelerator):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        real(cfg, model, ds, accelerator)
        changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
        seen.update(changed=changed, flags_kept=flags == {n: p.requires_grad for n, p in model.named_parameters()})

    monkeypatch.setattr(training, "_projector_stage", spy)
    out = tmp_path / "run"
    train(_config(tiny_data, out, 2))
    assert seen["changed"] and all(n.startswith("projector.") for n in seen["changed"])
    assert seen["flags_kept"]
    assert (out / "checkpoints" / PROJECTOR_STAGE).exists()
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert log[0]["projector_pretrain_steps"] == 6 and log[0]["task"] == "step-by-step"


def test_resume_across_the_stage_boundary_is_exact(tiny_data, tmp_path, monkeypatch):
    import capellm.projector_pretrain as stage

    whole = train(_config(tiny_data, tmp_path / "whole", 4))
    # killed after the stage and one fine-tuning step, before any fine-tuning checkpoint
    cut = tmp_path / "cut"
    train(_config(tiny_data, cut, 4), stop_after_steps=1)
    assert not list((cut / "checkpoints").glob("step-*")) and (cut / "checkpoints" / PROJECTOR_STAGE).exists()
    runs = []
    monkeypatch.setattr(stage, "pretrain_projector", lambda *a, **k: runs.append(1))   # must not run again
    resumed = train(_config(tiny_data, cut, 4), resume=True)
    assert not runs
    assert_same_weights(weights(whole), weights(resumed))

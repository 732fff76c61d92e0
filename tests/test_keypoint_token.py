"""The <KEYPOINT> answer (paper App. B.2, Table 8; capellm.model.keypoint_head): the token and its
embedding, training on coordinates, one-pass inference that matches training, checkpoints, and
the commands that run such a model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

from capellm.config import ConfigError, InstructionConfig
from capellm.data.categories import Category, Keypoint
from capellm.data.instructions import IGNORE_INDEX, KEYPOINT_TOKEN, PromptFormat, render_conversation
from capellm.model.keypoint_head import embed_with_keypoint_token

CAT = Category("horse_body", (Keypoint("nose", "the tip of the head"), Keypoint("tail", ""), Keypoint("left eye", "")))


def _kp_config(tiny_data, out: Path, steps: int = 40, **instruction):
    cfg = tiny_config(tiny_data, out, max_steps=steps, save_every=1000, lr=5e-3)
    cfg.model.instruction = replace(cfg.model.instruction, answer="keypoint_token", **instruction)
    return cfg


@pytest.fixture(scope="module")
def kp_run(tiny_data, tmp_path_factory):
    from capellm.train import train

    out = tmp_path_factory.mktemp("kp_run")
    return _kp_config(tiny_data, out), Path(train(_kp_config(tiny_data, out)))


def test_every_round_is_answered_by_the_token_and_carries_no_text_loss():
    cfg = InstructionConfig(answer="keypoint_token", description=False)
    fmt = PromptFormat.preset("plain")
    segs = render_conversation(CAT, [2, 0], np.array([[0.1, 0.2], [0.3, 0.4]]), cfg, fmt)
    assert [(s.role, s.text) for s in segs] == [
        ("prompt", "Q: Where is the left eye of the horse body in this image?\nA:"), ("keypoint", "<KEYPOINT></s>"),
        ("prompt", "Q: Where is the nose of the horse body in this image?\nA:"), ("keypoint", "<KEYPOINT></s>")]
    step = render_conversation(CAT, [1], np.array([[0.5, 0.5]]), replace(cfg, step_by_step=True), fmt)
    assert [s.role for s in step] == ["prompt", "answer", "prompt", "keypoint"]   # the object's name keeps its loss
    with pytest.raises(ConfigError, match="not_visible_rate needs answer 'text'"):
        InstructionConfig(answer="keypoint_token", not_visible_rate=0.2)
    with pytest.raises(ConfigError, match="answer must be one of"):
        InstructionConfig(answer="heatmap")


def test_the_token_embeds_even_beyond_the_llm_vocabulary():
    emb = torch.nn.Embedding(10, 4)
    own = torch.arange(4.0)
    ids = torch.tensor([[1, 10, 2, 10]])                 # 10: the <KEYPOINT> id, past the matrix
    out = embed_with_keypoint_token(emb, ids, 10, own, pad_id=0)
    assert torch.equal(out[0, 1], own) and torch.equal(out[0, 3], own)
    assert torch.equal(out[0, 0], emb.weight[1]) and torch.equal(out[0, 2], emb.weight[2])


def test_training_lowers_the_coordinate_loss_and_checkpoints_hold_the_head(kp_run, tiny_data, tmp_path):
    from safetensors.torch import load_file

    from capellm.data.dataset import collate
    from capellm.model.capellm import CapeLLM
    from capellm.train import build_training, make_accelerator

    cfg = _kp_config(tiny_data, tmp_path / "fit")
    model, ds, *_ = build_training(cfg, make_accelerator(cfg))
    batch = collate([ds[i] for i in range(8)], model.tokenizer.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(100):                   # the decoder and the LLM fit one batch's coordinates
        loss = model(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * losses[0], (losses[0], losses[-5:])

    _, ckpt = kp_run
    state = load_file(str(ckpt / "model.safetensors"))
    assert "keypoint_head.token_embedding" in state and any(k.startswith("keypoint_head.out") for k in state)
    model = CapeLLM.from_pretrained(ckpt)
    assert model.tokenizer.convert_tokens_to_ids(KEYPOINT_TOKEN) == model.keypoint_token_id
    # the LLM's vocabulary does not hold the token: the head embeds it
    assert model.keypoint_token_id >= model.llm.get_input_embeddings().num_embeddings
    again = CapeLLM.from_pretrained(ckpt)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_one_pass_inference_gives_what_the_training_forward_gives(kp_run, tiny_data, mode):
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.crops import crop_instance
    from capellm.data.dataset import categories_for, collate
    from capellm.data.images import load_image
    from capellm.model.capellm import CapeLLM

    _, ckpt = kp_run
    trained = CapeLLM.from_pretrained(ckpt)
    # 40 steps fit the median position; a fresh model with a decoder away from its zero start
    # answers differently per keypoint, which makes the comparison below mean something
    torch.manual_seed(0)
    model = CapeLLM(trained.cfg, tokenizer=trained.tokenizer).eval()
    torch.nn.init.normal_(model.keypoint_head.out.weight, std=1.0)
    ds = load_keypoint_dataset(tiny_data["ann"], tiny_data["images"])
    cats = categories_for(ds, str(tiny_data["categories"]))
    insts = [ds.instances[0], ds.instances[-1]]                       # 3 and 5 keypoints
    crops = [crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, model.cfg.crop) for x in insts]
    icfg = model.cfg.instruction
    preds = model.predict_crops(crops, [cats[x.category_id] for x in insts], mode=mode)
    spread = []
    for x, crop, pred in zip(insts, crops, preds):
        cat = cats[x.category_id]
        kps = list(range(cat.num_keypoints))
        groups = [[k] for k in kps] if mode == "single" else [kps[j:j + icfg.k] for j in range(0, len(kps), icfg.k)]
        for g in groups:        # the training forward on the same conversation, one group at a time
            ids, labels = model.segment_tokenizer(render_conversation(cat, g, np.zeros((len(g), 2)), icfg, model.fmt))
            batch = collate([{"pixel_values": crop.pixel_values, "input_ids": ids, "labels": labels,
                              "keypoint_targets": torch.zeros(len(g), 2)}], model.tokenizer.pad_token_id)
            with torch.no_grad():
                got = model(batch)["keypoints"].numpy()
            np.testing.assert_allclose(pred.keypoints[g], crop.to_image(got), rtol=0, atol=1e-4)
        assert np.isnan(pred.confidence).all() and all(a.startswith("[") for a in pred.answers)
        spread.append(np.ptp(pred.keypoints[:, 0]))
    assert min(spread) > 0.05          # positions differ between keypoints: not one constant answer


def test_eval_and_predict_commands_run_a_keypoint_token_model(kp_run, tiny_data, tmp_path, capsys):
    from PIL import Image

    from capellm.cli import main

    _, ckpt = kp_run
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--ann", str(tiny_data["ann"]), "--image-root",
                 str(tiny_data["images"]), "--categories", str(tiny_data["categories"]), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["decode"] == "keypoint_token" and result["overall"]["instances"] == 12
    image = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (90, 90, 90)).save(image)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ckpt), "--image", str(image),
                 "--category", str(tiny_data["categories"] / "triangle.yaml"), "--spread"]) == 0
    captured = capsys.readouterr()
    kps = json.loads(captured.out)["keypoints"]
    assert len(kps) == 3 and all(k["x"] is not None and k["confidence"] is None for k in kps)
    assert "<KEYPOINT> tokens" in captured.err


def test_step_by_step_with_the_token_trains_both_losses(tiny_data, tmp_path):
    from capellm.data.dataset import collate
    from capellm.model.capellm import CapeLLM
    from capellm.train import build_training, make_accelerator

    cfg = _kp_config(tiny_data, tmp_path / "run", step_by_step=True)
    model, ds, *_ = build_training(cfg, make_accelerator(cfg))
    batch = collate([ds[i] for i in range(4)], model.tokenizer.pad_token_id)
    assert (batch["labels"] != IGNORE_INDEX).any()             # the object's name: next-token loss
    n_kp = int((batch["input_ids"] == model.keypoint_token_id).sum())
    assert n_kp == batch["keypoint_targets"].shape[0] > 0
    out = model(batch)
    text_only = CapeLLM.forward(model, {**batch, "labels": torch.full_like(batch["labels"], IGNORE_INDEX)})
    assert out["loss"] > text_only["loss"] > 0                 # coordinates + the object's name


def test_the_app_runs_a_keypoint_token_model(kp_run, tmp_path):
    from PIL import Image

    from capellm.app import run
    from capellm.model.capellm import CapeLLM

    _, ckpt = kp_run
    model = CapeLLM.from_pretrained(ckpt)
    image = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (90, 90, 90)).save(image)
    picture, rows, status = run(model, str(image), "", "top: the top corner\nleft: the left corner", "", {})
    assert picture is not None and len(rows) == 2 and "2 of 2 keypoints" in status
    assert all(r[1] is not None and r[3] is None and r[4] is None for r in rows)   # no confidence, no spread


def test_text_decoding_and_cumulative_inference_refuse_a_keypoint_token_model(kp_run, tiny_data):
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.crops import crop_instance
    from capellm.data.dataset import categories_for
    from capellm.data.images import load_image
    from capellm.inference.cumulative import cumulative_predict
    from capellm.model.capellm import CapeLLM

    _, ckpt = kp_run
    model = CapeLLM.from_pretrained(ckpt)
    ds = load_keypoint_dataset(tiny_data["ann"], tiny_data["images"])
    cats = categories_for(ds, str(tiny_data["categories"]))
    x = ds.instances[0]
    crop = crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, model.cfg.crop)
    with pytest.raises(ValueError, match="no text answers to decode"):
        cumulative_predict(model, [crop], [cats[x.category_id]])
    with pytest.raises(ValueError, match="no text answers to decode"):
        model.answer(model.encode_images(crop.pixel_values[None]), [0], [[1, 2, 3]])


def test_resume_is_exact_for_a_keypoint_token_run(tiny_data, tmp_path):
    from test_train import assert_same_weights, weights

    from capellm.train import train

    full = _kp_config(tiny_data, tmp_path / "full", steps=6)
    full.train.save_every = 3
    train(full)
    part = _kp_config(tiny_data, tmp_path / "part", steps=6)
    part.train.save_every = 3
    train(part, stop_after_steps=3)
    train(part, resume=True)
    assert_same_weights(weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model"))

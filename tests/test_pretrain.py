"""Encoder pre-training (capellm.pretrain): the loss, the classes, trainability flags, and that a
training run with it resumes exactly and keeps the pre-trained encoder in its checkpoint."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_train import assert_same_weights, weights

from capellm.config import ConfigError, EncoderPretrainConfig, add_arguments, apply_arguments, merge, preset
from capellm.data.categories import Category, Keypoint
from capellm.data.coco import load_keypoint_dataset
from capellm.data.dataset import categories_for
from capellm.model.capellm import CapeLLM
from capellm.pretrain import keypoint_classes, patch_loss, pretrain_encoder
from capellm.train import train


def _cat(cid, names):
    return Category(f"c{cid}", tuple(Keypoint(n, "") for n in names), id=cid)


def test_classes_are_shared_names_or_per_keypoint():
    cats = {2: _cat(2, ["Left Eye", "nose"]), 1: _cat(1, ["nose", "left  eye", "tail"])}
    assert keypoint_classes(cats, "names") == {1: [0, 1, 2], 2: [1, 0]}
    assert keypoint_classes(cats, "keypoints") == {1: [0, 1, 2], 2: [3, 4]}
    with pytest.raises(ValueError, match="target"):
        keypoint_classes(cats, "words")


def test_patch_loss_by_hand():
    # 2x2 patches, one class: the keypoint at (0.75, 0.25) lies in patch 1 (row 0, column 1), at
    # offset (0.5, 0.5) - 0.5 = 0 from its centre; all logits 0 -> cross-entropy log(4)
    out = torch.zeros(1, 4, 1, 3)
    loss = patch_loss(out, [torch.tensor([0])], [torch.tensor([[0.75, 0.25]])], side=2)
    assert loss.item() == pytest.approx(np.log(4))
    out[0, 1, 0, 1] = 0.3                                   # dx wrong by 0.3 at the right patch
    out[0, 2, 0, 2] = 5.0                                   # an offset at another patch costs nothing
    loss = patch_loss(out, [torch.tensor([0])], [torch.tensor([[0.75, 0.25]])], side=2)
    assert loss.item() == pytest.approx(np.log(4) + 0.09)
    assert patch_loss(out, [torch.tensor([], dtype=torch.long)], [torch.zeros(0, 2)], side=2).item() == 0


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_pretraining_learns_and_restores_flags(tiny_data, precision):
    """In float32 and under bf16 autocast (weights stay float32, attention gets SDPA back)."""
    cfg = tiny_config(tiny_data, "unused")
    cfg.model.vision.mode = "frozen"
    data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    cats = categories_for(data, cfg.data.categories)
    torch.manual_seed(0)
    model = CapeLLM(cfg.model)
    assert not any(p.requires_grad for p in model.vision.parameters())
    before = {k: v.clone() for k, v in model.vision.state_dict().items()}
    llm = {k: v.clone() for k, v in model.llm.state_dict().items()}
    stats = pretrain_encoder(model.vision, data.instances, cats, cfg.model.crop, steps=60, batch_size=8, lr=3e-3,
                             precision=precision)
    first, last = stats["loss"]
    assert last < 0.8 * first, stats
    assert all(p.dtype == torch.float32 for p in model.vision.parameters())
    assert model.vision.backbone.config._attn_implementation == "sdpa"
    assert not any(p.requires_grad for p in model.vision.parameters())       # frozen again
    assert any(not torch.equal(before[k], v) for k, v in model.vision.state_dict().items())
    assert all(torch.equal(llm[k], v) for k, v in model.llm.state_dict().items())


def test_pretraining_needs_weights_the_checkpoint_keeps(tiny_data):
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match=r"encoder_pretrain\.steps"):
        merge(cfg, {"model": {"vision": {"name_or_path": "facebook/dinov2-small", "mode": "lora"}},
                    "train": {"encoder_pretrain": {"steps": 10}}})
    with pytest.raises(ConfigError, match=r"encoder_pretrain\.target"):
        merge(cfg, {"train": {"encoder_pretrain": {"target": "words"}}})


def test_pretraining_fields_keep_their_old_flat_names():
    """Run folders, YAML files and flags written before the fields were nested still work."""
    cfg = merge(preset("tiny"), {"train": {"encoder_pretrain_steps": 7, "encoder_pretrain_target": "keypoints"}})
    assert (cfg.train.encoder_pretrain.steps, cfg.train.encoder_pretrain.target) == (7, "keypoints")
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = apply_arguments(preset("tiny"), p.parse_args(["--train.encoder_pretrain_lr", "0.01",
                                                        "--train.encoder_pretrain.batch_size", "3"]))
    assert (cfg.train.encoder_pretrain.lr, cfg.train.encoder_pretrain.batch_size) == (0.01, 3)


def test_training_with_pretraining_resumes_exactly(tiny_data, tmp_path):
    def config(name):
        cfg = tiny_config(tiny_data, tmp_path / name, max_steps=6, save_every=3,
                          encoder_pretrain=EncoderPretrainConfig(steps=5, batch_size=4))
        cfg.model.vision.mode = "frozen"
        return cfg

    train(config("full"))
    part = config("part")
    train(part, stop_after_steps=3)
    train(part, resume=True)                    # no second pre-training: the checkpoint has the encoder
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model")
    assert_same_weights(a, b)
    torch.manual_seed(0)
    fresh = CapeLLM(config("x").model).trained_state_dict()
    assert any(k.startswith("vision.") and not torch.equal(fresh[k], a[k]) for k in a)   # pre-trained, saved


def test_pretraining_draws_from_the_crop_pool(tiny_data, monkeypatch):
    """With a pool (`make_crops`), pre-training crops nothing itself, learns as well, and its
    result is a pure function of the seed."""
    import capellm.pretrain as pretrain_module
    from capellm.data.dataset import make_crops
    from capellm.data.images import ImageCache

    cfg = tiny_config(tiny_data, "unused")
    cfg.model.crop.augment = True
    data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    cats = categories_for(data, cfg.data.categories)
    pool = make_crops(data.instances, cfg.model.crop, 3, 0, ImageCache())
    assert pool.pixels.shape == (len(data.instances), 4, 64, 64, 3) and pool.pixels.dtype == torch.uint8

    def no_crop(*a, **k):
        raise AssertionError("pre-training cropped afresh despite the pool")

    monkeypatch.setattr(pretrain_module, "crop_instance", no_crop)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = CapeLLM(cfg.model)
        stats = pretrain_encoder(model.vision, data.instances, cats, cfg.model.crop, steps=60, batch_size=8,
                                 lr=3e-3, pool=pool)
        results.append(model.vision.state_dict())
    first, last = stats["loss"]
    assert last < 0.8 * first, stats
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    with pytest.raises(ValueError, match="crop pool"):
        pretrain_encoder(model.vision, data.instances[1:], cats, cfg.model.crop, steps=1, pool=pool)

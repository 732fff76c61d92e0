"""Training: the loss goes down, checkpoints are atomic, resume is exact (in-process stop, a real
kill, and the same weights as an uninterrupted run), and two CPU processes train together."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import torch
from conftest import tiny_config
from safetensors.torch import load_file

from capellm import checkpoint as ckpt
from capellm.data.coco import load_keypoint_dataset
from capellm.train import lr_lambda, train


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def lora_config(data, out, **kw):
    # LoRA on the LLM: its dropout draws from the torch RNG, so an inexact RNG restore would show
    cfg = tiny_config(data, out, **kw)
    cfg.model.llm.mode = "lora"
    return cfg


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(100, 0.03, "cosine")
    assert [round(f(s), 4) for s in (0, 1, 2)] == [round(1 / 3, 4), round(2 / 3, 4), 1.0]
    assert f(3) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 96 / 97)), rel=1e-9)
    assert lr_lambda(10, 0.0, "linear")(5) == pytest.approx(0.5)


def test_training_reduces_loss(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", max_steps=30, save_every=100, lr=3e-3)
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_resume_after_stop_equals_uninterrupted(tiny_data, tmp_path):
    # 10 steps over 2+ epochs with gradient accumulation; stop after step 4 and resume
    full = lora_config(tiny_data, tmp_path / "full", max_steps=10, save_every=4, grad_accum=2, batch_size=3)
    train(full)
    part = lora_config(tiny_data, tmp_path / "part", max_steps=10, save_every=4, grad_accum=2, batch_size=3)
    train(part, stop_after_steps=4)
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path / "part")] == ["step-000004"]
    train(part, resume=True)
    assert_same_weights(weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model"))
    opt_full, _, loop_full, _ = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path / "full"))
    opt_part, _, loop_part, _ = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path / "part"))
    assert loop_full == loop_part
    for a, b in zip(opt_full["state"].values(), opt_part["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


def test_a_data_loader_worker_trains_the_same_weights(tiny_data, tmp_path):
    # samples are a pure function of (seed, epoch, index), wherever they are made; 2+ epochs, so
    # the worker is started again for each epoch's loader
    own = lora_config(tiny_data, tmp_path / "own", max_steps=8, save_every=100, batch_size=3)
    train(own)
    worker = lora_config(tiny_data, tmp_path / "worker", max_steps=8, save_every=100, batch_size=3, num_workers=1)
    train(worker)
    assert_same_weights(weights(tmp_path / "own" / "model"), weights(tmp_path / "worker" / "model"))


def _cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "capellm.cli", *args], env=env, **kw)


def _train_args(data, out, steps):
    return ["train", "--preset", "tiny", "--data.train_file", str(data["ann"]),
            "--data.image_root", str(data["images"]), "--data.categories", str(data["categories"]),
            "--train.out_dir", str(out), "--train.max_steps", str(steps), "--train.save_every", "3",
            "--train.keep_last", "10", "--model.llm.mode", "lora"]


def test_killed_run_resumes_to_same_weights(tiny_data, tmp_path):
    steps = 60
    ref = lora_config(tiny_data, tmp_path / "ref", max_steps=steps, save_every=3, keep_last=10)
    train(ref)
    out = tmp_path / "killed"
    proc = _cli(_train_args(tiny_data, out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.checkpoint_dirs(out)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.checkpoint_dirs(out)
    assert done and not (out / "model").exists(), "the run must be killed mid-training"
    rc = _cli(_train_args(tiny_data, out, steps) + ["--resume"], stdout=subprocess.DEVNULL,
              stderr=subprocess.PIPE).communicate()
    assert (out / "model").exists(), rc
    assert_same_weights(weights(tmp_path / "ref" / "model"), weights(out / "model"))


def test_partial_checkpoint_is_ignored_and_cleaned(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", max_steps=2, save_every=1)
    train(cfg, stop_after_steps=1)
    junk = ckpt.tmp_dir_for(tmp_path / "run", 2)
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"half a file")
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-000001"
    train(cfg, resume=True)
    assert not junk.exists()
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-000002"


def test_two_cpu_processes(tiny_data, tmp_path):
    """accelerate launch with 2 CPU processes: trains, checkpoints once, and the result loads."""
    out = tmp_path / "ddp"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    # accelerate's multi-process launcher (as on GPUs); --train.cpu makes the processes use gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "capellm.cli", *_train_args(tiny_data, out, 4), "--train.cpu", "true"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    last = ckpt.latest_checkpoint(out)
    assert last.name == "step-000004"
    assert sorted(p.name for p in last.glob("rng_rank*.json")) == ["rng_rank0.json", "rng_rank1.json"]
    assert ckpt.load_trainer_state(last)[3] == 2
    from capellm.model.capellm import CapeLLM

    CapeLLM.from_pretrained(out / "model")


def test_tensorboard_tracker_gets_loss_lr_throughput_val_metrics_and_config(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tiny_data, tmp_path / "tb", max_steps=3, save_every=3, report_to="tensorboard")
    cfg.data.val_file = cfg.data.train_file
    train(cfg)
    scalars: dict = {}
    for e in sorted((tmp_path / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(e))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = [s.step for s in acc.Scalars(tag)]
    assert {"train/loss", "train/lr", "train/samples_per_s", "val/PCK@0.2", "val/mPCK"} <= set(scalars)
    assert scalars["train/loss"] == [1, 2, 3] and scalars["val/PCK@0.2"] == [3]
    (hparams,) = (tmp_path / "tb").rglob("hparams.yml")            # the run's config, flat
    stored = yaml.safe_load(hparams.read_text())
    assert stored["train.max_steps"] == 3 and stored["model.llm.mode"] == "full"
    assert (tmp_path / "tb" / "metrics_val.json").exists()


def _frozen_config(data, out, **train_kw):
    cfg = tiny_config(data, out, **train_kw)
    cfg.model.vision.mode = "frozen"
    cfg.model.crop.augment = True
    cfg.train.frozen_features = 2
    return cfg


def test_frozen_features_are_the_encoders_output_on_the_pooled_crops(tiny_data, tmp_path):
    """Each sample's image features are the frozen encoder's output on one of its instance's
    pooled crops (redrawn here from the same seed), and the loss on them equals the loss on
    those crops' pixels."""
    import numpy as np

    from capellm.data.crops import crop_instance
    from capellm.data.dataset import collate
    from capellm.train import build_training, frozen_features, make_accelerator

    from capellm.inference.attention import training_attention

    cfg = _frozen_config(tiny_data, tmp_path / "ff")
    (tmp_path / "ff").mkdir()
    acc = make_accelerator(cfg)
    model, ds, *_ = build_training(cfg, acc)
    ds.frozen = frozen_features(cfg, model.vision, ds, acc.device, acc.mixed_precision)
    assert ds.frozen.features.shape[:2] == (len(ds.instances), 3)
    model.eval()
    pixel_items, feature_items = [], []
    for i in range(6):
        item = ds[i]
        s = ds.samples[i]
        inst = ds.instances[s.instance]
        entry = next(e for e in range(3) if torch.equal(ds.frozen.features[s.instance, e], item["image_features"]))
        rng = np.random.default_rng([cfg.train.seed, 0x504F4F4C, s.instance, entry]) if entry < 2 else None
        crop = crop_instance(ds.image(inst.image_path), inst.bbox, inst.keypoints, inst.visible, cfg.model.crop, rng)
        with torch.no_grad(), acc.autocast(), training_attention(model, acc.device, acc.mixed_precision):
            ref = model.vision(crop.pixel_values[None])[0]
        torch.testing.assert_close(ref.to(item["image_features"].dtype), item["image_features"])
        feature_items.append(item)
        pixel_items.append({**{k: v for k, v in item.items() if k != "image_features"}, "pixel_values": crop.pixel_values})
    pad = model.tokenizer.pad_token_id
    with torch.no_grad(), acc.autocast(), training_attention(model, acc.device, acc.mixed_precision):
        losses = [model(collate(items, pad))["loss"] for items in (feature_items, pixel_items)]
    torch.testing.assert_close(*losses)


def test_pooled_crops_encode_as_crops_made_batch_by_batch(tiny_data, tmp_path):
    """The pool's crops, made at once (for pre-training to share) or a batch at a time, are the
    same crops (uint8 pixels normalised as crop_instance does) and give the same features."""
    import numpy as np

    from capellm.data.crops import crop_instance
    from capellm.data.dataset import encode_crops, make_crops
    from capellm.data.images import ImageCache

    cfg = _frozen_config(tiny_data, tmp_path / "ff")
    data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    crop, image = cfg.model.crop, ImageCache()
    pool = make_crops(data.instances, crop, 2, 0, image)
    inst = data.instances[3]
    ref = crop_instance(image(inst.image_path), inst.bbox, inst.keypoints, inst.visible, crop,
                        np.random.default_rng([0, 0x504F4F4C, 3, 1]))
    assert torch.equal(pool.normalised(torch.tensor([3]), torch.tensor([1]), crop)[0], ref.pixel_values)
    assert np.array_equal(pool.crops[3][1][0], ref.keypoints)
    encode = lambda px: px.mean(dim=(2, 3))[:, None, :]        # noqa: E731  [B, 1, 3]
    made = [encode_crops(data.instances, crop, 2, 0, image, encode, batch_size=7, pool=p) for p in (pool, None)]
    assert torch.equal(made[0].features, made[1].features)
    assert made[0].features.shape == (len(data.instances), 3, 1, 3)
    assert all(np.array_equal(a[0], b[0]) for ra, rb in zip(made[0].crops, made[1].crops) for a, b in zip(ra, rb))


def test_training_shares_the_pools_crops_with_pre_training_and_resumes_exactly(tiny_data, tmp_path):
    from capellm.config import EncoderPretrainConfig

    def config(name):
        return _frozen_config(tiny_data, tmp_path / name, max_steps=6, save_every=3,
                              encoder_pretrain=EncoderPretrainConfig(steps=5, batch_size=4))

    train(config("full"))
    part = config("part")
    train(part, stop_after_steps=3)
    train(part, resume=True)                    # the pool is made again, from the same seed, without pre-training
    assert_same_weights(weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model"))
    log = [json.loads(line) for line in (tmp_path / "full" / "train.log").read_text().splitlines()]
    assert [r["crop_pool"] for r in log if "crop_pool" in r] == [3 * len(load_keypoint_dataset(
        part.data.train_file, part.data.image_root).instances)]


def test_training_on_frozen_features_resumes_exactly_and_needs_a_frozen_encoder(tiny_data, tmp_path):
    from capellm.config import ConfigError

    train(_frozen_config(tiny_data, tmp_path / "full", max_steps=6, save_every=3))
    part = _frozen_config(tiny_data, tmp_path / "part", max_steps=6, save_every=3)
    train(part, stop_after_steps=3)
    train(part, resume=True)                    # the pool is built again, from the same seed
    assert_same_weights(weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model"))
    log = [json.loads(line) for line in (tmp_path / "full" / "train.log").read_text().splitlines()]
    assert any(r.get("frozen_features") == 2 for r in log)
    bad = _frozen_config(tiny_data, tmp_path / "bad")
    bad.model.vision.mode = "lora"
    with pytest.raises(ConfigError, match="frozen_features needs model.vision.mode 'frozen'"):
        bad.__post_init__()


def test_pre_training_shares_the_pools_crops_only_where_their_pixels_fit():
    """The demo's pool (4,800 instances, 5 crops of 64 px: 295 MB) is shared; MP-100's at 224 px
    (about 12,000 instances: 9 GB) is made a batch at a time after pre-training instead."""
    from capellm.config import preset
    from capellm.train import SHARED_CROPS_MAX_BYTES, shared_crops

    demo = preset("demo")
    assert demo.train.frozen_features == 4 and shared_crops(demo, 4800)
    assert 4800 * 5 * 64 * 64 * 3 <= SHARED_CROPS_MAX_BYTES
    demo.model.crop.input_size = 224
    assert not shared_crops(demo, 12000)
    demo.model.crop.input_size, demo.train.frozen_features = 64, 0
    assert not shared_crops(demo, 4800)

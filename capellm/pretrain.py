"""Encoder pre-training: the stand-in for DINOv2's pre-training when the encoder starts random.

CapeLLM starts from a pretrained DINOv2 (Sec. 3.1), whose patch features already tell object parts
apart, so the LLM only has to learn which part a keypoint's name and description point to. No
pretrained DINOv2 installs offline, and a random encoder trained jointly with a random LLM does not
learn to look: the LLM fits a position prior per keypoint name first and then ignores the pixels
(docs/demo.md: 12 variants, up to 3,800 steps, image-reliance gap zero). So with
`train.encoder_pretrain.steps > 0` the training first trains the encoder alone on the training
split, then the CapeLLM training proper starts from it (in the demo with the encoder frozen).

The task, per patch token of the crop: a linear head gives every class a logit (is this keypoint in
this patch?) and an offset inside the patch. The loss is the cross-entropy over the patches plus
the squared offset error at the right patch, averaged over the labelled keypoints inside the crop.
- Classes are keypoint NAMES (`target="names"`, lower-case), shared by every training category
  that uses the name, so what the encoder learns carries over to unseen categories whose keypoints
  have the same names. `target="keypoints"` gives each category's keypoints classes of their own.
- Crops use the training augmentation (`model.crop`); batches are drawn with replacement from a
  generator seeded by `train.seed`, so the result is a pure function of the seed. AdamW at a
  constant learning rate.
- Every encoder parameter is trained, whatever `model.vision.mode` says; the mode applies to the
  CapeLLM training that follows, and the trainability flags are restored. The head is dropped.

Measured on split 1 of the synthetic benchmark (`research/encoder_probe.py`): the demo encoder
after 600 steps, read by this head alone (best patch + offset), scores PCK@0.2 57.30 on the unseen
categories, against 42.84 for the per-name mean position.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from capellm.data.categories import Category, name_key
from capellm.data.coco import Instance
from capellm.config import PRETRAIN_TARGETS as TARGETS
from capellm.config import CropConfig
from capellm.data.crops import crop_instance
from capellm.data.dataset import CropPool
from capellm.data.images import ImageCache
from capellm.inference.attention import training_attention

log = logging.getLogger("capellm.pretrain")
_NO_CROP = (np.zeros((0, 2), np.float32), np.zeros(0, bool))    # a pooled instance whose image failed

def keypoint_classes(categories: dict[int, Category], target: str = "names") -> dict[int, list[int]]:
    """Category id -> the class of each of its keypoints. "names": one class per distinct keypoint
    name (`name_key`); "keypoints": one per keypoint of every category (ids in order)."""
    if target not in TARGETS:
        raise ValueError(f"encoder pre-training target must be one of {TARGETS}, got {target!r}")
    classes: dict[int, list[int]] = {}
    names: dict[str, int] = {}
    start = 0
    for cid in sorted(categories):
        kps = categories[cid].keypoints
        if target == "names":
            classes[cid] = [names.setdefault(name_key(k.name), len(names)) for k in kps]
        else:
            classes[cid] = list(range(start, start + len(kps)))
            start += len(kps)
    return classes


def patch_loss(out: torch.Tensor, classes: list[torch.Tensor], points: list[torch.Tensor], side: int) -> torch.Tensor:
    """out: [B, N, C, 3] per patch and class (logit, dx, dy); classes[b]: [J] class ids of crop b's
    keypoints inside the crop, points[b]: [J, 2] their normalised crop coordinates. Cross-entropy
    over the N = side * side patches + squared offset (in patches) at the right patch, mean over
    keypoints (all keypoints of the batch at once)."""
    count = sum(len(c) for c in classes)
    if count == 0:
        return out.sum() * 0.0
    crop_of = torch.cat([torch.full((len(c),), b, dtype=torch.long, device=out.device) for b, c in enumerate(classes)])
    cls = torch.cat(classes)                                           # [M]
    xy = torch.cat(points).clamp(0, 0.9999) * side                     # [M, 2] in patch units
    cell = xy.floor().long()
    target = cell[:, 1] * side + cell[:, 0]                            # [M] row-major patch index
    logits = out[crop_of, :, cls, 0]                                   # [M, N]
    total = F.cross_entropy(logits, target, reduction="sum")
    total = total + ((out[crop_of, target, cls, 1:] - (xy - cell - 0.5)) ** 2).sum()
    return total / count


def pretrain_encoder(vision: nn.Module, instances: list[Instance], categories: dict[int, Category],
                     crop: CropConfig, steps: int, batch_size: int = 64, lr: float = 2e-3,
                     target: str = "names", seed: int = 0, device=None, image_cache: ImageCache | None = None,
                     precision: str = "no", pool: CropPool | None = None) -> dict:
    """Train `vision` (a `capellm.model.vision.VisionEncoder`) in place, as the module docstring
    says. `precision` "bf16": the forward under bf16 autocast (float32 weights and optimiser
    state), as the training that follows. `pool` (`capellm.data.dataset.make_crops` of these
    instances, n >= 1): each drawn instance takes one of its pooled augmented crops instead of a
    fresh one (the crops the frozen-feature pool then encodes: made once for both). Returns
    {"loss": (first, mean of the last 20), "seconds": ..., "head": the trained head, [D] ->
    [3 * classes], for probes (`research/encoder_probe.py`)}."""
    if steps < 1:
        raise ValueError(f"encoder pre-training needs steps >= 1, got {steps}")
    if not instances:
        raise ValueError("encoder pre-training: no training instances")
    if pool is not None and (pool.n < 1 or len(pool.crops) != len(instances)):
        raise ValueError(f"encoder pre-training: the crop pool must hold >= 1 augmented crop of each of the "
                         f"{len(instances)} instances, got {pool.n} of {len(pool.crops)}")
    classes = keypoint_classes(categories, target)
    n_classes = 1 + max(c for cls in classes.values() for c in cls)
    device = torch.device(device) if device is not None else next(vision.parameters()).device
    vision.to(device)
    flags = [p.requires_grad for p in vision.parameters()]
    head = nn.Linear(vision.hidden_size, 3 * n_classes).to(device)      # per class: logit, dx, dy
    for p in vision.parameters():
        p.requires_grad_(True)
    # a constant learning rate, as in the sweeps of research/demo_reading.md (with warm-up and cosine
    # decay the probe below scored 55.2 instead of 57.3)
    fused = device.type in ("cpu", "cuda") or None         # 4x the default CPU loop (capellm.train)
    opt = torch.optim.AdamW([*vision.parameters(), *head.parameters()], lr=lr, fused=fused)
    side = vision.grid_side(crop.input_size)
    pick = np.random.default_rng([seed, 7])
    image = image_cache if image_cache is not None else ImageCache()
    was_training = vision.training
    vision.train()
    attention = training_attention(vision, device, precision)
    losses, t0 = [], time.time()
    try:
        for step in range(steps):
            picks = pick.integers(0, len(instances), size=batch_size)
            if pool is not None:
                entries = pick.integers(0, pool.n, size=batch_size)
                batch = pool.normalised(torch.as_tensor(picks), torch.as_tensor(entries), crop)
                found = [pool.crops[i][e] or _NO_CROP for i, e in zip(picks, entries)]   # None: no image
            else:
                found = []
                for j, i in enumerate(picks):
                    inst = instances[i]
                    c = crop_instance(image(inst.image_path), inst.bbox, inst.keypoints, inst.visible, crop,
                                      np.random.default_rng([seed, step, j]))
                    found.append((c.keypoints, c.in_crop, c.pixel_values))
                batch = torch.stack([f[2] for f in found])
            cls, pts = [], []
            for i, f in zip(picks, found):
                keep = np.flatnonzero(f[1])
                cls.append(torch.as_tensor([classes[instances[i].category_id][k] for k in keep], dtype=torch.long,
                                           device=device))
                pts.append(torch.as_tensor(f[0][keep], dtype=torch.float32, device=device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"), attention:
                tokens = vision(batch.to(device))                          # [B, N, D]
                out = head(tokens).view(batch_size, tokens.shape[1], n_classes, 3)
            loss = patch_loss(out.float(), cls, pts, side)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0 or step + 1 == steps:
                log.info("encoder pre-training step %d/%d: loss %.3f (%.0f s)", step + 1, steps,
                         np.mean(losses[-100:]), time.time() - t0)
    finally:
        for p, flag in zip(vision.parameters(), flags):
            p.requires_grad_(flag)
        vision.train(was_training)
    return {"loss": (losses[0], float(np.mean(losses[-20:]))), "seconds": round(time.time() - t0, 1), "head": head}

"""Projector pre-training (the paper's appendix C): a stage before fine-tuning in which only the
projector trains, the encoder and the LLM frozen, on the training split's instances.

The questions turn the fine-tuning task around: coordinates are given and the keypoint's name is
asked, so the projector learns to put what the encoder sees where the LLM reads positions.
- `direct`: per round, "Which keypoint is at [x,y]?" answered with the keypoint's name.
- `step-by-step`: first "What is the object in this image?" (the category's name), then per
  keypoint "Is there a {keypoint} in this image?" ("Yes" for a keypoint in the crop, "No" for one
  that is unlabelled or outside it) and, after a "Yes", "Which keypoint is at [x,y]?".
Only answers carry loss. Batches are drawn with replacement from a generator seeded by
`train.seed` with the training augmentation, so the stage is a pure function of the seed; AdamW at
a constant learning rate after a 3 % warm-up. The trainability flags are restored afterwards and
the fine-tuning stage starts from the pre-trained projector (capellm.train).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from capellm.data.crops import crop_instance
from capellm.data.dataset import collate, labelled_in_crop
from capellm.data.instructions import OBJECT_QUESTION, Segment, format_coords, user_turn

log = logging.getLogger("capellm.projector_pretrain")

TASKS = ("direct", "step-by-step")
WHICH_QUESTION = "Which keypoint is at {coords}?"
PRESENT_QUESTION = "Is there a {keypoint} in this image?"
YES, NO = "Yes", "No"


def qa_segments(category, asked: list[int], coords: np.ndarray, unseen: list[int], task: str, fmt,
                decimals: int) -> list[Segment]:
    """The conversation of one sample: `asked` keypoints in the crop at `coords` (normalised);
    `unseen`: keypoints not in the crop (step-by-step: asked whether they are there)."""
    segs = [Segment("prompt", fmt.prefix)] if fmt.prefix else []
    turns: list[tuple[str, str]] = []
    if task == "step-by-step":
        turns.append((OBJECT_QUESTION, category.name.replace("_", " ")))
        for kp in unseen:
            turns.append((PRESENT_QUESTION.format(keypoint=category.keypoints[kp].name), NO))
    for kp, (x, y) in zip(asked, coords):
        if task == "step-by-step":
            turns.append((PRESENT_QUESTION.format(keypoint=category.keypoints[kp].name), YES))
        turns.append((WHICH_QUESTION.format(coords=format_coords(x, y, decimals)), category.keypoints[kp].name))
    for r, (question, answer) in enumerate(turns):
        segs.append(user_turn(question, fmt, first=r == 0))
        segs.append(Segment("answer", fmt.answer_start + answer + fmt.answer_end))
    return segs


def qa_corpus(categories) -> list[str]:
    """Texts a tokenizer trained on the training data needs for the stage's questions."""
    texts = [WHICH_QUESTION.format(coords=format_coords(0.5, 0.5)), OBJECT_QUESTION, YES, NO]
    texts += [PRESENT_QUESTION.format(keypoint=kp.name) for c in categories for kp in c.keypoints]
    return texts


def _sample(ds, index: int, rng: np.random.Generator, task: str, k: int) -> dict:
    inst = ds.instances[index]
    cat = ds.categories[inst.category_id]
    crop = crop_instance(ds.image(inst.image_path), inst.bbox, inst.keypoints, inst.visible, ds.crop, rng)
    inside = np.flatnonzero(crop.in_crop)
    if not len(inside):               # augmentation pushed every point out: the plain crop
        crop = crop_instance(ds.image(inst.image_path), inst.bbox, inst.keypoints, inst.visible, ds.crop, None)
        inside = np.flatnonzero(crop.in_crop)
    asked = [int(j) for j in rng.permutation(inside)[:k]]
    unseen = [int(j) for j in rng.permutation(np.flatnonzero(~crop.in_crop))[:1]] if task == "step-by-step" else []
    segs = qa_segments(cat, asked, crop.keypoints[asked], unseen, task, ds.fmt, ds.instruction.decimals)
    ids, labels = ds.segment_tokenizer(segs)
    return {"pixel_values": crop.pixel_values, "input_ids": ids, "labels": labels}


def pretrain_projector(model, ds, steps: int, batch_size: int, lr: float, task: str, seed: int,
                       device: torch.device) -> dict:
    """Train `model.projector` alone for `steps` optimiser steps on `ds`'s instances (an
    InstructionDataset: its crops, prompt format and tokenizer). Returns {"loss": (first, last),
    "seconds": s}."""
    if task not in TASKS:
        raise ValueError(f"projector pre-training task must be one of {TASKS}, got {task!r}")
    eligible = [i for i, x in enumerate(ds.instances) if len(labelled_in_crop(x, ds.crop))]
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("projector."))
    opt = torch.optim.AdamW(list(model.projector.parameters()), lr=lr, weight_decay=0.0)
    warm = max(1, round(0.03 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    rng = np.random.default_rng([seed, 0xC0DE])
    pad = model.tokenizer.pad_token_id
    was_training = model.training
    model.to(device).train()
    t0, first, loss = time.time(), None, None
    try:
        for step in range(steps):
            items = [_sample(ds, int(i), rng, task, ds.instruction.k)
                     for i in rng.choice(eligible, size=batch_size, replace=True)]
            batch = {k: v.to(device) for k, v in collate(items, pad).items()}
            loss = model(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            first = float(loss.detach()) if first is None else first
            if (step + 1) % 100 == 0 or step + 1 == steps:
                log.info("projector pre-training step %d/%d: loss %.3f (%.0f s)", step + 1, steps,
                         float(loss.detach()), time.time() - t0)
    finally:
        opt.zero_grad(set_to_none=True)     # no gradient of the stage may reach fine-tuning's first step
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(was_training)
    return {"loss": (first, float(loss.detach()) if loss is not None else None), "seconds": time.time() - t0}


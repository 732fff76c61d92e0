"""Training samples: annotation records -> cropped image + multi-round instruction + labels.

An epoch is a list of (instance, keypoint group) samples built by `plan_epoch` (Sec. 3.3: every
labelled keypoint that lies in the crop is asked once; the instance repeats once per group).
Everything random is a pure function of (seed, epoch, sample index): the grouping, the
augmentation of sample i, and the order (`epoch_order`). That is what makes `--resume` exact:
the loop only needs to remember the epoch and how many batches of it are done.

Batches are dicts: pixel_values [B,3,S,S], input_ids [B,T], attention_mask [B,T], labels [B,T];
text is padded on the RIGHT (image tokens precede it, see capellm.model.capellm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import logging

import numpy as np
import torch

from capellm.data.categories import Category, CategoryError, load_categories, mp100_categories, name_key
from capellm.data.coco import Instance, KeypointDataset
from capellm.data.instructions import (IGNORE_INDEX, PromptFormat, SegmentTokenizer, plan_groups,
                                       render_conversation)
from capellm.config import CropConfig, InstructionConfig
from capellm.data.crops import crop_instance, crop_to_unit
from capellm.data.images import ImageCache, ImageError, apply_affine


log = logging.getLogger("capellm.data")

def categories_for(dataset: KeypointDataset, source: str, match_names: bool = True) -> dict[int, Category]:
    """The Category of every category id in `dataset`.

    source: "mp100" (the shipped files, matched by id) or a folder of YAML files (matched by id when
    the file has one, else by name). Keypoint counts are checked against the annotations, and,
    for a folder's files, where the annotation file names its keypoints (not just "0", "1", ...),
    so are the names in order (`match_names`; a reordered or renamed file would score silently
    wrong). The shipped MP-100 files use names of their own, checked against MP-100 by the tests.
    """
    if source == "mp100":
        by_id, by_name = mp100_categories(), {}
    else:
        if not Path(source).is_dir():
            raise CategoryError(f"{source}: category folder not found (data.categories)")
        by_name = load_categories(source)
        by_id = {c.id: c for c in by_name.values() if c.id is not None}
    out = {}
    for cid in dataset.category_ids():
        name = dataset.categories[cid].get("name", "")
        cat = by_id.get(cid) or by_name.get(name)
        if cat is None:
            raise CategoryError(f"{dataset.path}: category id {cid} ('{name}') has no category file in {source}")
        cat.check_num_keypoints(dataset.num_keypoints[cid], where=f"{dataset.path} (category {cid})")
        if match_names and source != "mp100":
            _check_names(cat, dataset.categories[cid].get("keypoints") or [], dataset.path)
        out[cid] = cat
    return out


def _check_names(cat: Category, names: list, path) -> None:
    if not names or all(str(n).strip().isdigit() for n in names):
        return                                  # the file does not name its keypoints
    norm = lambda n: name_key(str(n).replace("_", " "))  # noqa: E731
    for i, (ours, theirs) in enumerate(zip(cat.keypoint_names, names)):
        if norm(ours) != norm(theirs):
            raise CategoryError(f"{cat.source}: keypoints[{i}] is '{ours}' but {path} names keypoint {i} "
                                f"'{theirs}' (a reordered or renamed category file?); fix the file, or set "
                                f"data.match_keypoint_names false to score other names on purpose")


def labelled_in_crop(inst: Instance, crop: CropConfig) -> np.ndarray:
    """Indices of the keypoints that are labelled and inside the un-augmented crop."""
    p = apply_affine(inst.keypoints, crop_to_unit(inst.bbox, crop))
    inside = (p >= 0).all(1) & (p <= 1).all(1)
    return np.flatnonzero(inst.visible & inside)


@dataclass(frozen=True)
class Sample:
    instance: int           # index into the instance list
    keypoints: tuple[int, ...]


def plan_epoch(instances: list[Instance], crop: CropConfig, k: int, seed: int, epoch: int) -> list[Sample]:
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    samples = []
    for i, inst in enumerate(instances):
        for g in plan_groups(labelled_in_crop(inst, crop), k, rng):
            samples.append(Sample(i, tuple(g)))
    return samples


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class InstructionDataset(torch.utils.data.Dataset):
    def __init__(self, instances: list[Instance], categories: dict[int, Category], crop: CropConfig,
                 instruction: InstructionConfig, fmt: PromptFormat, segment_tokenizer: SegmentTokenizer,
                 seed: int = 0, augment: bool = True, image_cache: ImageCache | None = None):
        self.instances = instances
        self.categories = categories
        self.crop = crop
        self.instruction = instruction
        self.fmt = fmt
        self.segment_tokenizer = segment_tokenizer
        self.seed = seed
        self.augment = augment and crop.augment
        self.image = image_cache if image_cache is not None else ImageCache(0)
        self.failed: set[str] = set()            # messages of images that failed to decode
        self.epoch = -1
        self.samples: list[Sample] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.samples = plan_epoch(self.instances, self.crop, self.instruction.k, self.seed, epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        """Sample i of the epoch. An image that fails to decode (its header passed the check
        before training) is logged and replaced by the next sample, so one damaged file does
        not end a run hours in; the replacement is deterministic, so resume stays exact."""
        for j in range(len(self.samples)):
            s = self.samples[(i + j) % len(self.samples)]
            try:
                return self._item((i + j) % len(self.samples), s)
            except ImageError as e:
                if str(e) not in self.failed:
                    self.failed.add(str(e))
                    log.warning("skipping a sample: %s", e)
        raise ImageError(f"no image of the data set can be decoded (e.g. {next(iter(self.failed))})")

    def _item(self, i: int, s: "Sample") -> dict:
        inst = self.instances[s.instance]
        cat = self.categories[inst.category_id]
        image = self.image(inst.image_path)
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment else None
        crop = crop_instance(image, inst.bbox, inst.keypoints, inst.visible, self.crop, rng)
        ask = [kp for kp in s.keypoints if crop.in_crop[kp]]
        if not ask:  # augmentation pushed every planned point out: use the plain crop
            crop = crop_instance(image, inst.bbox, inst.keypoints, inst.visible, self.crop, None)
            ask = list(s.keypoints)
        coords = crop.keypoints[ask].astype(np.float64)
        if self.instruction.not_visible_rate > 0:
            ask, coords = not_visible_rounds(ask, coords, np.flatnonzero(~crop.in_crop),
                                             self.instruction.not_visible_rate,
                                             np.random.default_rng([self.seed, self.epoch, i, 0x4E56]))
        words = np.random.default_rng([self.seed, self.epoch, i, 0x5157])      # question wording
        segs = render_conversation(cat, ask, coords, self.instruction, self.fmt, rng=words)
        ids, labels = self.segment_tokenizer(segs)
        item = {"pixel_values": crop.pixel_values, "input_ids": ids, "labels": labels}
        if self.instruction.answer == "keypoint_token":   # the <KEYPOINT> rounds' coordinates, in order
            item["keypoint_targets"] = torch.as_tensor(coords, dtype=torch.float32).reshape(-1, 2)
        return item


def not_visible_rounds(ask: list[int], coords: np.ndarray, unseen: np.ndarray, rate: float,
                       rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
    """Each round is, with probability `rate`, replaced by a question about a keypoint that is
    not in the picture (unlabelled or outside the crop; `unseen`, each used once), answered
    NOT_VISIBLE (a NaN row of coords). At least one coordinate round is kept."""
    ask, coords = list(ask), coords.copy()
    pool = [int(j) for j in rng.permutation(unseen)]
    for r in range(len(ask)):
        if pool and rng.random() < rate and (~np.isnan(coords[:, 0])).sum() > 1:
            ask[r] = pool.pop()
            coords[r] = np.nan
    return ask, coords


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad text; the image tokens that precede it all have the same length. <KEYPOINT>
    answers' coordinates are concatenated over the batch ([M, 2], in the tokens' order)."""
    t = max(len(x["input_ids"]) for x in items)
    b = len(items)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, x in enumerate(items):
        n = len(x["input_ids"])
        ids[i, :n] = torch.tensor(x["input_ids"])
        labels[i, :n] = torch.tensor(x["labels"])
        mask[i, :n] = 1
    batch = {"pixel_values": torch.stack([x["pixel_values"] for x in items]), "input_ids": ids,
             "attention_mask": mask, "labels": labels}
    if "keypoint_targets" in items[0]:
        batch["keypoint_targets"] = torch.cat([x["keypoint_targets"] for x in items])
    return batch

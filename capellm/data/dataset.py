"""Training samples: annotation records -> cropped image + multi-round instruction + labels.

An epoch is a list of (instance, keypoint group) samples built by `plan_epoch` (Sec. 3.3: every
labelled keypoint that lies in the crop is asked once; the instance repeats once per group).
Everything random is a pure function of (seed, epoch, sample index): the grouping, the
augmentation of sample i, and the order (`epoch_order`). That is what makes `--resume` exact:
the loop only needs to remember the epoch and how many batches of it are done.

Batches are dicts: pixel_values [B,3,S,S], input_ids [B,T], attention_mask [B,T], labels [B,T];
text is padded on the RIGHT (image tokens precede it, see capellm.model.capellm). With a frozen
encoder, `train.frozen_features` N replaces the pixels by image_features [B,N_tok,D]: the encoder's
output on one of N augmented crops per instance, all encoded once before training
(`encode_crops`); which crop sample i uses is again a pure function of (seed, epoch, i).
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
from capellm.data.crops import crop_instance, crop_to_unit, normalise_pixels
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


_POOL_CROP, _POOL_DRAW = 0x504F4F4C, 0x44524157     # random-stream tags of the frozen-feature pool


@dataclass
class CropPool:
    """`n` augmented crops of every instance and its plain crop (entry n), as 8-bit pixels, made
    once: the frozen-feature pool encodes them, and encoder pre-training can draw from them instead
    of cropping afresh (`train.frozen_features`)."""

    pixels: torch.Tensor                            # uint8 [instances, n + 1, S, S, 3]
    crops: list[list[tuple[np.ndarray, np.ndarray] | None]]  # [instance][entry]: keypoints [K, 2], in_crop [K]

    @property
    def n(self) -> int:
        return self.pixels.shape[1] - 1

    def normalised(self, index: torch.Tensor, entry: torch.Tensor, crop: CropConfig) -> torch.Tensor:
        """Float32 [B, 3, S, S] encoder input of pool entries (index[b], entry[b]), normalised as
        `crop_instance` does."""
        return normalise_pixels(self.pixels[index, entry], crop)


@dataclass
class FrozenFeatures:
    """What a frozen encoder makes of `n` augmented crops of every instance and of its plain crop
    (entry n), computed once before training (`train.frozen_features`, `encode_crops`)."""

    features: torch.Tensor                          # [instances, n + 1, N, D]
    crops: list[list[tuple[np.ndarray, np.ndarray] | None]]  # [instance][entry]: keypoints [K, 2], in_crop [K]

    @property
    def n(self) -> int:
        return self.features.shape[1] - 1


def make_crops(instances: list[Instance], crop: CropConfig, n: int, seed: int, image: ImageCache,
               first: int = 0) -> CropPool:
    """Crop every instance n times with augmentation (a pure function of (seed, instance index,
    entry); instance j of the list has index first + j) and once plainly. An instance whose image
    cannot be decoded gets black crops and no keypoints (None): its samples are then skipped like
    any undecodable image. Without augmentation (crop.augment false) only the plain crop is made."""
    n = n if crop.augment else 0
    s = crop.input_size
    pixels = torch.zeros(len(instances), n + 1, s, s, 3, dtype=torch.uint8)
    rows: list[list[tuple[np.ndarray, np.ndarray] | None]] = []
    for j, inst in enumerate(instances):
        try:
            picture = image(inst.image_path)
        except ImageError as e:
            log.warning("frozen features: %s", e)
            rows.append([None] * (n + 1))
            continue
        row = []
        for entry in range(n + 1):
            rng = np.random.default_rng([seed, _POOL_CROP, first + j, entry]) if entry < n else None
            c = crop_instance(picture, inst.bbox, inst.keypoints, inst.visible, crop, rng, pixels=False)
            pixels[j, entry].numpy()[...] = c.pixel_values
            row.append((c.keypoints, c.in_crop))
        rows.append(row)
    return CropPool(pixels, rows)


def encode_crops(instances: list[Instance], crop: CropConfig, n: int, seed: int, image: ImageCache,
                 encode, batch_size: int = 256, pool: CropPool | None = None) -> FrozenFeatures:
    """The features of `make_crops`' crops, encoded in batches of about `batch_size` crops with
    `encode` (pixels [B, 3, S, S] -> [B, N, D]). `pool`: crops already made (`make_crops` of the
    same instances and settings); otherwise they are made here a batch at a time, so the pixels of
    all crops are never held at once."""
    n = n if crop.augment else 0
    per = max(1, batch_size // (n + 1))                  # instances per batch
    rows, out = [], []
    for start in range(0, len(instances), per):
        part = (CropPool(pool.pixels[start:start + per], pool.crops[start:start + per]) if pool is not None
                else make_crops(instances[start:start + per], crop, n, seed, image, first=start))
        rows.extend(part.crops)
        out.append(encode(normalise_pixels(part.pixels.flatten(0, 1), crop)))
    features = torch.cat(out)
    return FrozenFeatures(features.view(len(instances), n + 1, *features.shape[1:]), rows)


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
        self.frozen: FrozenFeatures | None = None  # set by training with train.frozen_features
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
        if self.frozen is not None:
            pixels, keypoints, in_crop = self._frozen_crop(i, s)
        else:
            image = self.image(inst.image_path)
            rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment else None
            crop = crop_instance(image, inst.bbox, inst.keypoints, inst.visible, self.crop, rng)
            if not any(crop.in_crop[kp] for kp in s.keypoints):  # augmentation pushed every planned point out
                crop = crop_instance(image, inst.bbox, inst.keypoints, inst.visible, self.crop, None)
            pixels, keypoints, in_crop = {"pixel_values": crop.pixel_values}, crop.keypoints, crop.in_crop
        ask = [kp for kp in s.keypoints if in_crop[kp]] or list(s.keypoints)
        coords = keypoints[ask].astype(np.float64)
        if self.instruction.not_visible_rate > 0:
            ask, coords = not_visible_rounds(ask, coords, np.flatnonzero(~in_crop),
                                             self.instruction.not_visible_rate,
                                             np.random.default_rng([self.seed, self.epoch, i, 0x4E56]))
        words = np.random.default_rng([self.seed, self.epoch, i, 0x5157])      # question wording
        segs = render_conversation(cat, ask, coords, self.instruction, self.fmt, rng=words)
        ids, labels = self.segment_tokenizer(segs)
        item = {**pixels, "input_ids": ids, "labels": labels}
        if self.instruction.answer == "keypoint_token":   # the <KEYPOINT> rounds' coordinates, in order
            item["keypoint_targets"] = torch.as_tensor(coords, dtype=torch.float32).reshape(-1, 2)
        return item

    def _frozen_crop(self, i: int, s: "Sample") -> tuple[dict, np.ndarray, np.ndarray]:
        """Sample i's entry of the frozen-feature pool: one of the instance's n augmented crops
        (the plain one without augmentation, or where the drawn crop holds none of the planned
        points, as for fresh crops)."""
        f = self.frozen
        entry = f.n
        if self.augment and f.n > 0:
            entry = int(np.random.default_rng([self.seed, self.epoch, i, _POOL_DRAW]).integers(f.n))
        row = f.crops[s.instance]
        if row[entry] is None:
            raise ImageError(f"{self.instances[s.instance].image_path}: image could not be decoded")
        if not any(row[entry][1][kp] for kp in s.keypoints):
            entry = f.n
        keypoints, in_crop = row[entry]
        return {"image_features": f.features[s.instance, entry]}, keypoints, in_crop


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
    image = "image_features" if "image_features" in items[0] else "pixel_values"
    batch = {image: torch.stack([x[image] for x in items]), "input_ids": ids, "attention_mask": mask, "labels": labels}
    if "keypoint_targets" in items[0]:
        batch["keypoint_targets"] = torch.cat([x["keypoint_targets"] for x in items])
    return batch

"""Baselines that see no pixels, scored by the same evaluator as the model.

- `centre`: every keypoint at the centre of the box.
- `mean_position`: each keypoint at the mean normalised position (in the un-augmented crop) that
  keypoints of the same NAME have over the training categories; names never seen in training fall
  back to the centre. On MP-100-like data this captures "eyes are near the top" and similar
  priors, so a model has to read the image to beat it.

A model that does not clearly beat the better of the two has learnt a prior, not pose estimation.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from capellm.data.categories import Category, name_key
from capellm.data.coco import Instance, KeypointDataset
from capellm.config import CropConfig
from capellm.data.crops import crop_to_unit
from capellm.data.images import apply_affine, invert_affine
from capellm.metrics import PCKAccumulator


class MeanPositionBaseline:
    def __init__(self, crop: CropConfig):
        self.crop = crop
        self.means: dict[str, np.ndarray] = {}

    key = staticmethod(name_key)

    def fit(self, instances: list[Instance], categories: dict[int, Category]) -> "MeanPositionBaseline":
        sums: dict[str, list] = defaultdict(lambda: [np.zeros(2), 0])
        for inst in instances:
            names = categories[inst.category_id].keypoint_names
            p = apply_affine(inst.keypoints, crop_to_unit(inst.bbox, self.crop))   # [K, 2]
            for k in np.flatnonzero(inst.visible):
                s = sums[self.key(names[k])]
                s[0] += p[k]
                s[1] += 1
        self.means = {n: s / c for n, (s, c) in sums.items()}
        return self

    def predict(self, inst: Instance, category: Category) -> np.ndarray:
        unit = np.array([self.means.get(self.key(n), np.array([0.5, 0.5])) for n in category.keypoint_names])
        return apply_affine(unit, invert_affine(crop_to_unit(inst.bbox, self.crop)))

    def coverage(self, category: Category) -> float:
        """Fraction of the category's keypoint names seen in training."""
        return float(np.mean([self.key(n) in self.means for n in category.keypoint_names]))


def centre_prediction(inst: Instance, category: Category) -> np.ndarray:
    x, y, w, h = inst.bbox
    return np.tile([x + w / 2, y + h / 2], (category.num_keypoints, 1))


def evaluate_baseline(predict, dataset: KeypointDataset, categories: dict[int, Category], thresholds,
                      labels: dict[int, str]) -> dict:
    """PCK of `predict(instance, category) -> [K, 2] pixels` over every instance."""
    acc = PCKAccumulator(thresholds)
    for inst in dataset.instances:
        pred = predict(inst, categories[inst.category_id])
        acc.add(labels[inst.category_id], pred, inst.keypoints, inst.visible, inst.bbox)
    return acc.result()

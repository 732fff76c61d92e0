"""What the accuracy benchmarks share: a trained checkpoint and a test split of the synthetic
benchmark (or any MP-100-format file), read in batches of crops."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Iterator

import torch

from capellm import CapeLLM
from capellm.data.coco import load_keypoint_dataset
from capellm.data.crops import crop_instance
from capellm.data.dataset import categories_for
from capellm.data.images import load_image
from capellm.evaluate import category_labels


def add_split_arguments(p: argparse.ArgumentParser, max_instances: int = 1600) -> None:
    p.add_argument("--checkpoint", default="runs/demo/model")
    p.add_argument("--ann", default="data/synth/annotations/synth_split1_test.json")
    p.add_argument("--image-root", default="data/synth/images")
    p.add_argument("--categories", default="data/synth/categories")
    p.add_argument("--max-instances", type=int, default=max_instances)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="", help="write the result as JSON here")


class Split:
    """The model, the instances and their categories; `batches()` yields (instances, crops, categories)."""

    def __init__(self, args: argparse.Namespace):
        if args.threads:
            torch.set_num_threads(args.threads)
        self.model = CapeLLM.from_pretrained(args.checkpoint).eval()
        ds = load_keypoint_dataset(args.ann, args.image_root)
        self.categories = categories_for(ds, args.categories)
        self.labels = category_labels(ds, self.categories)
        self.instances = ds.instances[:args.max_instances]
        self.batch_size = args.batch_size

    def batches(self) -> Iterator[tuple[list, list, list]]:
        for i in range(0, len(self.instances), self.batch_size):
            chunk = self.instances[i:i + self.batch_size]
            crops = [crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, self.model.cfg.crop)
                     for x in chunk]
            yield chunk, crops, [self.categories[x.category_id] for x in chunk]


def hardware() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_json(path: str, result: dict) -> None:
    import json
    from pathlib import Path

    from capellm.utils import atomic_write_text

    if path:
        atomic_write_text(Path(path), json.dumps(result, indent=1))

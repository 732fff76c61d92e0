"""Shared fixtures: a tiny MP-100-format data set made on the fly, and tiny model configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from capellm.config import preset
from capellm.data.categories import Category, Keypoint, save_category

SHARED = Path(__file__).resolve().parents[2] / "shared"

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def make_tiny_dataset(root: Path, n_images: int = 6, size: int = 64, seed: int = 0) -> dict:
    """Two categories (3 and 5 keypoints) drawn as coloured dots; returns paths."""
    rng = np.random.default_rng(seed)
    cats = [
        Category("triangle", tuple(Keypoint(n, f"The {n} corner of the triangle.") for n in ("top", "left", "right")),
                 supercategory="shape", id=1, skeleton=((0, 1), (1, 2), (2, 0))),
        Category("star", tuple(Keypoint(f"tip {i}", f"Tip number {i} of the star, clockwise.") for i in range(5)),
                 supercategory="shape", id=2),
    ]
    (root / "categories").mkdir(parents=True, exist_ok=True)
    for c in cats:
        save_category(c, root / "categories" / f"{c.name}.yaml")
    images, anns = [], []
    for c in cats:
        (root / "images" / c.name).mkdir(parents=True, exist_ok=True)
        for j in range(n_images):
            img_id = len(images) + 1
            im = Image.new("RGB", (size, size), (40, 40, 40))
            d = ImageDraw.Draw(im)
            x0, y0 = rng.uniform(4, 14, 2)
            w, h = rng.uniform(30, 44, 2)
            pts = np.stack([rng.uniform(x0 + 2, x0 + w - 2, c.num_keypoints),
                            rng.uniform(y0 + 2, y0 + h - 2, c.num_keypoints)], 1)
            vis = np.ones(c.num_keypoints)
            if j % 3 == 2:
                vis[0] = 0
            for k, (x, y) in enumerate(pts):
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=COLOURS[k % len(COLOURS)])
            fn = f"{c.name}/{j}.png"
            im.save(root / "images" / fn)
            images.append({"id": img_id, "file_name": fn, "width": size, "height": size})
            kps = np.concatenate([pts, vis[:, None] * 2], 1).reshape(-1).tolist()
            anns.append({"id": 1000 + img_id, "image_id": img_id, "category_id": c.id, "keypoints": kps,
                         "num_keypoints": int(vis.sum()), "bbox": [float(x0), float(y0), float(w), float(h)],
                         "area": float(w * h), "iscrowd": 0})
    coco = {"info": {}, "images": images, "annotations": anns,
            "categories": [{"id": c.id, "name": c.name, "supercategory": "shape",
                            "keypoints": c.keypoint_names, "skeleton": [list(p) for p in c.skeleton]} for c in cats]}
    (root / "annotations").mkdir(exist_ok=True)
    ann = root / "annotations" / "tiny.json"
    ann.write_text(json.dumps(coco))
    return {"root": root, "ann": ann, "images": root / "images", "categories": root / "categories"}


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """The tiny preset of the synthetic benchmark (7 categories, 8 images of 64 px each)."""
    from capellm.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, tiny=True)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def tiny_config(data: dict, out_dir: Path, **train):
    cfg = preset("tiny")
    cfg.data.train_file = str(data["ann"])
    cfg.data.image_root = str(data["images"])
    cfg.data.categories = str(data["categories"])
    cfg.train.out_dir = str(out_dir)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """The tiny model trained for a few dozen steps: its greedy answers are mostly well-formed
    (in multi mode also in later rounds), and they differ between instances and keypoints."""
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.crops import crop_instance
    from capellm.data.dataset import categories_for
    from capellm.data.images import load_image
    from capellm.model.capellm import CapeLLM
    from capellm.train import train

    cfg = tiny_config(tiny_data, tmp_path_factory.mktemp("decode_run"), max_steps=60, save_every=1000, lr=5e-3)
    model = CapeLLM.from_pretrained(train(cfg)).eval()
    ds = load_keypoint_dataset(tiny_data["ann"], tiny_data["images"])
    cats = categories_for(ds, str(tiny_data["categories"]))
    insts = ds.instances[::2]                                    # both categories (3 and 5 keypoints)
    crops = [crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, model.cfg.crop) for x in insts]
    return model, crops, [cats[x.category_id] for x in insts]

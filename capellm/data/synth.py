"""A synthetic category-agnostic pose benchmark in MP-100 format, generated on the spot.

MP-100's images cannot be redistributed, so capellm ships a benchmark it draws itself: 36
categories in 12 families (quadrupeds, birds, human-like figures, faces, hands, vehicles,
chairs, garments, insects, fish, a desk lamp, a butterfly; see `synth_families`), each with a
keypoint template of 8 to 21 named and described points, written as
    out/annotations/synth_split{1..5}_{train,val,test}.json   COCO keypoints, exactly as MP-100
    out/images/<category>/<n>.png
    out/categories/<category>.yaml                            names + descriptions (categories.py)
    out/README.md, out/.complete                              what was made; written last

Design choices:
- Deterministic: every image is drawn from its own generator seeded by (seed, category name,
  index), so the same seed gives byte-identical files whatever the worker count or the subset
  of categories asked for, and categories can be generated in parallel processes.
- Splits are MP-100's protocol in miniature (`make_splits`): 5 splits with disjoint
  train/val/test categories, every category a test category exactly once, and in every split at
  least one test *family* without any train category (the smallest families are held out whole),
  so part of each test set is novel in kind and not just in proportions. Splits depend only on
  the category list, never on the seed.
- Variation per instance: articulation (joint angles), view (a mirrored pose shows the other
  flank or the back), in-plane rotation, scale, aspect, position (10% partly outside the frame),
  colour, texture (stripes, spots, mottling), a cluttered background with distractor shapes in the
  object's own colours, and in 35% of images one or two occluders drawn over the object.
- Visibility: v = 2 for a point that is drawn and seen; v = 0 (with x = y = 0, as in MP-100) when
  it is hidden by an occluder, by the object itself (a far wheel, the face of a figure seen from
  behind), or outside the image. Occluders never leave fewer than a third of the points labelled
  and every instance has at least one. Points covered only by the figure's own nearer parts (the
  far legs of an animal in profile) stay labelled, as AP-10K / COCO annotators place them.
- Coordinates follow COCO's pixel-index convention (integer = pixel centre), the one
  `capellm.data.coco` and the transforms use. Parts are drawn at 2x and box-filtered down, and the
  drawing coordinates are mapped so that a keypoint lands on the centre of the part drawn for it.
- `bbox` encloses the whole object (occluded parts included, as an annotator would draw it) and
  every labelled keypoint, plus a margin of 1.5% of the image, clipped to the image; `area` is
  the box area (as in the MP-100 files).
- A generation is complete only once `.complete` exists; it records the configuration, so a
  folder from a killed run, or made with other settings, is wiped (only the folders this module
  writes) and regenerated, while a complete one with the same settings is reused as is.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from capellm.data.categories import Category, Keypoint, save_category
from capellm.data.synth_families import FAMILIES, CategorySpec, Family, inside, rot2
from capellm.utils import atomic_write_bytes, atomic_write_text

SYNTH_VERSION = 1  # bump when the drawings change, so stale `.complete` folders are regenerated
SUPERSAMPLE = 2  # parts are drawn at 2x and box-filtered down (anti-aliasing)

# (category id, family, spec), ids 1.. in definition order; ids never depend on a subset
CATEGORIES: list[tuple[int, Family, CategorySpec]] = []
for _fam in FAMILIES:
    for _spec in _fam.categories:
        CATEGORIES.append((len(CATEGORIES) + 1, _fam, _spec))
_BY_NAME = {spec.name: (cid, fam, spec) for cid, fam, spec in CATEGORIES}
assert len(_BY_NAME) == len(CATEGORIES), "category names must be unique"

# six families, 7 categories, keypoint counts 8..21: small but has every split property
TINY_CATEGORIES = ("horse", "cat", "sparrow", "adult", "cat_face", "hand", "desk_lamp")


def category_names() -> list[str]:
    return [spec.name for _, _, spec in CATEGORIES]


def family_of(category_name: str) -> str:
    """The family (also the `supercategory`) of a synthetic category."""
    try:
        return _BY_NAME[category_name][1].name
    except KeyError:
        raise KeyError(f"'{category_name}' is not a synthetic category; known: {', '.join(category_names())}") from None


def category_definition(name: str) -> Category:
    """The category file content: keypoint names and descriptions, family, 0-indexed skeleton."""
    cid, fam, spec = _BY_NAME[name]
    kps = tuple(Keypoint(k, d.replace("{n}", spec.noun)) for k, d in fam.keypoints)
    return Category(name=name, keypoints=kps, supercategory=fam.name, id=cid, skeleton=tuple(fam.skeleton))


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class SynthConfig:
    seed: int = field(default=0, metadata={"help": "random seed; the same seed gives identical files"})
    images_per_category: int = field(default=200, metadata={"help": "images (one instance each) per category"})
    image_size: int = field(default=128, metadata={"help": "square image side in pixels"})
    categories: tuple[str, ...] | None = field(
        default=None, metadata={"help": "comma-separated category names (default: all)"})
    num_splits: int = field(default=5, metadata={"help": "number of train/val/test splits"})

    def __post_init__(self):
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [32, 1024], got {self.image_size}")
        if not 1 <= self.images_per_category < 10000:  # image ids are category id * 10000 + n
            raise ValueError(f"images_per_category must be in [1, 9999], got {self.images_per_category}")
        if self.num_splits < 2:  # every category is a test category once: one split has no train set
            raise ValueError(f"num_splits must be >= 2, got {self.num_splits}")
        if self.categories is not None:
            cats = tuple(self.categories)
            unknown = [c for c in cats if c not in _BY_NAME]
            if unknown:
                raise ValueError(f"unknown categories {unknown}; known: {', '.join(category_names())}")
            if len(set(cats)) != len(cats):
                raise ValueError(f"categories listed twice: {sorted(c for c in set(cats) if cats.count(c) > 1)}")
            object.__setattr__(self, "categories", cats)

    @property
    def category_list(self) -> list[str]:
        """Selected categories in definition (id) order."""
        chosen = set(self.categories) if self.categories is not None else None
        return [n for n in category_names() if chosen is None or n in chosen]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["categories"] = self.category_list
        d["version"] = SYNTH_VERSION
        return d


PRESETS = {
    "default": SynthConfig(),
    "tiny": SynthConfig(images_per_category=8, image_size=64, categories=TINY_CATEGORIES),
}


# --------------------------------------------------------------------------------------------
# splits


def make_splits(names: list[str], num_splits: int = 5, val_frac: float = 0.1) -> list[dict]:
    """Disjoint train/val/test category lists per split (MP-100 style, 70/10/20 in spirit).

    1. The `num_splits` smallest families (ties: definition order) are held out whole, one per
       split, as test categories: that split has a test family with no train category.
    2. The other categories, taken family by family in turns, go to the split whose test set is
       smallest, so every category is a test category exactly once.
    3. Val: about `val_frac` of the categories (at least one), taken from the next splits' test
       sets (different families first); never a test category of the same split, and never the
       last category that would be left for training.
    """
    fams: dict[str, list[str]] = {}
    for n in sorted(names, key=lambda n: _BY_NAME[n][0]):
        fams.setdefault(family_of(n), []).append(n)
    if len(fams) < num_splits:
        raise ValueError(f"{len(fams)} families ({', '.join(fams)}) cannot give each of {num_splits} splits a "
                         f"novel test family: choose categories from at least {num_splits} families")
    fam_rank = {f: i for i, f in enumerate(fams)}
    order = sorted(fams, key=lambda f: (len(fams[f]), fam_rank[f]))
    held = order[:num_splits]
    test: list[list[str]] = [list(fams[f]) for f in held]
    rest = [n for f in order[num_splits:] for n in fams[f]]
    rest.sort(key=lambda n: (fams[family_of(n)].index(n), fam_rank[family_of(n)]))  # families in turns
    for n in rest:
        s = min(range(num_splits), key=lambda i: (len(test[i]), i))
        test[s].append(n)
    n_val = max(1, round(val_frac * len(names))) if num_splits > 1 else 0
    splits = []
    for s in range(num_splits):
        cands = [n for k in range(1, num_splits) for n in test[(s + k) % num_splits]]
        want = min(n_val, len(cands) - 1)  # tiny category lists: keep a train category
        val: list[str] = []
        for distinct in (True, False):
            for n in cands:
                if len(val) >= want:
                    break
                if n in val or (distinct and family_of(n) in {family_of(v) for v in val}):
                    continue
                val.append(n)
        train = [n for n in names if n not in test[s] and n not in val]
        if not train:
            raise ValueError(f"split {s + 1} would have no train categories: use more categories")
        novel = sorted({family_of(n) for n in test[s]} - {family_of(n) for n in train})
        by_id = lambda lst: sorted(lst, key=lambda n: _BY_NAME[n][0])  # noqa: E731
        splits.append({"train": by_id(train), "val": by_id(val), "test": by_id(test[s]), "novel_test_families": novel})
    return splits


# --------------------------------------------------------------------------------------------
# drawing one instance


def _hsv(h, s, v) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30))


def make_palette(rng) -> dict:
    h = rng.random()
    skin = np.array(SKIN[rng.integers(len(SKIN))]) * rng.uniform(0.9, 1.08)
    return {
        "body": _hsv(h, rng.uniform(0.2, 0.85), rng.uniform(0.45, 0.95)),
        "body2": _hsv(h + rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.9)),
        "accent": _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0)),
        "dark": _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.04, 0.18)),
        "light": _hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.88, 1.0)),
        "skin": tuple(int(min(255, c)) for c in skin),
        "hair": _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.5)),
        "metal": _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.2), rng.uniform(0.55, 0.85)),
        "glass": _hsv(rng.uniform(0.5, 0.62), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9)),
        "lamp": _hsv(rng.uniform(0.12, 0.17), rng.uniform(0.1, 0.4), 1.0),
        "red": _hsv(rng.uniform(-0.02, 0.02), rng.uniform(0.75, 1.0), rng.uniform(0.7, 0.95)),
    }


TEXTURED = {"body", "body2"}


def _shade(rgb, side: str, lum: float) -> tuple[int, int, int]:
    c = np.asarray(rgb, float) * lum
    if side == "L":  # the object's own left is drawn darker ...
        c = c * 0.62
    elif side == "R":  # ... and its right lighter: a marker so sides can be read from the image
        c = c + (255 - c) * 0.18
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _lowfreq(rng, S: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1], [S, S]."""
    small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
    return np.asarray(small.resize((S, S), Image.BILINEAR), np.float32) / 127.5 - 1.0


def _background(rng, S: int, pal: dict) -> Image.Image:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a))
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    c0 = np.array(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95)), np.float32)
    c1 = np.array(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95)), np.float32)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img += _lowfreq(rng, S, int(rng.integers(3, 9)))[..., None] * rng.uniform(5, 30)
    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(bg)
    # clutter: random shapes, some in the object's own colours (distractors)
    for _ in range(int(rng.integers(3, 11))):
        if rng.random() < 0.35:
            role, side = rng.choice(["body", "body2", "accent", "dark"]), rng.choice(["L", "R", "C"])
            col = _shade(pal[str(role)], str(side), 1.0)
        else:
            col = _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 1.0))
        kind = rng.integers(4)
        c = rng.uniform(-0.1, 1.1, 2) * S
        r = rng.uniform(0.03, 0.25) * S
        if kind == 0:
            d.ellipse([c[0] - r, c[1] - r * rng.uniform(0.3, 1), c[0] + r, c[1] + r * rng.uniform(0.3, 1)], fill=col)
        elif kind == 1:
            pts = rot2(np.array([[-r, -r * 0.5], [r, -r * 0.5], [r, r * 0.5], [-r, r * 0.5]]), rng.uniform(0, 6.3)) + c
            d.polygon([tuple(p) for p in pts], fill=col)
        elif kind == 2:  # a limb-like bar
            e = c + rng.uniform(-1, 1, 2) * r * 2
            w = int(max(2, rng.uniform(0.01, 0.05) * S))
            d.line([tuple(c), tuple(e)], fill=col, width=w)
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = r * rng.uniform(0.4, 1.0, n)
            pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) + c
            d.polygon([tuple(p) for p in pts], fill=col)
    return bg


def _texture(rng, S: int, scale: float) -> np.ndarray | None:
    kind = rng.integers(4)
    if kind == 0:
        return None
    if kind == 1:  # stripes
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(0.04, 0.12) * scale
        return np.sign(np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)).astype(np.float32)
    if kind == 2:  # spots
        im = Image.new("L", (S, S), 0)
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.015, 0.04) * scale
        for _ in range(int(rng.integers(15, 60))):
            c = rng.uniform(0, S, 2)
            d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        return np.asarray(im, np.float32) / 127.5 - 1.0
    return _lowfreq(rng, S, int(rng.integers(6, 16)))


def _occluder(rng, centre, size) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # rotated rectangle
        w, h = size * rng.uniform(0.5, 1.2), size * rng.uniform(0.3, 0.8)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return rot2(pts, rng.uniform(0, math.pi)) + centre
    if kind == 1:
        return rot2(np.stack([np.cos(t := np.linspace(0, 2 * math.pi, 20, endpoint=False)) * size * 0.5,
                              np.sin(t) * size * rng.uniform(0.25, 0.5)], 1), rng.uniform(0, math.pi)) + centre
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = size * 0.5 * rng.uniform(0.5, 1.0, n)
    return np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) + centre


def render_instance(fam: Family, spec: CategorySpec, rng: np.random.Generator, size: int):
    """Draw one instance. Returns (PIL image, keypoints [K, 3] float, bbox [x, y, w, h], meta);
    meta (for tests and debugging): mirror flag, occluder polygons and all keypoint positions in
    image coordinates, and the keypoints hidden by the object itself."""
    S = size * SUPERSAMPLE
    mirror = bool(rng.random() < 0.5)
    fig = fam.build(spec.shape, rng, mirror)
    K = len(fam.keypoints)
    assert fig.kps.shape == (K, 2), (spec.name, fig.kps.shape)

    # placement: aspect, rotation, scale, position (object -> image pixel coordinates)
    asp = math.exp(rng.uniform(-0.12, 0.12))
    ang = math.radians(rng.uniform(-fam.rotation, fam.rotation))
    c, s = math.cos(ang), math.sin(ang)
    A = np.array([[c, -s], [s, c]]) @ np.diag([asp, 1 / asp])
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for p in fig.prims:
        q = p.pts @ A.T
        pad = p.width / 2 if p.kind == "line" else (p.width if p.kind == "dot" else 0.0)
        lo, hi = np.minimum(lo, q.min(0) - pad), np.maximum(hi, q.max(0) + pad)
    ext = hi - lo
    scale = rng.uniform(0.5, 0.88) * size / float(ext.max())
    wh = ext * scale
    if rng.random() < 0.1:  # partly outside the frame
        pos = np.array([rng.uniform(-0.25 * wh[i], size - 0.75 * wh[i]) for i in range(2)])
    else:
        pos = np.array([rng.uniform(1, max(1.0, size - 1 - wh[i])) for i in range(2)])
    t = pos - lo * scale

    def to_img(pts):  # object -> image (pixel-centre convention)
        return np.asarray(pts, float) @ A.T * scale + t

    def to_draw(pts):  # image -> supersampled drawing coordinates
        return (to_img(pts) + 0.5) * SUPERSAMPLE - 0.5

    # object layer: colour, coverage mask, texture weight, painted far to near
    pal = make_palette(rng)
    obj = Image.new("RGB", (S, S))
    mask = Image.new("L", (S, S), 0)
    texw = Image.new("L", (S, S), 0)
    dO, dM, dT = ImageDraw.Draw(obj), ImageDraw.Draw(mask), ImageDraw.Draw(texw)
    ow = max(1, round(SUPERSAMPLE * size / 128))  # outline width
    for p in sorted(fig.prims, key=lambda p: p.depth):
        col = _shade(pal[p.role], p.side, p.lum)
        oc = tuple(int(v * 0.45) for v in col)
        tv = 255 if p.role in TEXTURED else 0
        q = to_draw(p.pts)
        if p.kind == "poly":
            xy = [tuple(v) for v in q]
            dO.polygon(xy, fill=col, outline=oc, width=ow)
            dM.polygon(xy, fill=255)
            dT.polygon(xy, fill=tv)
        elif p.kind == "line":
            w = max(1.0, p.width * scale * SUPERSAMPLE)
            xy = [tuple(v) for v in q]
            for d, fill, ww in ((dO, oc, w + 2 * ow), (dM, 255, w + 2 * ow), (dO, col, w), (dT, tv, w)):
                d.line(xy, fill=fill, width=int(round(ww)), joint="curve")
                r = ww / 2
                for v in (q[0], q[-1]):
                    d.ellipse([v[0] - r, v[1] - r, v[0] + r, v[1] + r], fill=fill)
        else:
            r = max(0.8, p.width * scale * SUPERSAMPLE)
            v = q[0]
            box = [v[0] - r, v[1] - r, v[0] + r, v[1] + r]
            dO.ellipse(box, fill=col, outline=oc, width=max(1, ow // 2))
            dM.ellipse(box, fill=255)
            dT.ellipse(box, fill=tv)
    tex = _texture(rng, S, S * 0.5)
    if tex is not None:
        amp = rng.uniform(0.08, 0.2)
        arr = np.asarray(obj, np.float32)
        arr *= 1.0 + amp * tex[..., None] * (np.asarray(texw, np.float32)[..., None] / 255.0)
        obj = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    img = Image.composite(obj, _background(rng, S, pal), mask)

    # keypoints and visibility
    kps = to_img(fig.kps)
    vis = np.ones(K, bool)
    vis[list(fig.hidden)] = False
    vis &= (kps[:, 0] >= 0) & (kps[:, 0] <= size - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= size - 1)
    occluders = []
    if rng.random() < 0.35 and vis.any():
        for _ in range(int(rng.integers(1, 3))):
            for _try in range(4):
                centre = kps[rng.choice(np.flatnonzero(vis))] + rng.normal(0, 0.08, 2) * wh.max()
                poly = _occluder(rng, centre, rng.uniform(0.15, 0.4) * wh.max())
                v2 = vis & ~np.array([inside(poly, k) for k in kps])
                if v2.sum() >= max(1, math.ceil(K / 3)):
                    occluders.append(poly)
                    vis = v2
                    break
        d = ImageDraw.Draw(img)
        for poly in occluders:
            col = _hsv(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.15, 0.95))
            d.polygon([tuple(v) for v in (poly + 0.5) * SUPERSAMPLE - 0.5], fill=col,
                      outline=tuple(int(v * 0.5) for v in col), width=ow)
    img = img.reduce(SUPERSAMPLE)
    if rng.random() < 0.5:  # sensor noise
        arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1, 4), (size, size, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    # box: the object's pixels and the labelled points, plus a margin, clipped to the image
    m = np.asarray(mask.reduce(SUPERSAMPLE)) > 0
    ys, xs = np.nonzero(m)
    x0, x1 = (xs.min(), xs.max()) if len(xs) else (0, size - 1)
    y0, y1 = (ys.min(), ys.max()) if len(ys) else (0, size - 1)
    if vis.any():
        x0, x1 = min(x0, kps[vis, 0].min()), max(x1, kps[vis, 0].max())
        y0, y1 = min(y0, kps[vis, 1].min()), max(y1, kps[vis, 1].max())
    margin = 0.015 * size
    bx0, by0 = max(0.0, x0 - margin), max(0.0, y0 - margin)
    bx1, by1 = min(size - 1.0, x1 + margin), min(size - 1.0, y1 + margin)
    out = np.zeros((K, 3))
    out[vis, :2] = kps[vis]
    out[vis, 2] = 2
    meta = {"mirror": mirror, "occluders": occluders, "kps": kps, "self_hidden": sorted(fig.hidden)}
    return img, out, [bx0, by0, bx1 - bx0, by1 - by0], meta


def _instance_rng(seed: int, name: str, n: int) -> np.random.Generator:
    # crc32 of the name (not the id or list position): stable across subsets and Python runs
    return np.random.default_rng([seed, zlib.crc32(name.encode()), n])


def _render_category(args) -> tuple[list, list]:
    """Worker: draw and write all images of one category; returns its COCO image/annotation records."""
    out_dir, name, seed, n_images, size = args
    cid, fam, spec = _BY_NAME[name]
    images, anns = [], []
    for n in range(n_images):
        rng = _instance_rng(seed, name, n)
        while True:  # an instance must keep labelled points (MP-100 drops those without)
            img, kps, bbox, _ = render_instance(fam, spec, rng, size)
            if (kps[:, 2] > 0).any() and bbox[2] > 0 and bbox[3] > 0:
                break
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6)
        fn = f"{name}/{n}.png"
        atomic_write_bytes(Path(out_dir) / "images" / fn, buf.getvalue())
        iid = cid * 10000 + n
        images.append({"id": iid, "file_name": fn, "width": size, "height": size})
        r2 = lambda v: round(float(v), 2)  # noqa: E731
        box = [r2(v) for v in bbox]
        anns.append({"id": iid, "image_id": iid, "category_id": cid,
                     "keypoints": [r2(v) for v in kps.reshape(-1)],
                     "num_keypoints": int((kps[:, 2] > 0).sum()),
                     "bbox": box, "area": r2(box[2] * box[3]), "iscrowd": 0})
    return images, anns


# --------------------------------------------------------------------------------------------
# the whole benchmark


def _coco_category(name: str) -> dict:
    cid, fam, _ = _BY_NAME[name]
    return {"id": cid, "name": name, "supercategory": fam.name, "keypoints": [k for k, _ in fam.keypoints],
            "skeleton": [list(p) for p in fam.skeleton]}


def _readme(cfg: SynthConfig, splits: list[dict]) -> str:
    names = cfg.category_list
    fams: dict[str, list[str]] = {}
    for n in names:
        fams.setdefault(family_of(n), []).append(n)
    lines = [
        "# capellm synthetic CAPE benchmark",
        "",
        f"Generated by `capellm.data.synth` (version {SYNTH_VERSION}) with seed {cfg.seed}: "
        f"{len(names)} categories in {len(fams)} families, {cfg.images_per_category} images of "
        f"{cfg.image_size}x{cfg.image_size} px per category, one annotated object per image, in MP-100's COCO "
        "keypoint format.",
        "",
        "- `annotations/synth_split{k}_{train,val,test}.json`: per split, the images of its train / val / test "
        "categories. Category sets are disjoint within a split; every category is a test category in exactly "
        "one split; each split holds out at least one family entirely (novel test family).",
        "- `images/<category>/<n>.png`, `categories/<category>.yaml` (keypoint names and descriptions; the "
        "`supercategory` is the family).",
        "- Keypoints are `[x, y, v]`, pixel-centre coordinates; `v = 2` labelled, `v = 0` (with x = y = 0) hidden by "
        "an occluder, by the object itself, or outside the image.",
        "- Left/right are the object's own sides. Mirrored poses show the other flank or the back; parts on the "
        "object's left are drawn darker and parts on its right lighter.",
        "",
        "| family | categories (keypoints) |",
        "|---|---|",
    ]
    for f, cats in fams.items():
        k = len(_BY_NAME[cats[0]][1].keypoints)
        lines.append(f"| {f} | {', '.join(cats)} ({k}) |")
    lines += ["", "| split | train | val | test | novel test families |", "|---|---|---|---|---|"]
    for i, s in enumerate(splits, 1):
        lines.append(f"| {i} | {len(s['train'])} | {', '.join(s['val'])} | {', '.join(s['test'])} | "
                     f"{', '.join(s['novel_test_families'])} |")
    return "\n".join(lines) + "\n"


def _resolve(tiny: bool, **overrides) -> SynthConfig:
    base = PRESETS["tiny" if tiny else "default"]
    given = {k: v for k, v in overrides.items() if v is not None}
    if "categories" in given:
        given["categories"] = tuple(given["categories"])
    return replace(base, **given)


def generate(out_dir, seed: int = 0, images_per_category: int | None = None, image_size: int | None = None,
             categories: list[str] | None = None, num_splits: int | None = None, tiny: bool = False,
             workers: int | None = None, force: bool = False, verbose: bool = False) -> dict:
    """Generate the benchmark into `out_dir` (reused if already complete with the same settings).

    `tiny=True` selects the unit-test preset (7 categories in 6 families, 8 images of 64 px);
    explicit arguments override the preset. Returns a summary: config, families, splits, counts,
    seconds, and `reused`.
    """
    cfg = _resolve(tiny, seed=seed, images_per_category=images_per_category, image_size=image_size,
                   categories=categories, num_splits=num_splits)
    out = Path(out_dir)
    marker = out / ".complete"
    t0 = time.perf_counter()
    if marker.exists() and not force:
        stored = _read_marker(out)
        if stored.get("config") == cfg.to_dict():
            return {**stored["summary"], "out_dir": str(out), "reused": True, "seconds": 0.0}
    # incomplete, stale or forced: start from scratch (only what this module writes)
    if marker.exists():
        marker.unlink()
    for sub in ("annotations", "images", "categories"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    names = cfg.category_list
    splits = make_splits(names, cfg.num_splits)
    jobs = [(str(out), n, cfg.seed, cfg.images_per_category, cfg.image_size) for n in names]
    if workers is None:  # small jobs (the tiny preset) are faster without starting processes
        small = len(names) * cfg.images_per_category * (cfg.image_size / 128) ** 2 <= 300
        workers = 1 if small else (os.cpu_count() or 1)
    workers = max(1, min(len(jobs), workers))
    if workers > 1:
        # not "fork": the caller may hold threads (torch, a data loader) that a fork would copy
        # mid-lock; a fork server starts clean workers once per run
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            results = list(ex.map(_render_category, jobs))
    else:
        results = [_render_category(j) for j in jobs]
    recs = dict(zip(names, results))

    for n in names:
        save_category(category_definition(n), out / "categories" / f"{n}.yaml")
    info = {"description": "capellm synthetic CAPE benchmark (MP-100 format)", "version": str(SYNTH_VERSION),
            "seed": cfg.seed}
    for k, sp in enumerate(splits, 1):
        for role in ("train", "val", "test"):
            doc = {"info": info,
                   "images": [im for n in sp[role] for im in recs[n][0]],
                   "annotations": [a for n in sp[role] for a in recs[n][1]],
                   "categories": [_coco_category(n) for n in sp[role]]}
            atomic_write_text(out / "annotations" / f"synth_split{k}_{role}.json",
                              json.dumps(doc, separators=(",", ":")))
    atomic_write_text(out / "README.md", _readme(cfg, splits))
    fams: dict[str, list[str]] = {}
    for n in names:
        fams.setdefault(family_of(n), []).append(n)
    summary = {"config": cfg.to_dict(), "num_categories": len(names), "num_families": len(fams),
               "families": fams, "num_images": len(names) * cfg.images_per_category,
               "num_labelled_keypoints": sum(a["num_keypoints"] for _, anns in results for a in anns),
               "splits": splits}
    # the marker goes last: its presence means every file above is complete
    atomic_write_text(marker, json.dumps({"config": cfg.to_dict(), "summary": summary}, indent=1) + "\n")
    secs = time.perf_counter() - t0
    if verbose:
        print(f"wrote {summary['num_images']} images of {len(names)} categories ({len(fams)} families) "
              f"to {out} in {secs:.1f} s")
    return {**summary, "out_dir": str(out), "reused": False, "seconds": round(secs, 3)}


def is_complete(out_dir) -> bool:
    return (Path(out_dir) / ".complete").exists()


def _read_marker(out_dir) -> dict:
    """What `.complete` records (config, summary); {} when it is missing or unreadable."""
    try:
        return json.loads((Path(out_dir) / ".complete").read_text())
    except (OSError, ValueError):
        return {}


def stale_note(out_dir) -> str | None:
    """For a complete benchmark generated with other settings than the default one: a line saying
    which, and how to regenerate (the demo's documented numbers are on the default); else None."""
    stored = _read_marker(out_dir).get("config")
    if stored is None:
        return None
    default = SynthConfig().to_dict()
    show = lambda v: f"{len(v)} names" if isinstance(v, list) else v  # noqa: E731 (category lists)
    diff = [f"{k} {show(stored.get(k))} (default {show(v)})" for k, v in default.items() if stored.get(k) != v]
    if not diff:
        return None
    return (f"note: {out_dir} was generated with {', '.join(diff)}; the documented numbers are on the default "
            f"benchmark: `capellm data synth --out {out_dir} --force` regenerates it")


# --------------------------------------------------------------------------------------------
# command line: `capellm data synth --out DIR ...`


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="capellm data synth",
                                description="Generate the synthetic category-agnostic pose benchmark (MP-100 format).")
    p.add_argument("--out", required=True, help="output folder")
    for f in fields(SynthConfig):  # flags derived from the config, defaults from the chosen preset
        flag = "--" + f.name.replace("_", "-")
        typ = str if f.name == "categories" else int
        p.add_argument(flag, type=typ, default=None, help=f.metadata["help"])
    p.add_argument("--tiny", action="store_true", help="the unit-test preset: 7 categories, 8 images of 64 px")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: all CPUs; one for small jobs such as --tiny)")
    p.add_argument("--force", action="store_true", help="regenerate even if the folder is complete")
    return p


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else None
    try:
        s = generate(a.out, seed=a.seed if a.seed is not None else 0, images_per_category=a.images_per_category,
                     image_size=a.image_size, categories=cats, num_splits=a.num_splits, tiny=a.tiny,
                     workers=a.workers, force=a.force)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state = "already complete, reused" if s["reused"] else f"generated in {s['seconds']:.1f} s"
    print(f"{s['out_dir']}: {s['num_images']} images, {s['num_categories']} categories, "
          f"{s['num_families']} families ({state})")
    for i, sp in enumerate(s["splits"], 1):
        print(f"  split {i}: {len(sp['train'])} train / {len(sp['val'])} val / {len(sp['test'])} test categories; "
              f"novel test families: {', '.join(sp['novel_test_families'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A synthetic category-agnostic pose benchmark in MP-100 format, generated on the spot.

MP-100's images cannot be redistributed, so capellm ships a benchmark it draws itself: 36
categories in 12 families (quadrupeds, birds, human-like figures, faces, hands, vehicles,
chairs, garments, insects, fish, a desk lamp, a butterfly; see capellm.synth.families), each with a
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

import io
import json
import multiprocessing
import os
import shutil
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from capellm.data.categories import Category, Keypoint, save_category
from capellm.errors import CapellmError
from capellm.synth.families import FAMILIES
from capellm.synth.geometry import CategorySpec, Family
from capellm.synth.render import render_instance
from capellm.utils import atomic_write_bytes, atomic_write_text

SYNTH_VERSION = 2  # bump when the files change, so stale `.complete` folders are regenerated
# 2: descriptions name the family ("the animal's own left eye"), never the category
OWNER_FILE = ".capellm-synth"  # written before anything else: this folder's data is the generator's


class SynthError(CapellmError):
    """The output folder holds data the generator did not make; nothing was changed."""

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
    kps = tuple(Keypoint(k, d.replace("{n}", fam.noun)) for k, d in fam.keypoints)
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
        img.save(buf, format="PNG", compress_level=1)   # same pixels as level 6, written 4x faster
        fn = f"{name}/{n}.png"
        atomic_write_bytes(Path(out_dir) / "images" / fn, buf.getvalue(), sync=False)   # os.sync() before the marker
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
        f"Generated by `capellm.synth` (version {SYNTH_VERSION}) with seed {cfg.seed}: "
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
    # incomplete, stale or forced: start from scratch (only what this module writes, and only in
    # a folder it wrote: its owner file, or the .complete of an earlier version)
    ours = (out / OWNER_FILE).exists() or marker.exists()
    theirs = [sub for sub in ("annotations", "images", "categories") if (out / sub).exists()]
    if theirs and not ours:
        raise SynthError(f"{out}: holds {', '.join(f'{s}/' for s in theirs)} that capellm data synth did not make "
                         f"(a real data set?); nothing was changed. Choose another --out, or move them away first")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / OWNER_FILE, "written by capellm data synth: its annotations/, images/ and "
                                        "categories/ may be replaced by the next generation\n")
    if marker.exists():
        marker.unlink()
    for sub in ("annotations", "images", "categories"):
        shutil.rmtree(out / sub, ignore_errors=True)

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
    # the marker goes last: its presence means every file above is complete and on the disk
    if hasattr(os, "sync"):
        os.sync()
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

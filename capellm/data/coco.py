"""Reader for MP-100 / COCO keypoint annotation files.

One JSON file becomes a `KeypointDataset`: a flat list of `Instance` records (one annotated object:
image path, cleaned box, keypoints, labelled mask) plus the category table.

Design choices:
- Same instances, same order, as the reference CAPE code (mmpose-based POMNet / CapeFormer /
  GraphCAPE: `_load_coco_keypoint_annotation_kernel`): images in JSON order (pycocotools'
  `getImgIds()`), then each image's annotations in JSON order (`getAnnIds(imgIds=...)`). The
  support-query protocol draws episodes with `random.sample` over these per-category lists, so
  the order and the count must match exactly to reproduce the published pairs.
- Box cleaning and skip rules are the reference ones (see `clean_bbox` and the MP-100 README):
    1. `iscrowd` annotations are dropped (`getAnnIds(iscrowd=False)`; never happens in MP-100);
    2. "empty box": cleaning leaves x2 <= x1 or y2 <= y1, or `area` <= 0;
    3. "all keypoints zero": max(keypoints) == 0 (every x, y and v is 0);
    4. "no labelled keypoints": the annotation says `num_keypoints` == 0.
  Rules apply in that order and each skipped annotation is counted once, under the first rule
  it fails, in `KeypointDataset.skipped`. Note the consequence on the real files: category 18
  (AFLW face) has annotations with NEGATIVE widths/heights, which rule 2 drops, so split 5's
  test file keeps 98 (not 100) instances of it; the reference code drops the same two.
- Validation is strict and happens before skipping, for every annotation: a malformed record is
  an error even if it would have been skipped. Every `AnnotationError` names the file, the
  record (`annotations[12] (id 345)`) and the field, so a user's own COCO file fails loudly and
  precisely instead of producing a silently wrong crop.
- The keypoint count K of a category is read from the annotations (`len(keypoints) / 3`), since
  the category's `keypoints` name list is empty for MP-100 ids 18 and 40. When the name list
  is non-empty it must agree.
- Coordinates are kept exactly as in the file (float32), in COCO's pixel-index convention
  (integer = pixel centre; see `capellm.data.images`). No coordinate is modified here; crops
  and normalisation live in transforms.
- Speed: plain Python over the parsed JSON, one small numpy array per annotation; a 1.5 MB file
  (2,000 annotations) loads in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capellm.errors import CapellmError


class AnnotationError(CapellmError):
    """An annotation file is malformed; the message names the file, the record and the field."""


@dataclass
class Instance:
    """One annotated object of one image (one COCO annotation that survived the skip rules)."""

    ann_id: int
    image_id: int
    category_id: int
    file_name: str  # as written in the JSON, e.g. "human_body/000000441275.jpg"
    image_path: Path  # image_root / file_name
    width: int  # image size from the JSON (pixels)
    height: int
    bbox: np.ndarray  # float32 [4] cleaned box x, y, w, h (see clean_bbox)
    keypoints: np.ndarray  # float32 [K, 2] image pixels, as in the file (unlabelled ones often 0, 0)
    visible: np.ndarray  # bool [K] labelled (v > 0); only these count in training and PCK


@dataclass
class KeypointDataset:
    """The kept instances of one annotation file, with its category table."""

    path: Path
    instances: list[Instance]  # reference order: images in JSON order, then their annotations
    categories: dict[int, dict]  # id -> raw JSON category record, in the file's order
    num_keypoints: dict[int, int]  # id -> K, read from the annotations
    skipped: dict[str, int] = field(default_factory=dict)  # skip reason -> count

    def by_category(self) -> dict[int, list[Instance]]:
        """Category id -> its instances, in the instance order (categories in file order).

        Every category of the file appears, possibly with an empty list.
        """
        out: dict[int, list[Instance]] = {cid: [] for cid in self.categories}
        for inst in self.instances:
            out[inst.category_id].append(inst)
        return out

    def category_ids(self) -> list[int]:
        """Category ids in the file's order (the order the evaluation protocols iterate in)."""
        return list(self.categories)

    def __len__(self) -> int:
        return len(self.instances)


def clean_bbox(bbox, width: int, height: int) -> np.ndarray | None:
    """The reference CAPE box sanitisation; None when the instance must be skipped.

    The box is clipped to the image, treating x2 = x1 + w - 1 as the last pixel INDEX it covers
    (mmpose's convention):
        x1 = max(0, x)          x2 = min(W - 1, x1 + max(0, w - 1))
        y1 = max(0, y)          y2 = min(H - 1, y1 + max(0, h - 1))
    kept only if x2 > x1 and y2 > y1, and returned as float32 [x1, y1, x2 - x1, y2 - y1].
    (The loader additionally requires `area` > 0 when the annotation has an area.)
    """
    x, y, w, h = (float(v) for v in bbox)
    x1 = max(0.0, x)
    y1 = max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if not (x2 > x1 and y2 > y1):
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# validation helpers: each returns the checked value or raises AnnotationError naming `where`


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    # JSON numbers only: int or float, never bool (True would silently read as 1) or a string
    t = type(v)
    return t is float or t is int


def _get(rec: dict, key: str, where: str, required: bool = True):
    if key not in rec:
        if required:
            raise AnnotationError(f"{where}: field '{key}' is missing")
        return None
    return rec[key]


def _int_field(rec: dict, key: str, where: str, required: bool = True) -> int | None:
    v = _get(rec, key, where, required)
    if v is None and not required:
        return None
    if _is_int(v):
        return v
    # some tools write sizes / ids as 640.0; accept integral floats, nothing else
    if type(v) is float and v.is_integer():
        return int(v)
    raise AnnotationError(f"{where}: field '{key}' must be an integer, got {v!r}")


def _num_list(rec: dict, key: str, where: str) -> list:
    v = _get(rec, key, where)
    if not isinstance(v, list):
        raise AnnotationError(f"{where}: field '{key}' must be a list of numbers, got {type(v).__name__}")
    if not all(_is_num(x) for x in v):
        bad = next(x for x in v if not _is_num(x))
        raise AnnotationError(f"{where}: field '{key}' must contain only numbers, found {bad!r}")
    if not all(math.isfinite(x) for x in v):
        raise AnnotationError(f"{where}: field '{key}' contains NaN or infinity")
    return v


def _inside(file_name: str) -> bool:
    """A relative path that stays below its root ('a/../b' does, '../b' and '/b' do not)."""
    import posixpath

    name = file_name.replace("\\", "/")
    if posixpath.isabs(name) or Path(file_name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        return False
    return not posixpath.normpath(name).startswith("../") and posixpath.normpath(name) != ".."


def _record_name(section: str, i: int, rec: dict) -> str:
    """E.g. annotations[12] (id 345): the position, plus the id when the record has one."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{section}[{i}]" + (f" (id {rid})" if rid is not None else "")


def _record_where(file: str, section: str, i: int, rec: dict) -> str:
    return f"{file}: {_record_name(section, i, rec)}"


# ----------------------------------------------------------------------------------------------


def load_keypoint_dataset(ann_file, image_root=None, category_ids=None,
                          allow_outside_root: bool = False) -> KeypointDataset:
    """Read, validate and clean one MP-100 / COCO keypoint annotation file.

    ann_file: path of the JSON file.
    image_root: folder the `file_name`s are relative to; defaults to the JSON file's folder.
    category_ids: keep only these categories (ids must exist in the file); None keeps all.
        Skips are counted over the kept categories only.
    allow_outside_root: a `file_name` that is absolute or leads out of the image root with ".."
        is an error unless this is set (an annotation file must not open arbitrary files).
    """
    path = Path(ann_file)
    f = str(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{f}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{f}: not valid UTF-8 JSON ({e})") from None

    if not isinstance(data, dict):
        raise AnnotationError(f"{f}: expected a JSON object at the top level, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{f}: top-level field '{key}' is missing")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{f}: top-level field '{key}' must be a list, got {type(data[key]).__name__}")

    # ---- categories: id -> raw record, in file order
    categories: dict[int, dict] = {}
    names_k: dict[int, int] = {}  # K implied by a non-empty 'keypoints' name list
    for i, c in enumerate(data["categories"]):
        where = _record_where(f, "categories", i, c)
        if not isinstance(c, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(c).__name__}")
        cid = _int_field(c, "id", where)
        if cid in categories:
            raise AnnotationError(f"{where}: field 'id' duplicates an earlier category id {cid}")
        name = _get(c, "name", where)
        if not isinstance(name, str):
            raise AnnotationError(f"{where}: field 'name' must be a string, got {name!r}")
        kp_names = c.get("keypoints", [])
        if kp_names is None:
            kp_names = []
        if not isinstance(kp_names, list):
            raise AnnotationError(f"{where}: field 'keypoints' must be a list of names")
        if kp_names:
            names_k[cid] = len(kp_names)
        categories[cid] = c

    if category_ids is not None:
        wanted = [int(c) for c in category_ids]
        missing = [c for c in wanted if c not in categories]
        if missing:
            raise AnnotationError(
                f"{f}: field 'category_ids' asks for categories {missing} that the file does not define "
                f"(it has {sorted(categories)})"
            )
        keep = set(wanted)
    else:
        keep = set(categories)

    # ---- images: id -> record, JSON order kept (dicts preserve insertion order)
    images: dict[int, tuple[str, int, int]] = {}
    for i, im in enumerate(data["images"]):
        where = _record_where(f, "images", i, im)
        if not isinstance(im, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(im).__name__}")
        iid = _int_field(im, "id", where)
        if iid in images:
            raise AnnotationError(f"{where}: field 'id' duplicates an earlier image id {iid}")
        fname = _get(im, "file_name", where)
        if not isinstance(fname, str) or not fname:
            raise AnnotationError(f"{where}: field 'file_name' must be a non-empty string, got {fname!r}")
        if not allow_outside_root and not _inside(fname):
            raise AnnotationError(f"{where}: field 'file_name' {fname!r} leads outside the image root "
                                  f"(absolute, or through '..'); set data.allow_outside_root to allow it")
        w = _int_field(im, "width", where)
        h = _int_field(im, "height", where)
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{where}: fields 'width'/'height' must be positive, got {w}x{h}")
        images[iid] = (fname, w, h)

    # ---- annotations: validate all, then group by image (reference order) and apply skip rules
    num_kpts: dict[int, int] = {}
    first_with_k: dict[int, str] = {}  # category -> the annotation that fixed its K (for messages)
    by_image: dict[int, list] = {iid: [] for iid in images}
    seen_ann: set[int] = set()
    for i, a in enumerate(data["annotations"]):
        where = _record_where(f, "annotations", i, a)
        if not isinstance(a, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(a).__name__}")
        aid = _int_field(a, "id", where)
        if aid in seen_ann:
            raise AnnotationError(f"{where}: field 'id' duplicates an earlier annotation id {aid}")
        seen_ann.add(aid)
        iid = _int_field(a, "image_id", where)
        if iid not in images:
            raise AnnotationError(f"{where}: field 'image_id' = {iid} is not an image of this file")
        cid = _int_field(a, "category_id", where)
        if cid not in categories:
            raise AnnotationError(f"{where}: field 'category_id' = {cid} is not a category of this file")

        kps = _num_list(a, "keypoints", where)
        if len(kps) == 0 or len(kps) % 3:
            raise AnnotationError(
                f"{where}: field 'keypoints' has {len(kps)} values, expected 3*K (x, y, v per keypoint)"
            )
        k = len(kps) // 3
        expected = num_kpts.get(cid, names_k.get(cid))
        if expected is not None and k != expected:
            source = (first_with_k[cid] if cid in first_with_k
                      else f"the {expected} names of category {cid}")
            raise AnnotationError(
                f"{where}: field 'keypoints' has {len(kps)} values, expected 3*{expected} "
                f"(category {cid} has {expected} keypoints per {source})"
            )
        if cid not in num_kpts:
            num_kpts[cid] = k
            first_with_k[cid] = _record_name("annotations", i, a)

        bbox = _num_list(a, "bbox", where)
        if len(bbox) != 4:
            raise AnnotationError(f"{where}: field 'bbox' has {len(bbox)} values, expected 4 (x, y, w, h)")
        area = a.get("area")
        if area is not None and (not _is_num(area) or not math.isfinite(area)):
            raise AnnotationError(f"{where}: field 'area' must be a number, got {area!r}")
        nk = _int_field(a, "num_keypoints", where, required=False)
        crowd = a.get("iscrowd", 0)
        if not (_is_int(crowd) or isinstance(crowd, bool)):
            raise AnnotationError(f"{where}: field 'iscrowd' must be 0 or 1, got {crowd!r}")
        by_image[iid].append((aid, cid, kps, bbox, area, nk, bool(crowd)))

    # the category filter applies only now, so every annotation of the file has been validated
    categories = {cid: c for cid, c in categories.items() if cid in keep}
    # categories without annotations: fall back to the name list when there is one
    for cid in categories:
        if cid not in num_kpts and cid in names_k:
            num_kpts[cid] = names_k[cid]

    instances: list[Instance] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for iid, anns in by_image.items():
        fname, width, height = images[iid]
        for aid, cid, kps, bbox, area, nk, crowd in anns:
            if cid not in keep:
                continue  # not asked for: filtered, not "skipped"
            if crowd:
                skip("crowd")
                continue
            box = clean_bbox(bbox, width, height)
            if box is None or (area is not None and area <= 0):
                skip("empty box")
                continue
            if max(kps) == 0:
                skip("all keypoints zero")
                continue
            if nk is not None and nk == 0:
                skip("no labelled keypoints")
                continue
            arr = np.asarray(kps, dtype=np.float32).reshape(-1, 3)  # [K, 3] x, y, v
            instances.append(Instance(
                ann_id=aid, image_id=iid, category_id=cid, file_name=fname,
                image_path=root / fname, width=width, height=height, bbox=box,
                keypoints=np.ascontiguousarray(arr[:, :2]), visible=arr[:, 2] > 0,
            ))

    return KeypointDataset(path=path, instances=instances, categories=categories,
                           num_keypoints={cid: num_kpts[cid] for cid in categories if cid in num_kpts},
                           skipped=skipped)


"""A user's MP-100 folder: which images are there, which are not, and what is wrong with the rest.

MP-100's images are not redistributed: users download 13 source data sets and assemble
`<root>/images/<image_folder>/...` themselves (docs/mp100.md), and few manage all of them. This
module tells them where they stand and lets training and evaluation run on what they have.

- `check_mp100(root, ann_dir)`: per category (over every annotation file found), how many of its
  images are present, missing, unreadable (PIL `verify()`, or a full decode with `decode=True`) or
  of another size than the annotation says (the wrong version of a source image: keypoints would
  be off), plus annotation problems (a file that does not load, skipped annotations, a keypoint
  count or name that disagrees with the shipped category file, one image listed with two sizes).
  `format_check` renders it as a table; the dict itself is JSON-ready (`capellm data check-mp100`).
- `write_present` (`--write-present DIR`): each annotation file restricted to the usable images,
  written under the same name, so that `capellm train` / `capellm eval` run on what a user has
  with no further option.
- `filter_present(dataset)`: the same image checks applied to a loaded `KeypointDataset`; keeps
  only instances whose image is present, readable and of the annotated size, drops categories
  left empty, and reports what it dropped. This is what PoseAnything's training/val dataset does
  with `os.path.exists` (models/datasets/datasets/mp100/transformer_dataset.py), plus the
  readability and size checks. Note: the support-query pairs of a filtered test file are no
  longer the published ones (capellm.data.episodes), whereas protocol 1 results stay comparable
  per category.

Image sizes are compared after EXIF orientation, since `capellm.data.images.load_image`
rotates images upright before cropping. Checks run in a thread pool (I/O bound); each image is
checked once even when several annotation files list it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from capellm.data.coco import AnnotationError, KeypointDataset, load_keypoint_dataset

# MP-100 category id -> source data set (../shared/mp100/categories.json), to say what to download
SOURCES: dict[str, tuple[int, ...]] = {
    "AP-10K": (2, 3, 5, 6, 9, 15, 20, 21, 26, 27, 29, 30, 31, 33, 35, 42, 43, 50, 52, 54, 55, 58, 68, 70, 71,
               73, 76, 85, 87, 88, 90, 91, 95, 100),
    "AnimalWeb": (4, 7, 10, 12, 13, 19, 22, 23, 24, 34, 36, 37, 47, 48, 56, 57, 61, 63, 65, 69, 74, 77, 79, 81,
                  82, 89, 93, 94, 96, 99),
    "DeepFashion2": (1, 8, 11, 17, 25, 60, 62, 64, 67, 75, 78, 83, 97),
    "CUB-200-2011": (14, 16, 28, 41, 46, 53, 59, 86),
    "Keypoint-5": (39, 45, 49, 84, 98),
    "CarFusion": (32, 38, 51),
    "AFLW": (18,),
    "300W": (40,),
    "Desert Locust (DeepPoseKit-Data)": (44,),
    "Vinegar Fly (DeepPoseKit-Data)": (66,),
    "COCO": (72,),
    "OneHand10K": (80,),
    "MacaquePose": (92,),
}
SOURCE_OF = {cid: src for src, ids in SOURCES.items() for cid in ids}

# statuses of one image
OK, MISSING, UNREADABLE, WRONG_SIZE = "ok", "missing", "unreadable", "wrong size"
EXPECTED_FILES = [f"mp100_split{s}_{part}.json" for s in range(1, 6) for part in ("train", "val", "test")]


def check_image(path: Path, width: int, height: int, decode: bool = False) -> tuple[str, str]:
    """(status, detail) of one image file against its annotated size.

    decode=False opens the file and runs PIL's `verify()` (header and structure, fast; some
    truncated JPEGs pass it); decode=True decodes every pixel as training does.
    """
    try:
        if decode:
            from capellm.data.images import ImageError, load_image

            try:
                im = load_image(path)
            except ImageError as e:
                if not path.exists():
                    return MISSING, ""
                return UNREADABLE, str(e)
            w, h, orientation = im.width, im.height, 1
        else:
            with Image.open(path) as im:
                w, h = im.size
                im.verify()  # must come right after open: reading EXIF first makes PNG's verify fail
            with Image.open(path) as im:
                orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # stored sideways: load_image turns it upright
                w, h = h, w
    except FileNotFoundError:
        return MISSING, ""
    except IsADirectoryError:
        return UNREADABLE, "is a directory"
    except Exception as e:  # noqa: BLE001 - PIL raises many types for damaged files
        return UNREADABLE, f"{type(e).__name__}: {e}"
    if (w, h) != (width, height):
        rot = f", EXIF orientation {orientation}" if orientation != 1 else ""
        return WRONG_SIZE, f"file is {w}x{h}{rot}, annotation says {width}x{height}"
    return OK, ""


def _check_all(items: dict[Path, tuple[int, int]], decode: bool, workers: int) -> dict[Path, tuple[str, str]]:
    paths = list(items)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda p: check_image(p, *items[p], decode=decode), paths)
        return dict(zip(paths, results))


# ---------------------------------------------------------------------------------------------
# filter_present: train / evaluate on the images a user has


def filter_present(dataset: KeypointDataset, decode: bool = False, workers: int = 8) -> tuple[KeypointDataset, dict]:
    """Keep the instances whose image is present, readable and of the annotated size.

    Returns (filtered dataset, report). Categories left without instances are dropped from the
    dataset's category table. The report: {"instances", "kept", "dropped": {reason: n},
    "per_category": {id: {"instances", "kept", "missing", "unreadable", "wrong size"}},
    "dropped_categories": [ids], "examples": {reason: [a few paths]}}.
    """
    items = {x.image_path: (x.width, x.height) for x in dataset.instances}
    status = _check_all(items, decode, workers)
    kept = [x for x in dataset.instances if status[x.image_path][0] == OK]
    per: dict[int, dict] = {cid: {"instances": 0, "kept": 0, MISSING: 0, UNREADABLE: 0, WRONG_SIZE: 0}
                            for cid in dataset.categories}
    dropped: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for x in dataset.instances:
        s, detail = status[x.image_path]
        per[x.category_id]["instances"] += 1
        if s == OK:
            per[x.category_id]["kept"] += 1
        else:
            per[x.category_id][s] += 1
            dropped[s] = dropped.get(s, 0) + 1
            ex = examples.setdefault(s, [])
            if len(ex) < 5:
                ex.append(f"{x.image_path}" + (f" ({detail})" if detail else ""))
    present_cats = {x.category_id for x in kept}
    skipped = dict(dataset.skipped)
    for s, n in dropped.items():
        skipped[f"image {s}"] = n
    out = replace(dataset, instances=kept,
                  categories={c: v for c, v in dataset.categories.items() if c in present_cats},
                  num_keypoints={c: k for c, k in dataset.num_keypoints.items() if c in present_cats},
                  skipped=skipped)
    report = {"instances": len(dataset.instances), "kept": len(kept), "dropped": dropped,
              "per_category": per, "dropped_categories": [c for c in dataset.categories if c not in present_cats],
              "examples": examples}
    return out, report


def require_images(dataset: KeypointDataset, root_flag: str = "--data.image_root", workers: int = 8) -> None:
    """Before a model loads or a step runs: every image of `dataset` is there, readable (header
    and structure) and of the size its annotation gives; else one ImageError that says how many
    are not, shows one, and names the fix. An empty data set is an AnnotationError."""
    from capellm.data.images import ImageError

    if not dataset.instances:
        raise AnnotationError(f"{dataset.path}: no instance to use (no annotations, or all skipped: "
                              f"{dataset.skipped or 'none listed'})")
    items = {x.image_path: (x.width, x.height) for x in dataset.instances}
    status = _check_all(items, False, workers)
    n = len(items)
    for kind in (MISSING, UNREADABLE, WRONG_SIZE):
        bad = [(p, d) for p, (s, d) in status.items() if s == kind]
        if not bad:
            continue
        path, detail = bad[0]
        root = dataset.instances[0].image_path.parents[len(Path(dataset.instances[0].file_name).parts) - 1]
        if kind == MISSING:
            fix = (f"{root_flag} must be the folder the file_names are relative to (now {root}); "
                   f"--data.only_present true uses the images that are there")
        elif kind == UNREADABLE:
            fix = "replace the damaged files, or use --data.only_present true to leave them out"
        else:
            fix = ("the keypoints would be placed wrongly: use the image version the annotations were made "
                   "on, or --data.only_present true to leave these out")
        raise ImageError(f"{dataset.path}: {len(bad)} of {n} images are {kind}, e.g. {path}"
                         f"{f' ({detail})' if detail else ''}; {fix}")


# ---------------------------------------------------------------------------------------------
# check_mp100: the whole folder


@dataclass
class _Cat:
    name: str
    folders: set
    images: dict  # file_name -> (width, height)
    instances: int = 0  # kept instances, summed over the files
    annotations: int = 0  # raw annotations, summed over the files (kept + skipped)
    problems: list = field(default_factory=list)


def _split_of(name: str) -> str:
    m = re.search(r"split(\d)_(train|val|test)", name)
    return f"split{m.group(1)} {m.group(2)}" if m else ""


def check_mp100(root, ann_dir=None, decode: bool = False, workers: int = 8, present_dir=None) -> dict:
    """Check a user's MP-100 folder: images under root/images, annotations under ann_dir
    (default root/annotations, every *.json in it). Returns a JSON-ready dict (see format_check).

    present_dir: also write there, under the same names, each annotation file restricted to the
    annotations whose image is usable and to the categories that keep at least one (see
    `write_present`): files to train and evaluate on with what the user has.
    """
    from capellm.data.categories import mp100_categories

    root = Path(root)
    image_root = root / "images"
    ann_dir = Path(ann_dir) if ann_dir else root / "annotations"
    files = sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []
    shipped = mp100_categories()
    cats: dict[int, _Cat] = {}
    sizes: dict[str, tuple[int, int]] = {}  # file_name -> size, across files
    size_conflicts: dict[str, list] = {}
    file_reports, loaded = [], []
    for f in files:
        rep = {"file": f.name, "split": _split_of(f.name)}
        try:
            ds = load_keypoint_dataset(f, image_root)
        except AnnotationError as e:
            rep["error"] = str(e)
            file_reports.append(rep)
            continue
        raw = _raw_counts(f)
        loaded.append((rep, ds))
        for cid, c in ds.categories.items():
            cat = cats.setdefault(cid, _Cat(str(c.get("name", "")), set(), {}))
            cat.annotations += raw.get(cid, 0)
            if cid not in shipped:
                _add(cat.problems, f"id {cid} is not an MP-100 category (no shipped category file)")
            else:
                s = shipped[cid]
                k = ds.num_keypoints.get(cid)
                if k is not None and k != s.num_keypoints:
                    _add(cat.problems, f"{f.name}: {k} keypoints, the shipped category file has {s.num_keypoints}")
                if cat.name != s.name:
                    _add(cat.problems, f"{f.name}: named '{cat.name}', MP-100 id {cid} is '{s.name}'")
        for x in ds.instances:
            cat = cats[x.category_id]
            cat.instances += 1
            cat.folders.add(x.file_name.split("/")[0])
            cat.images[x.file_name] = (x.width, x.height)
            prev = sizes.setdefault(x.file_name, (x.width, x.height))
            if prev != (x.width, x.height):
                size_conflicts.setdefault(x.file_name, [prev]).append((x.width, x.height))
                _add(cat.problems, f"{x.file_name} has size {prev[0]}x{prev[1]} in one file and "
                                   f"{x.width}x{x.height} in {f.name}")

    status = _check_all({image_root / fn: wh for fn, wh in sizes.items()}, decode, workers)
    by_name = {fn: status[image_root / fn] for fn in sizes}
    for rep, ds in loaded:
        usable = [x for x in ds.instances if by_name[x.file_name][0] == OK and x.file_name not in size_conflicts]
        per_cat_ok = {}
        for x in ds.instances:
            ok = by_name[x.file_name][0] == OK
            per_cat_ok[x.category_id] = per_cat_ok.get(x.category_id, True) and ok
        rep.update(categories=len(ds.categories), instances=len(ds.instances), usable=len(usable),
                   complete_categories=sum(per_cat_ok.values()), skipped=dict(ds.skipped))
        file_reports.append(rep)
    file_reports.sort(key=lambda r: r["file"])
    written = []
    if present_dir is not None:
        usable = {fn for fn, (st, _) in by_name.items() if st == OK and fn not in size_conflicts}
        for rep, ds in loaded:
            written.append(write_present(ds.path, usable, Path(present_dir) / ds.path.name))

    rows = []
    for cid in sorted(cats):
        c = cats[cid]
        counts = {OK: 0, MISSING: 0, UNREADABLE: 0, WRONG_SIZE: 0}
        examples: dict[str, list] = {}
        for fn in sorted(c.images):
            s, detail = by_name[fn]
            counts[s] += 1
            if s != OK and len(examples.setdefault(s, [])) < 3:
                examples[s].append(fn + (f" ({detail})" if detail else ""))
        skipped = c.annotations - c.instances
        if skipped:
            _add(c.problems, f"{skipped} annotation(s) skipped by the reference rules, summed over the files "
                             f"(see each file's 'skipped')")
        rows.append({"id": cid, "name": c.name, "folder": ",".join(sorted(c.folders)),
                     "source": SOURCE_OF.get(cid, "?"), "images": len(c.images), "present": counts[OK],
                     "missing": counts[MISSING], "unreadable": counts[UNREADABLE], "wrong_size": counts[WRONG_SIZE],
                     "problems": c.problems, "examples": examples})
    totals = {k: sum(r[k] for r in rows) for k in ("images", "present", "missing", "unreadable", "wrong_size")}
    totals["categories"] = len(rows)
    totals["complete_categories"] = sum(r["present"] == r["images"] for r in rows)
    totals["absent_categories"] = sum(r["present"] == 0 for r in rows)
    totals["partial_categories"] = totals["categories"] - totals["complete_categories"] - totals["absent_categories"]
    return {"root": str(root), "image_root": str(image_root), "ann_dir": str(ann_dir),
            "decode": decode, "files": file_reports,
            "missing_files": [n for n in EXPECTED_FILES if not (ann_dir / n).exists()],
            "categories": rows, "totals": totals, "hints": _hints(image_root, rows, ann_dir, files),
            "present_files": written}


def write_present(ann_file: Path, usable: set[str], out: Path) -> dict:
    """Write `ann_file` restricted to the annotations whose image `file_name` is in `usable`.

    Everything else is copied as is, in the same order (so the reference instance order, and the
    skip rules, apply unchanged); images without a kept annotation and categories without one are
    dropped. Returns {"file", "annotations", "kept", "categories", "kept_categories"}.
    """
    with open(ann_file, "rb") as fh:
        data = json.load(fh)
    names = {im["id"]: im["file_name"] for im in data["images"]}
    anns = [a for a in data["annotations"] if names.get(a["image_id"]) in usable]
    cats = {a["category_id"] for a in anns}
    imgs = {a["image_id"] for a in anns}
    out_data = dict(data)
    out_data["annotations"] = anns
    out_data["images"] = [im for im in data["images"] if im["id"] in imgs]
    out_data["categories"] = [c for c in data["categories"] if c["id"] in cats]
    from capellm.utils import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(out_data))
    return {"file": str(out), "annotations": len(data["annotations"]), "kept": len(anns),
            "categories": len(data["categories"]), "kept_categories": len(out_data["categories"])}


def _add(lst: list, msg: str) -> None:
    if msg not in lst:
        lst.append(msg)


def _raw_counts(path: Path) -> dict[int, int]:
    """Annotations per category as written in the file (before any skip rule)."""
    with open(path, "rb") as fh:
        data = json.load(fh)
    out: dict[int, int] = {}
    for a in data.get("annotations", []):
        cid = int(a["category_id"])
        out[cid] = out.get(cid, 0) + 1
    return out


def _hints(image_root: Path, rows: list[dict], ann_dir: Path, files: list[Path]) -> list[str]:
    hints = []
    if not files:
        hints.append(f"no annotation files (*.json) in {ann_dir}: pass --ann-dir, or put the MP-100 annotation "
                     f"files (mp100_split1_train.json ...) there")
    if not image_root.is_dir():
        hints.append(f"{image_root} does not exist: images go under <root>/images/<image_folder>/...")
        return hints
    existing = {p.name for p in image_root.iterdir() if p.is_dir()}
    lower = {n.lower(): n for n in existing}
    absent: dict[str, list[str]] = {}  # source -> folders that do not exist
    names = [r["name"].lower() for r in rows]
    for r in rows:
        for folder in r["folder"].split(","):
            if not folder or folder in existing:
                continue
            # a folder named like the category only hints when the name is unique ("face" is not)
            keys = [folder.lower()] + ([r["name"].lower()] if names.count(r["name"].lower()) == 1 else [])
            near = [lower[k] for k in keys if k in lower and lower[k] != folder]
            if near:
                hints.append(f"category {r['id']} ({r['name']}): images/{folder} does not exist but images/{near[0]} "
                             f"does: rename it to {folder} (folder names are case-sensitive and follow the "
                             f"annotation's file_name, not the category name)")
            if r["id"] == 18:
                hints.append("category 18 (face, AFLW): its images go in a folder called amur_tiger_body "
                             "(an MP-100 oddity), images/amur_tiger_body does not exist")
            absent.setdefault(r["source"], []).append(folder)
    for src, folders in absent.items():
        n = len(SOURCES.get(src, ()))
        shown = ", ".join(folders[:6]) + (f", ... ({len(folders) - 6} more)" if len(folders) > 6 else "")
        hints.append(f"{src}: {len(folders)}" + (f" of {n}" if n else "") + f" image folder(s) absent: {shown}")
    return hints


def _short(problems: list[str], width: int = 70) -> str:
    if not problems:
        return ""
    first = problems[0] if len(problems[0]) <= width else problems[0][:width - 3] + "..."
    return first + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")


def format_check(report: dict) -> str:
    """The check as a plain-text table, one row per category, then totals and per-file lines."""
    lines = [f"MP-100 check of {report['root']}  (images: {report['image_root']}, annotations: {report['ann_dir']})"]
    found = [f["file"] for f in report["files"]]
    lines.append(f"annotation files: {len(found)} found" + (
        f"; not found: {', '.join(report['missing_files'])}" if report["missing_files"] else ""))
    head = (f"{'id':>3}  {'category':<24} {'folder':<24} {'source':<14} {'images':>6} {'present':>7} "
            f"{'missing':>7} {'unread':>6} {'size':>5}  problems")
    lines += ["", head, "-" * len(head)]
    for r in report["categories"]:
        lines.append(f"{r['id']:>3}  {r['name'][:24]:<24} {r['folder'][:24]:<24} {r['source'][:14]:<14} "
                     f"{r['images']:>6} {r['present']:>7} {r['missing']:>7} {r['unreadable']:>6} "
                     f"{r['wrong_size']:>5}  {_short(r['problems'])}")
    t = report["totals"]
    lines += ["", f"total: {t['categories']} categories, {t['images']} images: {t['present']} present, "
                  f"{t['missing']} missing, {t['unreadable']} unreadable, {t['wrong_size']} of another size; "
                  f"categories complete {t['complete_categories']}, partial {t['partial_categories']}, "
                  f"absent {t['absent_categories']}"]
    for f in report["files"]:
        if "error" in f:
            lines.append(f"  {f['file']}: ERROR {f['error']}")
        else:
            skipped = ", ".join(f"{k}: {v}" for k, v in f["skipped"].items())
            lines.append(f"  {f['file']}: {f['categories']} categories, {f['instances']} instances, "
                         f"{f['usable']} usable; {f['complete_categories']} categories complete"
                         + (f"; skipped {skipped}" if skipped else ""))
    for w in report.get("present_files", []):
        lines.append(f"  wrote {w['file']}: {w['kept']} of {w['annotations']} annotations, "
                     f"{w['kept_categories']} of {w['categories']} categories")
    if report["hints"]:
        lines += ["", "hints:"] + [f"  - {h}" for h in report["hints"]]
    return "\n".join(lines)

"""The 100 shipped MP-100 category files match MP-100.

Each file is checked against the category facts in `shared/mp100/categories.json` (id, name, group,
keypoint count, skeleton) and against every annotation file that contains the category (each
annotation's `len(keypoints) // 3`; ids 18 and 40 have no keypoint names in the annotation files,
so the annotations are the only source of their counts 19 and 68). Names are unique within a
category (the loader enforces it) and every keypoint has a description. The checks against MP-100
skip when the shared folder is absent; the file checks always run.
"""

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from capellm.data.categories import load_category, mp100_categories

MP100 = Path(__file__).resolve().parents[2] / "shared" / "mp100"
CATEGORY_DIR = Path(__file__).resolve().parents[1] / "capellm" / "categories" / "mp100"
IDS = list(range(1, 101))


@lru_cache(maxsize=1)
def _facts() -> dict[int, dict]:
    path = MP100 / "categories.json"
    if not path.exists():
        pytest.skip(f"MP-100 facts not found at {path}")
    return {c["id"]: c for c in json.loads(path.read_text())["categories"]}


@lru_cache(maxsize=1)
def _annotation_counts() -> dict[int, set[tuple[str, int]]]:
    """category id -> {(annotation file name, keypoint count of one of its annotations)}."""
    out: dict[int, set[tuple[str, int]]] = {}
    for f in sorted((MP100 / "annotations").glob("*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            out.setdefault(a["category_id"], set()).add((f.name, len(a["keypoints"]) // 3))
    return out


def test_every_mp100_category_is_shipped():
    assert sorted(mp100_categories()) == IDS
    assert sorted(_facts()) == IDS


@pytest.mark.parametrize("cid", IDS)
def test_file_loads_and_is_named_by_id(cid):
    paths = sorted(CATEGORY_DIR.glob(f"{cid:03d}_*.yaml"))
    assert len(paths) == 1, paths
    cat = load_category(paths[0])
    assert cat.id == cid
    assert paths[0].stem == f"{cid:03d}_{cat.name}"
    assert all(k.description for k in cat.keypoints)


@pytest.mark.parametrize("cid", IDS)
def test_category_file_matches_mp100(cid):
    fact = _facts()[cid]
    cat = load_category(CATEGORY_DIR / f"{cid:03d}_{fact['name']}.yaml")
    assert cat.name == fact["name"]
    assert cat.supercategory == fact["group"]
    assert cat.num_keypoints == fact["num_keypoints"]
    assert [list(p) for p in cat.skeleton] == fact["skeleton"]
    seen = _annotation_counts().get(cid, set())
    assert seen, f"category {cid} appears in no annotation file"
    for file_name, n in seen:
        cat.check_num_keypoints(n, where=file_name)


# ---------------------------------------------------------------------------------------------
# the review standard (the paper's Appendix A): definite, object-centric, names and texts agree

HEDGES = ("usually", "normally", "often", "typically", "generally", "roughly", "approximately", "mostly")
# groups photographed (or laid out) facing the camera: the object's own left lies on the image right
FRONTAL_GROUPS = ("clothes", "human_face", "animal_face", "human_body", "furniture")
NAME_WORDS_FREE = {"left", "right", "of", "the", "and", "front", "back", "rear", "top", "bottom", "first", "second",
                   "third", "fourth", "fifth", "upper", "lower", "inner", "outer", "middle", "center", "centre",
                   "end", "tip", "base", "point", "side", "corner", "edge"}


@lru_cache(maxsize=1)
def _shipped() -> dict:
    return mp100_categories()


def _side(name: str) -> str | None:
    left, right = re.search(r"\bleft\b", name.lower()), re.search(r"\bright\b", name.lower())
    return "left" if left and not right else "right" if right and not left else None


def _swap(name: str) -> str:
    return re.sub(r"\b(left|right)\b", lambda m: {"left": "right", "right": "left"}[m.group(1)], name.lower())


@lru_cache(maxsize=1)
def _keypoints() -> dict[int, list[np.ndarray]]:
    """category id -> [K, 3] keypoints of every annotation of the real val/test files."""
    out: dict[int, list] = {}
    for f in sorted((MP100 / "annotations").glob("*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            out.setdefault(a["category_id"], []).append(np.asarray(a["keypoints"], float).reshape(-1, 3))
    return out


def left_on_image_right(cid: int, i: int, j: int) -> tuple[float, int]:
    """Over the real annotations where keypoints i and j are both labelled (and apart): the
    fraction in which i lies to the image right of j, and how many instances that is."""
    v = [k[i, 0] > k[j, 0] for k in _keypoints().get(cid, []) if k[i, 2] > 0 and k[j, 2] > 0
         and abs(k[i, 0] - k[j, 0]) > 1]
    return (float(np.mean(v)) if v else float("nan")), len(v)


def side_pairs(cat) -> list[tuple[int, int]]:
    """(left, right) index pairs: keypoints whose names differ only by the word left / right."""
    names = [k.name.lower() for k in cat.keypoints]
    return [(i, names.index(_swap(n))) for i, n in enumerate(names) if _side(n) == "left" and _swap(n) in names]


INSECTS = {44: (0, 4), 66: (0, 5)}   # locust, fly: filmed from above; (head, abdomen end) indices


def left_of_the_body_axis(cid: int, i: int, j: int) -> float:
    """For insects seen from above: the fraction of instances in which keypoint i lies on the
    image-left side of j when the body is turned head up (the sign of the cross product of the
    abdomen -> head axis and j -> i), i.e. on the insect's own left seen from its back."""
    head, tail = INSECTS[cid]
    v = []
    for k in _keypoints()[cid]:
        if min(k[i, 2], k[j, 2], k[head, 2], k[tail, 2]) > 0:
            ax, d = k[head, :2] - k[tail, :2], k[i, :2] - k[j, :2]
            v.append(ax[0] * d[1] - ax[1] * d[0] < 0)
    return float(np.mean(v))


@pytest.mark.parametrize("cid", IDS)
def test_left_and_right_are_the_objects_own_as_the_annotations_place_them(cid):
    """Measured on the real annotations, so that every file's left is the object's own left:
    - animals and people: where both eyes are labelled the face is toward the camera, so the own
      left eye lies on the image right;
    - the groups photographed facing the camera (clothes, faces, furniture, people): the own-left
      keypoint of a pair lies on the image right in most instances (mean over the pairs >= 60 %);
    - insects filmed from above: the own-left keypoint lies left of the body axis seen head up;
    - the table, whose photos agree on no facing (its own-left corners are on the image right in
      46 %): sides as MP-100's index names give them.
    MP-100's own index names are viewer-centric for the AFLW face (id 18): the data decides."""
    fact = _facts()[cid]
    cat = _shipped()[cid]
    pairs = side_pairs(cat)
    if cid in INSECTS:
        for i, j in pairs:
            f = left_of_the_body_axis(cid, i, j)
            assert f >= 0.9, f"{cat.source}: '{cat.keypoints[i].name}' on the insect's left in only {f:.0%}"
        return
    if cid == 98:
        assert [_side(k.name) for k in cat.keypoints] == [_side(m) for m in fact["index_meaning"]]
        return
    for i, j in pairs:
        name = cat.keypoints[i].name
        f, n = left_on_image_right(cid, i, j)
        if name.lower() == "left eye" and n >= 20:
            assert f >= 0.8, f"{cat.source}: '{name}' lies on the image right in only {f:.0%} of {n} frontal instances"
    if fact["group"] in FRONTAL_GROUPS and pairs:
        fs = [left_on_image_right(cid, i, j)[0] for i, j in pairs]
        # most are at 0.84-1.00; the sea lion, often in profile, is at 0.67; a viewer-centric file would be below 0.4
        assert np.nanmean(fs) >= 0.6, f"{cat.source}: own-left keypoints on the image right in {np.nanmean(fs):.0%}"


@pytest.mark.parametrize("cid", IDS)
def test_descriptions_are_definite_object_centric_and_name_their_part(cid):
    cat = _shipped()[cid]
    for k in cat.keypoints:
        d = k.description.lower()
        hedges = [w for w in HEDGES if re.search(rf"\b{w}\b", d)]
        assert not hedges, f"{cat.source}: '{k.name}' hedges ({hedges}) where the position is definite"
        assert "clockwise" not in d, f"{cat.source}: '{k.name}' enumerates by turning direction, not neighbours"
        side = _side(k.name)
        if side and not re.search(r"from behind|back view|rear view|from the back|from the rear", d):
            assert not re.search(rf"\bimage(?:'s)? {side}\b", d), \
                f"{cat.source}: '{k.name}' puts the object's own {side} on the image {side} in a front view"
        words = [w for w in re.findall(r"[a-z]+", k.name.lower()) if w not in NAME_WORDS_FREE]
        missing = [w for w in words if w.rstrip("s") not in d]
        assert not missing, f"{cat.source}: the description of '{k.name}' never names its {missing}"

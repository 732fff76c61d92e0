"""The shipped MP-100 category files for animal bodies and the COCO person match MP-100.

Checks each file against the category facts in `shared/mp100/categories.json` (id, name,
keypoint count) and against every annotation file that contains the category (each
annotation's `len(keypoints) // 3`). Skips when the shared MP-100 folder is absent.
"""

import json
from functools import lru_cache
from pathlib import Path

import pytest

from capellm.data.categories import load_category

MP100 = Path(__file__).resolve().parents[2] / "shared" / "mp100"
CATEGORY_DIR = Path(__file__).resolve().parents[1] / "capellm" / "categories" / "mp100"
GROUPS = ("animal_body", "human_body")


@lru_cache(maxsize=1)
def _facts() -> dict[int, dict]:
    path = MP100 / "categories.json"
    if not path.exists():
        pytest.skip(f"MP-100 facts not found at {path}")
    cats = json.loads(path.read_text())["categories"]
    return {c["id"]: c for c in cats if c["group"] in GROUPS}


@lru_cache(maxsize=1)
def _annotation_counts() -> dict[int, set[tuple[str, int]]]:
    """category id -> {(annotation file name, keypoint count of one of its annotations)}."""
    out: dict[int, set[tuple[str, int]]] = {}
    for f in sorted((MP100 / "annotations").glob("*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            out.setdefault(a["category_id"], set()).add((f.name, len(a["keypoints"]) // 3))
    return out


# The 45 animal bodies plus the COCO person (ids from categories.json).
IDS = [2, 3, 5, 6, 9, 14, 15, 16, 20, 21, 26, 27, 28, 29, 30, 31, 33, 35, 41, 42, 43, 44, 46, 50,
       52, 53, 54, 55, 58, 59, 66, 68, 70, 71, 72, 73, 76, 85, 86, 87, 88, 90, 91, 92, 95, 100]


def test_id_list_covers_the_groups():
    assert sorted(_facts()) == IDS


@pytest.mark.parametrize("cid", IDS)
def test_category_file_matches_mp100(cid):
    fact = _facts()[cid]
    path = CATEGORY_DIR / f"{cid:03d}_{fact['name']}.yaml"
    cat = load_category(path)
    assert cat.id == cid
    assert cat.name == fact["name"]
    assert cat.supercategory == fact["group"]
    assert cat.num_keypoints == fact["num_keypoints"]
    assert [list(p) for p in cat.skeleton] == fact["skeleton"]
    assert all(k.description for k in cat.keypoints)

    seen = _annotation_counts().get(cid, set())
    assert seen, f"category {cid} appears in no annotation file"
    for file_name, n in seen:
        cat.check_num_keypoints(n, where=file_name)

"""The shipped MP-100 category files for clothes, furniture and vehicles match MP-100.

Covers the 13 DeepFashion2 garments, the 5 Keypoint-5 furniture categories and the 3 CarFusion
vehicles. Each file is checked against `shared/mp100/categories.json` (id, name, group, keypoint
count, skeleton) and against every annotation file that contains the category (each annotation's
`len(keypoints) // 3`). Skips when the shared MP-100 folder is absent.
"""

import json
from functools import lru_cache
from pathlib import Path

import pytest

from capellm.data.categories import load_category

MP100 = Path(__file__).resolve().parents[2] / "shared" / "mp100"
CATEGORY_DIR = Path(__file__).resolve().parents[1] / "capellm" / "categories" / "mp100"
GROUPS = ("clothes", "furniture", "vehicle")

# Ids from categories.json: 13 garments, 5 furniture, 3 vehicles.
IDS = [1, 8, 11, 17, 25, 32, 38, 39, 45, 49, 51, 60, 62, 64, 67, 75, 78, 83, 84, 97, 98]


@lru_cache(maxsize=1)
def _facts() -> dict[int, dict]:
    path = MP100 / "categories.json"
    if not path.exists():
        pytest.skip(f"MP-100 facts not found at {path}")
    cats = json.loads(path.read_text())["categories"]
    return {c["id"]: c for c in cats if c["group"] in GROUPS}


@lru_cache(maxsize=1)
def _annotation_counts() -> dict[int, set[tuple[str, int]]]:
    """category id -> {(annotation file name, keypoints in one of its annotations)}."""
    out: dict[int, set[tuple[str, int]]] = {}
    for f in sorted((MP100 / "annotations").glob("*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            out.setdefault(a["category_id"], set()).add((f.name, len(a["keypoints"]) // 3))
    return out


def test_id_list_covers_the_groups():
    assert sorted(_facts()) == IDS


@pytest.mark.parametrize("cid", IDS)
def test_category_file_matches_mp100(cid):
    fact = _facts()[cid]
    cat = load_category(CATEGORY_DIR / f"{cid:03d}_{fact['name']}.yaml")
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

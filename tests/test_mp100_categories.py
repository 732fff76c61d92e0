"""The 100 shipped MP-100 category files match MP-100.

Each file is checked against the category facts in `shared/mp100/categories.json` (id, name, group,
keypoint count, skeleton) and against every annotation file that contains the category (each
annotation's `len(keypoints) // 3`; ids 18 and 40 have no keypoint names in the annotation files,
so the annotations are the only source of their counts 19 and 68). Names are unique within a
category (the loader enforces it) and every keypoint has a description. The checks against MP-100
skip when the shared folder is absent; the file checks always run.
"""

import json
from functools import lru_cache
from pathlib import Path

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

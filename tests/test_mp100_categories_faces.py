"""The shipped MP-100 category files for animal faces, human faces and the hand match MP-100.

Checks each file against the category facts in `shared/mp100/categories.json` (id, name, group,
keypoint count, skeleton) and against every annotation file that contains the category (each
annotation's `len(keypoints) // 3`; ids 18 and 40 have no keypoint names in the annotation files,
so the annotations are the only source of their counts 19 and 68). Skips when the shared MP-100
folder is absent.
"""

import json
from functools import lru_cache
from pathlib import Path

import pytest

from capellm.data.categories import load_category

MP100 = Path(__file__).resolve().parents[2] / "shared" / "mp100"
CATEGORY_DIR = Path(__file__).resolve().parents[1] / "capellm" / "categories" / "mp100"
GROUPS = ("animal_face", "human_face", "human_hand")

# The 30 AnimalWeb faces, the AFLW face (18), the 300W face (40) and the OneHand10K hand (80).
IDS = [4, 7, 10, 12, 13, 18, 19, 22, 23, 24, 34, 36, 37, 40, 47, 48, 56, 57, 61, 63, 65, 69, 74,
       77, 79, 80, 81, 82, 89, 93, 94, 96, 99]


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


def test_id_list_covers_the_groups():
    assert sorted(_facts()) == IDS


@pytest.mark.parametrize("cid", IDS)
def test_file_loads_without_mp100(cid):
    # Runs even without shared/: exactly one file per id, named {id:03d}_{name}.yaml.
    paths = sorted(CATEGORY_DIR.glob(f"{cid:03d}_*.yaml"))
    assert len(paths) == 1, paths
    cat = load_category(paths[0])
    assert cat.id == cid
    assert paths[0].stem == f"{cid:03d}_{cat.name}"


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

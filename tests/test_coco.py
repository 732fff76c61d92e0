"""MP-100 / COCO reader: box cleaning, skip rules, order, validation errors, the real files."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest

from capellm.data.coco import AnnotationError, clean_bbox, load_keypoint_dataset

MP100 = Path(__file__).resolve().parents[1].parent / "shared" / "mp100" / "annotations"


# ---------------------------------------------------------------------------------------------
# clean_bbox: hand-computed values of the reference rule
#   x1 = max(0, x), x2 = min(W-1, x1 + max(0, w-1)), box = [x1, y1, x2-x1, y2-y1]

@pytest.mark.parametrize("bbox, wh, expected", [
    ([10, 20, 30, 40], (100, 100), [10, 20, 29, 39]),          # inside: w-1, h-1
    ([-5, -3, 20, 10], (100, 100), [0, 0, 19, 9]),             # clipped origin keeps its width
    ([90, 95, 30, 30], (100, 100), [90, 95, 9, 4]),            # clipped at W-1, H-1
    ([10.5, 2.25, 5.5, 3.0], (50, 50), [10.5, 2.25, 4.5, 2.0]),  # floats untouched otherwise
    ([0, 0, 100, 50], (100, 50), [0, 0, 99, 49]),              # whole image
])
def test_clean_bbox_values(bbox, wh, expected):
    out = clean_bbox(bbox, *wh)
    assert out.dtype == np.float32 and out.shape == (4,)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bbox, wh", [
    ([10, 10, 1, 5], (100, 100)),         # w = 1 -> x2 == x1
    ([10, 10, 5, 0.5], (100, 100)),       # h < 1
    ([10, 10, -20, 5], (100, 100)),       # negative width (as AFLW boxes in MP-100)
    ([200, 10, 20, 20], (100, 100)),      # starts right of the image: x2 = 99 < x1
    ([10, 99, 20, 20], (100, 100)),       # starts on the last row: y2 = 99 == y1
])
def test_clean_bbox_empty(bbox, wh):
    assert clean_bbox(bbox, *wh) is None


# ---------------------------------------------------------------------------------------------
# synthetic files

def _ann(aid, iid, cid, k=3, bbox=(10, 10, 20, 20), **kw):
    kps = []
    for j in range(k):
        kps += [12.0 + j, 14.0 + j, 2]
    a = {"id": aid, "image_id": iid, "category_id": cid, "keypoints": kps, "num_keypoints": k,
         "bbox": list(bbox), "area": 400.0, "iscrowd": 0}
    a.update(kw)
    return a


def _base():
    return {
        "info": {"description": "test"},
        "images": [
            {"id": 20, "file_name": "b/img20.jpg", "width": 64, "height": 48},
            {"id": 10, "file_name": "a/img10.jpg", "width": 64, "height": 48},
        ],
        "annotations": [
            _ann(1, 10, 7),
            _ann(2, 20, 7),
            _ann(3, 10, 5, k=2),
            _ann(4, 20, 5, k=2),
        ],
        "categories": [
            {"id": 7, "name": "seven", "supercategory": "x", "keypoints": ["a", "b", "c"], "skeleton": []},
            {"id": 5, "name": "five", "supercategory": "x", "keypoints": [], "skeleton": []},
        ],
    }


def _write(tmp_path, data, name="ann.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_order_fields_and_paths(tmp_path):
    p = _write(tmp_path, _base())
    ds = load_keypoint_dataset(p)
    # images in JSON order (20 before 10), then that image's annotations in JSON order
    assert [i.ann_id for i in ds.instances] == [2, 4, 1, 3]
    assert ds.category_ids() == [7, 5]  # file order, not sorted
    assert [[i.ann_id for i in v] for v in ds.by_category().values()] == [[2, 1], [4, 3]]
    assert list(ds.by_category()) == [7, 5]
    # K from the annotations (category 5 has an empty name list, like MP-100 ids 18 and 40)
    assert ds.num_keypoints == {7: 3, 5: 2}
    assert ds.skipped == {}
    inst = ds.instances[0]
    assert inst.image_path == tmp_path / "b" / "img20.jpg"
    assert inst.file_name == "b/img20.jpg" and (inst.width, inst.height) == (64, 48)
    assert inst.keypoints.dtype == np.float32 and inst.keypoints.shape == (3, 2)
    np.testing.assert_array_equal(inst.keypoints, [[12, 14], [13, 15], [14, 16]])
    assert inst.visible.dtype == bool and inst.visible.all()
    np.testing.assert_array_equal(inst.bbox, [10, 10, 19, 19])  # cleaned, not raw
    ds2 = load_keypoint_dataset(p, image_root=tmp_path / "imgs")
    assert ds2.instances[0].image_path == tmp_path / "imgs" / "b" / "img20.jpg"


def test_visible_mask_and_unlabelled(tmp_path):
    data = _base()
    data["annotations"][0]["keypoints"] = [12, 14, 2, 0, 0, 0, 30, 31, 1]
    ds = load_keypoint_dataset(_write(tmp_path, data))
    inst = next(i for i in ds.instances if i.ann_id == 1)
    np.testing.assert_array_equal(inst.visible, [True, False, True])
    np.testing.assert_array_equal(inst.keypoints[2], [30, 31])


def test_skip_rules_counted(tmp_path):
    data = _base()
    data["annotations"] += [
        _ann(10, 10, 7, iscrowd=1),                            # crowd
        _ann(11, 10, 7, bbox=(10, 10, 1, 20)),                 # empty box after cleaning
        _ann(12, 10, 7, bbox=(10, 10, -5, 20)),                # negative width
        _ann(13, 10, 7, area=0.0),                             # area 0
        _ann(14, 20, 7, keypoints=[0] * 9),                    # all keypoints zero
        _ann(15, 20, 7, num_keypoints=0),                      # annotation says none labelled
        _ann(16, 20, 7, iscrowd=1, num_keypoints=0),           # counted once, first rule (crowd)
    ]
    # reference quirk kept on purpose: all v == 0 but nonzero coordinates and no num_keypoints
    # is NOT skipped (the reference tests max(keypoints) == 0 and num_keypoints only)
    a = _ann(17, 20, 7, keypoints=[5, 5, 0] * 3)
    del a["num_keypoints"]
    data["annotations"].append(a)
    ds = load_keypoint_dataset(_write(tmp_path, data))
    assert ds.skipped == {"crowd": 2, "empty box": 3, "all keypoints zero": 1, "no labelled keypoints": 1}
    assert [i.ann_id for i in ds.instances] == [2, 4, 17, 1, 3]
    assert not ds.instances[2].visible.any()


def test_category_filter(tmp_path):
    data = _base()
    data["annotations"].append(_ann(9, 10, 7, iscrowd=1))
    p = _write(tmp_path, data)
    ds = load_keypoint_dataset(p, category_ids=[5])
    assert ds.category_ids() == [5] and list(ds.categories) == [5]
    assert [i.ann_id for i in ds.instances] == [4, 3]
    assert ds.num_keypoints == {5: 2}
    assert ds.skipped == {}  # the crowd annotation belongs to a category not asked for
    with pytest.raises(AnnotationError, match=r"ann\.json.*'category_ids'.*\[99\]"):
        load_keypoint_dataset(p, category_ids=[5, 99])


# ---------------------------------------------------------------------------------------------
# every error names the file and the field

def _set(path, value):
    def f(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return f


def _del(path):
    def f(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
    return f


ERRORS = [
    # (mutation, substrings the message must contain besides the file name)
    (_del(["annotations"]), ["'annotations'"]),
    (_del(["images"]), ["'images'"]),
    (_set(["categories"], {}), ["'categories'", "list"]),
    (_del(["images", 1, "file_name"]), ["images[1] (id 10)", "'file_name'"]),
    (_set(["images", 0, "width"], "64"), ["images[0] (id 20)", "'width'"]),
    (_set(["images", 0, "height"], -3), ["images[0]", "'width'/'height'"]),
    (_set(["images", 1, "id"], 20), ["images[1]", "'id'", "duplicate"]),
    (_del(["categories", 0, "id"]), ["categories[0]", "'id'"]),
    (_set(["categories", 1, "name"], 5), ["categories[1] (id 5)", "'name'"]),
    (_set(["categories", 0, "keypoints"], "abc"), ["categories[0] (id 7)", "'keypoints'"]),
    (_del(["annotations", 2, "bbox"]), ["annotations[2] (id 3)", "'bbox'", "missing"]),
    (_set(["annotations", 2, "bbox"], [1, 2, 3]), ["annotations[2] (id 3)", "'bbox'", "3 values"]),
    (_set(["annotations", 0, "bbox"], [1, 2, "3", 4]), ["annotations[0] (id 1)", "'bbox'", "'3'"]),
    (_set(["annotations", 1, "keypoints"], [1.0] * 8), ["annotations[1] (id 2)", "'keypoints'", "8 values"]),
    # K disagrees with the category's 3 names
    (_set(["annotations", 0, "keypoints"], [1.0] * 6), ["annotations[0] (id 1)", "'keypoints'",
                                                        "6 values, expected 3*3"]),
    # K disagrees with the first annotation of a category without names
    (_set(["annotations", 3, "keypoints"], [1.0] * 9), ["annotations[3] (id 4)", "'keypoints'",
                                                        "9 values, expected 3*2", "annotations[2] (id 3)"]),
    (_set(["annotations", 0, "keypoints"], [1, 2, True] * 3), ["annotations[0] (id 1)", "'keypoints'", "True"]),
    (_set(["annotations", 0, "keypoints"], [1, 2, None] * 3), ["annotations[0] (id 1)", "'keypoints'"]),
    (_set(["annotations", 0, "keypoints"], [float("nan"), 2, 2] * 3), ["annotations[0]", "'keypoints'", "NaN"]),
    (_set(["annotations", 0, "keypoints"], {"x": 1}), ["annotations[0]", "'keypoints'", "list"]),
    (_set(["annotations", 0, "image_id"], 999), ["annotations[0] (id 1)", "'image_id'", "999"]),
    (_set(["annotations", 0, "category_id"], 999), ["annotations[0] (id 1)", "'category_id'", "999"]),
    (_set(["annotations", 0, "category_id"], "7"), ["annotations[0] (id 1)", "'category_id'", "integer"]),
    (_del(["annotations", 0, "image_id"]), ["annotations[0] (id 1)", "'image_id'", "missing"]),
    (_set(["annotations", 1, "id"], 1), ["annotations[1]", "'id'", "duplicate"]),
    (_set(["annotations", 0, "id"], 1.5), ["annotations[0]", "'id'", "integer"]),
    (_set(["annotations", 0, "area"], "big"), ["annotations[0] (id 1)", "'area'"]),
    (_set(["annotations", 0, "num_keypoints"], "3"), ["annotations[0] (id 1)", "'num_keypoints'"]),
    (_set(["annotations", 0, "iscrowd"], "no"), ["annotations[0] (id 1)", "'iscrowd'"]),
    (_set(["annotations", 0], [1, 2]), ["annotations[0]", "object"]),
]


@pytest.mark.parametrize("mutate, needles", ERRORS)
def test_errors_name_file_and_field(tmp_path, mutate, needles):
    data = copy.deepcopy(_base())
    mutate(data)
    p = _write(tmp_path, data, "my_ann.json")
    with pytest.raises(AnnotationError) as e:
        load_keypoint_dataset(p)
    msg = str(e.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_error_not_json_and_not_object(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.json: not valid JSON"):
        load_keypoint_dataset(p)
    p.write_text("[1, 2]")
    with pytest.raises(AnnotationError, match="bad.json: expected a JSON object"):
        load_keypoint_dataset(p)


def test_malformed_annotation_is_an_error_even_if_it_would_be_skipped(tmp_path):
    data = _base()
    data["annotations"].append(_ann(30, 10, 7, iscrowd=1, keypoints=[1.0] * 5))
    with pytest.raises(AnnotationError, match=r"annotations\[4\] \(id 30\): field 'keypoints'"):
        load_keypoint_dataset(_write(tmp_path, data))


def test_integral_float_sizes_accepted(tmp_path):
    data = _base()
    data["images"][0]["width"] = 64.0
    ds = load_keypoint_dataset(_write(tmp_path, data))
    assert ds.instances[0].width == 64 and isinstance(ds.instances[0].width, int)


# ---------------------------------------------------------------------------------------------
# the real MP-100 files

def _real(name):
    p = MP100 / name
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5])
def test_real_test_files(split):
    p = _real(f"mp100_split{split}_test.json")
    t = time.perf_counter()
    ds = load_keypoint_dataset(p)
    assert time.perf_counter() - t < 1.0
    by_cat = ds.by_category()
    assert len(by_cat) == 20
    counts = {cid: len(v) for cid, v in by_cat.items()}
    if split == 5:
        # category 18 (AFLW face) has two annotations with negative width/height in this file;
        # the reference box cleaning drops them, so 98 instances remain (100 annotations)
        assert counts.pop(18) == 98
        assert ds.skipped == {"empty box": 2}
    else:
        assert ds.skipped == {}
    assert set(counts.values()) == {100}
    raw = json.loads(p.read_text())
    per_cat = {}
    for a in raw["annotations"]:
        per_cat[a["category_id"]] = per_cat.get(a["category_id"], 0) + 1
    assert per_cat == {cid: 100 for cid in by_cat}  # exactly 100 annotations per test category
    assert ds.category_ids() == [c["id"] for c in raw["categories"]]
    # reference order: images in JSON order, then annotations in JSON order
    img_rank = {im["id"]: r for r, im in enumerate(raw["images"])}
    ann_rank = {a["id"]: r for r, a in enumerate(raw["annotations"])}
    keys = [(img_rank[i.image_id], ann_rank[i.ann_id]) for i in ds.instances]
    assert keys == sorted(keys)
    _check_instances(ds)


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5])
def test_real_val_files(split):
    p = _real(f"mp100_split{split}_val.json")
    ds = load_keypoint_dataset(p)
    assert len(ds.categories) == 10
    assert len(ds.instances) + sum(ds.skipped.values()) == 2000
    _check_instances(ds)


def test_real_test_categories_cover_mp100_once():
    ids = []
    for s in range(1, 6):
        ids += load_keypoint_dataset(_real(f"mp100_split{s}_test.json")).category_ids()
    assert len(ids) == 100 and len(set(ids)) == 100


def _check_instances(ds):
    for cid in (18, 40):  # empty name lists: K read from the annotations
        if cid in ds.categories:
            assert ds.categories[cid]["keypoints"] == []
            assert ds.num_keypoints[cid] == {18: 19, 40: 68}[cid]
    assert all(8 <= k <= 68 for k in ds.num_keypoints.values())
    for inst in ds.instances:
        k = ds.num_keypoints[inst.category_id]
        assert inst.keypoints.shape == (k, 2) and inst.visible.shape == (k,)
        assert inst.visible.any()
        x, y, w, h = inst.bbox
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= inst.width - 1 + 1e-3 and y + h <= inst.height - 1 + 1e-3
        assert inst.image_path == ds.path.parent / inst.file_name

"""`capellm data check-mp100` and `filter_present` (capellm/data/mp100.py) on a tiny MP-100-style
folder made on the fly: present, missing, corrupt and wrongly sized images, a folder with the
wrong case, and annotation problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capellm.cli import main
from capellm.data.coco import load_keypoint_dataset
from capellm.data.mp100 import (
    MISSING,
    OK,
    UNREADABLE,
    WRONG_SIZE,
    check_image,
    check_mp100,
    filter_present,
    format_check,
)


def _ann(i, image_id, cat, k, bbox=(2, 2, 20, 20)):
    kps = []
    for j in range(k):
        kps += [3.0 + j % 10, 4.0 + j // 10, 2]
    return {"id": i, "image_id": image_id, "category_id": cat, "keypoints": kps, "num_keypoints": k,
            "bbox": list(bbox), "area": 400.0, "iscrowd": 0}


def make_folder(root: Path) -> Path:
    """images/human_body: 0,1 ok, 2 missing, 3 corrupt, 4 wrong size (5 images, 6 annotations:
    image 0 holds two people). images/Horse_body exists instead of horse_body (wrong case)."""
    (root / "images" / "human_body").mkdir(parents=True)
    (root / "images" / "Horse_body").mkdir(parents=True)
    for j in (0, 1):
        Image.new("RGB", (32, 24), (j * 80, 0, 0)).save(root / "images" / "human_body" / f"{j}.png")
    (root / "images" / "human_body" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    Image.new("RGB", (40, 24)).save(root / "images" / "human_body" / "4.png")  # annotation says 32x24
    Image.new("RGB", (32, 24)).save(root / "images" / "Horse_body" / "h0.png")
    images = [{"id": j + 1, "file_name": f"human_body/{j}.png", "width": 32, "height": 24} for j in range(5)]
    images += [{"id": 10 + j, "file_name": f"horse_body/h{j}.png", "width": 32, "height": 24} for j in range(2)]
    anns = [_ann(100 + j, j + 1, 72, 17) for j in range(5)] + [_ann(106, 1, 72, 17)]
    anns += [_ann(200, 10, 2, 3), _ann(201, 11, 2, 3), _ann(202, 11, 2, 3, bbox=(2, 2, 0.5, 20))]  # 202: empty box
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 72, "name": "person", "keypoints": [], "skeleton": []},
                           {"id": 2, "name": "horse", "keypoints": [], "skeleton": []}]}
    (root / "annotations").mkdir()
    ann = root / "annotations" / "mp100_split1_test.json"
    ann.write_text(json.dumps(coco))
    return ann


def test_check_image_statuses(tmp_path):
    ann = make_folder(tmp_path)
    d = tmp_path / "images" / "human_body"
    assert check_image(d / "0.png", 32, 24) == (OK, "")
    assert check_image(d / "2.png", 32, 24) == (MISSING, "")
    assert check_image(d / "3.png", 32, 24)[0] == UNREADABLE
    s, detail = check_image(d / "4.png", 32, 24)
    assert s == WRONG_SIZE and "40x24" in detail and "32x24" in detail
    assert check_image(d / "0.png", 32, 24, decode=True) == (OK, "")
    assert check_image(d / "3.png", 32, 24, decode=True)[0] == UNREADABLE
    assert check_image(d / "2.png", 32, 24, decode=True)[0] == MISSING
    assert ann.exists()


def test_size_is_compared_after_exif_orientation(tmp_path):
    # stored 40x24 and tagged "rotate 90": load_image turns it upright to 24x40
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 24)).save(tmp_path / "r.jpg", exif=exif)
    assert check_image(tmp_path / "r.jpg", 24, 40) == (OK, "")
    assert check_image(tmp_path / "r.jpg", 24, 40, decode=True) == (OK, "")
    s, detail = check_image(tmp_path / "r.jpg", 40, 24)
    assert s == WRONG_SIZE and "EXIF orientation 6" in detail


def test_check_mp100_counts_and_problems(tmp_path):
    make_folder(tmp_path)
    r = check_mp100(tmp_path)
    rows = {c["id"]: c for c in r["categories"]}
    person, horse = rows[72], rows[2]
    assert (person["images"], person["present"], person["missing"], person["unreadable"], person["wrong_size"]) \
        == (5, 2, 1, 1, 1)
    assert person["folder"] == "human_body" and person["source"] == "COCO" and person["problems"] == []
    assert person["examples"][MISSING] == ["human_body/2.png"]
    assert (horse["images"], horse["present"], horse["missing"]) == (2, 0, 2)
    problems = " | ".join(horse["problems"])
    assert "3 keypoints, the shipped category file has 17" in problems
    assert "named 'horse', MP-100 id 2 is 'horse_body'" in problems
    assert "1 annotation(s) skipped" in problems
    t = r["totals"]
    assert (t["images"], t["present"], t["missing"], t["unreadable"], t["wrong_size"]) == (7, 2, 3, 1, 1)
    assert (t["complete_categories"], t["partial_categories"], t["absent_categories"]) == (0, 1, 1)
    (f,) = r["files"]
    # usable instances: image 0 (two people) and image 1
    assert (f["split"], f["instances"], f["usable"], f["skipped"]) == ("split1 test", 8, 3, {"empty box": 1})
    assert "mp100_split1_train.json" in r["missing_files"] and "mp100_split1_test.json" not in r["missing_files"]
    assert any("images/Horse_body does: rename it to horse_body" in h for h in r["hints"])
    table = format_check(r)
    assert " 72  person" in table and "human_body" in table and "hints:" in table
    json.dumps(r)  # JSON-ready


def test_check_mp100_cli(tmp_path, capsys):
    make_folder(tmp_path / "mp100")
    out = tmp_path / "check.json"
    assert main(["data", "check-mp100", "--root", str(tmp_path / "mp100"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["totals"]["present"] == 2
    assert "person" in capsys.readouterr().out
    assert main(["data", "check-mp100", "--root", str(tmp_path / "mp100"), "--json", "", "--strict"]) == 1
    # annotations elsewhere: --ann-dir; an empty folder of annotations is a failure
    (tmp_path / "mp100" / "annotations").rename(tmp_path / "anns")
    assert main(["data", "check-mp100", "--root", str(tmp_path / "mp100"), "--json", ""]) == 1
    assert main(["data", "check-mp100", "--root", str(tmp_path / "mp100"), "--ann-dir", str(tmp_path / "anns"),
                 "--json", ""]) == 0


def test_write_present_matches_filter_present(tmp_path, capsys):
    ann = make_folder(tmp_path)
    out = tmp_path / "present"
    assert main(["data", "check-mp100", "--root", str(tmp_path), "--json", "", "--write-present", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    written = load_keypoint_dataset(out / ann.name, tmp_path / "images")
    kept, _ = filter_present(load_keypoint_dataset(ann, tmp_path / "images"))
    assert [x.ann_id for x in written.instances] == [x.ann_id for x in kept.instances] == [100, 106, 101]
    assert list(written.categories) == [72]
    with pytest.raises(SystemExit):  # never over the originals
        main(["data", "check-mp100", "--root", str(tmp_path), "--write-present", str(tmp_path / "annotations")])


def test_filter_present_keeps_usable_instances(tmp_path):
    ann = make_folder(tmp_path)
    ds = load_keypoint_dataset(ann, tmp_path / "images")
    kept, rep = filter_present(ds)
    assert [x.ann_id for x in kept.instances] == [100, 106, 101]  # reference order kept
    assert list(kept.categories) == [72] and list(kept.num_keypoints) == [72]
    assert rep["dropped_categories"] == [2]
    assert rep["instances"] == 8 and rep["kept"] == 3
    assert rep["dropped"] == {MISSING: 3, UNREADABLE: 1, WRONG_SIZE: 1}
    assert rep["per_category"][72] == {"instances": 6, "kept": 3, MISSING: 1, UNREADABLE: 1, WRONG_SIZE: 1}
    assert kept.skipped == {"empty box": 1, "image missing": 3, "image unreadable": 1, "image wrong size": 1}
    assert len(ds.instances) == 8 and list(ds.categories) == [72, 2]  # the input is not modified
    assert np.array_equal(kept.instances[0].keypoints, ds.instances[0].keypoints)

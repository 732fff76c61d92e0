"""The synthetic benchmark (capellm.data.synth): files, determinism, splits, labels, markers.

Everything runs on the `tiny` preset (7 categories, 8 images of 64 px; ~0.2 s to generate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capellm.cli.data import synth_main as main
from capellm.data.categories import load_category
from capellm.data.coco import load_keypoint_dataset
from capellm.synth import (
    CATEGORIES,
    TINY_CATEGORIES,
    SynthConfig,
    category_definition,
    category_names,
    family_of,
    generate,
    make_splits,
    render_instance,
)
from capellm.synth.geometry import inside

ROLES = ("train", "val", "test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, generate(out, seed=0, tiny=True)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _load(out: Path, k: int, role: str) -> dict:
    return json.loads((out / "annotations" / f"synth_split{k}_{role}.json").read_text())


def test_layout_and_mp100_format(tiny):
    out, s = tiny
    assert (out / ".complete").exists() and (out / "README.md").exists()
    assert s["num_categories"] == len(TINY_CATEGORIES) and s["num_images"] == len(TINY_CATEGORIES) * 8
    assert len(list((out / "images").rglob("*.png"))) == s["num_images"]
    for k in range(1, 6):
        for role in ROLES:
            d = _load(out, k, role)
            assert set(d) == {"info", "images", "annotations", "categories"}
            for im in d["images"]:
                assert set(im) == {"id", "file_name", "width", "height"}
                folder, fn = im["file_name"].split("/")
                assert folder in TINY_CATEGORIES and fn.endswith(".png")
                with Image.open(out / "images" / im["file_name"]) as pil:
                    assert pil.size == (im["width"], im["height"]) == (64, 64)
            for a in d["annotations"]:
                assert set(a) == {"id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox",
                                  "area", "iscrowd"}
                assert all(isinstance(v, float) for v in a["keypoints"])
            for c in d["categories"]:
                assert set(c) == {"id", "name", "supercategory", "keypoints", "skeleton"}
                assert c["supercategory"] == family_of(c["name"])
                n = len(c["keypoints"])
                assert all(0 <= i < n and 0 <= j < n for i, j in c["skeleton"])  # 0-indexed
            # the project's own MP-100 reader takes every instance, skipping none
            ds = load_keypoint_dataset(out / "annotations" / f"synth_split{k}_{role}.json")
            assert len(ds) == len(d["annotations"]) and sum(ds.skipped.values()) == 0


def test_deterministic_per_seed(tiny, tmp_path):
    out, _ = tiny
    same = tmp_path / "same"
    generate(same, seed=0, tiny=True, workers=2)  # worker processes instead of one: same bytes
    files = _files(out)
    assert files == _files(same)
    assert all((out / f).read_bytes() == (same / f).read_bytes() for f in files)
    other = tmp_path / "other"
    generate(other, seed=1, tiny=True)
    pngs = [f for f in files if f.suffix == ".png"]
    assert sum((out / f).read_bytes() != (other / f).read_bytes() for f in pngs) == len(pngs)
    assert (out / "annotations/synth_split1_test.json").read_bytes() != \
        (other / "annotations/synth_split1_test.json").read_bytes()
    for f in files:  # descriptions and skeletons do not depend on the seed
        if f.suffix == ".yaml":
            assert (out / f).read_bytes() == (other / f).read_bytes()


def test_subset_draws_the_same_instances(tiny, tmp_path):
    out, _ = tiny
    sub = tmp_path / "sub"
    generate(sub, seed=0, tiny=True, categories=["hand", "desk_lamp", "horse", "cat"], num_splits=2)
    for n in range(8):
        assert (sub / f"images/hand/{n}.png").read_bytes() == (out / f"images/hand/{n}.png").read_bytes()


def _check_splits(splits: list[dict], names: list[str]):
    test_count = {n: 0 for n in names}
    for sp in splits:
        tr, va, te = set(sp["train"]), set(sp["val"]), set(sp["test"])
        assert tr and va and te
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == set(names)
        for n in te:
            test_count[n] += 1
        novel = {family_of(n) for n in te} - {family_of(n) for n in tr}
        assert novel and sorted(novel) == sp["novel_test_families"]
    assert set(test_count.values()) == {1}


def test_splits_in_files(tiny):
    out, s = tiny
    splits = []
    for k in range(1, 6):
        role_cats = {}
        for role in ROLES:
            d = _load(out, k, role)
            role_cats[role] = [c["name"] for c in d["categories"]]
            ids = {c["id"] for c in d["categories"]}
            assert {a["category_id"] for a in d["annotations"]} == ids
            assert len(d["annotations"]) == 8 * len(ids)
        splits.append({**role_cats, "novel_test_families": s["splits"][k - 1]["novel_test_families"]})
    _check_splits(splits, list(TINY_CATEGORIES))


def test_full_benchmark_definition():
    names = category_names()
    fams = {}
    for n in names:
        fams.setdefault(family_of(n), []).append(n)
    assert len(names) >= 30 and len(fams) >= 6
    assert any(len(v) == 1 for v in fams.values()) and any(len(v) >= 3 for v in fams.values())
    _check_splits(make_splits(names, 5), names)
    for fam, members in fams.items():
        cats = [category_definition(n) for n in members]
        assert len({tuple(c.keypoint_names) for c in cats}) == 1  # a family shares its template
        for c in cats:
            assert 5 <= c.num_keypoints <= 30 and c.supercategory == fam
            descs = [k.description for k in c.keypoints]
            assert all(len(d) > 40 and "{" not in d for d in descs) and len(set(descs)) == len(descs)


def test_category_files_load_and_match(tiny):
    out, _ = tiny
    for k in range(1, 6):
        for role in ROLES:
            d = _load(out, k, role)
            for c in d["categories"]:
                cat = load_category(out / "categories" / f"{c['name']}.yaml")
                assert cat.keypoint_names == c["keypoints"] and cat.id == c["id"]
                assert cat.supercategory == c["supercategory"]
                assert [list(p) for p in cat.skeleton] == c["skeleton"]
                assert all(kp.description for kp in cat.keypoints)
                for a in d["annotations"]:
                    if a["category_id"] == c["id"]:
                        cat.check_num_keypoints(len(a["keypoints"]) // 3)


def test_labels_inside_image_and_box(tiny):
    out, _ = tiny
    n_hidden = 0
    for role in ROLES:
        for a in _load(out, 1, role)["annotations"]:
            k = np.array(a["keypoints"]).reshape(-1, 3)
            v = k[:, 2] > 0
            assert set(np.unique(k[:, 2])) <= {0.0, 2.0} and a["num_keypoints"] == v.sum() > 0
            assert (k[~v] == 0).all()  # unlabelled points are [0, 0, 0], as in MP-100
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 63 + 1e-6 and y + h <= 63 + 1e-6 and w > 0 and h > 0
            assert a["area"] == pytest.approx(w * h, abs=0.02)
            assert ((k[v, :2] >= 0) & (k[v, :2] <= 63)).all()
            assert ((k[v, 0] >= x) & (k[v, 0] <= x + w) & (k[v, 1] >= y) & (k[v, 1] <= y + h)).all()
            n_hidden += (~v).sum()
    assert n_hidden > 0


def test_occlusion_and_mirroring():
    by_name = {spec.name: (fam, spec) for _, fam, spec in CATEGORIES}
    mirrored = occluded = 0
    for name in ("adult", "cat", "sparrow", "sedan", "dining_chair", "t_shirt"):
        fam, spec = by_name[name]
        rng = np.random.default_rng(7)
        for _ in range(12):
            img, kps, bbox, meta = render_instance(fam, spec, rng, 64)
            assert img.size == (64, 64) and kps.shape == (len(fam.keypoints), 3)
            mirrored += meta["mirror"]
            assert (kps[meta["self_hidden"], 2] == 0).all()
            for poly in meta["occluders"]:
                inside_poly = [i for i, p in enumerate(meta["kps"]) if inside(poly, p)]
                assert (kps[inside_poly, 2] == 0).all()
                occluded += len(inside_poly)
    assert occluded > 0
    assert 0 < mirrored < 6 * 12


def test_left_right_not_given_by_image_position(tiny):
    """Figures seen from the front and from behind: the figure's left shoulder is on the image
    right in some instances and on the image left in others (measured against the body's own
    up axis, so in-plane rotation does not matter)."""
    out, _ = tiny
    signs = []
    for role in ROLES:
        d = _load(out, 1, role)
        ids = {c["id"] for c in d["categories"] if c["name"] == "adult"}
        for a in d["annotations"]:
            if a["category_id"] not in ids:
                continue
            k = np.array(a["keypoints"]).reshape(-1, 3)
            ls, rs, lh, rh = k[5], k[6], k[11], k[12]
            if min(ls[2], rs[2], lh[2], rh[2]) == 0:
                continue
            across = ls[:2] - rs[:2]
            down = (lh[:2] + rh[:2]) / 2 - (ls[:2] + rs[:2]) / 2
            signs.append(np.sign(across[0] * down[1] - across[1] * down[0]))
    assert 1 in signs and -1 in signs


def test_complete_marker(tmp_path):
    out = tmp_path / "m"
    s1 = generate(out, tiny=True, images_per_category=2)
    assert (out / ".complete").exists() and not s1["reused"]
    assert generate(out, tiny=True, images_per_category=2)["reused"]
    # a killed run leaves no marker (and maybe junk): the folder is regenerated from scratch
    (out / ".complete").unlink()
    victim, stray = out / "images/hand/0.png", out / "images/hand/57.png"
    good = victim.read_bytes()
    victim.write_bytes(b"half a png")
    stray.write_bytes(b"left over")
    s3 = generate(out, tiny=True, images_per_category=2)
    assert not s3["reused"] and (out / ".complete").exists()
    assert victim.read_bytes() == good and not stray.exists()
    # other settings: regenerated too
    s4 = generate(out, tiny=True, images_per_category=3)
    assert not s4["reused"] and len(list((out / "images/hand").glob("*.png"))) == 3


def test_stale_note_names_the_settings_that_differ_from_the_default(tmp_path):
    from capellm.synth import stale_note

    out = tmp_path / "s"
    assert stale_note(out) is None                              # nothing generated: nothing to say
    generate(out, tiny=True, images_per_category=2)
    note = stale_note(out)
    assert "images_per_category 2 (default 200)" in note and "--force" in note
    marker = json.loads((out / ".complete").read_text())
    marker["config"] = SynthConfig().to_dict()                  # as if made with the defaults
    (out / ".complete").write_text(json.dumps(marker))
    assert stale_note(out) is None


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--tiny", "--images-per-category", "2", "--seed", "3"]) == 0
    assert (out / ".complete").exists() and "split 5" in capsys.readouterr().out
    assert json.loads((out / ".complete").read_text())["config"]["seed"] == 3
    assert main(["--out", str(tmp_path / "bad"), "--categories", "horse,unicorn"]) == 2


def test_family_of_and_validation():
    assert family_of("giraffe") == "quadruped" and family_of("desk_lamp") == "lamp"
    with pytest.raises(KeyError):
        family_of("unicorn")
    with pytest.raises(ValueError):
        SynthConfig(image_size=8)
    with pytest.raises(ValueError):
        SynthConfig(num_splits=1)
    with pytest.raises(ValueError, match="families"):
        make_splits(["horse", "cat", "sparrow", "hand"], 5)


def test_descriptions_never_name_a_category():
    """A description names the family's shared parts ("the animal's own left eye"), so that it
    carries over to a category the model never saw, never the category ("the horse's")."""
    import re

    names = {n: n.replace("_", " ") for n in category_names()}
    for n in names:
        for kp in category_definition(n).keypoints:
            text = kp.description.lower()
            hits = [w for w in names.values() if re.search(rf"\b{re.escape(w)}s?\b", text)
                    and w not in ("hand", "butterfly")]    # single-category families: family = category word
            assert not hits, f"{n} / {kp.name}: names {hits}: {kp.description}"

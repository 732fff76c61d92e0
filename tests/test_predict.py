"""`capellm predict`, `capellm category` and the pictures: real-world input, exact coordinates.

Most checks use stand-in models that go through the real predict path (`CapeLLM.predict`: the
region reader and the crop) and answer something whose true position is known (the brightest
pixel, the crop centre), so coordinates
can be checked exactly whatever a tiny trained model says. The CLI runs use a tiny checkpoint
trained once per module.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from capellm.cli import main
from capellm.config import CropConfig
from capellm.data.categories import Category, Keypoint, load_category, weak_descriptions
from capellm.data.crops import BoxError, clip_box, crop_instance, parse_box
from capellm.data.images import ImageError, ImageSource, load_image
from capellm.data.images import transpose_matrix as _transpose_matrix
from capellm.model.capellm import CapeLLM, Prediction
from capellm.visualize import PALETTE, compare, draw_keypoints

CAT = Category("thing", (Keypoint("a", "The first point."), Keypoint("b", "")), skeleton=((0, 1),))


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict_run")
    assert main(["train", "--preset", "tiny", "--data.train_file", str(tiny_data["ann"]),
                 "--data.image_root", str(tiny_data["images"]), "--data.categories", str(tiny_data["categories"]),
                 "--train.out_dir", str(out), "--train.max_steps", "6", "--no-eval"]) == 0
    return out / "model"


class CropProbe:
    """Stands in for CapeLLM behind its real `predict` (the region reader and the crop): "answers"
    a fixed normalised position per keypoint, or the centre of the crop's bright pixels, and maps
    it back with the crop's own matrix."""

    predict = CapeLLM.predict

    def __init__(self, answer=None, input_size=64, padding=1.0):
        self.cfg = SimpleNamespace(crop=CropConfig(input_size=input_size, padding=padding))
        self.answer = answer  # normalised (u, v), or None: brightest pixel
        self.calls = []

    def predict_crops(self, crops, categories, mode="single", distribution=False):
        (crop,), (category,) = crops, categories
        k = category.num_keypoints
        self.calls.append(SimpleNamespace(size=crop.warped_from, crop=crop))
        s = self.cfg.crop.input_size
        if self.answer is None:  # centre of the bright pixels
            a = crop.pixel_values.sum(0).numpy().astype(np.float64)  # [S, S]
            wgt = np.clip(a - (a.max() + a.min()) / 2, 0, None)
            iy, ix = np.mgrid[:s, :s]
            uv = (((ix * wgt).sum() / wgt.sum() + 0.5) / s, ((iy * wgt).sum() / wgt.sum() + 0.5) / s)
        else:
            uv = self.answer
        pts = crop.to_image(np.array([uv] * k))
        return [Prediction(category.keypoint_names, pts, np.ones(k), ["[u,v]"] * k, {})]


def predict_image(model, source, category, box=None):
    pred = model.predict(source, category, box)
    return pred, pred.box


def _dot_image(size, centre, radius, mode="RGB"):
    im = Image.new("RGB", size, (20, 20, 20))
    x, y = centre
    ImageDraw.Draw(im).ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 255, 255))
    return im.convert(mode) if mode != "RGB" else im


def _save_with_orientation(im: Image.Image, path: Path, orientation: int, **kw):
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), **kw)


# ----------------------------------------------------------------------------------------------
# reading images


@pytest.mark.parametrize("method", list(Image.Transpose))
def test_transpose_matrices_follow_pil(method):
    a = np.zeros((4, 7), np.uint8)
    a[1, 2] = 255
    out = np.asarray(Image.fromarray(a).transpose(method))
    y, x = np.argwhere(out == 255)[0]
    m = _transpose_matrix(method, 7, 4)
    assert tuple(m[:2] @ [2, 1, 1]) == (x, y)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_read_upright_and_box_in_displayed_frame(tmp_path, orientation):
    stored = _dot_image((90, 60), (70, 15), 3)
    path = tmp_path / f"o{orientation}.png"
    _save_with_orientation(stored, path, orientation)
    src = ImageSource.open(path)
    upright = load_image(path)  # images.load_image applies EXIF with ImageOps.exif_transpose
    assert src.size == upright.size
    img, m = src.read()
    assert np.array_equal(np.asarray(img), np.asarray(upright)) and np.allclose(m, np.eye(3)[:2])
    # where the dot is as displayed; a box around it in DISPLAYED pixels finds it there
    ys, xs = np.nonzero(np.asarray(upright)[..., 0] > 128)
    dot = np.array([xs.mean(), ys.mean()])
    probe = CropProbe(input_size=32)
    pred, _ = predict_image(probe, path, CAT, box=[dot[0] - 12, dot[1] - 8, 20, 20])
    assert np.abs(pred.keypoints[0] - dot).max() <= 1.0


def test_image_modes_read_as_load_image(tmp_path):
    rgb = _dot_image((40, 30), (10, 10), 4)
    a16 = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    cases = {"gray.png": rgb.convert("L"), "cmyk.jpg": rgb.convert("CMYK"), "16bit.png": Image.fromarray(a16),
             "rgba.png": rgb.convert("RGBA"), "palette.png": rgb.convert("P"), "bw.png": rgb.convert("1"),
             "cmyk.tif": rgb.convert("CMYK")}
    for name, im in cases.items():
        im.save(tmp_path / name)
        got, _ = ImageSource.open(tmp_path / name).read()
        assert got.mode == "RGB"
        assert np.array_equal(np.asarray(got), np.asarray(load_image(tmp_path / name))), name
    got16, _ = ImageSource.open(tmp_path / "16bit.png").read()
    assert np.asarray(got16)[-1, -1, 0] == 255 and np.asarray(got16)[0, 0, 0] == 0  # scaled, not clipped
    # 16-bit is downscaled before conversion (stays 16-bit while resized); values still span 0..255
    small, _ = ImageSource.open(tmp_path / "16bit.png").read(None, 0.25)
    assert small.size == (10, 8) and np.asarray(small).max() > 240


def test_bad_files_raise_image_error_naming_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    _dot_image((200, 150), (50, 50), 5).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    for name in ("missing.png", "truncated.jpg", "corrupt.png", "empty.jpg", "text.png"):
        with pytest.raises(ImageError, match=name):
            ImageSource.open(tmp_path / name).read()
    with pytest.raises(ImageError, match="directory"):
        ImageSource.open(tmp_path)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    """8000x6000 JPEG with a white dot at (6100, 1700), stored sideways (EXIF 6: displayed
    6000x8000), written by another process so its pixels never sit in this one's memory."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    code = ("from PIL import Image, ImageDraw; im = Image.new('RGB', (8000, 6000), (20, 20, 20)); "
            "ImageDraw.Draw(im).ellipse([6060, 1660, 6140, 1740], fill=(255, 255, 255)); "
            f"e = Image.Exif(); e[0x0112] = 6; im.save({str(path)!r}, quality=90, exif=e.tobytes())")
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def test_very_large_image_bounded_memory_and_exact_coordinates(big_jpeg):
    src = ImageSource.open(big_jpeg)
    assert src.size == (6000, 8000)
    # stored (6100, 1700) rotated to upright by EXIF 6 (ROTATE_270): (H - 1 - y, x)
    dot = np.array([6000 - 1 - 1700, 6100])
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (Linux)
        rss0 = _status_kb("VmRSS")
    except OSError:
        rss0 = None
    probe = CropProbe(input_size=64)
    pred, box = predict_image(probe, src, CAT)  # whole image: 8x DCT-reduced decode, then resized
    if rss0 is not None:
        grown_mb = (_status_kb("VmHWM") - rss0) / 1024
        assert grown_mb < 60, f"peak memory grew by {grown_mb:.0f} MB (a full decode is ~190 MB)"
    work = probe.calls[-1]
    assert max(work.size) <= 2 * 64 + 2  # the model's input was made from a small image
    assert box == [0.0, 0.0, 6000.0, 8000.0]
    assert np.abs(pred.keypoints[0] - dot).max() < 0.5 * 8000 / 64  # within half a crop pixel
    # boxes around the dot: less reduction (DCT 1/2 and 1/8 plus a resize), found where it is
    pred, _ = predict_image(probe, src, CAT, box=[dot[0] - 200, dot[1] - 150, 300, 300])
    assert np.abs(pred.keypoints[0] - dot).max() < 1.0
    pred, _ = predict_image(probe, src, CAT, box=[dot[0] - 1000, dot[1] - 2000, 2500, 2600])
    assert np.abs(pred.keypoints[0] - dot).max() < 0.25 * 2600 / 64
    # the crop's centre answer maps back to the box centre exactly (draft + crop + resize + EXIF)
    centre = CropProbe(answer=(0.5, 0.5))
    for b in ([1000, 2000, 3000, 1000], [4321.5, 123.25, 900, 4000], None):
        pred, used = predict_image(centre, src, CAT, box=b)
        x, y, w, h = used
        assert np.allclose(pred.keypoints, [x + w / 2, y + h / 2], atol=1e-6)


def test_small_box_sees_the_same_crop_as_the_full_image(tmp_path):
    """Below OVERSAMPLE x input size nothing is resized: the model gets exactly evaluation's crop."""
    path = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
    box = [150.5, 80.25, 90, 60]
    probe = CropProbe(input_size=64, padding=1.25)
    predict_image(probe, path, CAT, box=box)
    seen = probe.calls[-1]
    assert seen.size[0] < 400  # only the region around the box was decoded
    ref = crop_instance(load_image(path), np.asarray(box), np.zeros((2, 2)), np.zeros(2, bool), probe.cfg.crop)
    assert np.allclose(seen.crop.pixel_values.numpy(), ref.pixel_values.numpy(), atol=1e-4)
    # an in-memory image (the library API) gives the same as its file
    by_file, _ = predict_image(CropProbe(), path, CAT, box=box)
    in_memory, _ = predict_image(CropProbe(), Image.open(path), CAT, box=box)
    assert np.array_equal(by_file.keypoints, in_memory.keypoints)


def test_parse_box():
    assert parse_box("") is None and parse_box("  ") is None and parse_box(None) is None
    assert parse_box("1, 2, 3.5, 4") == [1.0, 2.0, 3.5, 4.0]
    assert parse_box("-1 2 3 4") == [-1.0, 2.0, 3.0, 4.0]
    for bad in ("1,2,3", "a,b,c,d", "1,2,3,4,5", "0,0,0,5", "0,0,5,-1", "0,0,nan,5"):
        with pytest.raises(BoxError, match="box must be x,y,w,h"):
            parse_box(bad)


def test_box_clipping():
    assert clip_box([-10, 5, 40, 100], (64, 48)) == [0.0, 5.0, 30.0, 43.0]
    assert clip_box([1, 2, 3, 4], (64, 48)) == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(BoxError, match="entirely outside the 64x48 image"):
        clip_box([100, 5, 10, 10], (64, 48))
    with pytest.raises(BoxError, match="entirely outside"):
        clip_box([-20, 5, 20, 10], (64, 48))  # touches the edge only
    for bad in ([0, 0, 0, 5], [0, 0, 5, -1], [0, 0, float("nan"), 5], [1, 2, 3]):
        with pytest.raises(BoxError):
            clip_box(bad, (64, 48))


# ----------------------------------------------------------------------------------------------
# the command


def test_predict_single_image_json_and_picture(checkpoint, tiny_data, tmp_path, capsys):
    img = tiny_data["images"] / "triangle" / "2.png"
    cat = tiny_data["categories"] / "triangle.yaml"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(img), "--category", str(cat),
                 "--box", "-10,4,50,50", "--out", str(tmp_path / "r.json"), "--vis", str(tmp_path / "r.png")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["width"], r["height"], r["category"]) == (64, 64, "triangle")
    assert r["box"] == [0.0, 4.0, 40.0, 50.0]  # clipped to the image
    assert [k["name"] for k in r["keypoints"]] == ["top", "left", "right"]
    for k in r["keypoints"]:
        assert 0 < k["confidence"] <= 1
        assert (k["x"] is None) == (k["y"] is None) == ("missing" in k)
    vis = Image.open(tmp_path / "r.png")
    assert vis.size == (512, 512)  # small images are enlarged for readable labels

    capsys.readouterr()  # without --out the JSON goes to stdout
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(img), "--category", str(cat)]) == 0
    assert json.loads(capsys.readouterr().out)["box"] == [0, 0, 64, 64]


def test_predict_spread_json_and_its_ellipses(checkpoint, tiny_data, tmp_path):
    img = tiny_data["images"] / "triangle" / "2.png"
    cat = tiny_data["categories"] / "triangle.yaml"
    args = ["predict", "--checkpoint", str(checkpoint), "--image", str(img), "--category", str(cat)]
    assert main([*args, "--out", str(tmp_path / "a.json"), "--vis", str(tmp_path / "a.png")]) == 0
    assert main([*args, "--spread", "--out", str(tmp_path / "b.json"), "--vis", str(tmp_path / "b.png")]) == 0
    a, b = (json.loads((tmp_path / f).read_text())["keypoints"] for f in ("a.json", "b.json"))
    assert [k["x"] for k in a] == [k["x"] for k in b]            # the keypoints do not change
    for k in b:
        if "missing" not in k:
            assert k["spread"][0] > 0 and k["spread"][1] > 0 and len(k["mean"]) == len(k["mode"]) == 2
    assert "spread" not in a[0]
    drawn = np.asarray(Image.open(tmp_path / "b.png"), float) - np.asarray(Image.open(tmp_path / "a.png"), float)
    assert np.abs(drawn).sum() > 0                                # the ellipses are drawn


def test_python_api_and_cli_give_the_same_keypoints_on_a_large_photo(checkpoint, tiny_data, tmp_path):
    """One predict path: `CapeLLM.predict` and `capellm predict` read the same region, downscale it
    the same way (the box is far larger than the encoder input) and answer the same."""
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 255, (1800, 2400, 3), dtype=np.uint8))
    ImageDraw.Draw(photo).ellipse([900, 700, 1300, 1100], fill=(255, 255, 255))
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    cat_file = tiny_data["categories"] / "star.yaml"
    box = [300.0, 200.0, 1500.0, 1200.0]
    out = tmp_path / "cli.json"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(path), "--category", str(cat_file),
                 "--box", ",".join(map(str, box)), "--out", str(out)]) == 0
    cli = json.loads(out.read_text())
    model = CapeLLM.from_pretrained(checkpoint)
    api = model.predict(path, load_category(cat_file), box=box)
    assert api.box == box and cli["box"] == box
    assert api.to_dict()["keypoints"] == cli["keypoints"]
    assert api.answers == [k["answer"] for k in cli["keypoints"]]


def test_predict_folder_skips_bad_files_and_finishes(checkpoint, tiny_data, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    base = Image.open(tiny_data["images"] / "star" / "0.png").convert("RGB")
    base.save(folder / "a_rgb.png")
    base.convert("L").save(folder / "b_gray.png")
    base.convert("CMYK").save(folder / "c_cmyk.jpg")
    Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257).save(folder / "d_16bit.png")
    _save_with_orientation(base.resize((96, 64)), folder / "e_exif.jpg", 8)
    buf = io.BytesIO()
    base.save(buf, "JPEG")
    (folder / "f_truncated.jpg").write_bytes(buf.getvalue()[:300])
    (folder / "g_corrupt.png").write_bytes(b"garbage" * 50)
    (folder / "h_empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, not listed")
    vis = tmp_path / "vis"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(folder),
                 "--category", str(_star_file(tmp_path)),
                 "--out", str(tmp_path / "all.json"), "--vis", str(vis)]) == 0
    out = json.loads((tmp_path / "all.json").read_text())
    done = [Path(r["image"]).name for r in out["results"]]
    assert done == ["a_rgb.png", "b_gray.png", "c_cmyk.jpg", "d_16bit.png", "e_exif.jpg"]
    exif = out["results"][4]
    assert (exif["width"], exif["height"]) == (64, 96)  # stored 96x64, EXIF 8: displayed upright
    bad = {Path(e["image"]).name: e["error"] for e in out["errors"]}
    assert set(bad) == {"f_truncated.jpg", "g_corrupt.png", "h_empty.jpg"}
    assert all(name in msg for name, msg in bad.items())
    err = capsys.readouterr().err
    assert "skipped" in err and "f_truncated.jpg" in err and "5 of 8 images done, 3 skipped" in err
    assert sorted(p.name for p in vis.iterdir()) == [f"{n.split('.')[0]}.png" for n in done]

    # nothing readable: non-zero exit, still a report
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"nope")
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(only_bad), "--category", "1",
                 "--out", str(tmp_path / "bad.json")]) == 1
    assert len(json.loads((tmp_path / "bad.json").read_text())["errors"]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(empty), "--category", "1"]) == 1
    assert "no image files" in capsys.readouterr().err


def _star_file(tmp_path: Path) -> Path:
    path = tmp_path / "star5.yaml"
    path.write_text("name: star\nkeypoints: [t0, t1, t2, t3, t4]\n")
    return path


@pytest.mark.parametrize("kind", ["missing", "corrupt", "truncated", "box_outside"])
def test_predict_bad_single_image_is_a_clear_error(checkpoint, tiny_data, tmp_path, capsys, kind):
    img = tmp_path / f"{kind}.png"
    good = (tiny_data["images"] / "star" / "0.png").read_bytes()
    if kind == "corrupt":
        img.write_bytes(good[:8] + b"\x00" * 200)
    elif kind == "truncated":
        img.write_bytes(good[: len(good) // 2])
    elif kind == "box_outside":
        img.write_bytes(good)
    box = ["--box", "200,10,5,5"] if kind == "box_outside" else []
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(img), "--category", "horse_body",
                 *box]) == 2
    err = capsys.readouterr().err
    assert "capellm predict: error:" in err
    assert ("entirely outside the 64x64 image" in err) if kind == "box_outside" else (str(img) in err)


def test_predict_rejects_bad_box_and_category_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", "x", "--image", "x.png", "--category", "1", "--box", "0,0,0,5"])
    assert "argument --box: box must be x,y,w,h in pixels with w, h > 0" in capsys.readouterr().err
    cases = {"empty.yaml": ("", "category file is empty"),
             "broken.yaml": ("name: [unclosed\n", "not valid YAML"),
             "nokps.yaml": ("name: thing\n", "field 'keypoints'"),
             "baddesc.yaml": ("name: thing\nkeypoints:\n  - name: a\n  - {name: b, description: [1]}\n",
                              "keypoints[1] ('b'): field 'description'"),
             "skeleton.yaml": ("name: thing\nkeypoints: [a, b]\nskeleton: [[0, 2]]\n", "skeleton[0]")}
    for name, (text, field) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert main(["predict", "--checkpoint", str(tmp_path), "--image", "x.png", "--category", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and field in err, err
    assert main(["predict", "--checkpoint", str(tmp_path), "--image", "x.png", "--category", "no_such_thing"]) == 2
    assert "neither a category file nor a shipped MP-100 category" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# capellm category


def test_category_new_check_and_predict(checkpoint, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["category", "new", "teapot", "--keypoints", "spout tip, lid knob,handle top"]) == 0
    path = tmp_path / "teapot.yaml"
    text = path.read_text()
    header = text.split("name: teapot")[0]
    assert all(line.startswith("#") for line in header.strip().splitlines())
    for rule in ("ON the object", "neighbours", "OWN left and right", "vague words"):
        assert rule in header
    cat = load_category(path)  # empty descriptions are accepted
    assert cat.keypoint_names == ["spout tip", "lid knob", "handle top"]
    assert all(k.description == "" for k in cat.keypoints)
    capsys.readouterr()
    assert main(["category", "check", str(path)]) == 0
    assert capsys.readouterr().out.count("description is empty") == 3
    # predict works with it as written
    assert main(["predict", "--checkpoint", str(checkpoint), "--image",
                 str(tiny_data["images"] / "star" / "3.png"), "--category", str(path), "--out", "t.json"]) == 0
    assert [k["name"] for k in json.loads((tmp_path / "t.json").read_text())["keypoints"]] == cat.keypoint_names

    # filled in, the file still loads; vague wording is flagged
    path.write_text(text.replace("description: ''", "description: Somewhere around the top.", 1))
    warnings = weak_descriptions(load_category(path))
    assert warnings[0] == "keypoints[0] 'spout tip': vague wording ['around', 'somewhere']"
    assert main(["category", "new", "teapot", "--keypoints", "a,b"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["category", "new", "pot", "--keypoints", "a,b,A", "--out", "p.yaml"]) == 2
    assert "p.yaml: keypoints[2] name 'A' duplicates keypoints[0]" in capsys.readouterr().err
    assert main(["category", "new", "pot", "--keypoints", "a,,b", "--out", "p.yaml"]) == 2
    assert not (tmp_path / "p.yaml").exists()
    assert main(["category", "list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 100


# ----------------------------------------------------------------------------------------------
# pictures


def test_draw_keypoints_and_compare():
    im = Image.new("RGB", (64, 32), (0, 0, 0))
    pts = np.array([[10.0, 10.0], [np.nan, np.nan], [50.0, 20.0]])
    out = draw_keypoints(im, pts, ["a", "b", "c"], skeleton=[(0, 2), (0, 1)], missing={1: "no answer"},
                         labels=False)
    assert out.size == (512, 256) and im.getpixel((10, 10)) == (0, 0, 0)  # enlarged copy, input untouched
    f = 512 / 64
    for i in (0, 2):
        x, y = (pts[i] + 0.5) * f - 0.5
        assert out.getpixel((round(x), round(y))) == PALETTE[i]  # a dot in keypoint i's colour
    mid = ((pts[0] + pts[2]) / 2 + 0.5) * f - 0.5
    assert out.getpixel((round(mid[0]), round(mid[1]))) == PALETTE[0]  # skeleton edge 0-2
    with pytest.raises(ValueError):
        draw_keypoints(im, pts, ["a"])
    big = draw_keypoints(Image.new("L", (800, 600)), pts, min_side=512)
    assert big.size == (800, 600) and big.mode == "RGB"
    side = compare(im, pts, pts + 1, ["a", "b", "c"], skeleton=[(0, 2)])
    assert side.width > 2 * 512 and side.height > 256

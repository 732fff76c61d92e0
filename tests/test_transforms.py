"""Crops and augmentation: matrix geometry, pixels and keypoints agree, round trips, image loading."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from capellm.config import CropConfig
from capellm.data.crops import (
    CropResult,
    crop_instance,
    crop_matrix,
    image_to_tensor,
    warp_image,
)
from capellm.data.images import ImageError, apply_affine, invert_affine, load_image

# ---------------------------------------------------------------------------------------------
# crop_matrix geometry (pixel-centre convention: an S-pixel crop spans [-0.5, S - 0.5])

BOX = [10.0, 20.0, 40.0, 20.0]  # x, y, w, h: centre (30, 30), longer side 40
S = 32


def test_crop_matrix_square_corners_and_centre():
    m = crop_matrix(BOX, S)
    assert m.dtype == np.float64 and m.shape == (2, 3)
    # square of side 40 about (30, 30): [10, 50]^2 -> the crop's outer edges
    pts = apply_affine([[30, 30], [10, 10], [50, 50], [10, 50]], m)
    np.testing.assert_allclose(pts, [[15.5, 15.5], [-0.5, -0.5], [31.5, 31.5], [-0.5, 31.5]], atol=1e-12)
    # the box's own corners (shorter side centred): 32/40 = 0.8 crop px per image px
    pts = apply_affine([[10, 20], [50, 40]], m)
    np.testing.assert_allclose(pts, [[-0.5, 7.5], [31.5, 23.5]], atol=1e-12)


def test_crop_matrix_padding_scale_shift():
    m = crop_matrix(BOX, S, padding=1.25)  # side 50, 0.64 crop px per image px
    np.testing.assert_allclose(apply_affine([[10, 20]], m), [[15.5 - 12.8, 15.5 - 6.4]], atol=1e-12)
    m = crop_matrix(BOX, S, padding=1.25, scale=2.0)  # side 100
    np.testing.assert_allclose(apply_affine([[80, 30], [-20, -20]], m), [[31.5, 15.5], [-0.5, -0.5]], atol=1e-12)
    m = crop_matrix(BOX, S, shift=(0.25, -0.5))  # centre moves by (10, -20) image px
    np.testing.assert_allclose(apply_affine([[40, 10]], m), [[15.5, 15.5]], atol=1e-12)


def test_crop_matrix_rotation_direction_and_isometry():
    # +90 degrees turns the content counter-clockwise on screen: "right" goes "up", "down" goes "right"
    m = crop_matrix(BOX, S, rotation=90.0)
    np.testing.assert_allclose(apply_affine([[40, 30], [30, 40]], m), [[15.5, 7.5], [23.5, 15.5]], atol=1e-9)
    assert np.allclose(apply_affine([[30, 30]], crop_matrix(BOX, S, rotation=-37.0)), [[15.5, 15.5]])
    # any rotation/scale: a similarity with factor S / side
    m = crop_matrix(BOX, S, padding=1.1, scale=0.8, rotation=23.0)
    a = m[:, :2]
    np.testing.assert_allclose(a @ a.T, np.eye(2) * (S / (40 * 1.1 * 0.8)) ** 2, atol=1e-12)
    assert np.linalg.det(a) > 0  # no reflection (no flips)


def test_crop_matrix_rejects_degenerate():
    with pytest.raises(ValueError, match="positive"):
        crop_matrix([0, 0, 0, 0], S)
    with pytest.raises(ValueError, match="out_size"):
        crop_matrix(BOX, 0)


def test_invert_and_apply_affine():
    m = crop_matrix(BOX, S, padding=1.3, scale=0.9, rotation=-71.0, shift=(0.1, 0.05))
    mi = invert_affine(m)
    pts = np.random.default_rng(0).uniform(-50, 100, size=(7, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, m), mi), pts, atol=1e-10)
    assert apply_affine(np.zeros((2, 5, 2)), m).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="singular"):
        invert_affine([[1, 2, 0], [2, 4, 0]])


# ---------------------------------------------------------------------------------------------
# pixels and keypoints move together

def test_warp_identity_is_exact():
    a = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    # box pixel indices 0..15: centre 7.5 = crop centre, side 15 * 16/15 = 16 -> identity
    m = crop_matrix([0, 0, 15, 15], 16, padding=16 / 15)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    out = np.asarray(warp_image(Image.fromarray(a), m, 16))
    assert np.abs(out.astype(int) - a).max() <= 1


def test_warp_fills_black_outside():
    img = Image.new("RGB", (10, 10), (200, 200, 200))
    out = np.asarray(warp_image(img, crop_matrix([0, 0, 9, 9], 20, padding=3.0), 20))
    assert out[0, 0].tolist() == [0, 0, 0] and out[10, 10].tolist() == [200, 200, 200]


def _blob_image(w, h, centre, sigma=1.5):
    """A Gaussian dot whose continuous centre is `centre` (pixel (i, j) sampled at (i, j))."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    g = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))
    a = np.rint(g * 255).astype(np.uint8)
    return Image.fromarray(np.stack([a, a, a], -1))


def _centroid(a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(-1)
    a = np.where(a > 0.1 * a.max(), a, 0)  # ignore the faint tails
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    return np.array([(xs * a).sum(), (ys * a).sum()]) / a.sum()


@pytest.mark.parametrize("padding, scale, rotation, shift", [
    (1.0, 1.0, 0.0, (0.0, 0.0)),
    (1.25, 0.8, 30.0, (0.0, 0.0)),
    (1.0, 1.2, -45.0, (0.05, -0.1)),
    (1.0, 0.7, 170.0, (0.0, 0.1)),
])
def test_dot_lands_where_the_matrix_says(padding, scale, rotation, shift):
    kp = np.array([[33.3, 21.7]])
    img = _blob_image(64, 48, kp[0])
    box = [20.0, 10.0, 30.0, 24.0]
    out_size = 48
    m = crop_matrix(box, out_size, padding, scale, rotation, shift)
    expected = apply_affine(kp, m)[0]
    got = _centroid(warp_image(img, m, out_size))
    assert np.linalg.norm(got - expected) < 1.0, (got, expected)
    assert 4 < expected.min() and expected.max() < out_size - 5  # the dot is really inside


def test_crop_instance_dot_and_normalised_keypoints():
    kp = np.array([[33.3, 21.7], [0.0, 0.0], [60.0, 5.0]])
    vis = np.array([True, False, True])
    img = _blob_image(64, 48, kp[0])
    cfg = CropConfig(input_size=40, padding=1.25, augment=True, max_shift=0.05)
    res = crop_instance(img, [20.0, 10.0, 30.0, 24.0], kp, vis, cfg, np.random.default_rng(3))
    assert res.pixel_values.shape == (3, 40, 40) and res.pixel_values.dtype == torch.float32
    assert res.keypoints.shape == (3, 2) and res.keypoints.dtype == np.float32
    # undo the normalisation, find the dot, compare in normalised units: u = (x + 0.5) / S
    mean = torch.tensor(cfg.mean)[:, None, None]
    std = torch.tensor(cfg.std)[:, None, None]
    pix = (res.pixel_values * std + mean).permute(1, 2, 0).numpy()
    got = (_centroid(pix) + 0.5) / 40
    assert np.linalg.norm(got - res.keypoints[0]) < 1.0 / 40
    # in_crop: labelled and inside; the unlabelled point and the far one are out
    assert res.in_crop.tolist() == [True, False, False]
    assert not (0 <= res.keypoints[2]).all() or not (res.keypoints[2] <= 1).all()


def test_normalised_box_centre_and_square():
    cfg = CropConfig(input_size=16)
    img = Image.new("RGB", (64, 64))
    kps = np.array([[30, 30], [10, 10], [50, 50]], dtype=np.float32)
    res = crop_instance(img, BOX, kps, np.ones(3, bool), cfg)
    np.testing.assert_allclose(res.keypoints, [[0.5, 0.5], [0, 0], [1, 1]], atol=1e-6)
    assert res.in_crop.all()  # the closed square [0, 1]^2 counts as inside
    # the normalised value does not depend on the input size
    res2 = crop_instance(img, BOX, kps, np.ones(3, bool), CropConfig(input_size=24))
    np.testing.assert_allclose(res.matrix, res2.matrix, atol=1e-12)


def test_to_image_round_trip_with_augmentation():
    rng = np.random.default_rng(0)
    img = Image.new("RGB", (80, 60))
    kps = rng.uniform(0, 60, size=(9, 2)).astype(np.float32)
    cfg = CropConfig(input_size=16, augment=True, max_shift=0.1, rotation_prob=1.0)
    for seed in range(5):
        res = crop_instance(img, [5, 8, 50, 40], kps, np.ones(9, bool), cfg, np.random.default_rng(seed))
        np.testing.assert_allclose(res.to_image(res.keypoints), kps, atol=2e-4)
    assert isinstance(res, CropResult)


def test_augmentation_is_a_pure_function_of_rng():
    img = Image.fromarray((np.random.default_rng(1).random((30, 30, 3)) * 255).astype(np.uint8))
    kps = np.array([[10.0, 12.0]])
    cfg = CropConfig(input_size=16, augment=True, max_shift=0.1)
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    a = crop_instance(img, [5, 5, 20, 20], kps, [True], cfg, np.random.default_rng(42))
    # global generators untouched: draws come only from the rng argument
    np.random.seed(123)
    ref_np = np.random.random()
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    b = crop_instance(img, [5, 5, 20, 20], kps, [True], cfg, np.random.default_rng(42))
    assert np.random.random() == ref_np
    assert torch.equal(a.pixel_values, b.pixel_values) and np.array_equal(a.matrix, b.matrix)
    c = crop_instance(img, [5, 5, 20, 20], kps, [True], cfg, np.random.default_rng(43))
    assert not np.array_equal(a.matrix, c.matrix)
    # no augmentation when augment is off or rng is None: the deterministic crop
    plain = crop_instance(img, [5, 5, 20, 20], kps, [True], CropConfig(input_size=16))
    off = crop_instance(img, [5, 5, 20, 20], kps, [True], CropConfig(input_size=16), np.random.default_rng(42))
    none = crop_instance(img, [5, 5, 20, 20], kps, [True], cfg, None)
    for r in (off, none):
        assert np.array_equal(r.matrix, plain.matrix) and torch.equal(r.pixel_values, plain.pixel_values)


def test_augmentation_ranges():
    cfg = CropConfig(input_size=4, augment=True, scale_range=(0.75, 1.25), max_rotation=30.0,
                     rotation_prob=0.6, max_shift=0.0)
    img = Image.new("RGB", (8, 8))
    rng = np.random.default_rng(0)
    scales, angles = [], []
    for _ in range(300):
        r = crop_instance(img, [0, 0, 7, 7], np.zeros((1, 2)), [True], cfg, rng)
        a = r.matrix[:, :2] * 1.0  # normalised: similarity with factor 1 / side
        side = 1.0 / math.sqrt(np.linalg.det(a))
        scales.append(side / 7.0)
        angles.append(math.degrees(math.atan2(a[0, 1], a[0, 0])))
        # max_shift 0: the box centre stays at the crop centre
        np.testing.assert_allclose(apply_affine([[3.5, 3.5]], r.matrix), [[0.5, 0.5]], atol=1e-9)
    scales, angles = np.array(scales), np.array(angles)
    assert scales.min() >= 0.75 - 1e-9 and scales.max() <= 1.25 + 1e-9 and scales.std() > 0.1
    assert np.abs(angles).max() <= 30.0 + 1e-9
    rotated = np.mean(np.abs(angles) > 1e-9)
    assert 0.5 < rotated < 0.7


def test_crop_config_validation():
    c = CropConfig(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], scale_range=[0.9, 1.1])
    assert c.mean == (0.5, 0.5, 0.5) and c.scale_range == (0.9, 1.1)
    for kw, field in [({"input_size": 0}, "input_size"), ({"input_size": 2.5}, "input_size"),
                      ({"padding": 0}, "padding"), ({"mean": (0.5, 0.5)}, "mean"),
                      ({"std": (0.2, 0.0, 0.2)}, "std"), ({"augment": "yes"}, "augment"),
                      ({"scale_range": (1.2, 0.8)}, "scale_range"), ({"scale_range": 1.0}, "scale_range"),
                      ({"max_rotation": -1}, "max_rotation"), ({"rotation_prob": 1.5}, "rotation_prob"),
                      ({"max_shift": -0.1}, "max_shift")]:
        with pytest.raises(ValueError, match=f"crop.{field}"):
            CropConfig(**kw)


def test_image_to_tensor_normalises_and_resizes():
    cfg = CropConfig(input_size=8)
    mean_rgb = tuple(int(round(v * 255)) for v in cfg.mean)
    t = image_to_tensor(Image.new("RGB", (8, 8), mean_rgb), cfg)
    assert t.shape == (3, 8, 8) and t.dtype == torch.float32
    assert t.abs().max() < 0.01
    t = image_to_tensor(Image.new("L", (20, 12), 255), cfg)  # resized, gray -> RGB
    assert t.shape == (3, 8, 8)
    torch.testing.assert_close(t[:, 0, 0], (1 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std))


# ---------------------------------------------------------------------------------------------
# load_image

def test_load_grayscale_palette_and_alpha(tmp_path):
    Image.new("L", (4, 3), 77).save(tmp_path / "g.png")
    im = load_image(tmp_path / "g.png")
    assert im.mode == "RGB" and im.size == (4, 3) and im.getpixel((1, 1)) == (77, 77, 77)

    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png")
    assert np.asarray(load_image(tmp_path / "p.png")).tolist() == [[[255, 0, 0], [0, 255, 0]]]
    p.save(tmp_path / "pt.png", transparency=1)  # palette entry 1 transparent -> white
    assert np.asarray(load_image(tmp_path / "pt.png")).tolist() == [[[255, 0, 0], [255, 255, 255]]]

    a = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    a.putpixel((1, 0), (0, 0, 255, 0))
    a.save(tmp_path / "a.png")
    assert np.asarray(load_image(tmp_path / "a.png")).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    la = Image.new("LA", (2, 1), (50, 255))
    la.putpixel((1, 0), (50, 0))
    la.save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png")).tolist() == [[[50, 50, 50], [255, 255, 255]]]


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_load_cmyk(tmp_path, ext):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / f"c.{ext}")  # pure red ink
    im = load_image(tmp_path / f"c.{ext}")
    r, g, b = im.getpixel((8, 8))
    assert im.mode == "RGB" and r > 240 and g < 15 and b < 15


def test_load_16_bit_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")  # opened as I;16
    Image.fromarray(a.astype(np.int32)).save(tmp_path / "g32.tif")  # opened as I
    for name in ("g16.png", "g32.tif"):
        im = load_image(tmp_path / name)
        assert im.mode == "RGB"
        assert np.asarray(im)[0, :, 0].tolist() == [0, 100, 255, 4]


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_load_applies_exif_orientation(tmp_path, ext):
    a = np.zeros((8, 16, 3), np.uint8)
    a[:, :8] = (255, 0, 0)  # stored: left half red, right half blue
    a[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / f"e.{ext}", exif=exif, quality=95)
    im = load_image(tmp_path / f"e.{ext}")
    assert im.size == (8, 16)  # upright: portrait
    top, bottom = np.asarray(im)[2, 4], np.asarray(im)[13, 4]
    assert top[0] > 200 and top[2] < 50  # the stored left half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_load_truncated_names_file(tmp_path, ext):
    a = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    full = tmp_path / f"full.{ext}"
    Image.fromarray(a).save(full)
    data = full.read_bytes()
    bad = tmp_path / f"truncated.{ext}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=f"truncated.{ext}: corrupt, truncated"):
        load_image(bad)


def test_load_missing_and_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg: image file not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match="text.jpg: not a readable image"):
        load_image(tmp_path / "text.jpg")
    assert issubclass(ImageError, ValueError)

"""Drawing one instance of a synthetic category: palette, background, texture, occluders, the
figure itself, then keypoints with their visibility and the box (capellm.synth.benchmark's module
docstring gives the rules).

Parts are drawn at SUPERSAMPLE x the image size and box-filtered down (anti-aliasing); the drawing
coordinates are mapped so that a keypoint lands on the centre of the part drawn for it.
"""

from __future__ import annotations

import colorsys
import functools
import math

import numpy as np
from PIL import Image, ImageDraw

from capellm.synth.geometry import CategorySpec, Family, inside, rot2

SUPERSAMPLE = 2  # parts are drawn at 2x and box-filtered down (anti-aliasing)


def _hsv(h, s, v) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30))


def make_palette(rng) -> dict:
    h = rng.random()
    skin = np.array(SKIN[rng.integers(len(SKIN))]) * rng.uniform(0.9, 1.08)
    return {
        "body": _hsv(h, rng.uniform(0.2, 0.85), rng.uniform(0.45, 0.95)),
        "body2": _hsv(h + rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.9)),
        "accent": _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0)),
        "dark": _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.04, 0.18)),
        "light": _hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.88, 1.0)),
        "skin": tuple(int(min(255, c)) for c in skin),
        "hair": _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.5)),
        "metal": _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.2), rng.uniform(0.55, 0.85)),
        "glass": _hsv(rng.uniform(0.5, 0.62), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9)),
        "lamp": _hsv(rng.uniform(0.12, 0.17), rng.uniform(0.1, 0.4), 1.0),
        "red": _hsv(rng.uniform(-0.02, 0.02), rng.uniform(0.75, 1.0), rng.uniform(0.7, 0.95)),
    }


TEXTURED = {"body", "body2"}


def _shade(rgb, side: str, lum: float) -> tuple[int, int, int]:
    out = []
    for v in rgb:  # in Python floats: numpy's float64 arithmetic without its per-call cost
        c = float(v) * lum
        if side == "L":  # the object's own left is drawn darker ...
            c = c * 0.62
        elif side == "R":  # ... and its right lighter: a marker so sides can be read from the image
            c = c + (255 - c) * 0.18
        out.append(int(min(max(c, 0.0), 255.0)))
    return tuple(out)


def _lowfreq(rng, S: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1], [S, S]."""
    small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
    return np.asarray(small.resize((S, S), Image.BILINEAR), np.float32) / 127.5 - 1.0


@functools.lru_cache(maxsize=4)
def _unit_grid(S: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates / S, [S, S] float32 each (made once per size, read-only)."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _background(rng, S: int, pal: dict) -> Image.Image:
    yy, xx = _unit_grid(S)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a))
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    c0 = np.array(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95)), np.float32)
    c1 = np.array(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95)), np.float32)
    # channel by channel: the same float32 operations as broadcasting over [S, S, 3], whose inner
    # loops of 3 elements make it several times slower
    img = np.empty((S, S, 3), np.float32)
    u = 1 - t
    for ch in range(3):
        np.add(c0[ch] * u, c1[ch] * t, out=img[..., ch])
    noise = _lowfreq(rng, S, int(rng.integers(3, 9))) * rng.uniform(5, 30)
    for ch in range(3):
        img[..., ch] += noise
    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(bg)
    # clutter: random shapes, some in the object's own colours (distractors)
    for _ in range(int(rng.integers(3, 11))):
        if rng.random() < 0.35:
            role, side = rng.choice(["body", "body2", "accent", "dark"]), rng.choice(["L", "R", "C"])
            col = _shade(pal[str(role)], str(side), 1.0)
        else:
            col = _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 1.0))
        kind = rng.integers(4)
        c = rng.uniform(-0.1, 1.1, 2) * S
        r = rng.uniform(0.03, 0.25) * S
        if kind == 0:
            d.ellipse([c[0] - r, c[1] - r * rng.uniform(0.3, 1), c[0] + r, c[1] + r * rng.uniform(0.3, 1)], fill=col)
        elif kind == 1:
            pts = rot2(np.array([[-r, -r * 0.5], [r, -r * 0.5], [r, r * 0.5], [-r, r * 0.5]]), rng.uniform(0, 6.3)) + c
            d.polygon([tuple(p) for p in pts], fill=col)
        elif kind == 2:  # a limb-like bar
            e = c + rng.uniform(-1, 1, 2) * r * 2
            w = int(max(2, rng.uniform(0.01, 0.05) * S))
            d.line([tuple(c), tuple(e)], fill=col, width=w)
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = r * rng.uniform(0.4, 1.0, n)
            pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) + c
            d.polygon([tuple(p) for p in pts], fill=col)
    return bg


def _texture(rng, S: int, scale: float) -> np.ndarray | None:
    kind = rng.integers(4)
    if kind == 0:
        return None
    if kind == 1:  # stripes
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(0.04, 0.12) * scale
        return np.sign(np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)).astype(np.float32)
    if kind == 2:  # spots
        im = Image.new("L", (S, S), 0)
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.015, 0.04) * scale
        for _ in range(int(rng.integers(15, 60))):
            c = rng.uniform(0, S, 2)
            d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        return np.asarray(im, np.float32) / 127.5 - 1.0
    return _lowfreq(rng, S, int(rng.integers(6, 16)))


def _occluder(rng, centre, size) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # rotated rectangle
        w, h = size * rng.uniform(0.5, 1.2), size * rng.uniform(0.3, 0.8)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return rot2(pts, rng.uniform(0, math.pi)) + centre
    if kind == 1:
        return rot2(np.stack([np.cos(t := np.linspace(0, 2 * math.pi, 20, endpoint=False)) * size * 0.5,
                              np.sin(t) * size * rng.uniform(0.25, 0.5)], 1), rng.uniform(0, math.pi)) + centre
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = size * 0.5 * rng.uniform(0.5, 1.0, n)
    return np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) + centre


def render_instance(fam: Family, spec: CategorySpec, rng: np.random.Generator, size: int):
    """Draw one instance. Returns (PIL image, keypoints [K, 3] float, bbox [x, y, w, h], meta);
    meta (for tests and debugging): mirror flag, occluder polygons and all keypoint positions in
    image coordinates, and the keypoints hidden by the object itself."""
    S = size * SUPERSAMPLE
    mirror = bool(rng.random() < 0.5)
    fig = fam.build(spec.shape, rng, mirror)
    K = len(fam.keypoints)
    assert fig.kps.shape == (K, 2), (spec.name, fig.kps.shape)

    # placement: aspect, rotation, scale, position (object -> image pixel coordinates)
    asp = math.exp(rng.uniform(-0.12, 0.12))
    ang = math.radians(rng.uniform(-fam.rotation, fam.rotation))
    c, s = math.cos(ang), math.sin(ang)
    A = np.array([[c, -s], [s, c]]) @ np.diag([asp, 1 / asp])
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for p in fig.prims:
        q = p.pts @ A.T
        pad = p.width / 2 if p.kind == "line" else (p.width if p.kind == "dot" else 0.0)
        lo, hi = np.minimum(lo, q.min(0) - pad), np.maximum(hi, q.max(0) + pad)
    ext = hi - lo
    scale = rng.uniform(0.5, 0.88) * size / float(ext.max())
    wh = ext * scale
    if rng.random() < 0.1:  # partly outside the frame
        pos = np.array([rng.uniform(-0.25 * wh[i], size - 0.75 * wh[i]) for i in range(2)])
    else:
        pos = np.array([rng.uniform(1, max(1.0, size - 1 - wh[i])) for i in range(2)])
    t = pos - lo * scale

    def to_img(pts):  # object -> image (pixel-centre convention)
        return np.asarray(pts, float) @ A.T * scale + t

    def to_draw(pts):  # image -> supersampled drawing coordinates
        return (to_img(pts) + 0.5) * SUPERSAMPLE - 0.5

    # object layer: colour, coverage mask, texture weight, painted far to near
    pal = make_palette(rng)
    obj = Image.new("RGB", (S, S))
    mask = Image.new("L", (S, S), 0)
    texw = Image.new("L", (S, S), 0)
    dO, dM, dT = ImageDraw.Draw(obj), ImageDraw.Draw(mask), ImageDraw.Draw(texw)
    ow = max(1, round(SUPERSAMPLE * size / 128))  # outline width
    for p in sorted(fig.prims, key=lambda p: p.depth):
        col = _shade(pal[p.role], p.side, p.lum)
        oc = tuple(int(v * 0.45) for v in col)
        tv = 255 if p.role in TEXTURED else 0
        q = to_draw(p.pts)
        if p.kind == "poly":
            xy = [tuple(v) for v in q]
            dO.polygon(xy, fill=col, outline=oc, width=ow)
            dM.polygon(xy, fill=255)
            dT.polygon(xy, fill=tv)
        elif p.kind == "line":
            w = max(1.0, p.width * scale * SUPERSAMPLE)
            xy = [tuple(v) for v in q]
            for d, fill, ww in ((dO, oc, w + 2 * ow), (dM, 255, w + 2 * ow), (dO, col, w), (dT, tv, w)):
                d.line(xy, fill=fill, width=int(round(ww)), joint="curve")
                r = ww / 2
                for v in (q[0], q[-1]):
                    d.ellipse([v[0] - r, v[1] - r, v[0] + r, v[1] + r], fill=fill)
        else:
            r = max(0.8, p.width * scale * SUPERSAMPLE)
            v = q[0]
            box = [v[0] - r, v[1] - r, v[0] + r, v[1] + r]
            dO.ellipse(box, fill=col, outline=oc, width=max(1, ow // 2))
            dM.ellipse(box, fill=255)
            dT.ellipse(box, fill=tv)
    tex = _texture(rng, S, S * 0.5)
    if tex is not None:
        amp = rng.uniform(0.08, 0.2)
        arr = np.asarray(obj, np.float32)
        gain = 1.0 + amp * tex * (np.asarray(texw, np.float32) / 255.0)
        for ch in range(3):  # as in _background: the broadcast's operations, channel by channel
            arr[..., ch] *= gain
        obj = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    img = Image.composite(obj, _background(rng, S, pal), mask)

    # keypoints and visibility
    kps = to_img(fig.kps)
    vis = np.ones(K, bool)
    vis[list(fig.hidden)] = False
    vis &= (kps[:, 0] >= 0) & (kps[:, 0] <= size - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= size - 1)
    occluders = []
    if rng.random() < 0.35 and vis.any():
        for _ in range(int(rng.integers(1, 3))):
            for _try in range(4):
                centre = kps[rng.choice(np.flatnonzero(vis))] + rng.normal(0, 0.08, 2) * wh.max()
                poly = _occluder(rng, centre, rng.uniform(0.15, 0.4) * wh.max())
                v2 = vis & ~np.array([inside(poly, k) for k in kps])
                if v2.sum() >= max(1, math.ceil(K / 3)):
                    occluders.append(poly)
                    vis = v2
                    break
        d = ImageDraw.Draw(img)
        for poly in occluders:
            col = _hsv(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.15, 0.95))
            d.polygon([tuple(v) for v in (poly + 0.5) * SUPERSAMPLE - 0.5], fill=col,
                      outline=tuple(int(v * 0.5) for v in col), width=ow)
    img = img.reduce(SUPERSAMPLE)
    if rng.random() < 0.5:  # sensor noise
        arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1, 4), (size, size, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    # box: the object's pixels and the labelled points, plus a margin, clipped to the image
    m = np.asarray(mask.reduce(SUPERSAMPLE)) > 0
    ys, xs = np.nonzero(m)
    x0, x1 = (xs.min(), xs.max()) if len(xs) else (0, size - 1)
    y0, y1 = (ys.min(), ys.max()) if len(ys) else (0, size - 1)
    if vis.any():
        x0, x1 = min(x0, kps[vis, 0].min()), max(x1, kps[vis, 0].max())
        y0, y1 = min(y0, kps[vis, 1].min()), max(y1, kps[vis, 1].max())
    margin = 0.015 * size
    bx0, by0 = max(0.0, x0 - margin), max(0.0, y0 - margin)
    bx1, by1 = min(size - 1.0, x1 + margin), min(size - 1.0, y1 + margin)
    out = np.zeros((K, 3))
    out[vis, :2] = kps[vis]
    out[vis, 2] = 2
    meta = {"mirror": mirror, "occluders": occluders, "kps": kps, "self_hidden": sorted(fig.hidden)}
    return img, out, [bx0, by0, bx1 - bx0, by1 - by0], meta

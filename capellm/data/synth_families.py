"""Families and categories of the synthetic CAPE benchmark: keypoint templates, descriptions,
shapes, and the code that poses and draws one instance of each.

A *family* is a keypoint template (names, descriptions, skeleton) plus one `build` function; a
*category* is a family member with its own proportions (`shape`). As in MP-100, where the 34
AP-10K animals share one 17-point template but a giraffe is not a dachshund, categories of a
family share keypoint names and differ in silhouette, so a model must read the description and
the image rather than memorise one mean shape. Some families have a single category (as MP-100's
hand, locust or fly): those are the most novel test categories (see `synth.make_splits`).

Design choices:
- A builder returns a `Figure`: keypoints and drawing primitives (polygons, thick polylines,
  dots) in object coordinates (y down, any unit). Keypoints are computed from the same numbers
  the parts are drawn from (an eye keypoint is the centre of the drawn eye, a foot the end of the
  drawn leg), so they sit exactly on the parts. The caller (`synth.render_instance`) rotates,
  stretches, scales, places and rasterises the figure; builders only pose and shape.
- Left and right are the OBJECT's own sides and follow the physics of the view, not the image:
  an animal seen from the side shows its right flank when it faces image-right and its left
  flank when it faces image-left (near legs are drawn over the body, far legs behind it); a
  person or a garment seen from the back has its left on the image left. Builders receive a
  `mirror` flag and produce the physically consistent other view. Because a model cannot always
  tell near from far in a cartoon, every part on the object's left side is also drawn in a
  darker shade and every right-side part in a lighter one (a documented marker, stated in the
  descriptions), so the task stays solvable from the image alone.
- Rigid objects (vehicles, chairs) are built from 3-D boxes projected orthographically with a
  random yaw and pitch; faces are back-face culled and painted far to near, and a keypoint is
  marked hidden when a nearer face of another solid covers it (a far wheel behind the body).
  Articulated figures (animals, people, hands, insects, ...) are 2-D or 2.5-D with a few
  explicit hidden rules (the far eye of a bird in profile, the face of a person seen from behind).
- Descriptions follow CapeLLM (appendix A, Table 5): where the point is on the object and how it
  relates to its neighbouring keypoints. `{n}` is replaced by the category's noun, and paired
  descriptions are written once with `{s}` (this side), `{o}` (the other side) and `{shade}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

PI = math.pi


# --------------------------------------------------------------------------------------------
# drawing primitives


@dataclass
class Prim:
    kind: str  # "poly" | "line" | "dot"
    pts: np.ndarray  # [N, 2] object coordinates, y down
    width: float = 0.0  # line width or dot radius, object units (unused for polygons)
    role: str = "body"  # palette entry, see synth.make_palette
    side: str = "C"  # "L" / "R": the object's own side; L is drawn darker, R lighter
    depth: float = 0.0  # painter's order: higher is drawn later (nearer the viewer)
    lum: float = 1.0  # lighting factor of 3-D faces


@dataclass
class Figure:
    kps: np.ndarray  # [K, 2] object coordinates
    prims: list
    hidden: set  # keypoints not visible by construction (self-occluded)

    def flip_x(self) -> "Figure":
        self.kps = self.kps * np.array([-1.0, 1.0])
        for p in self.prims:
            p.pts = p.pts * np.array([-1.0, 1.0])
        return self


class Sketch:
    """Collects primitives; thin sugar so builders read like drawing code."""

    def __init__(self):
        self.prims: list[Prim] = []

    def poly(self, pts, role="body", side="C", depth=0.0, lum=1.0):
        self.prims.append(Prim("poly", np.asarray(pts, float), 0.0, role, side, depth, lum))

    def line(self, pts, width, role="body", side="C", depth=0.0):
        self.prims.append(Prim("line", np.asarray(pts, float), float(width), role, side, depth))

    def dot(self, c, r, role="dark", side="C", depth=0.0):
        self.prims.append(Prim("dot", np.asarray(c, float).reshape(1, 2), float(r), role, side, depth))

    def ellipse(self, c, rx, ry, role="body", side="C", depth=0.0, ang=0.0, n=24):
        self.poly(ell(c, rx, ry, ang, n), role, side, depth)


# --------------------------------------------------------------------------------------------
# geometry helpers (angles in radians, y down: angle pi/2 points down the image)


def V(*a) -> np.ndarray:
    return np.array(a, float)


def dirv(a: float) -> np.ndarray:
    return np.array([math.cos(a), math.sin(a)])


def perp(d) -> np.ndarray:
    """d turned by +90 degrees (clockwise on screen, since y points down)."""
    return np.array([-d[1], d[0]])


def ell(c, rx, ry, ang=0.0, n=24, t0=0.0, t1=2 * PI) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * PI - 1e-9)
    p = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    return rot2(p, ang) + np.asarray(c, float)


def rot2(pts, ang, origin=(0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    o = np.asarray(origin, float)
    p = np.asarray(pts, float) - o
    return p @ np.array([[c, s], [-s, c]]) + o


def inside(poly, p) -> bool:
    """Ray-casting point-in-polygon test."""
    poly = np.asarray(poly, float)
    x, y = float(p[0]), float(p[1])
    xs, ys = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xs, 1), np.roll(ys, 1)
    cross = (ys > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = (xj - xs) * (y - ys) / (yj - ys) + xs
    return bool(np.count_nonzero(cross & (x < xint)) % 2)


def leaf(base, tip, width, bulge=0.45, n=7) -> np.ndarray:
    """A pointed leaf/wing/fin shape from `base` to `tip`, widest at `bulge` of its length."""
    base, tip = np.asarray(base, float), np.asarray(tip, float)
    d = tip - base
    L = float(np.hypot(*d)) + 1e-9
    v = perp(d / L)
    t = np.linspace(0, 1, n)
    w = width * 0.5 * np.sin(PI * np.clip(t, 0, 1) ** (math.log(0.5) / math.log(bulge))) + 1e-4
    upper = base + t[:, None] * d + w[:, None] * v
    lower = base + t[::-1, None] * d - w[::-1, None] * v
    return np.concatenate([upper, lower[1:]])


class Jit:
    """Per-instance proportions: each shape value is drawn around the category's value."""

    def __init__(self, shape: dict, rng: np.random.Generator, rel: float = 0.08):
        self.s, self.rng, self.rel = shape, rng, rel

    def __call__(self, key: str, rel: float | None = None) -> float:
        r = self.rel if rel is None else rel
        return float(self.s.get(key, 0.0)) * (1.0 + self.rng.uniform(-r, r))  # absent: 0

    def flag(self, key: str, default=None):
        return self.s.get(key, default)

    def u(self, a: float, b: float) -> float:
        return float(self.rng.uniform(a, b))


# --------------------------------------------------------------------------------------------
# 3-D helpers for rigid objects. Object frame: X forward, Y down, Z towards the object's own
# left (X x Y = Z, right-handed). Camera frame: x right, y down, z away from the viewer.


def cam_rot(yaw: float, pitch: float) -> np.ndarray:
    """Yaw about the vertical axis, then pitch so the camera looks down on the top faces.
    yaw = 0: object faces image-right and shows its right flank; yaw = -pi/2: faces the viewer."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    Ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return Rx @ Ry


def box(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    """8 vertices, index = ix*4 + iy*2 + iz (see HEX_FACES)."""
    return np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], float)


HEX_FACES = ((0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5))
LIGHT = np.array([-0.4, -0.7, -0.6]) / np.linalg.norm([-0.4, -0.7, -0.6])  # camera frame


class Scene3D:
    """Projects convex hexahedra (boxes, frusta) into a Sketch with culling and lighting, and
    answers whether a 3-D point is covered by a nearer face of another solid."""

    def __init__(self, R: np.ndarray):
        self.R = R
        self.faces: list[tuple[np.ndarray, int]] = []  # (camera-frame vertices [4, 3], owner)

    def cam(self, P) -> np.ndarray:
        return np.asarray(P, float) @ self.R.T

    def solid(self, sk: Sketch, verts, owner: int, role="body", side_of_face=True,
              roles: dict | None = None) -> dict[int, float]:
        """Draw the front-facing faces; returns {face index: depth} of the faces drawn."""
        verts = np.asarray(verts, float)
        cen = verts.mean(0)
        C = self.cam(verts)
        drawn = {}
        for fi, idx in enumerate(HEX_FACES):
            fv = verts[list(idx)]
            n = np.cross(fv[1] - fv[0], fv[2] - fv[0])
            if np.linalg.norm(n) < 1e-12:
                n = np.cross(fv[2] - fv[0], fv[3] - fv[0])
            n = n / (np.linalg.norm(n) + 1e-12)
            if np.dot(n, fv.mean(0) - cen) < 0:
                n = -n
            nc = self.R @ n
            if nc[2] >= -1e-6:  # faces away from the viewer
                continue
            side = "C"
            if side_of_face and abs(n[2]) > 0.7:
                side = "L" if n[2] > 0 else "R"
            lum = 0.72 + 0.36 * max(0.0, float(np.dot(nc, LIGHT)))
            fc = C[list(idx)]
            depth = -float(fc[:, 2].mean())
            sk.poly(fc[:, :2], (roles or {}).get(fi, role), side, depth, lum)
            self.faces.append((fc, owner))
            drawn[fi] = depth
        return drawn

    def covered(self, p3, owner: int, eps: float) -> bool:
        pc = self.cam(p3)
        for fc, o in self.faces:
            if o == owner or not inside(fc[:, :2], pc[:2]):
                continue
            n = np.cross(fc[1] - fc[0], fc[2] - fc[0])
            if abs(n[2]) < 1e-12:
                continue
            z = fc[0, 2] - (n[0] * (pc[0] - fc[0, 0]) + n[1] * (pc[1] - fc[0, 1])) / n[2]
            if z < pc[2] - eps:
                return True
        return False


# --------------------------------------------------------------------------------------------
# family / category records


@dataclass(frozen=True)
class CategorySpec:
    name: str  # category and image-folder name
    noun: str  # how descriptions refer to it ("giraffe", "desk lamp")
    shape: dict  # proportions read by the family's builder


@dataclass(frozen=True)
class Family:
    name: str  # also the categories' `supercategory`
    keypoints: tuple  # ((name, description template), ...)
    skeleton: tuple  # 0-indexed pairs
    build: Callable  # (shape: dict, rng, mirror: bool) -> Figure
    rotation: float  # max in-plane rotation, degrees
    categories: tuple  # CategorySpec, ...


def paired(names_descs) -> list[tuple[str, str]]:
    """Expand entries ("{s} ear tip", template) into left and right keypoints, left first."""
    out = []
    for name, desc in names_descs:
        if "{s}" not in name:
            out.append((name, desc))
            continue
        for s, o, shade in (("left", "right", "darker"), ("right", "left", "lighter")):
            out.append((name.format(s=s), desc.replace("{s}", s).replace("{o}", o).replace("{shade}", shade)))
    return out


def _order(kps: list[tuple[str, str]], names: list[str]) -> tuple:
    by = dict(kps)
    assert len(by) == len(kps) and set(by) == set(names), (set(by) ^ set(names))
    return tuple((n, by[n]) for n in names)


def _skel(names: list[str], pairs: list[tuple[str, str]]) -> tuple:
    ix = {n: i for i, n in enumerate(names)}
    return tuple((ix[a], ix[b]) for a, b in pairs)


def _assign(kps: dict, names: list[str]) -> np.ndarray:
    return np.array([kps[n] for n in names], float)


# ============================================================================================
# quadrupeds: side view, 17 points (the AP-10K template)

QUAD_NAMES = ["left eye", "right eye", "nose", "neck", "root of tail",
              "left shoulder", "left elbow", "left front foot", "right shoulder", "right elbow",
              "right front foot", "left hip", "left knee", "left back foot", "right hip",
              "right knee", "right back foot"]
QUAD_KPS = _order(paired([
    ("{s} eye", "The centre of the {n}'s own {s} eye, on the side of the head behind the muzzle "
                "and below the ear base, roughly halfway between the nose and the back of the head. "
                "The {s} eye is on the {n}'s {shade} side: its {s} legs and ear are drawn {shade}."),
    ("nose", "The tip of the {n}'s nose, the front end of the muzzle and the point of the head "
             "farthest from the neck; both eyes lie behind and above it."),
    ("neck", "The base of the {n}'s neck, where the upper edge of the neck meets the top of the "
             "body above the front legs (the withers); the neck rises from here to the head and "
             "the shoulders lie below it."),
    ("root of tail", "The root of the {n}'s tail, where the tail leaves the rear end of the back, "
                     "above and behind the hips; the tail hangs or curls away from this point."),
    ("{s} shoulder", "The top of the {n}'s {s} front leg, where it joins the body at the lower "
                     "front of the chest, below the neck base; the {s} elbow lies below it along "
                     "the same leg ({shade} legs are the {s} ones)."),
    ("{s} elbow", "The joint in the middle of the {n}'s {s} front leg, between the {s} shoulder "
                  "above and the {s} front foot below, where the front leg bends."),
    ("{s} front foot", "The lower end of the {n}'s {s} front leg, the centre of its paw or hoof, "
                       "below the {s} elbow; the {shade} front leg is the {s} one."),
    ("{s} hip", "The top of the {n}'s {s} hind leg, where it joins the rear of the body below and "
                "in front of the root of the tail; the {s} knee lies below it."),
    ("{s} knee", "The joint in the middle of the {n}'s {s} hind leg, between the {s} hip above and "
                 "the {s} back foot below, where the hind leg bends."),
    ("{s} back foot", "The lower end of the {n}'s {s} hind leg, the centre of its paw or hoof, below "
                      "the {s} knee; the {shade} hind leg is the {s} one."),
]), QUAD_NAMES)
QUAD_SKEL = _skel(QUAD_NAMES, [
    ("left eye", "right eye"), ("left eye", "nose"), ("right eye", "nose"), ("nose", "neck"),
    ("neck", "root of tail"), ("neck", "left shoulder"), ("neck", "right shoulder"),
    ("left shoulder", "left elbow"), ("left elbow", "left front foot"),
    ("right shoulder", "right elbow"), ("right elbow", "right front foot"),
    ("root of tail", "left hip"), ("root of tail", "right hip"), ("left hip", "left knee"),
    ("left knee", "left back foot"), ("right hip", "right knee"), ("right knee", "right back foot")])


def build_quadruped(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    L, bh, leg = j("body_len"), j("body_h"), j("leg")
    tilt = j.u(-0.06, 0.06)
    c = V(0.0, -(leg + 0.5 * bh))
    T = lambda x, y: rot2(V(x, y), tilt) + c  # noqa: E731  torso-local -> object

    sk.poly(ell(c, L / 2, bh / 2, tilt, 28), "body", depth=0.0)
    near, far = ("R", "L") if not mirror else ("L", "R")  # facing +x shows the right flank
    kp = {}

    # legs: [shoulder or hip] -> joint -> foot; far legs a little higher and forward
    far_off = V(0.05 * L, -0.05 * bh)
    lw = j("leg_w")
    hoof = j.flag("hoof", False)
    for front, anchor in ((True, T(0.3 * L, 0.08 * bh)), (False, T(-0.3 * L, 0.02 * bh))):
        for side in (near, far):
            top = anchor + (far_off if side == far else 0)
            D = -top[1] + (0.0 if side == near else far_off[1])
            upper, lower = 0.5 * D, 0.52 * D
            # angles from the vertical, + towards the head: a front leg's lower part swings
            # back at the elbow; a hind thigh points forward and the shank back
            a = j.u(-0.35, 0.45) if front else j.u(-0.45, 0.35)
            bend = j.u(0.0, 0.75)
            a_up, a_low = (a, a - bend) if front else (a + 0.25, a + j.u(-0.2, 0.2) - bend * 0.6)
            mid = top + upper * V(math.sin(a_up), math.cos(a_up))
            foot = mid + lower * V(math.sin(a_low), math.cos(a_low))
            d = 1.0 if side == near else -1.0
            sk.line([top, mid], lw, "body", side, depth=d)
            sk.line([mid, foot], lw * 0.72, "body", side, depth=d + 0.01)
            sk.dot(foot, lw * 0.45, "accent" if hoof else "body", side, depth=d + 0.02)
            s = "left" if side == "L" else "right"
            names = (f"{s} shoulder", f"{s} elbow", f"{s} front foot") if front else \
                (f"{s} hip", f"{s} knee", f"{s} back foot")
            kp.update(zip(names, (top, mid, foot)))

    # neck and head
    nb = T(0.36 * L, -0.34 * bh)
    kp["neck"] = nb
    na = math.radians(j("neck_ang", 0.0) + j.u(-14, 14))
    hc = nb + j("neck_len") * V(math.cos(na), -math.sin(na))
    nw = j("neck_w")
    sk.line([nb + V(-0.05 * L, 0.25 * bh), hc], nw, "body", depth=0.1)
    psi = math.radians(j("head_tilt", 0.0) + j.u(-15, 20))
    hl, hh = j("head_len"), j("head_h")
    eu, ev = dirv(psi), dirv(psi - PI / 2)  # head frame: forward, up
    sk.poly(ell(hc, hl / 2, hh / 2, psi, 24), "body", depth=0.2)
    sn = j("snout")
    mc = hc + eu * (hl * 0.42)
    sk.poly(ell(mc - ev * hh * 0.08, sn, hh * 0.32, psi, 20), "body", depth=0.21)
    nose = mc + eu * sn - ev * hh * 0.08
    kp["nose"] = nose
    sk.dot(nose - eu * hh * 0.06, hh * 0.11, "dark", depth=0.3)
    eyes = {near: (hc + eu * 0.02 * hl + ev * 0.17 * hh, 0.1 * hh),
            far: (hc + eu * 0.17 * hl + ev * 0.3 * hh, 0.075 * hh)}
    for side, (p, r) in eyes.items():
        sk.dot(p, r, "dark", side, depth=0.3)
        kp[("left" if side == "L" else "right") + " eye"] = p
    # ears (not keypoints): the near ear over the head, the far one behind it
    ear, kind = j("ear"), j.flag("ear_kind", "point")
    for side, off, depth in ((far, 0.1 * hl, 0.15), (near, -0.06 * hl, 0.25)):
        base = hc - eu * 0.22 * hl + eu * off + ev * 0.38 * hh
        tip_dir = rot2(ev, j.u(-0.3, 0.5) + (0.35 if kind == "long" else 0.0))
        if kind == "round":
            sk.poly(ell(base + ev * ear * 0.35, ear * 0.45, ear * 0.45), "body", side, depth)
        elif kind == "flop":
            sk.poly(leaf(base + ev * 0.05 * hh, base - ev * ear * 0.9 - eu * 0.15 * hl, ear * 0.55, 0.4),
                    "body", side, depth + (0.1 if side == near else -0.1))
        else:
            w = 0.55 if kind == "point" else 0.32
            sk.poly([base - eu * ear * w * 0.5, base + tip_dir * ear, base + eu * ear * w * 0.5],
                    "body", side, depth)
    if j.flag("horns", False):
        for off in (-0.02, 0.06):
            b = hc - eu * 0.12 * hl + eu * off * hl + ev * 0.42 * hh
            sk.line([b, b + rot2(ev, -0.2) * hh * 0.7], hh * 0.12, "accent", depth=0.14)

    # tail
    tr = T(-0.47 * L, -0.22 * bh)
    kp["root of tail"] = tr
    ta = PI - math.radians(j("tail_ang", 0.0) + j.u(-20, 20))
    curl = math.radians(j("tail_curl", 0.0)) * j.u(0.4, 1.3)
    tl, tw = j("tail_len"), j("tail_w")
    pts, p = [tr], tr
    for i in range(5):
        p = p + dirv(ta + curl * i / 4) * tl / 5
        pts.append(p)
    if j.flag("bushy", False):
        sk.poly(leaf(pts[1], pts[-1] + (pts[-1] - pts[-2]) * 0.5, tw * 2.6, 0.55), "body", depth=-0.5)
    for i in range(5):
        sk.line(pts[i:i + 2], tw * (1 - 0.12 * i), "body", depth=-0.5)

    fig = Figure(_assign(kp, QUAD_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


QUADRUPEDS = (
    CategorySpec("horse", "horse", dict(body_len=1.0, body_h=0.42, leg=0.72, leg_w=0.1, neck_len=0.45,
                 neck_ang=52, neck_w=0.18, head_len=0.36, head_h=0.16, head_tilt=35, snout=0.12,
                 ear=0.1, ear_kind="long", tail_len=0.5, tail_ang=60, tail_curl=10, tail_w=0.07,
                 hoof=True)),
    CategorySpec("giraffe", "giraffe", dict(body_len=0.85, body_h=0.4, leg=1.05, leg_w=0.08,
                 neck_len=1.0, neck_ang=68, neck_w=0.12, head_len=0.28, head_h=0.12, head_tilt=25,
                 snout=0.08, ear=0.08, ear_kind="point", horns=True, tail_len=0.4, tail_ang=70,
                 tail_curl=0, tail_w=0.03, hoof=True)),
    CategorySpec("dachshund", "dachshund", dict(body_len=1.0, body_h=0.3, leg=0.2, leg_w=0.09,
                 neck_len=0.2, neck_ang=40, neck_w=0.16, head_len=0.32, head_h=0.17, head_tilt=15,
                 snout=0.13, ear=0.16, ear_kind="flop", tail_len=0.36, tail_ang=-20, tail_curl=20,
                 tail_w=0.04)),
    CategorySpec("cat", "cat", dict(body_len=0.8, body_h=0.3, leg=0.42, leg_w=0.08, neck_len=0.14,
                 neck_ang=45, neck_w=0.15, head_len=0.24, head_h=0.2, head_tilt=5, snout=0.05,
                 ear=0.11, ear_kind="point", tail_len=0.8, tail_ang=-60, tail_curl=-90,
                 tail_w=0.045)),
    CategorySpec("bear", "bear", dict(body_len=1.0, body_h=0.55, leg=0.36, leg_w=0.17,
                 neck_len=0.18, neck_ang=12, neck_w=0.3, head_len=0.34, head_h=0.25, head_tilt=15,
                 snout=0.1, ear=0.09, ear_kind="round", tail_len=0.08, tail_ang=30, tail_curl=0,
                 tail_w=0.06)),
    CategorySpec("fox", "fox", dict(body_len=0.85, body_h=0.3, leg=0.4, leg_w=0.07, neck_len=0.2,
                 neck_ang=40, neck_w=0.14, head_len=0.3, head_h=0.16, head_tilt=10, snout=0.13,
                 ear=0.15, ear_kind="point", tail_len=0.6, tail_ang=25, tail_curl=-25, tail_w=0.06,
                 bushy=True)),
)


# ============================================================================================
# birds: side view, 15 points (after CUB-200)

BIRD_NAMES = ["beak tip", "crown", "forehead", "nape", "throat", "breast", "belly", "back",
              "tail tip", "left eye", "right eye", "left wing tip", "right wing tip", "left foot",
              "right foot"]
BIRD_KPS = _order(paired([
    ("beak tip", "The tip of the {n}'s beak, the point of the bill farthest from the head, in "
                 "front of the forehead and the throat."),
    ("crown", "The top of the {n}'s head, the highest point of the skull outline, behind the "
              "forehead and in front of the nape."),
    ("forehead", "The front of the {n}'s head where the skull outline meets the upper base of the "
                 "beak, between the crown above-behind and the beak tip in front."),
    ("nape", "The back of the {n}'s head where it turns into the back of the neck, behind and "
             "below the crown; the back lies further along behind it."),
    ("throat", "The underside of the {n}'s head just behind the lower base of the beak, below the "
               "forehead and above the breast."),
    ("breast", "The front of the {n}'s body, the most forward point of the chest below the neck, "
               "between the throat above and the belly below."),
    ("belly", "The underside of the {n}'s body, the lowest point of the body outline between the "
              "breast and the tail, just above where the legs leave the body."),
    ("back", "The middle of the top of the {n}'s body, between the nape in front and the tail "
             "behind, above the folded wings."),
    ("tail tip", "The end of the {n}'s tail feathers, the point of the tail farthest from the "
                 "body, behind the back and the belly."),
    ("{s} eye", "The centre of the {n}'s own {s} eye, on the {s} side of the head behind the beak "
                "base and below the crown. In side view only the eye facing the viewer is visible; "
                "the {n}'s {s} wing and leg are drawn {shade}."),
    ("{s} wing tip", "The tip of the {n}'s {s} wing, the point of the {s} wing farthest from the "
                     "shoulder where the wing meets the back; folded, it lies near the tail; "
                     "raised, above the back. The {shade} wing is the {s} one."),
    ("{s} foot", "The lower end of the {n}'s {s} leg, where the toes spread from the leg, below "
                 "the belly; the {shade} leg is the {s} one."),
]), BIRD_NAMES)
BIRD_SKEL = _skel(BIRD_NAMES, [
    ("beak tip", "forehead"), ("forehead", "crown"), ("crown", "nape"), ("nape", "back"),
    ("beak tip", "throat"), ("throat", "breast"), ("breast", "belly"), ("back", "tail tip"),
    ("belly", "tail tip"), ("left eye", "forehead"), ("right eye", "forehead"),
    ("back", "left wing tip"), ("back", "right wing tip"), ("belly", "left foot"),
    ("belly", "right foot")])


def build_bird(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    near, far = ("R", "L") if not mirror else ("L", "R")
    rx, ry = j("body_rx"), j("body_ry")
    tau = math.radians(j("tilt", 0.0) + j.u(-10, 10))
    u, v = V(math.cos(tau), -math.sin(tau)), V(math.sin(tau), math.cos(tau))  # forward, down
    c = V(0.0, 0.0)
    bp = lambda deg: c + rx * math.cos(math.radians(deg)) * u + ry * math.sin(math.radians(deg)) * v  # noqa: E731
    body = np.array([bp(d) for d in np.linspace(0, 360, 30, endpoint=False)])
    sk.poly(body, "body", depth=0.0)
    kp = {"breast": bp(30), "belly": bp(95), "back": bp(-100)}

    # neck and head
    hr = j("head_r")
    na = math.radians(j("neck_ang") + j.u(-12, 12))
    hc = bp(-30) + j("neck_len") * V(math.cos(na), -math.sin(na))
    sk.line([bp(-20) * 0.6, hc], hr * 1.5, "body", depth=0.05)
    ht = math.radians(j.u(-15, 20))  # head frame: forward direction, + looks down
    sk.poly(ell(hc, hr, hr, 0, 22), "body", depth=0.1)
    hp = lambda deg, f=1.0: hc + hr * f * dirv(ht + math.radians(deg))  # noqa: E731
    kp.update(crown=hp(-90), forehead=hp(-38), nape=hp(-160), throat=hp(62))
    bw = math.radians(j("beak_w"))
    blen = j("beak_len")
    droop = math.radians(j("beak_droop", 0.0))
    tip = hc + dirv(ht + droop) * (hr * 0.92 + blen)
    up, lo = hc + hr * 0.9 * dirv(ht - bw), hc + hr * 0.9 * dirv(ht + bw)
    mid_up = hc + dirv(ht - bw * 0.4) * (hr + blen * 0.55) + dirv(ht - PI / 2) * blen * 0.08 * (droop > 0.2)
    if j.flag("bill", False):  # duck: broad, rounded bill
        pts = np.concatenate([[up], leaf(hc + hr * 0.85 * dirv(ht), tip, blen * 0.45, 0.7)[1:-1], [lo]])
        sk.poly(pts, "accent", depth=0.12)
    else:
        sk.poly([up, mid_up, tip, (tip + lo) / 2 + dirv(ht + PI / 2) * blen * 0.03, lo], "accent", depth=0.12)
    kp["beak tip"] = tip
    eye = hp(-28, 0.42)
    sk.dot(eye, hr * 0.19, "light", near, depth=0.2)
    sk.dot(eye, hr * 0.12, "dark", near, depth=0.21)
    kp[("left" if near == "L" else "right") + " eye"] = eye
    kp[("left" if far == "L" else "right") + " eye"] = eye  # behind the head: hidden
    hidden = {BIRD_NAMES.index(("left" if far == "L" else "right") + " eye")}

    # tail
    tb = bp(180)
    ta = math.atan2(-u[1], -u[0]) - math.radians(j("tail_droop", 0.0) + j.u(-12, 12))
    tl, tw = j("tail_len"), j("tail_w")
    ttip = tb + dirv(ta) * tl
    sk.poly([tb + perp(dirv(ta)) * tw * 0.4, ttip + perp(dirv(ta)) * tw * 0.6, ttip,
             ttip - perp(dirv(ta)) * tw * 0.6, tb - perp(dirv(ta)) * tw * 0.4], "body2", depth=-0.3)
    kp["tail tip"] = ttip

    # wings: folded along the body or raised; the far wing behind the body
    raised = rng.random() < 0.4
    rho = math.radians(j.u(35, 110) if raised else j.u(-4, 12))
    back_ang = math.atan2(-u[1], -u[0])
    wl, ww = j("wing_len"), j("wing_w")
    ws = c + 0.32 * rx * u - 0.35 * ry * v
    wing_polys = {}
    for side, off, depth in ((near, V(0, 0), 0.5), (far, V(0.04, -0.05) * rx / 0.5, -1.0)):
        a = back_ang + rho + (0 if side == near else j.u(-0.15, 0.15)) * (1 if raised else 0.2)
        # the wing angle turns upwards: for a body facing +x, "up from backwards" is +angle
        wtip = ws + off + dirv(a) * wl
        poly = leaf(ws + off, wtip, ww, 0.3)
        sk.poly(poly, "body2", side, depth)
        wing_polys[side] = poly
        kp[("left" if side == "L" else "right") + " wing tip"] = wtip
    far_tip = kp[("left" if far == "L" else "right") + " wing tip"]
    if inside(body, far_tip) or inside(wing_polys[near], far_tip):
        hidden.add(BIRD_NAMES.index(("left" if far == "L" else "right") + " wing tip"))

    # legs and toes
    ll = j("leg_len")
    for side, dx, depth in ((near, 0.05, 0.6), (far, -0.12, -0.6)):
        hip = bp(92) + u * dx * rx - v * 0.1 * ry
        knee = hip + V(j.u(-0.1, 0.1), 0.55) * ll
        foot = knee + V(j.u(-0.05, 0.12), 0.45) * ll
        lw = j("leg_w")
        sk.line([hip, knee, foot], lw, "accent", side, depth)
        toe = max(ll * 0.3, rx * 0.25)
        if j.flag("webbed", False):
            sk.poly([foot, foot + V(toe * 1.2, -0.02), foot + V(toe * 0.9, toe * 0.25)], "accent", side, depth + 0.01)
        else:
            for t in (-0.1, 0.2):
                sk.line([foot, foot + dirv(t) * toe], lw * 0.7, "accent", side, depth + 0.01)
            sk.line([foot, foot + dirv(PI + 0.2) * toe * 0.6], lw * 0.7, "accent", side, depth + 0.01)
        kp[("left" if side == "L" else "right") + " foot"] = foot

    fig = Figure(_assign(kp, BIRD_NAMES), sk.prims, hidden)
    return fig.flip_x() if mirror else fig


BIRDS = (
    CategorySpec("sparrow", "sparrow", dict(body_rx=0.5, body_ry=0.33, tilt=18, head_r=0.22,
                 neck_len=0.06, neck_ang=50, beak_len=0.13, beak_w=28, tail_len=0.42, tail_w=0.16,
                 tail_droop=15, wing_len=0.62, wing_w=0.26, leg_len=0.26, leg_w=0.035)),
    CategorySpec("heron", "heron", dict(body_rx=0.5, body_ry=0.24, tilt=15, head_r=0.12,
                 neck_len=0.72, neck_ang=72, beak_len=0.45, beak_w=20, beak_droop=8, tail_len=0.22,
                 tail_w=0.16, tail_droop=25, wing_len=0.75, wing_w=0.26, leg_len=0.95, leg_w=0.035)),
    CategorySpec("parrot", "parrot", dict(body_rx=0.45, body_ry=0.27, tilt=55, head_r=0.21,
                 neck_len=0.08, neck_ang=70, beak_len=0.2, beak_w=40, beak_droop=55, tail_len=0.85,
                 tail_w=0.14, tail_droop=10, wing_len=0.62, wing_w=0.24, leg_len=0.16, leg_w=0.05)),
    CategorySpec("duck", "duck", dict(body_rx=0.6, body_ry=0.3, tilt=-4, head_r=0.19,
                 neck_len=0.28, neck_ang=62, beak_len=0.24, beak_w=25, bill=True, tail_len=0.18,
                 tail_w=0.16, tail_droop=-25, wing_len=0.62, wing_w=0.28, leg_len=0.18, leg_w=0.05,
                 webbed=True)),
)


# ============================================================================================
# human-like figures: front or back view, 17 points (the COCO person template)

HUMAN_NAMES = ["nose", "left eye", "right eye", "left ear", "right ear", "left shoulder",
               "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist",
               "left hip", "right hip", "left knee", "right knee", "left ankle", "right ankle"]
HUMAN_KPS = _order(paired([
    ("nose", "The tip of the {n}'s nose in the middle of the face, below and between the two eyes "
             "and above the mouth; not visible when the {n} is seen from behind."),
    ("{s} eye", "The centre of the {n}'s own {s} eye, beside the nose on the {s} half of the face, "
                "between the nose and the {s} ear; seen from the front the {s} eye is on the "
                "image's {o} side, and the {n}'s {s} limbs are drawn {shade}."),
    ("{s} ear", "The {n}'s {s} ear on the {s} side of the head, level with the eyes, the point of "
                "the head farthest out on that side; the {shade} ear is the {s} one."),
    ("{s} shoulder", "The {n}'s {s} shoulder joint, the upper outer corner of the torso on the {s} "
                     "side, below and outside the {s} ear; the {s} upper arm hangs from it to the "
                     "{s} elbow. The {shade} arm is the {s} one."),
    ("{s} elbow", "The bend of the {n}'s {s} arm, between the {s} shoulder and the {s} wrist, where "
                  "the upper arm meets the forearm."),
    ("{s} wrist", "The {n}'s {s} wrist, the end of the {s} forearm where the hand begins, beyond "
                  "the {s} elbow."),
    ("{s} hip", "The {n}'s {s} hip joint, the lower corner of the torso on the {s} side, below the "
                "{s} shoulder, where the {s} leg starts; the {shade} leg is the {s} one."),
    ("{s} knee", "The {n}'s {s} knee, the bend in the middle of the {s} leg between the {s} hip "
                 "above and the {s} ankle below."),
    ("{s} ankle", "The {n}'s {s} ankle, the lower end of the {s} shin just above the {s} foot, below "
                  "the {s} knee."),
]), HUMAN_NAMES)
HUMAN_SKEL = _skel(HUMAN_NAMES, [
    ("nose", "left eye"), ("nose", "right eye"), ("left eye", "left ear"), ("right eye", "right ear"),
    ("left shoulder", "right shoulder"), ("left shoulder", "left elbow"), ("left elbow", "left wrist"),
    ("right shoulder", "right elbow"), ("right elbow", "right wrist"), ("left shoulder", "left hip"),
    ("right shoulder", "right hip"), ("left hip", "right hip"), ("left hip", "left knee"),
    ("left knee", "left ankle"), ("right hip", "right knee"), ("right knee", "right ankle")])


def build_human(shape, rng, mirror):
    """Front view canonical (the figure's left on the image right); mirror = seen from behind."""
    j = Jit(shape, rng)
    sk = Sketch()
    robot = j.flag("robot", False)
    back = mirror
    hr, nl, sw, hw, tl = j("head_r"), j("neck_len"), j("shoulder_w") / 2, j("hip_w") / 2, j("torso_len")
    ua, fa, th, sh, lw = j("upper_arm"), j("forearm"), j("thigh"), j("shin"), j("limb_w")
    lean = j.u(-0.12, 0.12)
    hipc = V(0.0, tl)
    up = lambda p: rot2(p, lean, hipc)  # noqa: E731  upper body leans about the hips
    kp = {}
    LS, RS = up(V(sw, 0)), up(V(-sw, 0))
    LH, RH = V(hw, tl), V(-hw, tl)
    kp.update({"left shoulder": LS, "right shoulder": RS, "left hip": LH, "right hip": RH})

    # torso and pelvis
    torso = [up(V(-sw * 1.12, -0.03)), up(V(sw * 1.12, -0.03)), V(hw * 1.2, tl * 1.02), V(-hw * 1.2, tl * 1.02)]
    sk.poly(torso, "body", depth=0.0)
    sk.poly([V(-hw * 1.2, tl * 0.9), V(hw * 1.2, tl * 0.9), V(hw * 1.25, tl + th * 0.25),
             V(-hw * 1.25, tl + th * 0.25)], "body2", depth=-0.4)
    if robot:
        sk.poly([up(V(-sw * 0.5, tl * 0.2)), up(V(sw * 0.5, tl * 0.2)), up(V(sw * 0.5, tl * 0.5)),
                 up(V(-sw * 0.5, tl * 0.5))], "light" if not back else "metal", depth=0.05)

    # head
    neck_top = up(V(0, -nl))
    tilt = j.u(-0.25, 0.25)
    hc = neck_top + rot2(V(0, -hr), tilt)
    H = lambda x, y: rot2(V(x, y) * hr, tilt) + hc  # noqa: E731  head frame, units of head radius
    sk.line([up(V(0, 0.05)), neck_top], hr * 0.75, "skin" if not robot else "metal", depth=-0.1)
    if robot:
        sk.poly([H(-1, -1), H(1, -1), H(1, 0.95), H(-1, 0.95)], "metal", depth=0.2)
        sk.line([H(0, -1), H(0.2, -1.6)], hr * 0.12, "dark", depth=0.19)
        sk.dot(H(0.2, -1.6), hr * 0.16, "accent", depth=0.19)
    else:
        sk.poly(ell(hc, hr, hr * 1.1, tilt, 24), "skin", depth=0.2)
    for s, x in (("L", 1.0), ("R", -1.0)):
        e = H(x * (1.02 if not robot else 1.08), 0.05)
        kp[("left" if s == "L" else "right") + " ear"] = e
        if robot:
            sk.poly([H(x * 0.98, -0.25), H(x * 1.2, -0.25), H(x * 1.2, 0.35), H(x * 0.98, 0.35)], "accent", s,
                    depth=0.19)
        else:
            sk.poly(ell(e, hr * 0.2, hr * 0.3, tilt), "skin", s, depth=0.19)
    kp["left eye"], kp["right eye"], kp["nose"] = H(0.38, -0.05), H(-0.38, -0.05), H(0, 0.3)
    if not back:
        if robot:
            for x in (0.38, -0.38):
                p = H(x, -0.05)
                sk.poly([p + rot2(V(-0.17, -0.09) * hr, tilt), p + rot2(V(0.17, -0.09) * hr, tilt),
                         p + rot2(V(0.17, 0.09) * hr, tilt), p + rot2(V(-0.17, 0.09) * hr, tilt)],
                        "light", "L" if x > 0 else "R", depth=0.3)
            sk.dot(H(0, 0.3), hr * 0.1, "accent", depth=0.3)
            sk.line([H(-0.4, 0.62), H(0.4, 0.62)], hr * 0.08, "dark", depth=0.3)
        else:
            sk.poly(ell(H(0, -0.6), hr * 1.02, hr * 0.55, tilt, 20, PI, 2 * PI), "hair", depth=0.25)
            for x in (0.38, -0.38):
                sk.dot(H(x, -0.05), hr * 0.11, "dark", "L" if x > 0 else "R", depth=0.3)
            sk.poly([H(0, 0.08), H(0.1, 0.33), H(-0.1, 0.33)], "accent", depth=0.3)
            sk.line([H(-0.3, 0.6), H(0, 0.66), H(0.3, 0.6)], hr * 0.08, "dark", depth=0.3)
    else:
        if robot:
            for yy in (-0.4, 0.0, 0.4):
                sk.line([H(-0.5, yy), H(0.5, yy)], hr * 0.08, "dark", depth=0.3)
        else:
            sk.poly(ell(H(0, -0.15), hr * 1.04, hr * 1.0, tilt, 24), "hair", depth=0.25)
    hidden = {0, 1, 2} if back else set()

    # arms and legs: side +1 is the figure's left (image right in front view)
    for s, sg in (("L", 1.0), ("R", -1.0)):
        name = "left" if s == "L" else "right"
        sho = kp[f"{name} shoulder"]
        abd = j.u(0.05, 2.6) if rng.random() < 0.5 else j.u(0.05, 0.7)
        a_up = PI / 2 - sg * abd + lean
        bend = j.u(-0.4, 1.8) * (1 if rng.random() < 0.6 else -1)
        elbow = sho + ua * dirv(a_up)
        wrist = elbow + fa * dirv(a_up - sg * bend)
        kp[f"{name} elbow"], kp[f"{name} wrist"] = elbow, wrist
        hand = wrist + dirv(a_up - sg * bend) * lw * 0.55
        sk.line([sho, elbow], lw, "body" if not robot else "metal", s, depth=0.5)
        sk.line([elbow, wrist], lw * 0.85, "skin" if not robot else "metal", s, depth=0.51)
        sk.dot(hand, lw * 0.6, "skin" if not robot else "accent", s, depth=0.52)
        hip = kp[f"{name} hip"]
        a_th = PI / 2 - sg * j.u(-0.1, 0.45)
        knee = hip + th * dirv(a_th)
        ankle = knee + sh * dirv(a_th + sg * j.u(-0.3, 0.6))
        kp[f"{name} knee"], kp[f"{name} ankle"] = knee, ankle
        sk.line([hip, knee], lw * 1.25, "body2" if not robot else "metal", s, depth=-0.5)
        sk.line([knee, ankle], lw * 1.1, "body2" if not robot else "metal", s, depth=-0.49)
        sk.poly(ell(ankle + V(sg * lw * 0.3, lw * 0.35), lw * 0.75, lw * 0.4), "dark", s, depth=-0.48)
        if robot:
            for p in (elbow, knee):
                sk.dot(p, lw * 0.6, "accent", s, depth=0.55 if p is elbow else -0.45)

    fig = Figure(_assign(kp, HUMAN_NAMES), sk.prims, hidden)
    return fig.flip_x() if back else fig


HUMANS = (
    CategorySpec("adult", "person", dict(head_r=0.12, neck_len=0.08, shoulder_w=0.46, hip_w=0.3,
                 torso_len=0.6, upper_arm=0.32, forearm=0.28, thigh=0.42, shin=0.4, limb_w=0.09)),
    CategorySpec("child", "child", dict(head_r=0.16, neck_len=0.05, shoulder_w=0.36, hip_w=0.26,
                 torso_len=0.45, upper_arm=0.22, forearm=0.2, thigh=0.27, shin=0.25, limb_w=0.085)),
    CategorySpec("robot", "robot", dict(head_r=0.14, neck_len=0.1, shoulder_w=0.56, hip_w=0.34,
                 torso_len=0.58, upper_arm=0.3, forearm=0.3, thigh=0.38, shin=0.36, limb_w=0.11,
                 robot=True)),
)


# ============================================================================================
# faces: frontal view of a head, 13 points

FACE_NAMES = ["left ear tip", "right ear tip", "left eye outer corner", "left eye inner corner",
              "right eye inner corner", "right eye outer corner", "nose tip", "left mouth corner",
              "right mouth corner", "upper lip centre", "lower lip centre", "chin", "crown"]
FACE_KPS = _order(paired([
    ("{s} ear tip", "The tip of the {n}'s own {s} ear, the point of the {s} ear farthest from where "
                    "it joins the head, above or beside the {s} eye. The {s} ear and the patch round "
                    "the {s} eye are drawn {shade} than the {o} ones."),
    ("{s} eye outer corner", "The outer corner of the {n}'s {s} eye, where the eyelids meet on the "
                             "side away from the nose, the eye point closest to the {s} ear."),
    ("{s} eye inner corner", "The inner corner of the {n}'s {s} eye, where the eyelids meet on the "
                             "side towards the nose; it faces the {o} eye's inner corner across the "
                             "bridge of the nose."),
    ("nose tip", "The centre of the {n}'s nose pad on the midline of the face, below and between "
                 "the two inner eye corners and above the upper lip centre."),
    ("{s} mouth corner", "The corner of the {n}'s mouth on its own {s} side, where the upper and "
                         "lower lips meet, below the {s} eye and beside the lip centres."),
    ("upper lip centre", "The middle of the {n}'s upper lip on the midline, at the top edge of the "
                         "mouth opening, below the nose tip and between the two mouth corners."),
    ("lower lip centre", "The middle of the {n}'s lower lip on the midline, at the bottom edge of "
                         "the mouth opening, below the upper lip centre and above the chin."),
    ("chin", "The bottom of the {n}'s chin, the lowest point of the face outline on the midline, "
             "below the lower lip centre."),
    ("crown", "The top of the {n}'s head, the highest point of the head outline on the midline, "
              "above the eyes and between the two ears."),
]), FACE_NAMES)
FACE_SKEL = _skel(FACE_NAMES, [
    ("left ear tip", "crown"), ("right ear tip", "crown"), ("left eye outer corner", "left eye inner corner"),
    ("right eye inner corner", "right eye outer corner"), ("left eye inner corner", "nose tip"),
    ("right eye inner corner", "nose tip"), ("nose tip", "upper lip centre"),
    ("left mouth corner", "upper lip centre"), ("right mouth corner", "upper lip centre"),
    ("left mouth corner", "lower lip centre"), ("right mouth corner", "lower lip centre"),
    ("lower lip centre", "chin")])


def build_face(shape, rng, mirror):
    """Frontal head built from points on an ellipsoid, turned by a small yaw and pitch; the
    face's own left is on the image right. Mirror flips the image; the darker left-side ear
    and eye patch then tell the sides apart."""
    j = Jit(shape, rng)
    sk = Sketch()
    rx, ry = j("head_rx"), j("head_ry")
    rz = rx
    yaw, pitch = math.radians(j.u(-28, 28)), math.radians(j.u(-12, 12))
    R = cam_rot(yaw, pitch)

    def P(x, y, z=None, out=1.0):
        if z is None:
            z = rz * math.sqrt(max(0.0, 1 - (x / rx) ** 2 - (y / ry) ** 2)) * out
        # here x is the face's own left, z points out of the face towards the viewer
        q = R @ np.array([x, y, -z])
        return q[:2]

    kp = {}
    sk.poly(ell((0, 0), rx, ry, 0, 32), "body", depth=0.0)
    kp["crown"], kp["chin"] = P(0, -ry * 0.999, 0), P(0, ry * 0.97, rz * 0.25)
    if j.flag("mask", False):
        sk.poly(np.array([P(x, y) for x, y in zip(rx * 0.7 * np.cos(np.linspace(0, 2 * PI, 20)),
                                                   ry * 0.2 + ry * 0.65 * np.sin(np.linspace(0, 2 * PI, 20)))]),
                "light", depth=0.05)

    # ears
    kind, ear = j.flag("ear_kind"), j("ear")
    for s, sg in (("L", 1.0), ("R", -1.0)):
        name = ("left" if s == "L" else "right") + " ear tip"
        sw = j.u(-0.25, 0.25)
        if kind == "point":
            b1, b2 = V(sg * 0.3 * rx, -0.9 * ry), V(sg * 0.92 * rx, -0.42 * ry)
            tipv = rot2(V(sg * 0.78 * rx, -1.2 * ry - ear), sg * sw, (b1 + b2) / 2)
            pts = [P(*b1, 0), P(*tipv, 0), P(*b2, 0)]
            sk.poly(pts, "body", s, depth=-0.1)
            sk.poly([P(*(b1 * 0.85 + tipv * 0.15), 0), P(*(tipv * 0.8 + (b1 + b2) / 2 * 0.2), 0),
                     P(*(b2 * 0.85 + tipv * 0.15), 0)], "accent", s, depth=-0.09)
            kp[name] = pts[1]
        elif kind == "flop":
            base = V(sg * 0.9 * rx, -0.62 * ry)
            tipv = rot2(V(sg * (1.05 * rx + ear * 0.35), 0.3 * ry + ear), -sg * sw * 0.5, base)
            pts = leaf(base, tipv, ear * 0.75, 0.45)
            sk.poly([P(*p, 0) for p in pts], "body", s, depth=0.05)
            kp[name] = P(*tipv, 0)
        elif kind == "round":
            cen = V(sg * 0.72 * rx, -0.8 * ry)
            cen = rot2(cen, sg * sw * 0.3)
            r = ear
            sk.poly([P(*p, 0) for p in ell(cen, r, r, 0, 18)], "body", s, depth=-0.1)
            sk.poly([P(*p, 0) for p in ell(cen, r * 0.55, r * 0.55, 0, 14)], "accent", s, depth=-0.09)
            d = cen / (np.linalg.norm(cen) + 1e-9)
            kp[name] = P(*(cen + d * r), 0)
        else:  # "side": C-shaped ears on the sides of the head
            cen = V(sg * 0.98 * rx, -0.05 * ry + sw * 0.1)
            r = ear
            sk.poly([P(*p, 0) for p in ell(cen, r * 0.8, r, 0, 18)], "body", s, depth=-0.1)
            sk.poly([P(*p, 0) for p in ell(cen, r * 0.45, r * 0.6, 0, 12)], "accent", s, depth=-0.09)
            kp[name] = P(cen[0] + sg * r * 0.8, cen[1], 0)

    # eye patches (side-shaded), eyes
    ex, ey, ew = j("eye_x"), j("eye_y"), j("eye_w")
    openness = j.u(0.25, 1.0)
    for s, sg in (("L", 1.0), ("R", -1.0)):
        n = "left" if s == "L" else "right"
        cen = V(sg * ex, -ey)
        patch = ell(cen, ew * 1.7, ew * 1.45, sg * 0.25, 20)
        sk.poly([P(*p) for p in patch], "body", s, depth=0.1)
        outer, inner = V(sg * (ex + ew), -ey + ew * 0.1), V(sg * (ex - ew), -ey)
        t = np.linspace(0, 1, 7)
        base = inner[None] + t[:, None] * (outer - inner)[None]
        h = ew * 0.55 * openness * np.sin(PI * t)
        upper = base - np.stack([np.zeros_like(h), h], 1)
        lower = base + np.stack([np.zeros_like(h), h * 0.8], 1)
        eye = np.concatenate([upper, lower[::-1][1:-1]])
        sk.poly([P(*p) for p in eye], "light", s, depth=0.2)
        sk.dot(P(*(cen + V(0, 0.0))), ew * 0.42 * max(openness, 0.5), "dark", s, depth=0.21)
        kp[f"{n} eye outer corner"], kp[f"{n} eye inner corner"] = P(*outer), P(*inner)

    # muzzle, nose, mouth
    ny, snout = j("nose_y"), j("snout")
    if j.flag("muzzle", False):
        mpts = ell((0, ny + 0.18 * ry), rx * 0.42, ry * 0.3, 0, 20)
        sk.poly([P(x, y, None, 1.0) + (R @ np.array([0, 0, -snout * 0.6]))[:2] for x, y in mpts], "light", depth=0.25)
    nz = rz + snout
    nose = P(0, ny, nz)
    kp["nose tip"] = nose
    nwid = j("nose_w")
    sk.poly([nose + V(-nwid, -nwid * 0.6), nose + V(nwid, -nwid * 0.6), nose + V(0, nwid * 0.7)], "dark", depth=0.3)
    my, mw = j("mouth_y"), j("mouth_w")
    gape = j.u(0.0, 1.0) ** 2 * j("mouth_open")
    mz = rz * 0.9 + snout * 0.6
    lc, rc = P(mw, my, mz * 0.9), P(-mw, my, mz * 0.9)
    ul, ll = P(0, my - mw * 0.08, mz), P(0, my + mw * 0.05 + gape, mz)
    kp.update({"left mouth corner": lc, "right mouth corner": rc, "upper lip centre": ul,
               "lower lip centre": ll})
    if gape > mw * 0.12:
        sk.poly([lc, ul, rc, ll], "dark", depth=0.3)
    else:
        sk.line([lc, ul, rc], max(0.012, mw * 0.08), "dark", depth=0.3)
        sk.line([P(-mw * 0.4, my + mw * 0.12 + gape, mz), ll, P(mw * 0.4, my + mw * 0.12 + gape, mz)],
                max(0.01, mw * 0.05), "dark", depth=0.3)
    sk.line([nose + V(0, nwid * 0.7), ul], max(0.01, mw * 0.05), "dark", depth=0.3)
    if j.flag("whiskers", False):
        for s, sg in (("L", 1.0), ("R", -1.0)):
            for dy in (-0.04, 0.03):
                a = P(sg * mw * 0.9, ny + dy * ry + 0.05 * ry, rz)
                sk.line([a, a + V(sg * rx * 0.7, dy * ry * 2)], 0.01, "dark", s, depth=0.32)
    fig = Figure(_assign(kp, FACE_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


_FACE = dict(eye_x=0.3, eye_y=0.12, eye_w=0.11, nose_y=0.22, nose_w=0.06, snout=0.08, mouth_y=0.45,
             mouth_w=0.18, mouth_open=0.12)
FACES = (
    CategorySpec("cat_face", "cat", dict(_FACE, head_rx=0.6, head_ry=0.52, ear_kind="point", ear=0.12,
                 nose_w=0.05, mouth_y=0.36, mouth_w=0.12, whiskers=True)),
    CategorySpec("dog_face", "dog", dict(_FACE, head_rx=0.5, head_ry=0.6, ear_kind="flop", ear=0.3,
                 eye_y=0.18, nose_y=0.24, nose_w=0.09, snout=0.25, mouth_y=0.42, muzzle=True)),
    CategorySpec("bear_face", "bear", dict(_FACE, head_rx=0.6, head_ry=0.55, ear_kind="round", ear=0.16,
                 eye_x=0.26, eye_w=0.08, nose_y=0.2, nose_w=0.08, snout=0.2, mouth_y=0.4, muzzle=True)),
    CategorySpec("monkey_face", "monkey", dict(_FACE, head_rx=0.5, head_ry=0.58, ear_kind="side", ear=0.15,
                 eye_x=0.2, eye_y=0.1, eye_w=0.1, nose_y=0.16, nose_w=0.05, snout=0.06, mouth_y=0.4,
                 mouth_w=0.2, mouth_open=0.16, mask=True)),
)


# ============================================================================================
# hand: 21 points (after OneHand10K), palm or back of a left or right hand

FINGERS = ("index finger", "middle finger", "ring finger", "little finger")
HAND_NAMES = ["wrist", "thumb base", "thumb knuckle", "thumb joint", "thumb tip"] + [
    f"{f} {p}" for f in FINGERS for p in ("knuckle", "middle joint", "end joint", "tip")]
_HAND = [("wrist", "The middle of the wrist, where the forearm meets the heel of the palm; the "
                   "thumb base is the nearest keypoint and the four finger knuckles lie across the "
                   "far end of the palm."),
         ("thumb base", "The root of the thumb at the heel of the palm on the thumb side, close to "
                        "the wrist; the thumb knuckle lies further out along the thumb."),
         ("thumb knuckle", "The thumb's knuckle where the thumb leaves the palm, between the thumb "
                           "base and the thumb joint."),
         ("thumb joint", "The single bending joint in the free part of the thumb, between the thumb "
                         "knuckle and the thumb tip."),
         ("thumb tip", "The end of the thumb, the point of the thumb farthest from the wrist, just "
                       "beyond the thumb joint.")]
_NEIGH = {"index finger": "next to the thumb and beside the middle finger",
          "middle finger": "between the index finger and the ring finger, usually the longest finger",
          "ring finger": "between the middle finger and the little finger",
          "little finger": "on the edge of the hand opposite the thumb, beside the ring finger"}
for _f in FINGERS:
    _HAND += [
        (f"{_f} knuckle", f"The knuckle where the {_f} meets the palm, in the row of knuckles across the "
                          f"end of the palm, {_NEIGH[_f]}; the {_f} middle joint lies further out."),
        (f"{_f} middle joint", f"The first bending joint of the {_f} out from the palm, between the "
                               f"{_f} knuckle and the {_f} end joint."),
        (f"{_f} end joint", f"The last joint of the {_f} before the fingertip, between the {_f} middle "
                            f"joint and the {_f} tip."),
        (f"{_f} tip", f"The end of the {_f}, the point of the fingertip farthest from the palm, just "
                      f"beyond the {_f} end joint."),
    ]
HAND_KPS = _order(_HAND, HAND_NAMES)
HAND_SKEL = tuple([(0, 1), (1, 2), (2, 3), (3, 4)] + [  # wrist -> each finger's chain
    (a, b) for f in range(4) for a, b in ((0, 5 + 4 * f), (5 + 4 * f, 6 + 4 * f), (6 + 4 * f, 7 + 4 * f),
                                          (7 + 4 * f, 8 + 4 * f))])


def build_hand(shape, rng, mirror):
    """Canonical: a right hand seen from the palm, fingers up, thumb on the image right.
    `mirror` makes it a left hand; a random half are seen from the back (nails shown)."""
    j = Jit(shape, rng)
    sk = Sketch()
    pw, ph = j("palm_w"), j("palm_h")
    palm_view = rng.random() < 0.5
    kp = {"wrist": V(0, 0)}
    mcp = {"index finger": V(0.34 * pw, -ph), "middle finger": V(0.11 * pw, -1.04 * ph),
           "ring finger": V(-0.12 * pw, -1.0 * ph), "little finger": V(-0.33 * pw, -0.9 * ph)}
    flen = {"index finger": 0.92, "middle finger": 1.02, "ring finger": 0.95, "little finger": 0.75}
    base_ang = {"index finger": 0.13, "middle finger": 0.02, "ring finger": -0.09, "little finger": -0.22}
    spread = j.u(0.2, 1.8)
    fw = j("finger_w")
    cmax = 2.6 if palm_view else 1.0
    fist = rng.random() < 0.2
    palm = [V(-0.42 * pw, 0.02), V(0.4 * pw, 0.02), V(0.55 * pw, -0.4 * ph), mcp["index finger"] + V(0.1 * pw, 0),
            mcp["middle finger"] + V(0, -0.02), mcp["ring finger"] + V(0, -0.02),
            mcp["little finger"] + V(-0.1 * pw, 0.02), V(-0.5 * pw, -0.45 * ph)]
    sk.poly(palm, "skin", depth=0.0)
    sk.line([V(0, 0.1 * ph), V(0, 0.8 * ph)], pw * 0.8, "body2", depth=-0.2)
    for f in FINGERS:
        a = -PI / 2 + base_ang[f] * spread + j.u(-0.08, 0.08)
        curl = (j.u(0.7, 1.0) if fist else j.u(0, 1) ** 1.5) * cmax
        d = dirv(a)
        segs = np.array([0.45, 0.3, 0.25]) * flen[f] * ph * (1 + j.u(-0.06, 0.06))
        flex = curl * np.array([0.4, 0.35, 0.25])
        pts, p, th = [mcp[f]], mcp[f], 0.0
        for L, fl in zip(segs, flex):
            th += fl
            p = p + d * L * math.cos(th)  # curling towards the viewer foreshortens the finger
            pts.append(p)
        for k, nm in enumerate(("knuckle", "middle joint", "end joint", "tip")):
            kp[f"{f} {nm}"] = pts[k]
        depth = 0.5 if palm_view or th < 1.2 else -0.1
        w = fw * (1.0 if f != "little finger" else 0.85)
        sk.line(pts, w, "skin", depth=depth)
        tipd = pts[3] - pts[2]
        tipd = tipd / (np.linalg.norm(tipd) + 1e-9)
        if not palm_view:
            sk.poly(ell(pts[3] - tipd * w * 0.35, w * 0.3, w * 0.38, math.atan2(tipd[1], tipd[0]) + PI / 2),
                    "light", depth=depth + 0.01)
        else:
            for k in (1, 2):
                sk.line([pts[k] - perp(tipd) * w * 0.3, pts[k] + perp(tipd) * w * 0.3], w * 0.12,
                        "dark", depth=depth + 0.01)
    # thumb: base on the palm, bending across the palm as it flexes
    ta = -PI / 2 + 0.95 + j.u(-0.35, 0.45)
    tc = j.u(0, 1)
    pts = [V(0.36 * pw, -0.14 * ph)]
    segs = np.array([0.42, 0.3, 0.26]) * ph * j("thumb")
    a = ta
    for k, L in enumerate(segs):
        a -= tc * 0.45
        pts.append(pts[-1] + dirv(a) * L * math.cos(tc * 0.3 * (k + 1)))
    for k, nm in enumerate(("thumb base", "thumb knuckle", "thumb joint", "thumb tip")):
        kp[nm] = pts[k]
    sk.line(pts, fw * 1.2, "skin", depth=0.6 if palm_view else 0.4)
    if not palm_view:
        td = (pts[3] - pts[2]) / (np.linalg.norm(pts[3] - pts[2]) + 1e-9)
        sk.poly(ell(pts[3] - td * fw * 0.4, fw * 0.35, fw * 0.45, math.atan2(td[1], td[0]) + PI / 2), "light",
                depth=0.61)
        for f in FINGERS:  # knuckle lines on the back of the hand
            m = mcp[f]
            sk.line([m + V(-fw * 0.3, fw * 0.2), m + V(fw * 0.3, fw * 0.2)], fw * 0.1, "dark", depth=0.05)
    else:
        sk.line([V(0.4 * pw, -0.62 * ph), V(0, -0.55 * ph), V(-0.45 * pw, -0.66 * ph)], fw * 0.1, "dark", depth=0.05)
        sk.line([V(0.35 * pw, -0.2 * ph), V(0.1 * pw, -0.45 * ph), V(0.05 * pw, -0.75 * ph)], fw * 0.1, "dark",
                depth=0.05)
    fig = Figure(_assign(kp, HAND_NAMES), sk.prims, set())
    flip = mirror != (not palm_view)  # right palm / left back: thumb on the image right
    return fig.flip_x() if flip else fig


HANDS = (CategorySpec("hand", "hand", dict(palm_w=0.5, palm_h=0.55, finger_w=0.1, thumb=1.0)),)


# ============================================================================================
# vehicles: 3-D boxes seen from the side/three-quarter view, 12 points

VEH_NAMES = ["left front wheel", "right front wheel", "left rear wheel", "right rear wheel",
             "left headlight", "right headlight", "left tail light", "right tail light",
             "left front roof corner", "right front roof corner", "left rear roof corner",
             "right rear roof corner"]
VEH_KPS = _order(paired([
    ("{s} front wheel", "The hub at the centre of the {n}'s {s} front wheel, below the {s} headlight "
                        "and ahead of the {s} rear wheel along the {s} flank. Panels on the {n}'s "
                        "own {s} side are drawn {shade}."),
    ("{s} rear wheel", "The hub at the centre of the {n}'s {s} rear wheel, below the {s} tail light "
                       "and behind the {s} front wheel along the {s} flank."),
    ("{s} headlight", "The centre of the {n}'s {s} headlight on its front face, above the {s} front "
                      "wheel and next to the {o} headlight across the front."),
    ("{s} tail light", "The centre of the {n}'s {s} tail light on its rear face, above the {s} rear "
                       "wheel and next to the {o} tail light across the back."),
    ("{s} front roof corner", "The front corner of the {n}'s roof on its {s} side, where the top "
                              "of the windscreen meets the {s} edge of the roof, above and behind "
                              "the {s} headlight."),
    ("{s} rear roof corner", "The rear corner of the {n}'s roof on its {s} side, where the {s} roof "
                             "edge ends above the rear window, behind the {s} front roof corner."),
]), VEH_NAMES)
VEH_SKEL = _skel(VEH_NAMES, [
    ("left front wheel", "left rear wheel"), ("right front wheel", "right rear wheel"),
    ("left front wheel", "right front wheel"), ("left rear wheel", "right rear wheel"),
    ("left headlight", "right headlight"), ("left tail light", "right tail light"),
    ("left headlight", "left front wheel"), ("right headlight", "right front wheel"),
    ("left tail light", "left rear wheel"), ("right tail light", "right rear wheel"),
    ("left front roof corner", "right front roof corner"), ("left rear roof corner", "right rear roof corner"),
    ("left front roof corner", "left rear roof corner"), ("right front roof corner", "right rear roof corner")])


def build_vehicle(shape, rng, mirror):
    j = Jit(shape, rng, 0.06)
    sk = Sketch()
    L, W, bh, cl, r = j("length"), j("width"), j("body_h"), j("clearance"), j("wheel_r")
    yaw = math.radians(j.u(-50, 50)) + (PI if mirror else 0.0)
    sc = Scene3D(cam_rot(yaw, math.radians(j.u(6, 28))))
    x0, x1 = -L / 2, L / 2
    ytop = -cl - bh
    drawn = sc.solid(sk, box(x0, x1, -cl, ytop, -W / 2, W / 2), owner=0)
    body_depths = list(drawn.values())
    c0, c1, r0, r1 = (j("cab0", 0.03) * L, j("cab1", 0.03) * L, j("roof0", 0.03) * L, j("roof1", 0.03) * L)
    ch = j("cab_h")
    wi = 0.44 * W
    cab = np.array([[x, y, z] for x, y in ((c0, ytop), (c0, ytop - ch)) for z in (-wi, wi)] +
                   [[x, y, z] for x, y in ((c1, ytop), (c1, ytop - ch)) for z in (-wi, wi)], float)
    cab[2:4, 0] = r0  # roof rear x
    cab[6:8, 0] = r1  # roof front x
    cab_faces = sc.solid(sk, cab, owner=1)
    # windows: inset copies of the visible side/front/back cabin faces
    for fi, depth in cab_faces.items():
        if fi == 3:  # the roof
            continue
        fc = sc.cam(cab[list(HEX_FACES[fi])])[:, :2]
        cen = fc.mean(0)
        lo = fc[:, 1].max()
        win = cen + (fc - cen) * 0.78
        win[:, 1] = np.minimum(win[:, 1], lo - 0.1 * ch)
        sk.poly(win, "glass", depth=depth + 1e-3)
    if j.flag("bed", False):  # pickup: dark cargo bed behind the cabin
        if 3 in drawn:
            bed = box(x0 + 0.04 * L, c0 - 0.03 * L, ytop, ytop, -W * 0.42, W * 0.42)[[0, 1, 5, 4]]
            sk.poly(sc.cam(bed)[:, :2], "dark", depth=drawn[3] + 1e-3)
    kp, hidden = {}, set()
    eps = 0.01 * L
    # wheels: near ones over the body, far ones under it
    wx = {"front": j("wheel_x", 0.04) * L, "rear": -j("wheel_x", 0.04) * L}
    for fr, x in wx.items():
        for s, z in (("L", W / 2 + 0.01), ("R", -W / 2 - 0.01)):
            name = f"{'left' if s == 'L' else 'right'} {fr} wheel"
            c = np.array([x, -r, z])
            cc = sc.cam(c)
            near = (sc.R @ np.array([0, 0, 1.0 if s == 'L' else -1.0]))[2] < 0
            depth = (max(body_depths) + 0.01) if near else (min(body_depths) - 0.01)
            ring = np.array([[x + r * math.cos(t), -r + r * math.sin(t), z]
                             for t in np.linspace(0, 2 * PI, 20, endpoint=False)])
            sk.poly(sc.cam(ring)[:, :2], "dark", s, depth)
            sk.poly(sc.cam(c + (ring - c) * 0.5)[:, :2], "metal", s, depth + 1e-4)
            kp[name] = cc[:2]
            if sc.covered(c, owner=2, eps=eps):
                hidden.add(VEH_NAMES.index(name))
    # lights on the front (x1) and rear (x0) faces
    ly = -cl - bh * 0.62
    for s, z in (("L", 0.33 * W), ("R", -0.33 * W)):
        n = "left" if s == "L" else "right"
        for name, x, fi, role in ((f"{n} headlight", x1, 1, "lamp"), (f"{n} tail light", x0, 0, "red")):
            p = np.array([x, ly, z])
            kp[name] = sc.cam(p)[:2]
            if fi in drawn:  # a lamp-shaped quad on the visible front/rear face
                q = np.array([[x, ly + dy * bh, z + dz * W] for dy, dz in
                              ((-0.15, -0.09), (-0.15, 0.09), (0.15, 0.09), (0.15, -0.09))])
                sk.poly(sc.cam(q)[:, :2], role, s, drawn[fi] + 2e-3)
            else:
                hidden.add(VEH_NAMES.index(name))
    # roof corners
    for s, z in (("L", wi), ("R", -wi)):
        n = "left" if s == "L" else "right"
        for name, x in ((f"{n} front roof corner", r1), (f"{n} rear roof corner", r0)):
            p = np.array([x, ytop - ch, z])
            kp[name] = sc.cam(p)[:2]
            if sc.covered(p, owner=1, eps=eps):
                hidden.add(VEH_NAMES.index(name))
    return Figure(_assign(kp, VEH_NAMES), sk.prims, hidden)


VEHICLES = (
    CategorySpec("sedan", "car", dict(length=2.0, width=0.85, body_h=0.32, clearance=0.16, wheel_r=0.17,
                 wheel_x=0.31, cab0=-0.3, cab1=0.26, roof0=-0.18, roof1=0.08, cab_h=0.3)),
    CategorySpec("van", "van", dict(length=2.0, width=0.9, body_h=0.42, clearance=0.16, wheel_r=0.17,
                 wheel_x=0.32, cab0=-0.49, cab1=0.34, roof0=-0.49, roof1=0.16, cab_h=0.42)),
    CategorySpec("pickup", "pickup truck", dict(length=2.2, width=0.9, body_h=0.36, clearance=0.22,
                 wheel_r=0.2, wheel_x=0.32, cab0=-0.08, cab1=0.22, roof0=-0.06, roof1=0.12, cab_h=0.34,
                 bed=True)),
)


# ============================================================================================
# chairs: 3-D boxes seen from the front or the back, 10 points

CHAIR_NAMES = ["left backrest top", "right backrest top", "left front seat corner",
               "right front seat corner", "left back seat corner", "right back seat corner",
               "left front foot", "right front foot", "left back foot", "right back foot"]
CHAIR_KPS = _order(paired([
    ("{s} backrest top", "The top corner of the {n}'s backrest on its own {s} side (the side of a "
                         "sitter's {s} hand), above the {s} back seat corner; parts on the {s} side "
                         "are drawn {shade}."),
    ("{s} front seat corner", "The front corner of the {n}'s seat surface on its {s} side, the seat "
                              "corner farthest from the backrest, above the {s} front foot."),
    ("{s} back seat corner", "The back corner of the {n}'s seat surface on its {s} side, where the "
                             "seat meets the backrest, below the {s} backrest top and above the {s} "
                             "back foot."),
    ("{s} front foot", "The bottom end of the {n}'s {s} front leg, where it stands on the floor, "
                       "below the {s} front seat corner."),
    ("{s} back foot", "The bottom end of the {n}'s {s} back leg, where it stands on the floor, below "
                      "the {s} back seat corner and behind the {s} front foot."),
]), CHAIR_NAMES)
CHAIR_SKEL = _skel(CHAIR_NAMES, [
    ("left backrest top", "right backrest top"), ("left backrest top", "left back seat corner"),
    ("right backrest top", "right back seat corner"), ("left front seat corner", "right front seat corner"),
    ("left back seat corner", "right back seat corner"), ("left front seat corner", "left back seat corner"),
    ("right front seat corner", "right back seat corner"), ("left front seat corner", "left front foot"),
    ("right front seat corner", "right front foot"), ("left back seat corner", "left back foot"),
    ("right back seat corner", "right back foot")])


def build_chair(shape, rng, mirror):
    """Canonical: seen from the front (yaw about -90 deg); mirror: seen from behind."""
    j = Jit(shape, rng, 0.07)
    sk = Sketch()
    w, d, sh, st = j("seat_w"), j("seat_d"), j("seat_h"), j("seat_t")
    bhgt, bt, lw = j("back_h"), j("back_t"), j("leg_w")
    tilt = math.radians(j("back_tilt", 0.0) + j.u(-6, 6))
    yaw = (-PI / 2 if not mirror else PI / 2) + math.radians(j.u(-55, 55))
    sc = Scene3D(cam_rot(yaw, math.radians(j.u(10, 32))))
    ys = -sh  # top of the seat
    solids = []
    # legs (owner 10..13), seat (0), backrest (1), arms (2, 3)
    ins = lw * 0.8
    legs = {}
    for fx, (fr, x) in enumerate((("front", d / 2 - ins), ("back", -d / 2 + ins))):
        for s, z in (("L", w / 2 - ins), ("R", -w / 2 + ins)):
            spl = j("splay", 0.0) * (1 if fr == "front" else -1)
            foot = np.array([x + spl, 0.0, z + math.copysign(abs(spl) * 0.5, z)])
            top = np.array([x, ys + st, z])
            legs[(fr, s)] = (top, foot)
            # a leg is a box whose bottom square sits on the foot and top square under the seat;
            # vertex order as box(): index = ix*4 + iy*2 + iz
            q = [(foot if iy == 0 else top) + np.array([(ix - 0.5) * lw, 0.0, (iz - 0.5) * lw])
                 for ix in (0, 1) for iy in (0, 1) for iz in (0, 1)]
            solids.append((np.array(q), 10 + len(solids), "accent", s))
    seat = box(-d / 2, d / 2, ys + st, ys, -w / 2, w / 2)
    back = box(-d / 2 - bt, -d / 2, ys, ys - bhgt, -w / 2, w / 2)
    back[:, 0] -= (ys - back[:, 1]) * math.tan(tilt)
    solids += [(seat, 0, "body", None), (back, 1, "body2", None)]
    if j.flag("arms", False):
        ah = j("arm_h")
        for s, z in (("L", w / 2), ("R", -w / 2)):
            arm = box(-d / 2, d / 2 * 0.9, ys, ys - ah, z - math.copysign(lw * 1.5, z), z)
            solids.append((arm, 2 if s == "L" else 3, "body2", s))
    if j.flag("ring", False):  # bar stool foot ring: four bars between the legs (not solids)
        yr = -sh * 0.3
        corners = [legs[k][1] * 0.7 + legs[k][0] * 0.3
                   for k in (("front", "L"), ("front", "R"), ("back", "R"), ("back", "L"))]
        for a, b in zip(corners, corners[1:] + corners[:1]):
            a2, b2 = a.copy(), b.copy()
            a2[1] = b2[1] = yr
            ca, cb = sc.cam(a2), sc.cam(b2)
            sk.line([ca[:2], cb[:2]], lw * 0.6, "metal", depth=-float((ca[2] + cb[2]) / 2))
    for verts, owner, role, s in solids:
        sc.solid(sk, verts, owner, role, side_of_face=True)
        if s is not None:  # legs and arms take the shade of their side on every face
            for p in sk.prims[-6:]:
                if p.side == "C":
                    p.side = s
    kp, hidden = {}, set()
    eps = 0.004
    for s, z in (("L", w / 2), ("R", -w / 2)):
        n = "left" if s == "L" else "right"
        bt_top = back[7 if s == "L" else 6]  # front (ix=1), top (iy=1) corner on this side
        pts = {f"{n} backrest top": (bt_top, 1),
               f"{n} front seat corner": (np.array([d / 2, ys, z]), 0),
               f"{n} back seat corner": (np.array([-d / 2, ys, z]), 0),
               f"{n} front foot": (legs[("front", s)][1], None),
               f"{n} back foot": (legs[("back", s)][1], None)}
        for name, (p, owner) in pts.items():
            kp[name] = sc.cam(p)[:2]
            own = owner if owner is not None else -1
            if sc.covered(p, owner=own, eps=eps + (lw if owner is None else 0)):
                hidden.add(CHAIR_NAMES.index(name))
    return Figure(_assign(kp, CHAIR_NAMES), sk.prims, hidden)


CHAIRS = (
    CategorySpec("dining_chair", "chair", dict(seat_w=0.5, seat_d=0.48, seat_h=0.48, seat_t=0.06,
                 back_h=0.5, back_t=0.05, leg_w=0.05, back_tilt=8)),
    CategorySpec("armchair", "armchair", dict(seat_w=0.8, seat_d=0.7, seat_h=0.4, seat_t=0.16,
                 back_h=0.45, back_t=0.16, leg_w=0.08, back_tilt=14, arms=True, arm_h=0.22)),
    CategorySpec("bar_stool", "bar stool", dict(seat_w=0.4, seat_d=0.38, seat_h=0.8, seat_t=0.05,
                 back_h=0.24, back_t=0.04, leg_w=0.04, back_tilt=5, splay=0.05, ring=True)),
    CategorySpec("bench", "bench", dict(seat_w=1.4, seat_d=0.42, seat_h=0.42, seat_t=0.05,
                 back_h=0.36, back_t=0.05, leg_w=0.06, back_tilt=12)),
)


# ============================================================================================
# garments: laid flat, front or back, 15 points (after DeepFashion2 tops)

GARM_NAMES = ["left collar", "right collar", "neckline centre", "left shoulder", "right shoulder",
              "left cuff outer", "left cuff inner", "right cuff outer", "right cuff inner",
              "left armpit", "right armpit", "left waist", "right waist", "left hem", "right hem"]
GARM_KPS = _order(paired([
    ("{s} collar", "The point where the {n}'s neckline meets the top of the {s} shoulder seam, on "
                   "the wearer's own {s} side, between the neckline centre and the {s} shoulder. "
                   "Seen from the front the wearer's {s} is on the image's {o}; the {s} sleeve is "
                   "drawn {shade}."),
    ("neckline centre", "The middle of the {n}'s neckline on the midline, the lowest point of the "
                        "neck opening between the two collar points (deep on the front, shallow on "
                        "the back)."),
    ("{s} shoulder", "The outer end of the {n}'s {s} shoulder seam, where the {s} sleeve starts, "
                     "outside the {s} collar point and above the {s} armpit."),
    ("{s} cuff outer", "The outer (upper) corner of the {n}'s {s} sleeve opening, at the end of the "
                       "sleeve's edge that runs from the {s} shoulder."),
    ("{s} cuff inner", "The inner (lower) corner of the {n}'s {s} sleeve opening, at the end of the "
                       "sleeve's underside that runs from the {s} armpit."),
    ("{s} armpit", "The {n}'s {s} armpit, where the underside of the {s} sleeve meets the {s} side "
                   "seam, below the {s} shoulder and above the {s} waist."),
    ("{s} waist", "The narrowest point of the {n}'s {s} side seam, between the {s} armpit above "
                  "and the {s} hem corner below."),
    ("{s} hem", "The lower corner of the {n} on the wearer's {s} side, where the {s} side seam meets "
                "the bottom hem, below the {s} waist."),
]), GARM_NAMES)
GARM_SKEL = _skel(GARM_NAMES, [
    ("left collar", "neckline centre"), ("right collar", "neckline centre"), ("left collar", "left shoulder"),
    ("right collar", "right shoulder"), ("left shoulder", "left cuff outer"), ("left cuff outer", "left cuff inner"),
    ("left cuff inner", "left armpit"), ("right shoulder", "right cuff outer"),
    ("right cuff outer", "right cuff inner"), ("right cuff inner", "right armpit"),
    ("left armpit", "left waist"), ("left waist", "left hem"), ("right armpit", "right waist"),
    ("right waist", "right hem"), ("left hem", "right hem")])


def build_garment(shape, rng, mirror):
    """Canonical: the front, laid flat, wearer's left on the image right. Mirror: the back."""
    j = Jit(shape, rng)
    sk = Sketch()
    back = mirror
    nw, sw, sdrop = j("neck_w"), j("shoulder_w"), j("shoulder_drop")
    aw, ah, ww, wy, hw, hy = j("armpit_w"), j("armpit_y"), j("waist_w"), j("waist_y"), j("hem_w"), j("hem_y")
    nd = j("neck_depth") * (0.25 if back else 1.0)
    sl, cw = j("sleeve_len"), j("cuff_w")
    kp = {}
    for s, sg in (("L", 1.0), ("R", -1.0)):
        n = "left" if s == "L" else "right"
        kp[f"{n} collar"] = V(sg * nw, 0)
        kp[f"{n} shoulder"] = V(sg * sw, sdrop)
        kp[f"{n} armpit"] = V(sg * aw, ah)
        kp[f"{n} waist"] = V(sg * ww, wy)
        kp[f"{n} hem"] = V(sg * hw, hy)
    kp["neckline centre"] = V(0, nd)
    body = [kp["left collar"], kp["left shoulder"], kp["left armpit"], kp["left waist"], kp["left hem"],
            V(0, hy + j("hem_curve", 0.0)), kp["right hem"], kp["right waist"], kp["right armpit"],
            kp["right shoulder"], kp["right collar"], V(-nw * 0.5, nd * 0.8), kp["neckline centre"],
            V(nw * 0.5, nd * 0.8)]
    sk.poly(body, "body", depth=0.0)
    # sleeves: quadrilaterals from the shoulder/armpit edge, optionally bent at the elbow
    elbow = j.flag("elbow", False)
    for s, sg in (("L", 1.0), ("R", -1.0)):
        n = "left" if s == "L" else "right"
        a = j.u(0.35, 1.35)
        d = V(sg * math.cos(a), math.sin(a))
        S, A = kp[f"{n} shoulder"], kp[f"{n} armpit"]
        down = V(-d[1], d[0]) if sg > 0 else V(d[1], -d[0])
        if elbow:
            b = j.u(-0.2, 0.9)
            d2 = rot2(d, sg * b)
            eo = S + d * sl * 0.5
            ei = eo + down * cw * 1.15
            co = eo + d2 * sl * 0.5
            down2 = V(-d2[1], d2[0]) if sg > 0 else V(d2[1], -d2[0])
            ci = co + down2 * cw
            pts = [S, eo, co, ci, ei, A]
        else:
            co = S + d * sl
            ci = co + down * cw
            pts = [S, co, ci, A]
        kp[f"{n} cuff outer"], kp[f"{n} cuff inner"] = co, ci
        sk.poly(pts, "body", s, depth=0.1)
        sk.line([co, ci], cw * 0.12, "accent", s, depth=0.11)
    # front/back details: the cues that say which side of the garment we see
    hidden = set()
    if not back:
        sk.line([kp["neckline centre"], V(0, hy * 0.97)], 0.015, "dark", depth=0.2)
        for t in np.linspace(0.15, 0.85, 4):
            sk.dot(V(0, nd + (hy - nd) * t), 0.022, "light", depth=0.21)
        px, py = aw * 0.55, ah * 0.75  # chest pocket on the wearer's left
        sk.poly([V(px - 0.1, py), V(px + 0.1, py), V(px + 0.1, py + 0.14), V(px - 0.1, py + 0.14)], "body2", "L",
                depth=0.2)
        if j.flag("hood", False):
            sk.poly(np.concatenate([[kp["left collar"]], ell((0, 0), nw * 1.25, nw * 1.2, 0, 12, PI, 2 * PI)[::-1],
                                    [kp["right collar"]]]), "body2", depth=-0.2)
    else:
        sk.line([V(-aw * 0.9, ah * 0.45), V(aw * 0.9, ah * 0.45)], 0.012, "dark", depth=0.2)
        sk.poly([V(-0.05, nd + 0.005), V(0.05, nd + 0.005), V(0.05, nd + 0.07), V(-0.05, nd + 0.07)], "light",
                depth=0.21)  # the label tag inside the back of the neck
        if j.flag("hood", False):
            hood = ell((0, nd + 0.08), nw * 1.3, nw * 1.0, 0, 18)
            sk.poly(hood, "body2", depth=0.3)
            if inside(hood, kp["neckline centre"]):
                hidden.add(GARM_NAMES.index("neckline centre"))
    fig = Figure(_assign(kp, GARM_NAMES), sk.prims, hidden)
    return fig.flip_x() if back else fig


_GARM = dict(neck_w=0.16, shoulder_w=0.42, shoulder_drop=0.07, armpit_w=0.38, armpit_y=0.36,
             waist_w=0.34, waist_y=0.7, hem_w=0.38, hem_y=1.05, neck_depth=0.16, sleeve_len=0.3, cuff_w=0.22)
GARMENTS = (
    CategorySpec("t_shirt", "T-shirt", dict(_GARM)),
    CategorySpec("long_sleeve_shirt", "long-sleeved shirt", dict(_GARM, sleeve_len=0.82, cuff_w=0.13,
                 elbow=True, neck_depth=0.1, hem_y=1.15, hem_curve=0.05)),
    CategorySpec("dress", "dress", dict(_GARM, shoulder_w=0.34, armpit_w=0.32, sleeve_len=0.12, cuff_w=0.14,
                 waist_w=0.24, waist_y=0.62, hem_w=0.7, hem_y=1.65, hem_curve=0.08, neck_depth=0.22)),
    CategorySpec("hoodie", "hoodie", dict(_GARM, shoulder_w=0.46, armpit_w=0.42, waist_w=0.4, hem_w=0.38,
                 sleeve_len=0.8, cuff_w=0.15, elbow=True, hood=True, neck_depth=0.12, hem_y=1.0)),
)


# ============================================================================================
# insects: top view, 20 points

INS_NAMES = ["head front", "left antenna tip", "right antenna tip", "neck", "waist", "abdomen tip",
             "left wing tip", "right wing tip", "left front knee", "left front foot", "left middle knee",
             "left middle foot", "left hind knee", "left hind foot", "right front knee",
             "right front foot", "right middle knee", "right middle foot", "right hind knee",
             "right hind foot"]
INS_KPS = _order(paired([
    ("head front", "The front end of the {n}'s head on the midline, between the bases of the two "
                   "antennae, the point of the body farthest from the abdomen tip."),
    ("{s} antenna tip", "The tip of the {n}'s own {s} antenna, the end of the feeler that starts on "
                        "the {s} front of the head; the {n}'s {s} legs, wing and antenna are drawn "
                        "{shade}."),
    ("neck", "The joint between the {n}'s head and thorax on the midline, behind the head front and "
             "in front of the leg roots."),
    ("waist", "The joint between the {n}'s thorax and abdomen on the midline, behind the hind leg "
              "roots and in front of the abdomen."),
    ("abdomen tip", "The rear end of the {n}'s abdomen on the midline, the point of the body "
                    "farthest from the head."),
    ("{s} wing tip", "The tip of the {n}'s {s} wing (for beetles, of the {s} wing case), the point "
                     "of that wing farthest from where it joins the thorax, beside the abdomen."),
    ("{s} front knee", "The joint of the {n}'s {s} front leg, the bend between the {s} side of the "
                       "thorax and the {s} front foot; the front legs point towards the head."),
    ("{s} front foot", "The end of the {n}'s {s} front leg, beyond the {s} front knee, the foremost "
                       "foot on the {s} side."),
    ("{s} middle knee", "The joint of the {n}'s {s} middle leg, between the middle of the {s} side "
                        "of the thorax and the {s} middle foot."),
    ("{s} middle foot", "The end of the {n}'s {s} middle leg, beyond the {s} middle knee, between the "
                        "{s} front and hind feet."),
    ("{s} hind knee", "The joint of the {n}'s {s} hind leg, between the rear of the {s} side of the "
                      "thorax and the {s} hind foot; the hind legs point towards the abdomen."),
    ("{s} hind foot", "The end of the {n}'s {s} hind leg, beyond the {s} hind knee, the rearmost "
                      "foot on the {s} side."),
]), INS_NAMES)
INS_SKEL = _skel(INS_NAMES, [
    ("head front", "neck"), ("head front", "left antenna tip"), ("head front", "right antenna tip"),
    ("neck", "waist"), ("waist", "abdomen tip"), ("waist", "left wing tip"), ("waist", "right wing tip")] + [
    (a, b) for s in ("left", "right") for leg in ("front", "middle", "hind")
    for a, b in ((("neck" if leg != "hind" else "waist"), f"{s} {leg} knee"), (f"{s} {leg} knee", f"{s} {leg} foot"))])


def build_insect(shape, rng, mirror):
    """Seen from above, head up: the insect's own left is on the image left. (No mirror: any
    in-plane rotation is drawn, so sides must be read from the head and the shading.)"""
    j = Jit(shape, rng)
    sk = Sketch()
    hr, trx, try_, arx, ary = j("head_r"), j("thorax_rx"), j("thorax_ry"), j("abd_rx"), j("abd_ry")
    gap = j("gap")
    kp = {}
    bend_a, bend_h = j.u(-0.25, 0.25), j.u(-0.3, 0.3)
    neck, waist = V(0, -try_), V(0, try_ + gap / 2)
    hc = neck + rot2(V(0, -hr * 0.9), bend_h)
    ac = waist + rot2(V(0, gap / 2 + ary), bend_a)
    kp["neck"], kp["waist"] = neck, waist
    kp["head front"] = hc + rot2(V(0, -hr), bend_h)
    kp["abdomen tip"] = waist + rot2(V(0, gap / 2 + 2 * ary), bend_a)
    sk.poly(ell((0, 0), trx, try_, 0, 20), "body", depth=0.0)
    sk.poly(ell(hc, hr, hr * 0.9, bend_h, 18), "body", depth=0.05)
    sk.poly(ell(ac, arx, ary, bend_a, 24), "body", depth=-0.05)
    if j.flag("stripes", False):
        for t in (-0.4, 0.0, 0.4):
            p = ac + rot2(V(0, ary * t), bend_a)
            sk.line([p + rot2(V(-arx * 0.9 * math.sqrt(1 - t * t), 0), bend_a),
                     p + rot2(V(arx * 0.9 * math.sqrt(1 - t * t), 0), bend_a)], ary * 0.12, "dark", depth=-0.04)
    if gap > 0.02:
        sk.line([neck + V(0, try_ * 1.8), ac], trx * 0.25, "body", depth=-0.06)
    for s, sg in (("L", -1.0), ("R", 1.0)):
        n = "left" if s == "L" else "right"
        sk.dot(hc + rot2(V(sg * hr * 0.6, -hr * 0.25), bend_h), hr * 0.32, "dark", s, depth=0.1)
        # antenna: three segments curving outwards
        a = -PI / 2 + sg * j.u(0.2, 0.9) + bend_h
        p = hc + rot2(V(sg * hr * 0.35, -hr * 0.85), bend_h)
        pts = [p]
        al = j("antenna")
        curv = j.u(-0.3, 0.5)
        for k in range(3):
            p = p + dirv(a + sg * curv * k) * al / 3
            pts.append(p)
        sk.line(pts, hr * 0.12, "dark", s, depth=0.06)
        kp[f"{n} antenna tip"] = pts[-1]
        # legs
        for leg, ay, a0, tib in (("front", -0.55, -0.7, -0.4), ("middle", 0.0, 0.0, 0.3), ("hind", 0.55, 0.7, 0.5)):
            base = V(sg * trx * 0.75, try_ * ay)
            af = a0 + j.u(-0.3, 0.3)
            fa = (PI - af) if sg < 0 else af  # mirror the angle onto the left side
            l1, l2 = j("femur"), j("tibia") * (1.3 if leg == "hind" else 1.0)
            knee = base + dirv(fa) * l1
            tb = af + tib + j.u(-0.3, 0.3)
            ta = (PI - tb) if sg < 0 else tb
            foot = knee + dirv(ta) * l2
            lw = j("leg_w")
            sk.line([base, knee], lw, "dark", s, depth=-0.5)
            sk.line([knee, foot], lw * 0.8, "dark", s, depth=-0.49)
            kp[f"{n} {leg} knee"], kp[f"{n} {leg} foot"] = knee, foot
        # wings (or wing cases)
        if j.flag("elytra", False):
            # a wing case: straight inner edge from the root to the tip, rounded outer edge,
            # swung open about the root so the two tips stay apart
            open_ = j.u(0.05, 0.3)
            root = V(sg * 0.01, try_ * 0.95)
            We, Le = arx * 1.02, 2 * ary * 0.95 + gap
            tt = np.linspace(1, 0, 14)
            half = np.stack([sg * (0.2 * tt + 0.85 * np.sin(PI * tt) ** 0.6) * We, tt * Le], 1)
            half = rot2(half, -sg * open_) + root
            sk.poly(half, "body2", s, depth=0.3)
            kp[f"{n} wing tip"] = half[0]
        else:
            spread = j.u(0.1, 0.9)
            root = V(sg * trx * 0.3, try_ * 0.2)
            wa = PI / 2 - sg * spread
            tipw = root + dirv(wa) * j("wing_len")
            sk.poly(leaf(root, tipw, j("wing_w"), 0.6), "light", s, depth=0.3)
            sk.line([root, tipw], 0.01, "body2", s, depth=0.31)
            kp[f"{n} wing tip"] = tipw
    return Figure(_assign(kp, INS_NAMES), sk.prims, set())


INSECTS = (
    CategorySpec("fly", "fly", dict(head_r=0.13, thorax_rx=0.15, thorax_ry=0.17, abd_rx=0.16,
                 abd_ry=0.24, gap=0.0, antenna=0.1, femur=0.22, tibia=0.22, leg_w=0.035, wing_len=0.7,
                 wing_w=0.3)),
    CategorySpec("beetle", "beetle", dict(head_r=0.11, thorax_rx=0.2, thorax_ry=0.13, abd_rx=0.27,
                 abd_ry=0.34, gap=0.0, antenna=0.3, femur=0.22, tibia=0.25, leg_w=0.045, elytra=True,
                 wing_len=0.5, wing_w=0.2)),
    CategorySpec("wasp", "wasp", dict(head_r=0.12, thorax_rx=0.13, thorax_ry=0.16, abd_rx=0.15,
                 abd_ry=0.32, gap=0.1, antenna=0.35, femur=0.26, tibia=0.28, leg_w=0.03, wing_len=0.62,
                 wing_w=0.18, stripes=True)),
)


# ============================================================================================
# fish: side view, 11 points

FISH_NAMES = ["snout tip", "eye", "gill cover edge", "dorsal fin front", "dorsal fin tip",
              "pectoral fin tip", "pelvic fin tip", "anal fin tip", "tail base", "upper tail tip",
              "lower tail tip"]
FISH_KPS = _order([
    ("snout tip", "The tip of the {n}'s snout, the front end of the head and of the whole body, in "
                  "front of the eye."),
    ("eye", "The centre of the {n}'s visible eye, on the head behind the snout tip and above the "
            "mouth line, in front of the gill cover edge."),
    ("gill cover edge", "The rear edge of the {n}'s gill cover at mid-height of the body, the back "
                        "end of the head, behind the eye and in front of the pectoral fin root."),
    ("dorsal fin front", "The front end of the base of the {n}'s dorsal fin, where its leading edge "
                         "leaves the top of the back; the dorsal fin tip rises behind it."),
    ("dorsal fin tip", "The highest point of the {n}'s dorsal fin on the back, above and behind the "
                       "dorsal fin front."),
    ("pectoral fin tip", "The tip of the {n}'s visible pectoral fin, the side fin just behind the gill "
                         "cover edge, pointing back along the flank."),
    ("pelvic fin tip", "The tip of the {n}'s pelvic fin on the belly, behind and below the pectoral "
                       "fin, in front of the anal fin."),
    ("anal fin tip", "The tip of the {n}'s anal fin, the fin on the underside in front of the tail, "
                     "behind the pelvic fin."),
    ("tail base", "The middle of the narrow stalk where the {n}'s body ends and the tail fin begins, "
                  "between the upper and lower tail tips."),
    ("upper tail tip", "The tip of the upper lobe of the {n}'s tail fin, the point of the tail "
                       "farthest back and up from the tail base."),
    ("lower tail tip", "The tip of the lower lobe of the {n}'s tail fin, the point of the tail "
                       "farthest back and down from the tail base."),
], FISH_NAMES)
FISH_SKEL = _skel(FISH_NAMES, [
    ("snout tip", "eye"), ("eye", "gill cover edge"), ("gill cover edge", "pectoral fin tip"),
    ("gill cover edge", "dorsal fin front"), ("dorsal fin front", "dorsal fin tip"),
    ("dorsal fin tip", "tail base"), ("gill cover edge", "pelvic fin tip"), ("pelvic fin tip", "anal fin tip"),
    ("anal fin tip", "tail base"), ("tail base", "upper tail tip"), ("tail base", "lower tail tip")])


def build_fish(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    L, H = j("length"), j("depth")
    ped = j("peduncle")
    bend = j.u(-0.12, 0.12) * L
    t = np.linspace(0, 1, 28)  # 0: tail base, 1: snout
    x = -L / 2 + t * L
    h = H / 2 * np.sin(PI * t ** j("front")) ** 0.7 + ped * (1 - t) * H / 2
    yc = bend * (1 - t) ** 2
    X = lambda tt: -L / 2 + tt * L  # noqa: E731
    Yc = lambda tt: bend * (1 - tt) ** 2  # noqa: E731
    Hh = lambda tt: H / 2 * math.sin(PI * tt ** j.s["front"]) ** 0.7 + ped * (1 - tt) * H / 2  # noqa: E731
    body = np.concatenate([np.stack([x, yc - h], 1), np.stack([x, yc + h], 1)[::-1]])
    kp = {"snout tip": V(L / 2, 0.0), "tail base": V(-L / 2, bend)}
    # tail
    tl, ts = j("tail_len"), j("tail_spread")
    flap = j.u(-0.25, 0.25)
    tb = kp["tail base"]
    ut = tb + rot2(V(-tl, -ts), flap)
    lt = tb + rot2(V(-tl, ts), flap)
    notch = tb + rot2(V(-tl * j("fork"), 0), flap)
    sk.poly([tb + V(0.02, -ped * H / 2), ut, notch, lt, tb + V(0.02, ped * H / 2)], "body2", depth=-0.2)
    kp["upper tail tip"], kp["lower tail tip"] = ut, lt
    sk.poly(body, "body", depth=0.0)
    # dorsal fin
    df, dl, dh = j("dorsal_pos", 0.03), j("dorsal_len"), j("dorsal_h") * j.u(0.6, 1.2)
    front = V(X(df), Yc(df) - Hh(df) + 0.01)
    rear_t = max(0.05, df - dl)
    rear = V(X(rear_t), Yc(rear_t) - Hh(rear_t) + 0.01)
    tip = front + V(-dl * L * 0.35 - j.u(0, 0.1) * L, -dh)
    sk.poly([front, tip, rear], "body2", depth=-0.1)
    kp["dorsal fin front"], kp["dorsal fin tip"] = front, tip
    # underside fins
    for name, tt, ln, ang in (("pelvic fin tip", j("pelvic_pos", 0.03), j("pelvic"), 2.2),
                              ("anal fin tip", j("anal_pos", 0.03), j("anal"), 2.4)):
        root = V(X(tt), Yc(tt) + Hh(tt) - 0.01)
        tipf = root + dirv(ang + j.u(-0.3, 0.3)) * ln
        sk.poly(leaf(root + V(ln * 0.25, 0), tipf, ln * 0.5, 0.35), "body2", depth=-0.1)
        kp[name] = tipf
    # head: gill arc, eye, pectoral fin
    tg = j("gill_pos", 0.02)
    gx, gy, gh = X(tg), Yc(tg), Hh(tg)
    sk.line([V(gx + 0.03 * L, gy - gh * 0.75), V(gx, gy), V(gx + 0.03 * L, gy + gh * 0.75)], H * 0.03, "dark",
            depth=0.1)
    kp["gill cover edge"] = V(gx, gy)
    te = j("eye_pos", 0.02)
    eye = V(X(te), Yc(te) - Hh(te) * 0.35)
    sk.dot(eye, H * 0.07, "light", depth=0.12)
    sk.dot(eye, H * 0.04, "dark", depth=0.13)
    kp["eye"] = eye
    sk.line([V(L / 2, 0.0), V(L / 2 - 0.08 * L, Hh(0.9) * 0.2)], H * 0.025, "dark", depth=0.1)
    root = V(gx - 0.04 * L, gy + gh * 0.25)
    ptip = root + dirv(PI - j.u(-0.2, 0.7)) * j("pectoral")
    sk.poly(leaf(root, ptip, j("pectoral") * 0.45, 0.35), "body2", depth=0.2)
    kp["pectoral fin tip"] = ptip
    fig = Figure(_assign(kp, FISH_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


FISHES = (
    CategorySpec("carp", "carp", dict(length=1.0, depth=0.42, peduncle=0.28, front=0.9, tail_len=0.3,
                 tail_spread=0.22, fork=0.45, dorsal_pos=0.62, dorsal_len=0.3, dorsal_h=0.16,
                 pelvic_pos=0.45, pelvic=0.15, anal_pos=0.22, anal=0.13, gill_pos=0.72, eye_pos=0.88,
                 pectoral=0.16)),
    CategorySpec("pike", "pike", dict(length=1.3, depth=0.2, peduncle=0.45, front=1.4, tail_len=0.24,
                 tail_spread=0.15, fork=0.6, dorsal_pos=0.28, dorsal_len=0.12, dorsal_h=0.1,
                 pelvic_pos=0.45, pelvic=0.1, anal_pos=0.22, anal=0.1, gill_pos=0.75, eye_pos=0.88,
                 pectoral=0.12)),
)


# ============================================================================================
# desk lamp: side view, 8 points

LAMP_NAMES = ["base front edge", "base rear edge", "lower pivot", "elbow joint", "head pivot",
              "shade top", "shade rim front", "shade rim rear"]
LAMP_KPS = _order([
    ("base front edge", "The front bottom corner of the {n}'s base, at the end of the base under the "
                        "side the shade faces, in front of the base rear edge."),
    ("base rear edge", "The rear bottom corner of the {n}'s base, at the end of the base away from "
                       "the side the shade faces, behind the lower pivot."),
    ("lower pivot", "The hinge on top of the {n}'s base where the lower arm starts, above the base "
                    "and below the elbow joint."),
    ("elbow joint", "The hinge between the {n}'s lower and upper arms, the end of the lower arm away "
                    "from the base, between the lower pivot and the head pivot."),
    ("head pivot", "The hinge at the end of the {n}'s upper arm where the shade is attached, beyond "
                   "the elbow joint and next to the shade top."),
    ("shade top", "The closed back end of the {n}'s shade on its axis, just behind the head pivot, "
                  "opposite the open rim."),
    ("shade rim front", "The corner of the {n}'s shade opening that lies on the lamp's front side, "
                        "away from the arm, across the rim from the shade rim rear."),
    ("shade rim rear", "The corner of the {n}'s shade opening on the side nearer the arm and the "
                       "base, across the rim from the shade rim front."),
], LAMP_NAMES)
LAMP_SKEL = _skel(LAMP_NAMES, [
    ("base front edge", "base rear edge"), ("base rear edge", "lower pivot"), ("base front edge", "lower pivot"),
    ("lower pivot", "elbow joint"), ("elbow joint", "head pivot"), ("head pivot", "shade top"),
    ("shade top", "shade rim front"), ("shade top", "shade rim rear"), ("shade rim front", "shade rim rear")])


def build_lamp(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    bw, bh = j("base_w"), j("base_h")
    kp = {"base front edge": V(bw / 2, 0), "base rear edge": V(-bw / 2, 0)}
    sk.poly([V(-bw / 2, 0), V(bw / 2, 0), V(bw * 0.35, -bh), V(-bw * 0.35, -bh)], "body", depth=0.0)
    piv = V(-bw * 0.12, -bh)
    kp["lower pivot"] = piv
    a1 = j.u(-0.6, 0.45)  # from vertical, + leans forward
    el = piv + j("arm1") * V(math.sin(a1), -math.cos(a1))
    a2 = a1 + j.u(0.6, 2.2)
    hp = el + j("arm2") * V(math.sin(a2), -math.cos(a2))
    kp["elbow joint"], kp["head pivot"] = el, hp
    aw = j("arm_w")
    sk.line([piv, el], aw, "metal", depth=0.1)
    sk.line([el, hp], aw, "metal", depth=0.11)
    # springs along the arms: zig-zags offset from each arm
    for a, b in ((piv, el), (el, hp)):
        d = (b - a) / (np.linalg.norm(b - a) + 1e-9)
        off = perp(d) * aw * 1.6
        zz = [a + d * 0.1 * np.linalg.norm(b - a) + off + (b - a) * t * 0.7 + perp(d) * aw * 0.6 * (-1) ** k
              for k, t in enumerate(np.linspace(0, 1, 9))]
        sk.line(zz, aw * 0.25, "dark", depth=0.09)
    for p in (piv, el, hp):
        sk.dot(p, aw * 0.9, "dark", depth=0.2)
    # the shade axis points down and forward
    sig = PI / 2 + j.u(-0.9, 0.35)
    d = dirv(sig)
    sl, so = j("shade_len"), j("shade_open")
    top = hp - d * sl * 0.2
    rim_c = hp + d * sl
    pf = V(math.sin(sig), -math.cos(sig))  # the front side of the shade
    rf, rr = rim_c + pf * so / 2, rim_c - pf * so / 2
    kp.update({"shade top": top, "shade rim front": rf, "shade rim rear": rr})
    sk.poly([top + pf * so * 0.18, rf, rr, top - pf * so * 0.18], "body", depth=0.3)
    sk.poly(ell(rim_c - d * so * 0.05, so * 0.25, so * 0.12, sig + PI / 2, 14), "lamp", depth=0.31)
    fig = Figure(_assign(kp, LAMP_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


LAMPS = (CategorySpec("desk_lamp", "desk lamp", dict(base_w=0.5, base_h=0.1, arm1=0.6, arm2=0.55, arm_w=0.04,
                                                     shade_len=0.3, shade_open=0.32)),)


# ============================================================================================
# butterfly: top view, 11 points

BFLY_NAMES = ["head", "left antenna tip", "right antenna tip", "thorax centre", "abdomen tip",
              "left forewing tip", "right forewing tip", "left forewing rear corner",
              "right forewing rear corner", "left hindwing tail", "right hindwing tail"]
BFLY_KPS = _order(paired([
    ("head", "The centre of the {n}'s head, the small round front part of the body between the two "
             "antenna roots, in front of the thorax centre."),
    ("{s} antenna tip", "The clubbed tip of the {n}'s own {s} antenna, the end of the long feeler "
                        "that starts on the {s} of the head; the {n}'s {s} wings are drawn {shade}."),
    ("thorax centre", "The middle of the {n}'s thorax, the thick body part between the head and the "
                      "abdomen, where all four wings are attached."),
    ("abdomen tip", "The rear end of the {n}'s long abdomen on the midline, behind the thorax and "
                    "between the two hindwings."),
    ("{s} forewing tip", "The tip of the {n}'s {s} forewing, the point of the {s} front wing "
                         "farthest forward and out from the thorax."),
    ("{s} forewing rear corner", "The rear outer corner of the {n}'s {s} forewing, where its outer "
                                 "edge meets its back edge over the {s} hindwing, behind the {s} "
                                 "forewing tip."),
    ("{s} hindwing tail", "The end of the {n}'s {s} hindwing, the point of the {s} rear wing farthest "
                          "back, beside the abdomen tip."),
]), BFLY_NAMES)
BFLY_SKEL = _skel(BFLY_NAMES, [
    ("head", "left antenna tip"), ("head", "right antenna tip"), ("head", "thorax centre"),
    ("thorax centre", "abdomen tip"), ("thorax centre", "left forewing tip"),
    ("thorax centre", "right forewing tip"), ("left forewing tip", "left forewing rear corner"),
    ("right forewing tip", "right forewing rear corner"), ("left forewing rear corner", "left hindwing tail"),
    ("right forewing rear corner", "right hindwing tail"), ("thorax centre", "left hindwing tail"),
    ("thorax centre", "right hindwing tail")])


def build_butterfly(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    fs, hs = j("fore"), j("hind")
    opening = j.u(0.55, 1.0)  # cos of the wing fold: 1 = flat open
    kp = {"thorax centre": V(0, 0), "head": V(0, -0.17)}
    bend = j.u(-0.2, 0.2)
    kp["abdomen tip"] = rot2(V(0, 0.5), bend)
    sk.poly(ell((0, 0), 0.06, 0.13, 0, 14), "dark", depth=0.5)
    sk.dot(kp["head"], 0.055, "dark", depth=0.5)
    sk.poly(ell(rot2(V(0, 0.3), bend), 0.045, 0.2, -bend, 14), "dark", depth=0.5)
    for s, sg in (("L", -1.0), ("R", 1.0)):
        n = "left" if s == "L" else "right"
        sq = lambda p: V(p[0] * opening, p[1])  # noqa: E731  wing folding foreshortens x
        sw = j.u(-0.2, 0.2)
        f = lambda x, y: sq(rot2(V(sg * x, y) * fs, sg * sw))  # noqa: E731
        fore = [f(0.03, -0.05), f(0.35, -0.42), f(0.72, -0.5), f(0.82, -0.4), f(0.7, -0.05), f(0.5, 0.1), f(0.05, 0.05)]
        g = lambda x, y: sq(rot2(V(sg * x, y) * hs, sg * sw * 0.5))  # noqa: E731
        hind = [g(0.04, 0.02), g(0.5, 0.02), g(0.62, 0.25), g(0.45, 0.5), g(0.2, j("tail_y")), g(0.05, 0.3)]
        sk.poly(hind, "body2", s, depth=0.1)
        sk.poly(fore, "body", s, depth=0.2)
        sk.dot((np.array(fore[2]) + np.array(fore[4])) / 2, 0.06 * fs, "accent", s, depth=0.21)
        kp[f"{n} forewing tip"], kp[f"{n} forewing rear corner"] = fore[3], fore[4]
        kp[f"{n} hindwing tail"] = hind[4]
        a = -PI / 2 + sg * j.u(0.25, 0.7)
        base = kp["head"] + V(sg * 0.02, -0.04)
        tip = base + dirv(a) * j("antenna")
        sk.line([base, tip], 0.012, "dark", s, depth=0.5)
        sk.dot(tip, 0.022, "dark", s, depth=0.5)
        kp[f"{n} antenna tip"] = tip
    return Figure(_assign(kp, BFLY_NAMES), sk.prims, set())


BUTTERFLIES = (CategorySpec("butterfly", "butterfly", dict(fore=1.0, hind=0.9, tail_y=0.85, antenna=0.38)),)


# ============================================================================================

FAMILIES: tuple[Family, ...] = (
    Family("quadruped", QUAD_KPS, QUAD_SKEL, build_quadruped, 20, QUADRUPEDS),
    Family("bird", BIRD_KPS, BIRD_SKEL, build_bird, 25, BIRDS),
    Family("humanoid", HUMAN_KPS, HUMAN_SKEL, build_human, 25, HUMANS),
    Family("face", FACE_KPS, FACE_SKEL, build_face, 30, FACES),
    Family("hand", HAND_KPS, HAND_SKEL, build_hand, 180, HANDS),
    Family("vehicle", VEH_KPS, VEH_SKEL, build_vehicle, 8, VEHICLES),
    Family("chair", CHAIR_KPS, CHAIR_SKEL, build_chair, 8, CHAIRS),
    Family("garment", GARM_KPS, GARM_SKEL, build_garment, 20, GARMENTS),
    Family("insect", INS_KPS, INS_SKEL, build_insect, 180, INSECTS),
    Family("fish", FISH_KPS, FISH_SKEL, build_fish, 30, FISHES),
    Family("lamp", LAMP_KPS, LAMP_SKEL, build_lamp, 12, LAMPS),
    Family("butterfly", BFLY_KPS, BFLY_SKEL, build_butterfly, 180, BUTTERFLIES),
)

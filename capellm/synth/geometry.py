"""What every family of the synthetic benchmark is built from: drawing primitives, figures, 2-D and
3-D helpers, and the family / category records (`Family`, `CategorySpec`).

The families themselves live in capellm.synth.families, one module each.

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
  relates to its neighbouring keypoints. `{n}` is replaced by the FAMILY's noun ("animal",
  "seat"), never the category's, so a description carries over to a new category of the family
  as the paper intends a description to (Sec. 3.2); paired
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
    xj, yj = np.concatenate((xs[-1:], xs[:-1])), np.concatenate((ys[-1:], ys[:-1]))   # previous vertex
    cross = (ys > y) != (yj > y)                          # the edge spans the ray's height: yj != ys
    xint = (xj - xs) * (y - ys) / np.where(cross, yj - ys, 1.0) + xs
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


def _cross3(a, b) -> np.ndarray:
    """np.cross of two 3-vectors, the same products and differences without its per-call cost."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


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
            n = _cross3(fv[1] - fv[0], fv[2] - fv[0])
            if np.linalg.norm(n) < 1e-12:
                n = _cross3(fv[2] - fv[0], fv[3] - fv[0])
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
            n = _cross3(fc[1] - fc[0], fc[2] - fc[0])
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
    shape: dict  # proportions read by the family's builder


@dataclass(frozen=True)
class Family:
    name: str  # also the categories' `supercategory`
    keypoints: tuple  # ((name, description template), ...)
    skeleton: tuple  # 0-indexed pairs
    build: Callable  # (shape: dict, rng, mirror: bool) -> Figure
    rotation: float  # max in-plane rotation, degrees
    categories: tuple  # CategorySpec, ...
    noun: str = "object"  # how its descriptions name any of its categories ("animal", "seat")


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


def ordered(kps: list[tuple[str, str]], names: list[str]) -> tuple:
    by = dict(kps)
    assert len(by) == len(kps) and set(by) == set(names), (set(by) ^ set(names))
    return tuple((n, by[n]) for n in names)


def skeleton_of(names: list[str], pairs: list[tuple[str, str]]) -> tuple:
    ix = {n: i for i, n in enumerate(names)}
    return tuple((ix[a], ix[b]) for a, b in pairs)


def stack_points(kps: dict, names: list[str]) -> np.ndarray:
    return np.array([kps[n] for n in names], float)

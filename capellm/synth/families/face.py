"""The synthetic benchmark's face family: frontal view of a head, 13 points."""

from __future__ import annotations

import math

import numpy as np

from capellm.synth.geometry import (
    PI,
    CategorySpec,
    Figure,
    Jit,
    Sketch,
    V,
    cam_rot,
    ell,
    leaf,
    ordered,
    paired,
    rot2,
    skeleton_of,
    stack_points,
)

FACE_NAMES = ["left ear tip", "right ear tip", "left eye outer corner", "left eye inner corner",
              "right eye inner corner", "right eye outer corner", "nose tip", "left mouth corner",
              "right mouth corner", "upper lip centre", "lower lip centre", "chin", "crown"]
FACE_KPS = ordered(paired([
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
FACE_SKEL = skeleton_of(FACE_NAMES, [
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
    fig = Figure(stack_points(kp, FACE_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


_FACE = dict(eye_x=0.3, eye_y=0.12, eye_w=0.11, nose_y=0.22, nose_w=0.06, snout=0.08, mouth_y=0.45,
             mouth_w=0.18, mouth_open=0.12)
FACES = (
    CategorySpec("cat_face", dict(_FACE, head_rx=0.6, head_ry=0.52, ear_kind="point", ear=0.12,
                 nose_w=0.05, mouth_y=0.36, mouth_w=0.12, whiskers=True)),
    CategorySpec("dog_face", dict(_FACE, head_rx=0.5, head_ry=0.6, ear_kind="flop", ear=0.3,
                 eye_y=0.18, nose_y=0.24, nose_w=0.09, snout=0.25, mouth_y=0.42, muzzle=True)),
    CategorySpec("bear_face", dict(_FACE, head_rx=0.6, head_ry=0.55, ear_kind="round", ear=0.16,
                 eye_x=0.26, eye_w=0.08, nose_y=0.2, nose_w=0.08, snout=0.2, mouth_y=0.4, muzzle=True)),
    CategorySpec("monkey_face", dict(_FACE, head_rx=0.5, head_ry=0.58, ear_kind="side", ear=0.15,
                 eye_x=0.2, eye_y=0.1, eye_w=0.1, nose_y=0.16, nose_w=0.05, snout=0.06, mouth_y=0.4,
                 mouth_w=0.2, mouth_open=0.16, mask=True)),
)

"""The synthetic benchmark's quadruped family: side view, 17 points (the AP-10K template)."""

from __future__ import annotations

import math

from capellm.synth.geometry import (
    PI,
    CategorySpec,
    Figure,
    Jit,
    Sketch,
    V,
    dirv,
    ell,
    leaf,
    ordered,
    paired,
    rot2,
    skeleton_of,
    stack_points,
)

QUAD_NAMES = ["left eye", "right eye", "nose", "neck", "root of tail",
              "left shoulder", "left elbow", "left front foot", "right shoulder", "right elbow",
              "right front foot", "left hip", "left knee", "left back foot", "right hip",
              "right knee", "right back foot"]
QUAD_KPS = ordered(paired([
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
QUAD_SKEL = skeleton_of(QUAD_NAMES, [
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

    fig = Figure(stack_points(kp, QUAD_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


QUADRUPEDS = (
    CategorySpec("horse", dict(body_len=1.0, body_h=0.42, leg=0.72, leg_w=0.1, neck_len=0.45,
                 neck_ang=52, neck_w=0.18, head_len=0.36, head_h=0.16, head_tilt=35, snout=0.12,
                 ear=0.1, ear_kind="long", tail_len=0.5, tail_ang=60, tail_curl=10, tail_w=0.07,
                 hoof=True)),
    CategorySpec("giraffe", dict(body_len=0.85, body_h=0.4, leg=1.05, leg_w=0.08,
                 neck_len=1.0, neck_ang=68, neck_w=0.12, head_len=0.28, head_h=0.12, head_tilt=25,
                 snout=0.08, ear=0.08, ear_kind="point", horns=True, tail_len=0.4, tail_ang=70,
                 tail_curl=0, tail_w=0.03, hoof=True)),
    CategorySpec("dachshund", dict(body_len=1.0, body_h=0.3, leg=0.2, leg_w=0.09,
                 neck_len=0.2, neck_ang=40, neck_w=0.16, head_len=0.32, head_h=0.17, head_tilt=15,
                 snout=0.13, ear=0.16, ear_kind="flop", tail_len=0.36, tail_ang=-20, tail_curl=20,
                 tail_w=0.04)),
    CategorySpec("cat", dict(body_len=0.8, body_h=0.3, leg=0.42, leg_w=0.08, neck_len=0.14,
                 neck_ang=45, neck_w=0.15, head_len=0.24, head_h=0.2, head_tilt=5, snout=0.05,
                 ear=0.11, ear_kind="point", tail_len=0.8, tail_ang=-60, tail_curl=-90,
                 tail_w=0.045)),
    CategorySpec("bear", dict(body_len=1.0, body_h=0.55, leg=0.36, leg_w=0.17,
                 neck_len=0.18, neck_ang=12, neck_w=0.3, head_len=0.34, head_h=0.25, head_tilt=15,
                 snout=0.1, ear=0.09, ear_kind="round", tail_len=0.08, tail_ang=30, tail_curl=0,
                 tail_w=0.06)),
    CategorySpec("fox", dict(body_len=0.85, body_h=0.3, leg=0.4, leg_w=0.07, neck_len=0.2,
                 neck_ang=40, neck_w=0.14, head_len=0.3, head_h=0.16, head_tilt=10, snout=0.13,
                 ear=0.15, ear_kind="point", tail_len=0.6, tail_ang=25, tail_curl=-25, tail_w=0.06,
                 bushy=True)),
)

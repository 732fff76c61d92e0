"""The synthetic benchmark's garment family: laid flat, front or back, 15 points (after DeepFashion2
tops)."""

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
    ell,
    inside,
    ordered,
    paired,
    rot2,
    skeleton_of,
    stack_points,
)

GARM_NAMES = ["left collar", "right collar", "neckline centre", "left shoulder", "right shoulder",
              "left cuff outer", "left cuff inner", "right cuff outer", "right cuff inner",
              "left armpit", "right armpit", "left waist", "right waist", "left hem", "right hem"]
GARM_KPS = ordered(paired([
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
GARM_SKEL = skeleton_of(GARM_NAMES, [
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
    fig = Figure(stack_points(kp, GARM_NAMES), sk.prims, hidden)
    return fig.flip_x() if back else fig


_GARM = dict(neck_w=0.16, shoulder_w=0.42, shoulder_drop=0.07, armpit_w=0.38, armpit_y=0.36,
             waist_w=0.34, waist_y=0.7, hem_w=0.38, hem_y=1.05, neck_depth=0.16, sleeve_len=0.3, cuff_w=0.22)
GARMENTS = (
    CategorySpec("t_shirt", dict(_GARM)),
    CategorySpec("long_sleeve_shirt", dict(_GARM, sleeve_len=0.82, cuff_w=0.13,
                 elbow=True, neck_depth=0.1, hem_y=1.15, hem_curve=0.05)),
    CategorySpec("dress", dict(_GARM, shoulder_w=0.34, armpit_w=0.32, sleeve_len=0.12, cuff_w=0.14,
                 waist_w=0.24, waist_y=0.62, hem_w=0.7, hem_y=1.65, hem_curve=0.08, neck_depth=0.22)),
    CategorySpec("hoodie", dict(_GARM, shoulder_w=0.46, armpit_w=0.42, waist_w=0.4, hem_w=0.38,
                 sleeve_len=0.8, cuff_w=0.15, elbow=True, hood=True, neck_depth=0.12, hem_y=1.0)),
)

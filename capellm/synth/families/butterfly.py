"""The synthetic benchmark's butterfly family: top view, 11 points."""

from __future__ import annotations

import numpy as np

from capellm.synth.geometry import (
    PI,
    CategorySpec,
    Figure,
    Jit,
    Sketch,
    V,
    dirv,
    ell,
    ordered,
    paired,
    rot2,
    skeleton_of,
    stack_points,
)

BFLY_NAMES = ["head", "left antenna tip", "right antenna tip", "thorax centre", "abdomen tip",
              "left forewing tip", "right forewing tip", "left forewing rear corner",
              "right forewing rear corner", "left hindwing tail", "right hindwing tail"]
BFLY_KPS = ordered(paired([
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
BFLY_SKEL = skeleton_of(BFLY_NAMES, [
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
    return Figure(stack_points(kp, BFLY_NAMES), sk.prims, set())


BUTTERFLIES = (CategorySpec("butterfly", dict(fore=1.0, hind=0.9, tail_y=0.85, antenna=0.38)),)

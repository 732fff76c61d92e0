"""The synthetic benchmark's insect family: top view, 20 points."""

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
    dirv,
    ell,
    leaf,
    ordered,
    paired,
    rot2,
    skeleton_of,
    stack_points,
)

INS_NAMES = ["head front", "left antenna tip", "right antenna tip", "neck", "waist", "abdomen tip",
             "left wing tip", "right wing tip", "left front knee", "left front foot", "left middle knee",
             "left middle foot", "left hind knee", "left hind foot", "right front knee",
             "right front foot", "right middle knee", "right middle foot", "right hind knee",
             "right hind foot"]
INS_KPS = ordered(paired([
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
    ("{s} wing tip", "The tip of the {n}'s {s} wing (or of the {s} wing case where hard wing cases cover "
                     "the wings), the point "
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
INS_SKEL = skeleton_of(INS_NAMES, [
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
    return Figure(stack_points(kp, INS_NAMES), sk.prims, set())


INSECTS = (
    CategorySpec("fly", dict(head_r=0.13, thorax_rx=0.15, thorax_ry=0.17, abd_rx=0.16,
                 abd_ry=0.24, gap=0.0, antenna=0.1, femur=0.22, tibia=0.22, leg_w=0.035, wing_len=0.7,
                 wing_w=0.3)),
    CategorySpec("beetle", dict(head_r=0.11, thorax_rx=0.2, thorax_ry=0.13, abd_rx=0.27,
                 abd_ry=0.34, gap=0.0, antenna=0.3, femur=0.22, tibia=0.25, leg_w=0.045, elytra=True,
                 wing_len=0.5, wing_w=0.2)),
    CategorySpec("wasp", dict(head_r=0.12, thorax_rx=0.13, thorax_ry=0.16, abd_rx=0.15,
                 abd_ry=0.32, gap=0.1, antenna=0.35, femur=0.26, tibia=0.28, leg_w=0.03, wing_len=0.62,
                 wing_w=0.18, stripes=True)),
)

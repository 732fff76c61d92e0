"""The synthetic benchmark's lamp family: side view, 8 points."""

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
    ordered,
    perp,
    skeleton_of,
    stack_points,
)

LAMP_NAMES = ["base front edge", "base rear edge", "lower pivot", "elbow joint", "head pivot",
              "shade top", "shade rim front", "shade rim rear"]
LAMP_KPS = ordered([
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
LAMP_SKEL = skeleton_of(LAMP_NAMES, [
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
    fig = Figure(stack_points(kp, LAMP_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


LAMPS = (CategorySpec("desk_lamp", dict(base_w=0.5, base_h=0.1, arm1=0.6, arm2=0.55, arm_w=0.04,
                                                     shade_len=0.3, shade_open=0.32)),)

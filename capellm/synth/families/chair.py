"""The synthetic benchmark's chair family: 3-D boxes seen from the front or the back, 10 points."""

from __future__ import annotations

import math

import numpy as np

from capellm.synth.geometry import (
    PI,
    CategorySpec,
    Figure,
    Jit,
    Scene3D,
    Sketch,
    box,
    cam_rot,
    ordered,
    paired,
    skeleton_of,
    stack_points,
)

CHAIR_NAMES = ["left backrest top", "right backrest top", "left front seat corner",
               "right front seat corner", "left back seat corner", "right back seat corner",
               "left front foot", "right front foot", "left back foot", "right back foot"]
CHAIR_KPS = ordered(paired([
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
CHAIR_SKEL = skeleton_of(CHAIR_NAMES, [
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
    return Figure(stack_points(kp, CHAIR_NAMES), sk.prims, hidden)


CHAIRS = (
    CategorySpec("dining_chair", dict(seat_w=0.5, seat_d=0.48, seat_h=0.48, seat_t=0.06,
                 back_h=0.5, back_t=0.05, leg_w=0.05, back_tilt=8)),
    CategorySpec("armchair", dict(seat_w=0.8, seat_d=0.7, seat_h=0.4, seat_t=0.16,
                 back_h=0.45, back_t=0.16, leg_w=0.08, back_tilt=14, arms=True, arm_h=0.22)),
    CategorySpec("bar_stool", dict(seat_w=0.4, seat_d=0.38, seat_h=0.8, seat_t=0.05,
                 back_h=0.24, back_t=0.04, leg_w=0.04, back_tilt=5, splay=0.05, ring=True)),
    CategorySpec("bench", dict(seat_w=1.4, seat_d=0.42, seat_h=0.42, seat_t=0.05,
                 back_h=0.36, back_t=0.05, leg_w=0.06, back_tilt=12)),
)

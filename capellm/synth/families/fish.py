"""The synthetic benchmark's fish family: side view, 11 points."""

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
    leaf,
    ordered,
    rot2,
    skeleton_of,
    stack_points,
)

FISH_NAMES = ["snout tip", "eye", "gill cover edge", "dorsal fin front", "dorsal fin tip",
              "pectoral fin tip", "pelvic fin tip", "anal fin tip", "tail base", "upper tail tip",
              "lower tail tip"]
FISH_KPS = ordered([
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
FISH_SKEL = skeleton_of(FISH_NAMES, [
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
    fig = Figure(stack_points(kp, FISH_NAMES), sk.prims, set())
    return fig.flip_x() if mirror else fig


FISHES = (
    CategorySpec("carp", dict(length=1.0, depth=0.42, peduncle=0.28, front=0.9, tail_len=0.3,
                 tail_spread=0.22, fork=0.45, dorsal_pos=0.62, dorsal_len=0.3, dorsal_h=0.16,
                 pelvic_pos=0.45, pelvic=0.15, anal_pos=0.22, anal=0.13, gill_pos=0.72, eye_pos=0.88,
                 pectoral=0.16)),
    CategorySpec("pike", dict(length=1.3, depth=0.2, peduncle=0.45, front=1.4, tail_len=0.24,
                 tail_spread=0.15, fork=0.6, dorsal_pos=0.28, dorsal_len=0.12, dorsal_h=0.1,
                 pelvic_pos=0.45, pelvic=0.1, anal_pos=0.22, anal=0.1, gill_pos=0.75, eye_pos=0.88,
                 pectoral=0.12)),
)

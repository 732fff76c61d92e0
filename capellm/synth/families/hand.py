"""The synthetic benchmark's hand family: 21 points (after OneHand10K), palm or back of a left or
right hand."""

from __future__ import annotations

import math

import numpy as np

from capellm.synth.geometry import PI, CategorySpec, Figure, Jit, Sketch, V, dirv, ell, ordered, perp, stack_points

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
HAND_KPS = ordered(_HAND, HAND_NAMES)
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
    fig = Figure(stack_points(kp, HAND_NAMES), sk.prims, set())
    flip = mirror != (not palm_view)  # right palm / left back: thumb on the image right
    return fig.flip_x() if flip else fig


HANDS = (CategorySpec("hand", dict(palm_w=0.5, palm_h=0.55, finger_w=0.1, thumb=1.0)),)

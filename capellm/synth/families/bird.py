"""The synthetic benchmark's bird family: side view, 15 points (after CUB-200)."""

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
    inside,
    leaf,
    ordered,
    paired,
    perp,
    skeleton_of,
    stack_points,
)

BIRD_NAMES = ["beak tip", "crown", "forehead", "nape", "throat", "breast", "belly", "back",
              "tail tip", "left eye", "right eye", "left wing tip", "right wing tip", "left foot",
              "right foot"]
BIRD_KPS = ordered(paired([
    ("beak tip", "The tip of the {n}'s beak, the point of the bill farthest from the head, in "
                 "front of the forehead and the throat."),
    ("crown", "The top of the {n}'s head, the highest point of the skull outline, behind the "
              "forehead and in front of the nape."),
    ("forehead", "The front of the {n}'s head where the skull outline meets the upper base of the "
                 "beak, between the crown above-behind and the beak tip in front."),
    ("nape", "The back of the {n}'s head where it turns into the back of the neck, behind and "
             "below the crown; the back lies further along behind it."),
    ("throat", "The underside of the {n}'s head just behind the lower base of the beak, below the "
               "forehead and above the breast."),
    ("breast", "The front of the {n}'s body, the most forward point of the chest below the neck, "
               "between the throat above and the belly below."),
    ("belly", "The underside of the {n}'s body, the lowest point of the body outline between the "
              "breast and the tail, just above where the legs leave the body."),
    ("back", "The middle of the top of the {n}'s body, between the nape in front and the tail "
             "behind, above the folded wings."),
    ("tail tip", "The end of the {n}'s tail feathers, the point of the tail farthest from the "
                 "body, behind the back and the belly."),
    ("{s} eye", "The centre of the {n}'s own {s} eye, on the {s} side of the head behind the beak "
                "base and below the crown. In side view only the eye facing the viewer is visible; "
                "the {n}'s {s} wing and leg are drawn {shade}."),
    ("{s} wing tip", "The tip of the {n}'s {s} wing, the point of the {s} wing farthest from the "
                     "shoulder where the wing meets the back; folded, it lies near the tail; "
                     "raised, above the back. The {shade} wing is the {s} one."),
    ("{s} foot", "The lower end of the {n}'s {s} leg, where the toes spread from the leg, below "
                 "the belly; the {shade} leg is the {s} one."),
]), BIRD_NAMES)
BIRD_SKEL = skeleton_of(BIRD_NAMES, [
    ("beak tip", "forehead"), ("forehead", "crown"), ("crown", "nape"), ("nape", "back"),
    ("beak tip", "throat"), ("throat", "breast"), ("breast", "belly"), ("back", "tail tip"),
    ("belly", "tail tip"), ("left eye", "forehead"), ("right eye", "forehead"),
    ("back", "left wing tip"), ("back", "right wing tip"), ("belly", "left foot"),
    ("belly", "right foot")])


def build_bird(shape, rng, mirror):
    j = Jit(shape, rng)
    sk = Sketch()
    near, far = ("R", "L") if not mirror else ("L", "R")
    rx, ry = j("body_rx"), j("body_ry")
    tau = math.radians(j("tilt", 0.0) + j.u(-10, 10))
    u, v = V(math.cos(tau), -math.sin(tau)), V(math.sin(tau), math.cos(tau))  # forward, down
    c = V(0.0, 0.0)
    bp = lambda deg: c + rx * math.cos(math.radians(deg)) * u + ry * math.sin(math.radians(deg)) * v  # noqa: E731
    body = np.array([bp(d) for d in np.linspace(0, 360, 30, endpoint=False)])
    sk.poly(body, "body", depth=0.0)
    kp = {"breast": bp(30), "belly": bp(95), "back": bp(-100)}

    # neck and head
    hr = j("head_r")
    na = math.radians(j("neck_ang") + j.u(-12, 12))
    hc = bp(-30) + j("neck_len") * V(math.cos(na), -math.sin(na))
    sk.line([bp(-20) * 0.6, hc], hr * 1.5, "body", depth=0.05)
    ht = math.radians(j.u(-15, 20))  # head frame: forward direction, + looks down
    sk.poly(ell(hc, hr, hr, 0, 22), "body", depth=0.1)
    hp = lambda deg, f=1.0: hc + hr * f * dirv(ht + math.radians(deg))  # noqa: E731
    kp.update(crown=hp(-90), forehead=hp(-38), nape=hp(-160), throat=hp(62))
    bw = math.radians(j("beak_w"))
    blen = j("beak_len")
    droop = math.radians(j("beak_droop", 0.0))
    tip = hc + dirv(ht + droop) * (hr * 0.92 + blen)
    up, lo = hc + hr * 0.9 * dirv(ht - bw), hc + hr * 0.9 * dirv(ht + bw)
    mid_up = hc + dirv(ht - bw * 0.4) * (hr + blen * 0.55) + dirv(ht - PI / 2) * blen * 0.08 * (droop > 0.2)
    if j.flag("bill", False):  # duck: broad, rounded bill
        pts = np.concatenate([[up], leaf(hc + hr * 0.85 * dirv(ht), tip, blen * 0.45, 0.7)[1:-1], [lo]])
        sk.poly(pts, "accent", depth=0.12)
    else:
        sk.poly([up, mid_up, tip, (tip + lo) / 2 + dirv(ht + PI / 2) * blen * 0.03, lo], "accent", depth=0.12)
    kp["beak tip"] = tip
    eye = hp(-28, 0.42)
    sk.dot(eye, hr * 0.19, "light", near, depth=0.2)
    sk.dot(eye, hr * 0.12, "dark", near, depth=0.21)
    kp[("left" if near == "L" else "right") + " eye"] = eye
    kp[("left" if far == "L" else "right") + " eye"] = eye  # behind the head: hidden
    hidden = {BIRD_NAMES.index(("left" if far == "L" else "right") + " eye")}

    # tail
    tb = bp(180)
    ta = math.atan2(-u[1], -u[0]) - math.radians(j("tail_droop", 0.0) + j.u(-12, 12))
    tl, tw = j("tail_len"), j("tail_w")
    ttip = tb + dirv(ta) * tl
    sk.poly([tb + perp(dirv(ta)) * tw * 0.4, ttip + perp(dirv(ta)) * tw * 0.6, ttip,
             ttip - perp(dirv(ta)) * tw * 0.6, tb - perp(dirv(ta)) * tw * 0.4], "body2", depth=-0.3)
    kp["tail tip"] = ttip

    # wings: folded along the body or raised; the far wing behind the body
    raised = rng.random() < 0.4
    rho = math.radians(j.u(35, 110) if raised else j.u(-4, 12))
    back_ang = math.atan2(-u[1], -u[0])
    wl, ww = j("wing_len"), j("wing_w")
    ws = c + 0.32 * rx * u - 0.35 * ry * v
    wing_polys = {}
    for side, off, depth in ((near, V(0, 0), 0.5), (far, V(0.04, -0.05) * rx / 0.5, -1.0)):
        a = back_ang + rho + (0 if side == near else j.u(-0.15, 0.15)) * (1 if raised else 0.2)
        # the wing angle turns upwards: for a body facing +x, "up from backwards" is +angle
        wtip = ws + off + dirv(a) * wl
        poly = leaf(ws + off, wtip, ww, 0.3)
        sk.poly(poly, "body2", side, depth)
        wing_polys[side] = poly
        kp[("left" if side == "L" else "right") + " wing tip"] = wtip
    far_tip = kp[("left" if far == "L" else "right") + " wing tip"]
    if inside(body, far_tip) or inside(wing_polys[near], far_tip):
        hidden.add(BIRD_NAMES.index(("left" if far == "L" else "right") + " wing tip"))

    # legs and toes
    ll = j("leg_len")
    for side, dx, depth in ((near, 0.05, 0.6), (far, -0.12, -0.6)):
        hip = bp(92) + u * dx * rx - v * 0.1 * ry
        knee = hip + V(j.u(-0.1, 0.1), 0.55) * ll
        foot = knee + V(j.u(-0.05, 0.12), 0.45) * ll
        lw = j("leg_w")
        sk.line([hip, knee, foot], lw, "accent", side, depth)
        toe = max(ll * 0.3, rx * 0.25)
        if j.flag("webbed", False):
            sk.poly([foot, foot + V(toe * 1.2, -0.02), foot + V(toe * 0.9, toe * 0.25)], "accent", side, depth + 0.01)
        else:
            for t in (-0.1, 0.2):
                sk.line([foot, foot + dirv(t) * toe], lw * 0.7, "accent", side, depth + 0.01)
            sk.line([foot, foot + dirv(PI + 0.2) * toe * 0.6], lw * 0.7, "accent", side, depth + 0.01)
        kp[("left" if side == "L" else "right") + " foot"] = foot

    fig = Figure(stack_points(kp, BIRD_NAMES), sk.prims, hidden)
    return fig.flip_x() if mirror else fig


BIRDS = (
    CategorySpec("sparrow", dict(body_rx=0.5, body_ry=0.33, tilt=18, head_r=0.22,
                 neck_len=0.06, neck_ang=50, beak_len=0.13, beak_w=28, tail_len=0.42, tail_w=0.16,
                 tail_droop=15, wing_len=0.62, wing_w=0.26, leg_len=0.26, leg_w=0.035)),
    CategorySpec("heron", dict(body_rx=0.5, body_ry=0.24, tilt=15, head_r=0.12,
                 neck_len=0.72, neck_ang=72, beak_len=0.45, beak_w=20, beak_droop=8, tail_len=0.22,
                 tail_w=0.16, tail_droop=25, wing_len=0.75, wing_w=0.26, leg_len=0.95, leg_w=0.035)),
    CategorySpec("parrot", dict(body_rx=0.45, body_ry=0.27, tilt=55, head_r=0.21,
                 neck_len=0.08, neck_ang=70, beak_len=0.2, beak_w=40, beak_droop=55, tail_len=0.85,
                 tail_w=0.14, tail_droop=10, wing_len=0.62, wing_w=0.24, leg_len=0.16, leg_w=0.05)),
    CategorySpec("duck", dict(body_rx=0.6, body_ry=0.3, tilt=-4, head_r=0.19,
                 neck_len=0.28, neck_ang=62, beak_len=0.24, beak_w=25, bill=True, tail_len=0.18,
                 tail_w=0.16, tail_droop=-25, wing_len=0.62, wing_w=0.28, leg_len=0.18, leg_w=0.05,
                 webbed=True)),
)

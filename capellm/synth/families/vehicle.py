"""The synthetic benchmark's vehicle family: 3-D boxes seen from the side/three-quarter view, 12
points."""

from __future__ import annotations

import math

import numpy as np

from capellm.synth.geometry import (
    HEX_FACES,
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

VEH_NAMES = ["left front wheel", "right front wheel", "left rear wheel", "right rear wheel",
             "left headlight", "right headlight", "left tail light", "right tail light",
             "left front roof corner", "right front roof corner", "left rear roof corner",
             "right rear roof corner"]
VEH_KPS = ordered(paired([
    ("{s} front wheel", "The hub at the centre of the {n}'s {s} front wheel, below the {s} headlight "
                        "and ahead of the {s} rear wheel along the {s} flank. Panels on the {n}'s "
                        "own {s} side are drawn {shade}."),
    ("{s} rear wheel", "The hub at the centre of the {n}'s {s} rear wheel, below the {s} tail light "
                       "and behind the {s} front wheel along the {s} flank."),
    ("{s} headlight", "The centre of the {n}'s {s} headlight on its front face, above the {s} front "
                      "wheel and next to the {o} headlight across the front."),
    ("{s} tail light", "The centre of the {n}'s {s} tail light on its rear face, above the {s} rear "
                       "wheel and next to the {o} tail light across the back."),
    ("{s} front roof corner", "The front corner of the {n}'s roof on its {s} side, where the top "
                              "of the windscreen meets the {s} edge of the roof, above and behind "
                              "the {s} headlight."),
    ("{s} rear roof corner", "The rear corner of the {n}'s roof on its {s} side, where the {s} roof "
                             "edge ends above the rear window, behind the {s} front roof corner."),
]), VEH_NAMES)
VEH_SKEL = skeleton_of(VEH_NAMES, [
    ("left front wheel", "left rear wheel"), ("right front wheel", "right rear wheel"),
    ("left front wheel", "right front wheel"), ("left rear wheel", "right rear wheel"),
    ("left headlight", "right headlight"), ("left tail light", "right tail light"),
    ("left headlight", "left front wheel"), ("right headlight", "right front wheel"),
    ("left tail light", "left rear wheel"), ("right tail light", "right rear wheel"),
    ("left front roof corner", "right front roof corner"), ("left rear roof corner", "right rear roof corner"),
    ("left front roof corner", "left rear roof corner"), ("right front roof corner", "right rear roof corner")])


def build_vehicle(shape, rng, mirror):
    j = Jit(shape, rng, 0.06)
    sk = Sketch()
    L, W, bh, cl, r = j("length"), j("width"), j("body_h"), j("clearance"), j("wheel_r")
    yaw = math.radians(j.u(-50, 50)) + (PI if mirror else 0.0)
    sc = Scene3D(cam_rot(yaw, math.radians(j.u(6, 28))))
    x0, x1 = -L / 2, L / 2
    ytop = -cl - bh
    drawn = sc.solid(sk, box(x0, x1, -cl, ytop, -W / 2, W / 2), owner=0)
    body_depths = list(drawn.values())
    c0, c1, r0, r1 = (j("cab0", 0.03) * L, j("cab1", 0.03) * L, j("roof0", 0.03) * L, j("roof1", 0.03) * L)
    ch = j("cab_h")
    wi = 0.44 * W
    cab = np.array([[x, y, z] for x, y in ((c0, ytop), (c0, ytop - ch)) for z in (-wi, wi)] +
                   [[x, y, z] for x, y in ((c1, ytop), (c1, ytop - ch)) for z in (-wi, wi)], float)
    cab[2:4, 0] = r0  # roof rear x
    cab[6:8, 0] = r1  # roof front x
    cab_faces = sc.solid(sk, cab, owner=1)
    # windows: inset copies of the visible side/front/back cabin faces
    for fi, depth in cab_faces.items():
        if fi == 3:  # the roof
            continue
        fc = sc.cam(cab[list(HEX_FACES[fi])])[:, :2]
        cen = fc.mean(0)
        lo = fc[:, 1].max()
        win = cen + (fc - cen) * 0.78
        win[:, 1] = np.minimum(win[:, 1], lo - 0.1 * ch)
        sk.poly(win, "glass", depth=depth + 1e-3)
    if j.flag("bed", False):  # pickup: dark cargo bed behind the cabin
        if 3 in drawn:
            bed = box(x0 + 0.04 * L, c0 - 0.03 * L, ytop, ytop, -W * 0.42, W * 0.42)[[0, 1, 5, 4]]
            sk.poly(sc.cam(bed)[:, :2], "dark", depth=drawn[3] + 1e-3)
    kp, hidden = {}, set()
    eps = 0.01 * L
    # wheels: near ones over the body, far ones under it
    wx = {"front": j("wheel_x", 0.04) * L, "rear": -j("wheel_x", 0.04) * L}
    for fr, x in wx.items():
        for s, z in (("L", W / 2 + 0.01), ("R", -W / 2 - 0.01)):
            name = f"{'left' if s == 'L' else 'right'} {fr} wheel"
            c = np.array([x, -r, z])
            cc = sc.cam(c)
            near = (sc.R @ np.array([0, 0, 1.0 if s == 'L' else -1.0]))[2] < 0
            depth = (max(body_depths) + 0.01) if near else (min(body_depths) - 0.01)
            ring = np.array([[x + r * math.cos(t), -r + r * math.sin(t), z]
                             for t in np.linspace(0, 2 * PI, 20, endpoint=False)])
            sk.poly(sc.cam(ring)[:, :2], "dark", s, depth)
            sk.poly(sc.cam(c + (ring - c) * 0.5)[:, :2], "metal", s, depth + 1e-4)
            kp[name] = cc[:2]
            if sc.covered(c, owner=2, eps=eps):
                hidden.add(VEH_NAMES.index(name))
    # lights on the front (x1) and rear (x0) faces
    ly = -cl - bh * 0.62
    for s, z in (("L", 0.33 * W), ("R", -0.33 * W)):
        n = "left" if s == "L" else "right"
        for name, x, fi, role in ((f"{n} headlight", x1, 1, "lamp"), (f"{n} tail light", x0, 0, "red")):
            p = np.array([x, ly, z])
            kp[name] = sc.cam(p)[:2]
            if fi in drawn:  # a lamp-shaped quad on the visible front/rear face
                q = np.array([[x, ly + dy * bh, z + dz * W] for dy, dz in
                              ((-0.15, -0.09), (-0.15, 0.09), (0.15, 0.09), (0.15, -0.09))])
                sk.poly(sc.cam(q)[:, :2], role, s, drawn[fi] + 2e-3)
            else:
                hidden.add(VEH_NAMES.index(name))
    # roof corners
    for s, z in (("L", wi), ("R", -wi)):
        n = "left" if s == "L" else "right"
        for name, x in ((f"{n} front roof corner", r1), (f"{n} rear roof corner", r0)):
            p = np.array([x, ytop - ch, z])
            kp[name] = sc.cam(p)[:2]
            if sc.covered(p, owner=1, eps=eps):
                hidden.add(VEH_NAMES.index(name))
    return Figure(stack_points(kp, VEH_NAMES), sk.prims, hidden)


VEHICLES = (
    CategorySpec("sedan", dict(length=2.0, width=0.85, body_h=0.32, clearance=0.16, wheel_r=0.17,
                 wheel_x=0.31, cab0=-0.3, cab1=0.26, roof0=-0.18, roof1=0.08, cab_h=0.3)),
    CategorySpec("van", dict(length=2.0, width=0.9, body_h=0.42, clearance=0.16, wheel_r=0.17,
                 wheel_x=0.32, cab0=-0.49, cab1=0.34, roof0=-0.49, roof1=0.16, cab_h=0.42)),
    CategorySpec("pickup", dict(length=2.2, width=0.9, body_h=0.36, clearance=0.22,
                 wheel_r=0.2, wheel_x=0.32, cab0=-0.08, cab1=0.22, roof0=-0.06, roof1=0.12, cab_h=0.34,
                 bed=True)),
)

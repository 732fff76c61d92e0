"""The synthetic benchmark's humanoid family (human-like figures): front or back view, 17 points
(the COCO person template)."""

from __future__ import annotations

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

HUMAN_NAMES = ["nose", "left eye", "right eye", "left ear", "right ear", "left shoulder",
               "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist",
               "left hip", "right hip", "left knee", "right knee", "left ankle", "right ankle"]
HUMAN_KPS = ordered(paired([
    ("nose", "The tip of the {n}'s nose in the middle of the face, below and between the two eyes "
             "and above the mouth; not visible when the {n} is seen from behind."),
    ("{s} eye", "The centre of the {n}'s own {s} eye, beside the nose on the {s} half of the face, "
                "between the nose and the {s} ear; seen from the front the {s} eye is on the "
                "image's {o} side, and the {n}'s {s} limbs are drawn {shade}."),
    ("{s} ear", "The {n}'s {s} ear on the {s} side of the head, level with the eyes, the point of "
                "the head farthest out on that side; the {shade} ear is the {s} one."),
    ("{s} shoulder", "The {n}'s {s} shoulder joint, the upper outer corner of the torso on the {s} "
                     "side, below and outside the {s} ear; the {s} upper arm hangs from it to the "
                     "{s} elbow. The {shade} arm is the {s} one."),
    ("{s} elbow", "The bend of the {n}'s {s} arm, between the {s} shoulder and the {s} wrist, where "
                  "the upper arm meets the forearm."),
    ("{s} wrist", "The {n}'s {s} wrist, the end of the {s} forearm where the hand begins, beyond "
                  "the {s} elbow."),
    ("{s} hip", "The {n}'s {s} hip joint, the lower corner of the torso on the {s} side, below the "
                "{s} shoulder, where the {s} leg starts; the {shade} leg is the {s} one."),
    ("{s} knee", "The {n}'s {s} knee, the bend in the middle of the {s} leg between the {s} hip "
                 "above and the {s} ankle below."),
    ("{s} ankle", "The {n}'s {s} ankle, the lower end of the {s} shin just above the {s} foot, below "
                  "the {s} knee."),
]), HUMAN_NAMES)
HUMAN_SKEL = skeleton_of(HUMAN_NAMES, [
    ("nose", "left eye"), ("nose", "right eye"), ("left eye", "left ear"), ("right eye", "right ear"),
    ("left shoulder", "right shoulder"), ("left shoulder", "left elbow"), ("left elbow", "left wrist"),
    ("right shoulder", "right elbow"), ("right elbow", "right wrist"), ("left shoulder", "left hip"),
    ("right shoulder", "right hip"), ("left hip", "right hip"), ("left hip", "left knee"),
    ("left knee", "left ankle"), ("right hip", "right knee"), ("right knee", "right ankle")])


def build_human(shape, rng, mirror):
    """Front view canonical (the figure's left on the image right); mirror = seen from behind."""
    j = Jit(shape, rng)
    sk = Sketch()
    robot = j.flag("robot", False)
    back = mirror
    hr, nl, sw, hw, tl = j("head_r"), j("neck_len"), j("shoulder_w") / 2, j("hip_w") / 2, j("torso_len")
    ua, fa, th, sh, lw = j("upper_arm"), j("forearm"), j("thigh"), j("shin"), j("limb_w")
    lean = j.u(-0.12, 0.12)
    hipc = V(0.0, tl)
    up = lambda p: rot2(p, lean, hipc)  # noqa: E731  upper body leans about the hips
    kp = {}
    LS, RS = up(V(sw, 0)), up(V(-sw, 0))
    LH, RH = V(hw, tl), V(-hw, tl)
    kp.update({"left shoulder": LS, "right shoulder": RS, "left hip": LH, "right hip": RH})

    # torso and pelvis
    torso = [up(V(-sw * 1.12, -0.03)), up(V(sw * 1.12, -0.03)), V(hw * 1.2, tl * 1.02), V(-hw * 1.2, tl * 1.02)]
    sk.poly(torso, "body", depth=0.0)
    sk.poly([V(-hw * 1.2, tl * 0.9), V(hw * 1.2, tl * 0.9), V(hw * 1.25, tl + th * 0.25),
             V(-hw * 1.25, tl + th * 0.25)], "body2", depth=-0.4)
    if robot:
        sk.poly([up(V(-sw * 0.5, tl * 0.2)), up(V(sw * 0.5, tl * 0.2)), up(V(sw * 0.5, tl * 0.5)),
                 up(V(-sw * 0.5, tl * 0.5))], "light" if not back else "metal", depth=0.05)

    # head
    neck_top = up(V(0, -nl))
    tilt = j.u(-0.25, 0.25)
    hc = neck_top + rot2(V(0, -hr), tilt)
    H = lambda x, y: rot2(V(x, y) * hr, tilt) + hc  # noqa: E731  head frame, units of head radius
    sk.line([up(V(0, 0.05)), neck_top], hr * 0.75, "skin" if not robot else "metal", depth=-0.1)
    if robot:
        sk.poly([H(-1, -1), H(1, -1), H(1, 0.95), H(-1, 0.95)], "metal", depth=0.2)
        sk.line([H(0, -1), H(0.2, -1.6)], hr * 0.12, "dark", depth=0.19)
        sk.dot(H(0.2, -1.6), hr * 0.16, "accent", depth=0.19)
    else:
        sk.poly(ell(hc, hr, hr * 1.1, tilt, 24), "skin", depth=0.2)
    for s, x in (("L", 1.0), ("R", -1.0)):
        e = H(x * (1.02 if not robot else 1.08), 0.05)
        kp[("left" if s == "L" else "right") + " ear"] = e
        if robot:
            sk.poly([H(x * 0.98, -0.25), H(x * 1.2, -0.25), H(x * 1.2, 0.35), H(x * 0.98, 0.35)], "accent", s,
                    depth=0.19)
        else:
            sk.poly(ell(e, hr * 0.2, hr * 0.3, tilt), "skin", s, depth=0.19)
    kp["left eye"], kp["right eye"], kp["nose"] = H(0.38, -0.05), H(-0.38, -0.05), H(0, 0.3)
    if not back:
        if robot:
            for x in (0.38, -0.38):
                p = H(x, -0.05)
                sk.poly([p + rot2(V(-0.17, -0.09) * hr, tilt), p + rot2(V(0.17, -0.09) * hr, tilt),
                         p + rot2(V(0.17, 0.09) * hr, tilt), p + rot2(V(-0.17, 0.09) * hr, tilt)],
                        "light", "L" if x > 0 else "R", depth=0.3)
            sk.dot(H(0, 0.3), hr * 0.1, "accent", depth=0.3)
            sk.line([H(-0.4, 0.62), H(0.4, 0.62)], hr * 0.08, "dark", depth=0.3)
        else:
            sk.poly(ell(H(0, -0.6), hr * 1.02, hr * 0.55, tilt, 20, PI, 2 * PI), "hair", depth=0.25)
            for x in (0.38, -0.38):
                sk.dot(H(x, -0.05), hr * 0.11, "dark", "L" if x > 0 else "R", depth=0.3)
            sk.poly([H(0, 0.08), H(0.1, 0.33), H(-0.1, 0.33)], "accent", depth=0.3)
            sk.line([H(-0.3, 0.6), H(0, 0.66), H(0.3, 0.6)], hr * 0.08, "dark", depth=0.3)
    else:
        if robot:
            for yy in (-0.4, 0.0, 0.4):
                sk.line([H(-0.5, yy), H(0.5, yy)], hr * 0.08, "dark", depth=0.3)
        else:
            sk.poly(ell(H(0, -0.15), hr * 1.04, hr * 1.0, tilt, 24), "hair", depth=0.25)
    hidden = {0, 1, 2} if back else set()

    # arms and legs: side +1 is the figure's left (image right in front view)
    for s, sg in (("L", 1.0), ("R", -1.0)):
        name = "left" if s == "L" else "right"
        sho = kp[f"{name} shoulder"]
        abd = j.u(0.05, 2.6) if rng.random() < 0.5 else j.u(0.05, 0.7)
        a_up = PI / 2 - sg * abd + lean
        bend = j.u(-0.4, 1.8) * (1 if rng.random() < 0.6 else -1)
        elbow = sho + ua * dirv(a_up)
        wrist = elbow + fa * dirv(a_up - sg * bend)
        kp[f"{name} elbow"], kp[f"{name} wrist"] = elbow, wrist
        hand = wrist + dirv(a_up - sg * bend) * lw * 0.55
        sk.line([sho, elbow], lw, "body" if not robot else "metal", s, depth=0.5)
        sk.line([elbow, wrist], lw * 0.85, "skin" if not robot else "metal", s, depth=0.51)
        sk.dot(hand, lw * 0.6, "skin" if not robot else "accent", s, depth=0.52)
        hip = kp[f"{name} hip"]
        a_th = PI / 2 - sg * j.u(-0.1, 0.45)
        knee = hip + th * dirv(a_th)
        ankle = knee + sh * dirv(a_th + sg * j.u(-0.3, 0.6))
        kp[f"{name} knee"], kp[f"{name} ankle"] = knee, ankle
        sk.line([hip, knee], lw * 1.25, "body2" if not robot else "metal", s, depth=-0.5)
        sk.line([knee, ankle], lw * 1.1, "body2" if not robot else "metal", s, depth=-0.49)
        sk.poly(ell(ankle + V(sg * lw * 0.3, lw * 0.35), lw * 0.75, lw * 0.4), "dark", s, depth=-0.48)
        if robot:
            for p in (elbow, knee):
                sk.dot(p, lw * 0.6, "accent", s, depth=0.55 if p is elbow else -0.45)

    fig = Figure(stack_points(kp, HUMAN_NAMES), sk.prims, hidden)
    return fig.flip_x() if back else fig


HUMANS = (
    CategorySpec("adult", dict(head_r=0.12, neck_len=0.08, shoulder_w=0.46, hip_w=0.3,
                 torso_len=0.6, upper_arm=0.32, forearm=0.28, thigh=0.42, shin=0.4, limb_w=0.09)),
    CategorySpec("child", dict(head_r=0.16, neck_len=0.05, shoulder_w=0.36, hip_w=0.26,
                 torso_len=0.45, upper_arm=0.22, forearm=0.2, thigh=0.27, shin=0.25, limb_w=0.085)),
    CategorySpec("robot", dict(head_r=0.14, neck_len=0.1, shoulder_w=0.56, hip_w=0.34,
                 torso_len=0.58, upper_arm=0.3, forearm=0.3, thigh=0.38, shin=0.36, limb_w=0.11,
                 robot=True)),
)

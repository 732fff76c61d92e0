"""The twelve families of the synthetic benchmark, one module each (keypoint template,
descriptions, skeleton, categories, and the builder that poses one instance).

`FAMILIES` lists them in the order that fixes the category ids (capellm.synth.benchmark).
"""

from __future__ import annotations

from capellm.synth.geometry import Family
from capellm.synth.families.quadruped import QUADRUPEDS, QUAD_KPS, QUAD_SKEL, build_quadruped
from capellm.synth.families.bird import BIRDS, BIRD_KPS, BIRD_SKEL, build_bird
from capellm.synth.families.humanoid import HUMANS, HUMAN_KPS, HUMAN_SKEL, build_human
from capellm.synth.families.face import FACES, FACE_KPS, FACE_SKEL, build_face
from capellm.synth.families.hand import HANDS, HAND_KPS, HAND_SKEL, build_hand
from capellm.synth.families.vehicle import VEHICLES, VEH_KPS, VEH_SKEL, build_vehicle
from capellm.synth.families.chair import CHAIRS, CHAIR_KPS, CHAIR_SKEL, build_chair
from capellm.synth.families.garment import GARMENTS, GARM_KPS, GARM_SKEL, build_garment
from capellm.synth.families.insect import INSECTS, INS_KPS, INS_SKEL, build_insect
from capellm.synth.families.fish import FISHES, FISH_KPS, FISH_SKEL, build_fish
from capellm.synth.families.lamp import LAMPS, LAMP_KPS, LAMP_SKEL, build_lamp
from capellm.synth.families.butterfly import BFLY_KPS, BFLY_SKEL, BUTTERFLIES, build_butterfly

FAMILIES: tuple[Family, ...] = (
    Family("quadruped", QUAD_KPS, QUAD_SKEL, build_quadruped, 20, QUADRUPEDS),
    Family("bird", BIRD_KPS, BIRD_SKEL, build_bird, 25, BIRDS),
    Family("humanoid", HUMAN_KPS, HUMAN_SKEL, build_human, 25, HUMANS),
    Family("face", FACE_KPS, FACE_SKEL, build_face, 30, FACES),
    Family("hand", HAND_KPS, HAND_SKEL, build_hand, 180, HANDS),
    Family("vehicle", VEH_KPS, VEH_SKEL, build_vehicle, 8, VEHICLES),
    Family("chair", CHAIR_KPS, CHAIR_SKEL, build_chair, 8, CHAIRS),
    Family("garment", GARM_KPS, GARM_SKEL, build_garment, 20, GARMENTS),
    Family("insect", INS_KPS, INS_SKEL, build_insect, 180, INSECTS),
    Family("fish", FISH_KPS, FISH_SKEL, build_fish, 30, FISHES),
    Family("lamp", LAMP_KPS, LAMP_SKEL, build_lamp, 12, LAMPS),
    Family("butterfly", BFLY_KPS, BFLY_SKEL, build_butterfly, 180, BUTTERFLIES),
)

"""The twelve families of the synthetic benchmark, one module each (keypoint template,
descriptions, skeleton, categories, and the builder that poses one instance).

`FAMILIES` lists them in the order that fixes the category ids (capellm.synth.benchmark).
"""

from __future__ import annotations

from capellm.synth.families.bird import BIRD_KPS, BIRD_SKEL, BIRDS, build_bird
from capellm.synth.families.butterfly import BFLY_KPS, BFLY_SKEL, BUTTERFLIES, build_butterfly
from capellm.synth.families.chair import CHAIR_KPS, CHAIR_SKEL, CHAIRS, build_chair
from capellm.synth.families.face import FACE_KPS, FACE_SKEL, FACES, build_face
from capellm.synth.families.fish import FISH_KPS, FISH_SKEL, FISHES, build_fish
from capellm.synth.families.garment import GARM_KPS, GARM_SKEL, GARMENTS, build_garment
from capellm.synth.families.hand import HAND_KPS, HAND_SKEL, HANDS, build_hand
from capellm.synth.families.humanoid import HUMAN_KPS, HUMAN_SKEL, HUMANS, build_human
from capellm.synth.families.insect import INS_KPS, INS_SKEL, INSECTS, build_insect
from capellm.synth.families.lamp import LAMP_KPS, LAMP_SKEL, LAMPS, build_lamp
from capellm.synth.families.quadruped import QUAD_KPS, QUAD_SKEL, QUADRUPEDS, build_quadruped
from capellm.synth.families.vehicle import VEH_KPS, VEH_SKEL, VEHICLES, build_vehicle
from capellm.synth.geometry import Family

FAMILIES: tuple[Family, ...] = (
    Family("quadruped", QUAD_KPS, QUAD_SKEL, build_quadruped, 20, QUADRUPEDS, noun="animal"),
    Family("bird", BIRD_KPS, BIRD_SKEL, build_bird, 25, BIRDS, noun="bird"),
    Family("humanoid", HUMAN_KPS, HUMAN_SKEL, build_human, 25, HUMANS, noun="figure"),
    Family("face", FACE_KPS, FACE_SKEL, build_face, 30, FACES, noun="animal"),
    Family("hand", HAND_KPS, HAND_SKEL, build_hand, 180, HANDS, noun="hand"),
    Family("vehicle", VEH_KPS, VEH_SKEL, build_vehicle, 8, VEHICLES, noun="vehicle"),
    Family("chair", CHAIR_KPS, CHAIR_SKEL, build_chair, 8, CHAIRS, noun="seat"),
    Family("garment", GARM_KPS, GARM_SKEL, build_garment, 20, GARMENTS, noun="garment"),
    Family("insect", INS_KPS, INS_SKEL, build_insect, 180, INSECTS, noun="insect"),
    Family("fish", FISH_KPS, FISH_SKEL, build_fish, 30, FISHES, noun="fish"),
    Family("lamp", LAMP_KPS, LAMP_SKEL, build_lamp, 12, LAMPS, noun="lamp"),
    Family("butterfly", BFLY_KPS, BFLY_SKEL, build_butterfly, 180, BUTTERFLIES, noun="insect"),
)

"""Category definitions: what a user hands over instead of support images.

A category is an ordered list of keypoints, each with a name and a free-text description
(CapeLLM Sec. 3.2: the description is given to the LLM as a "reference"), plus an optional
skeleton used only for drawing. One YAML file holds one category:

    name: horse_body            # required; MP-100 categories use their annotation-file name
    id: 2                       # optional; the MP-100 / COCO category id
    supercategory: animal_body  # optional
    keypoints:                  # required, in annotation order
      - name: left eye
        description: The left eye, above and behind the nose ...
    skeleton: [[0, 1], [1, 2]]  # optional, 0-indexed pairs

Every problem is reported as a `CategoryError` naming the file and the field, so a user
with a typo in keypoint 14 of their own file learns exactly that.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from capellm.errors import CapellmError


class CategoryError(CapellmError):
    """A category file is malformed or does not match its annotations."""


@dataclass(frozen=True)
class Keypoint:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Category:
    name: str
    keypoints: tuple[Keypoint, ...]
    supercategory: str = ""
    id: int | None = None
    skeleton: tuple[tuple[int, int], ...] = ()
    source: str = field(default="<memory>", compare=False)  # file it came from, for messages

    def __post_init__(self):
        _validate(self.name, self.keypoints, self.skeleton, self.source)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def keypoint_names(self) -> list[str]:
        return [k.name for k in self.keypoints]

    def check_num_keypoints(self, n: int, where: str = "annotations") -> None:
        """Raise unless the annotations of this category have exactly `n` keypoints."""
        if n != self.num_keypoints:
            raise CategoryError(
                f"{self.source}: category '{self.name}' defines {self.num_keypoints} keypoints "
                f"but {where} has {n}"
            )

    def to_dict(self) -> dict:
        d: dict = {"name": self.name}
        if self.id is not None:
            d["id"] = self.id
        if self.supercategory:
            d["supercategory"] = self.supercategory
        d["keypoints"] = [{"name": k.name, "description": k.description} for k in self.keypoints]
        if self.skeleton:
            d["skeleton"] = [list(p) for p in self.skeleton]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<memory>") -> "Category":
        if not isinstance(d, dict):
            raise CategoryError(f"{source}: expected a mapping at the top level, got {type(d).__name__}")
        unknown = set(d) - {"name", "id", "supercategory", "keypoints", "skeleton"}
        if unknown:
            raise CategoryError(f"{source}: unknown field(s) {sorted(unknown)}")
        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CategoryError(f"{source}: field 'name' is missing or empty")
        kps = d.get("keypoints")
        if not isinstance(kps, list) or not kps:
            raise CategoryError(f"{source}: field 'keypoints' is missing or not a non-empty list")
        keypoints = []
        for i, kp in enumerate(kps):
            where = f"{source}: keypoints[{i}]"
            if isinstance(kp, str):  # shorthand: a bare name without description
                kp = {"name": kp}
            if not isinstance(kp, dict):
                raise CategoryError(f"{where}: expected a mapping with 'name' and 'description'")
            extra = set(kp) - {"name", "description"}
            if extra:
                raise CategoryError(f"{where}: unknown field(s) {sorted(extra)}")
            kname = kp.get("name")
            if not isinstance(kname, str) or not kname.strip():
                raise CategoryError(f"{where}: field 'name' is missing or empty")
            desc = kp.get("description", "")
            if desc is None:
                desc = ""
            if not isinstance(desc, str):
                raise CategoryError(f"{where} ('{kname}'): field 'description' must be text")
            keypoints.append(Keypoint(kname.strip(), " ".join(desc.split())))
        cid = d.get("id")
        if cid is not None and (not isinstance(cid, int) or isinstance(cid, bool)):
            raise CategoryError(f"{source}: field 'id' must be an integer")
        sup = d.get("supercategory") or ""
        if not isinstance(sup, str):
            raise CategoryError(f"{source}: field 'supercategory' must be text")
        skel = d.get("skeleton") or []
        if not isinstance(skel, list):
            raise CategoryError(f"{source}: field 'skeleton' must be a list of [i, j] pairs")
        pairs = []
        for i, p in enumerate(skel):
            if (not isinstance(p, (list, tuple)) or len(p) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in p)):
                raise CategoryError(f"{source}: skeleton[{i}] must be a pair of integers, got {p!r}")
            pairs.append((p[0], p[1]))
        return cls(name=name.strip(), keypoints=tuple(keypoints), supercategory=sup, id=cid,
                   skeleton=tuple(pairs), source=source)


def name_key(name: str) -> str:
    """The form in which keypoint names are matched ACROSS categories (the mean-position baseline,
    encoder pre-training): lower case, runs of white space as one space."""
    return " ".join(name.lower().split())


def _validate(name, keypoints, skeleton, source) -> None:
    seen: dict[str, int] = {}
    for i, kp in enumerate(keypoints):
        key = kp.name.lower()
        if key in seen:
            raise CategoryError(
                f"{source}: keypoints[{i}] name '{kp.name}' duplicates keypoints[{seen[key]}] "
                f"in category '{name}'"
            )
        seen[key] = i
    n = len(keypoints)
    for i, (a, b) in enumerate(skeleton):
        if not (0 <= a < n and 0 <= b < n):
            raise CategoryError(
                f"{source}: skeleton[{i}] = [{a}, {b}] is out of range for {n} keypoints "
                f"(indices are 0-based)"
            )


def load_category(path: str | Path) -> Category:
    """Read one category YAML file; raises CategoryError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CategoryError(f"{path}: category file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CategoryError(f"{path}: cannot read category file ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CategoryError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        raise CategoryError(f"{path}: category file is empty")
    return Category.from_dict(data, source=str(path))


def save_category(category: Category, path: str | Path) -> None:
    from capellm.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(category.to_dict(), sort_keys=False, allow_unicode=True,
                                           width=100))


def load_categories(folder: str | Path) -> dict[str, Category]:
    """All `*.yaml` files of a folder, keyed by category name (names must be unique)."""
    out: dict[str, Category] = {}
    for p in sorted(Path(folder).glob("*.yaml")):
        c = load_category(p)
        if c.name in out:
            raise CategoryError(f"{p}: category name '{c.name}' is also defined in {out[c.name].source}")
        out[c.name] = c
    return out


def mp100_categories() -> dict[int, Category]:
    """The shipped MP-100 category files (our own names and descriptions), keyed by MP-100 id.

    Keyed by id because MP-100 names are not unique (ids 18 and 40 are both called "face").
    Files are named `{id:03d}_{name}.yaml`.
    """
    root = Path(str(importlib.resources.files("capellm") / "categories" / "mp100"))
    out: dict[int, Category] = {}
    for p in sorted(root.glob("*.yaml")):
        c = load_category(p)
        if c.id is None:
            raise CategoryError(f"{p}: field 'id' is required for MP-100 category files")
        out[c.id] = c
    return out


def resolve_category(name_or_file: str | Path) -> Category:
    """A category file path, or the name or id of a shipped MP-100 category."""
    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_category(p)
    cats = mp100_categories()
    key = str(name_or_file).strip()
    if key.isdigit() and int(key) in cats:
        return cats[int(key)]
    hits = [c for c in cats.values() if c.name == key]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        ids = ", ".join(str(c.id) for c in hits)
        raise CategoryError(f"MP-100 has several categories named '{key}' (ids {ids}): give the id")
    raise CategoryError(f"'{name_or_file}' is neither a category file nor a shipped MP-100 category name or id")


# ----------------------------------------------------------------------------------------------
# a user's own category file: the template to fill in, and a check of its descriptions

DESCRIPTION_RULES = """\
# capellm category file. Fill in each keypoint's description, then run
#   capellm category check THIS_FILE
#   capellm predict --checkpoint DIR --image IMG --category THIS_FILE
#
# The model never sees an example picture of your object: the name and the description are all it
# gets (CapeLLM, Sec. 3.2). A good description:
#   1. Locates the point ON the object: which part, and where on that part
#      (tip, base, centre, corner, where two parts join).
#   2. Relates it to its neighbours, by their names: above / below / in front of / between ...
#   3. Uses the object's OWN left and right (as the object would say them, like "the horse's
#      own left eye"), never the picture's left and right.
#   4. Avoids vague words (around, somewhere, roughly, about, near the middle, some part of):
#      say exactly where.
#   5. Is one or two sentences.
# Example (horse, "left eye"): The horse's own left eye, on the left side of the head above and
#   behind the nose and level with the right eye.
# Empty descriptions are allowed (the model then gets the names only) but predictions are better
# with them. Keypoint order matters: it is the order of the answers.
# skeleton (optional, used for drawing only): pairs of 0-based keypoint indices, e.g. [[0, 1], [1, 2]].
"""

VAGUE_WORDS = ("around", "somewhere", "roughly", "approximately", "about", "some part", "sort of", "kind of",
               "maybe", "etc", "near the middle")


def category_template(name: str, keypoint_names: list[str], source: str = "<template>") -> str:
    """The text of a new category file: the rules of a good description, then the keypoints with
    empty descriptions. Names are validated by the loader's own rules (non-empty, unique)."""
    cat = Category(name=name, keypoints=tuple(Keypoint(k) for k in keypoint_names), source=source)
    body = yaml.safe_dump({"name": cat.name, "keypoints": [{"name": k.name, "description": ""} for k in cat.keypoints],
                           "skeleton": []}, sort_keys=False, allow_unicode=True, width=100)
    return DESCRIPTION_RULES + body


def weak_descriptions(category) -> list[str]:
    """Human-readable warnings about empty or vague descriptions."""
    out = []
    for i, kp in enumerate(category.keypoints):
        d = kp.description.lower()
        if not d:
            out.append(f"keypoints[{i}] '{kp.name}': description is empty")
            continue
        words = set(d.replace(",", " ").replace(".", " ").replace(";", " ").split())
        vague = [v for v in VAGUE_WORDS if (v in words if " " not in v else v in d)]
        if vague:
            out.append(f"keypoints[{i}] '{kp.name}': vague wording {vague}")
    return out

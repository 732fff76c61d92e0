"""`capellm ablate`: the paper's instruction ablations on the synthetic benchmark.

- `--study instruction` (Table 3): keypoint name only (the demo's instruction); name +
  description (the paper's); name + the category's keypoint list. Each adds one thing to the
  demo's instruction.
- `--study rounds` (Table 4): k = 1, 2, 4, 6, 8 keypoints per conversation.

Each variant trains the `demo` preset from the same seed on the same split and is evaluated on the
split's unseen test categories. The paper trains every variant for the same number of epochs, so
every variant answers about the same number of keypoint questions; here likewise: a variant with
k keypoints per conversation trains for `steps * k_demo / k` optimiser steps (k = 1 takes four
times the steps of k = 4, each about a quarter as long). Variants whose instruction and step count
are identical (the default instruction appears in both studies) are trained once.
Results go to `<out>/ablations.json` and a markdown table `<out>/ablations.md`; finished variants
are skipped when the command is run again, so an interrupted study continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from capellm.utils import atomic_write_json, atomic_write_text

STUDIES = {
    "instruction": [
        ("name only", {"description": False}),                  # the demo's instruction
        ("name + description", {"description": True}),
        ("name + keypoint list", {"description": False, "keypoint_list": True}),
    ],
    "rounds": [(f"k = {k}", {"k": k}) for k in (1, 2, 4, 6, 8)],
}


def variant_config(data: str, out: str, split: int, steps: int | None, pretrain_steps: int | None, seed: int,
                   name: str, instruction: dict):
    """The demo configuration of one variant: its instruction, and steps scaled by k_demo / k."""
    from dataclasses import replace

    from capellm.demo import demo_config

    slug = name.replace(" ", "").replace("+", "_").replace("=", "")
    cfg = demo_config(data, str(Path(out) / slug), split, "demo", steps, seed)
    k_demo = cfg.model.instruction.k
    cfg.model.instruction = replace(cfg.model.instruction, **instruction)
    cfg.train.max_steps = max(1, round(cfg.train.max_steps * k_demo / cfg.model.instruction.k))
    if pretrain_steps is not None:
        cfg.train.encoder_pretrain.steps = pretrain_steps
    return cfg


def run_variant(cfg) -> dict:
    import time

    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import evaluate
    from capellm.model.capellm import CapeLLM
    from capellm.train import train

    t = time.time()
    final = train(cfg, resume=True)
    seconds = time.time() - t
    test = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    model = CapeLLM.from_pretrained(final)
    result = evaluate(model, test, categories_for(test, cfg.data.categories), cfg.eval)
    return {"train_seconds": round(seconds, 1), **result["overall"],
            "unparsed_answers": result["unparsed_answers"]}


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

    if not synth.is_complete(data):
        synth.generate(data, seed=0)
    elif note := synth.stale_note(data):
        say(note)
    store = Path(out) / "ablations.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    for study in studies:
        for name, instruction in STUDIES[study]:
            key = f"{study}/{name}"
            if key in done:
                continue
            cfg = variant_config(data, out, split, steps, pretrain_steps, seed, name, instruction)
            same = {"instruction": asdict(cfg.model.instruction), "steps": cfg.train.max_steps}
            twin = next((r for r in done.values() if {k: r.get(k) for k in same} == same), None)
            say(f"== {study}: {name}" + (f" (same run as '{twin['variant']}')" if twin else ""))
            result = {k: v for k, v in twin.items() if k not in ("variant", "overrides")} if twin else run_variant(cfg)
            done[key] = {"variant": name, "overrides": instruction, **same, **result}
            atomic_write_json(store, done)
    md = []
    for study in studies:
        rows = [done[f"{study}/{n}"] for n, _ in STUDIES[study]]
        md += [f"### {study} (split {split}, unseen test categories, %)", "", table(rows), ""]
    text = "\n".join(md)
    atomic_write_text(Path(out) / "ablations.md", text)
    return text

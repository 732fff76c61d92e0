"""`capellm demo` and `capellm ablate` end to end on the tiny synthetic benchmark, and the
pixel-free baselines against hand-computed values."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from capellm.baselines import MeanPositionBaseline, centre_prediction
from capellm.data.categories import Category, Keypoint
from capellm.data.coco import Instance
from capellm.data.transforms import CropConfig


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from capellm.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, tiny=True)
    return root


def _inst(bbox, kps, vis, cid=1):
    return Instance(ann_id=1, image_id=1, category_id=cid, file_name="x.png", image_path=None, width=100,
                    height=100, bbox=np.asarray(bbox, np.float32), keypoints=np.asarray(kps, np.float32),
                    visible=np.asarray(vis, bool))


def test_centre_baseline():
    cat = Category("c", (Keypoint("a"), Keypoint("b")))
    pred = centre_prediction(_inst([10, 20, 40, 60], [[0, 0], [1, 1]], [1, 1]), cat)
    np.testing.assert_allclose(pred, [[30, 50], [30, 50]])


def test_mean_position_baseline_averages_names_across_categories():
    # two categories share the name "top"; crops are squares of side max(w, h) (padding 1)
    crop = CropConfig(input_size=64, padding=1.0)
    a = Category("a", (Keypoint("Top"), Keypoint("only in a")), id=1)
    b = Category("b", (Keypoint("top"), Keypoint("other")), id=2)
    cats = {1: a, 2: b}
    # box [0,0,100,100]: the crop is the box, unit = pixel / 100; "top" at unit (0.5, 0.1) in one
    # instance and (0.5, 0.3) in the other
    i1 = _inst([0, 0, 100, 100], [[50, 10], [0, 0]], [1, 0], cid=1)
    i2 = _inst([0, 0, 100, 100], [[50, 30], [10, 10]], [1, 1], cid=2)
    base = MeanPositionBaseline(crop).fit([i1, i2], cats)
    assert set(base.means) == {"top", "other"}          # unlabelled points do not count
    np.testing.assert_allclose(base.means["top"], [0.5, 0.2], atol=1e-6)
    # prediction on a new box maps the unit position back to its pixels; unseen names -> centre
    new = Category("n", (Keypoint("top"), Keypoint("never seen")))
    pred = base.predict(_inst([100, 0, 200, 100], [[0, 0], [0, 0]], [1, 1]), new)
    # the square crop of side 200 centred on the box centre (200, 50) spans y in [-50, 150]
    np.testing.assert_allclose(pred[0], [200, -50 + 0.2 * 200], atol=1e-3)
    np.testing.assert_allclose(pred[1], [200, 50], atol=1e-3)
    assert base.coverage(new) == 0.5


def test_demo_runs_end_to_end(tiny_synth, tmp_path, capsys):
    from capellm.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--data", str(tiny_synth), "--out", str(out), "--preset", "tiny", "--steps", "3",
                 "--pictures", "2"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["baselines"]) == {"centre of box", "mean position per name"}
    assert m["model"]["overall"]["instances"] == sum(v["instances"] for v in m["model"]["per_category"].values())
    assert not set(m["train_categories"]) & set(m["test_categories"])
    assert len(m["pictures"]) == 2 and all((out / "pictures").glob("*.png"))
    printed = capsys.readouterr().out
    assert "mean position per name" in printed and "time:" in printed and "image reliance" in printed
    table = printed.split("PCK@0.2 per unseen category (%)")[1].strip().split("\n\n")[0]
    rows = table.splitlines()[1:]
    assert sorted(r.split()[0] for r in rows) == sorted(m["model"]["per_category"])
    assert set(m["image_reliance"]) == {"loss", "loss_other_images", "gap", "conversations"}


def test_ablate_instruction_study_resumes(tiny_synth, tmp_path):
    from capellm.ablate import main

    out = tmp_path / "abl"
    args = ["--study", "instruction", "--data", str(tiny_synth), "--out", str(out), "--steps", "2",
            "--pretrain-steps", "1"]
    assert main(args) == 0
    done = json.loads((out / "ablations.json").read_text())
    assert set(done) == {"instruction/name only", "instruction/name + description",
                         "instruction/name + keypoint list"}
    assert done["instruction/name only"]["overrides"] == {"description": False}
    assert done["instruction/name only"]["instruction"]["description"] is False
    assert {r["steps"] for r in done.values()} == {2}
    log = json.loads((out / "nameonly" / "train.log").read_text().splitlines()[0])
    assert log["encoder_pretrain_steps"] == 1                # --pretrain-steps reaches the training
    stamp = (out / "ablations.json").stat().st_mtime_ns
    assert main(args) == 0                      # everything done: nothing retrained
    assert (out / "ablations.json").stat().st_mtime_ns == stamp
    assert "| name only |" in (out / "ablations.md").read_text()


def test_ablate_scales_steps_by_k_and_trains_identical_variants_once(tiny_synth, tmp_path, monkeypatch):
    from capellm import ablate

    trained = []

    def fake_run(cfg):
        trained.append((cfg.model.instruction.k, cfg.model.instruction.description, cfg.train.max_steps))
        return {"train_seconds": 1.0, "PCK@0.05": 0.1, "PCK@0.1": 0.2, "PCK@0.2": 0.3, "mPCK": 0.2,
                "unparsed_answers": 0}

    monkeypatch.setattr(ablate, "run_variant", fake_run)
    out = tmp_path / "abl"
    assert ablate.main(["--data", str(tiny_synth), "--out", str(out), "--steps", "8"]) == 0
    # k = 4 is the demo's instruction: already trained as "name only"
    assert [k for k, _, _ in trained] == [4, 4, 4, 1, 2, 6, 8]      # 3 instruction variants, then k
    assert [d for _, d, _ in trained] == [False, True, False, False, False, False, False]
    assert {k: steps for k, _, steps in trained} == {4: 8, 1: 32, 2: 16, 6: 5, 8: 4}
    done = json.loads((out / "ablations.json").read_text())
    assert done["rounds/k = 4"]["steps"] == 8 and done["rounds/k = 4"]["mPCK"] == 0.2
    assert done["rounds/k = 4"]["variant"] == "k = 4" and done["rounds/k = 4"]["overrides"] == {"k": 4}
    md = (out / "ablations.md").read_text()
    assert "| k = 1 | 32 |" in md and "| name only | 8 |" in md


def _load_experiment(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("encoder", ["oracle", "model"])
def test_reading_probe_runs(encoder, capsys):
    probe = _load_experiment("reading_probe")
    assert probe.main(["--preset", "tiny", "--encoder", encoder, "--squares", "2", "--steps", "2", "--batch", "2",
                       "--every", "1"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert len(lines) == 2 and "own image" in lines[-1] and "another's" in lines[-1]


def test_sweep_variant_lines():
    sweep = _load_experiment("sweep")
    name, overrides = sweep.parse_variant("v1 train.lr=1e-3 model.llm.random_config.num_hidden_layers=2 "
                                          "train.encoder_pretrain_target=names model.vision.mode=frozen")
    assert name == "v1"
    assert overrides == {"train": {"lr": 1e-3, "encoder_pretrain_target": "names"},
                         "model": {"llm": {"random_config": {"num_hidden_layers": 2}}, "vision": {"mode": "frozen"}}}
    assert sweep.parse_variant("v0") == ("v0", {})
    with pytest.raises(ValueError, match="'lr' is not key=value"):
        sweep.parse_variant("v2 lr")


def test_sweep_issue3_variants_build(tmp_path):
    from pathlib import Path

    sweep = _load_experiment("sweep")
    args = argparse.Namespace(preset="demo", data=str(tmp_path), split=1, seed=0)
    lines = sweep.read_variants(str(Path(__file__).parents[1] / "experiments" / "issue3_variants.txt"))
    assert len(lines) >= 2
    for line in lines:
        _, overrides = sweep.parse_variant(line)
        cfg = sweep.variant_config(args, overrides, str(tmp_path / "v"))   # a misspelt field fails here
        assert cfg.model.llm.random_config["hidden_size"] in (128, 256)


def test_sweep_random_config_override_keeps_the_other_fields(tmp_path):
    sweep = _load_experiment("sweep")
    args = argparse.Namespace(preset="demo", data=str(tmp_path), split=1, seed=0)
    _, overrides = sweep.parse_variant("v model.llm.random_config.num_hidden_layers=2 train.lr=3e-3")
    cfg = sweep.variant_config(args, overrides, str(tmp_path / "v"))
    base = sweep.variant_config(args, {}, str(tmp_path / "v"))
    assert cfg.model.llm.random_config == {**base.model.llm.random_config, "num_hidden_layers": 2}
    assert cfg.train.lr == 3e-3 and base.train.lr != 3e-3
    assert overrides["model"]["llm"]["random_config"] == {"num_hidden_layers": 2}   # the caller's is unchanged
    assert cfg.train.out_dir == str(tmp_path / "v")


def test_sweep_runs_resumes_and_pretrains(tiny_synth, tmp_path, capsys):
    sweep = _load_experiment("sweep")
    variants = tmp_path / "variants.txt"
    variants.write_text("# two variants\nplain train.max_steps=2\n"
                        "pre train.max_steps=1 train.encoder_pretrain_steps=2 model.vision.mode=frozen\n")
    argv = [str(variants), "--data", str(tiny_synth), "--out", str(tmp_path / "out"), "--preset", "tiny",
            "--every", "1", "--threads", "1", "--heldout", str(tmp_path / "heldout")]
    threads = torch.get_num_threads()
    assert sweep.main(argv) == 0
    for name, steps in (("plain", 2), ("pre", 1)):
        result = json.loads((tmp_path / "out" / name / "result.json").read_text())
        assert result["steps"] == steps and [h["step"] for h in result["history"]] == list(range(1, steps + 1))
        assert {"train_gap", "test_gap"} <= set(result["history"][0])
        assert {"PCK@0.2", "baseline PCK@0.2", "gap"} <= set(result["heldout"])
    log = [json.loads(x) for x in (tmp_path / "out" / "pre" / "train.log").read_text().splitlines()]
    assert log[0]["encoder_pretrain_steps"] == 2
    made = json.loads((tmp_path / "heldout" / ".complete").read_text())["config"]
    used = json.loads((tiny_synth / ".complete").read_text())["config"]
    assert made == {**used, "seed": used["seed"] + 1}       # same categories, new instances
    out = capsys.readouterr().out
    assert out.count("RESULT") == 2
    assert torch.get_num_threads() == threads    # in-process runs leave the caller's threads alone
    assert sweep.main(argv) == 0                 # finished variants are not run again
    assert "RESULT" not in capsys.readouterr().out


def test_encoder_probe_scores_every_unseen_category(tiny_synth, capsys):
    import json

    probe = _load_experiment("encoder_probe")
    assert probe.main(["--data", str(tiny_synth), "--preset", "tiny", "--steps", "2",
                       "--set", "train.encoder_pretrain_batch_size=4"]) == 0
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in capsys.readouterr().out.splitlines()
            if r.startswith("| ") and "---" not in r]
    split = json.loads((tiny_synth / "annotations" / "synth_split1_test.json").read_text())
    assert sorted(r[0] for r in rows[1:-2]) == sorted(c["name"] for c in split["categories"])
    assert [r[0] for r in rows[-2:]] == ["overall PCK@0.2", "overall mPCK"]
    assert all(0 <= float(x) <= 100 for r in rows[1:] for x in r[-2:])

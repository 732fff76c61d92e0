"""Smoke tests of the research scripts (research/): they run, resume and read their variant files,
so that they do not rot between the sessions that use them."""

from __future__ import annotations

import argparse
import json

import pytest
import torch


def _load_research(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "research" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("encoder", ["oracle", "model"])
def test_reading_probe_runs(encoder, capsys):
    probe = _load_research("reading_probe")
    assert probe.main(["--preset", "tiny", "--encoder", encoder, "--squares", "2", "--steps", "2", "--batch", "2",
                       "--every", "1"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert len(lines) == 2 and "own image" in lines[-1] and "another's" in lines[-1]


def test_sweep_variant_lines():
    sweep = _load_research("sweep")
    name, overrides = sweep.parse_variant("v1 train.lr=1e-3 model.llm.random_config.num_hidden_layers=2 "
                                          "train.encoder_pretrain_target=names model.vision.mode=frozen")
    assert name == "v1"
    assert overrides == {"train": {"lr": 1e-3, "encoder_pretrain_target": "names"},
                         "model": {"llm": {"random_config": {"num_hidden_layers": 2}}, "vision": {"mode": "frozen"}}}
    assert sweep.parse_variant("v0") == ("v0", {})
    with pytest.raises(ValueError, match="'lr' is not key=value"):
        sweep.parse_variant("v2 lr")


@pytest.mark.parametrize("variants", ["demo_variants.txt", "demo_variants_steps.txt", "demo_variants_batch.txt"])
def test_sweep_demo_variants_build(tmp_path, variants):
    from pathlib import Path

    sweep = _load_research("sweep")
    args = argparse.Namespace(preset="demo", data=str(tmp_path), split=1, seed=0)
    lines = sweep.read_variants(str(Path(__file__).parents[1] / "research" / variants))
    assert len(lines) >= 2
    for line in lines:
        _, overrides = sweep.parse_variant(line)
        cfg = sweep.variant_config(args, overrides, str(tmp_path / "v"))   # a misspelt field fails here
        assert cfg.model.llm.random_config["hidden_size"] in (128, 256)


def test_sweep_random_config_override_keeps_the_other_fields(tmp_path):
    sweep = _load_research("sweep")
    args = argparse.Namespace(preset="demo", data=str(tmp_path), split=1, seed=0)
    _, overrides = sweep.parse_variant("v model.llm.random_config.num_hidden_layers=2 train.lr=3e-3")
    cfg = sweep.variant_config(args, overrides, str(tmp_path / "v"))
    base = sweep.variant_config(args, {}, str(tmp_path / "v"))
    assert cfg.model.llm.random_config == {**base.model.llm.random_config, "num_hidden_layers": 2}
    assert cfg.train.lr == 3e-3 and base.train.lr != 3e-3
    assert overrides["model"]["llm"]["random_config"] == {"num_hidden_layers": 2}   # the caller's is unchanged
    assert cfg.train.out_dir == str(tmp_path / "v")


def test_sweep_runs_resumes_and_pretrains(tiny_synth, tmp_path, capsys):
    sweep = _load_research("sweep")
    variants = tmp_path / "variants.txt"
    variants.write_text("# two variants\nplain train.max_steps=2\n"
                        "pre train.max_steps=1 train.encoder_pretrain_steps=2 model.vision.mode=frozen\n")
    argv = [str(variants), "--data", str(tiny_synth), "--out", str(tmp_path / "out"), "--preset", "tiny",
            "--every", "1", "--threads", "1", "--heldout", str(tmp_path / "heldout"), "--gap-samples", "8"]
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


@pytest.mark.parametrize("pool", ["0", "2"])
def test_encoder_probe_scores_every_unseen_category(tiny_synth, capsys, pool):
    import json

    probe = _load_research("encoder_probe")
    assert probe.main(["--data", str(tiny_synth), "--preset", "tiny", "--steps", "2", "--pool", pool,
                       "--set", "train.encoder_pretrain_batch_size=4", "model.crop.augment=true"]) == 0
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in capsys.readouterr().out.splitlines()
            if r.startswith("| ") and "---" not in r]
    split = json.loads((tiny_synth / "annotations" / "synth_split1_test.json").read_text())
    assert sorted(r[0] for r in rows[1:-2]) == sorted(c["name"] for c in split["categories"])
    assert [r[0] for r in rows[-2:]] == ["overall PCK@0.2", "overall mPCK"]
    assert all(0 <= float(x) <= 100 for r in rows[1:] for x in r[-2:])


def test_step_throughput_times_every_variant(tiny_synth):
    import subprocess
    import sys
    from pathlib import Path

    # its own process: accelerate keeps one mixed-precision state per process, and the benchmark's
    # float32 state would clash with the bf16 one of this process's earlier trainings
    script = Path(__file__).parents[1] / "research" / "step_throughput.py"
    run = subprocess.run([sys.executable, str(script), "--data", str(tiny_synth), "--rounds", "2", "--samples", "4",
                          "--threads", "1", "2/bpe:1000/384", "4/bpe:1000:2/192"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [x.split() for x in run.stdout.splitlines() if "samples/s" in x]
    assert [r[0] for r in rows] == ["2/bpe:1000/384", "4/bpe:1000:2/192"] and all(float(r[1]) > 0 for r in rows)


def test_step_profile_splits_the_step_and_times_both_attentions(tiny_synth):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "research" / "step_profile.py"      # own process, as above
    run = subprocess.run([sys.executable, str(script), "--data", str(tiny_synth), "--steps", "2", "--batches", "2",
                          "--rounds", "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    split = [x for x in lines if x.startswith("  ") and x.endswith(" ms") and "mean" not in x]
    assert {x.rsplit(None, 2)[0].strip() for x in split} >= {"matrix products, elsewhere",
                                                             "element-wise and other, attention scores"}
    ab = [x.split() for x in lines if "mean" in x]
    assert len(ab) == 2 and all(float(r[r.index("mean") + 1]) > 0 for r in ab)

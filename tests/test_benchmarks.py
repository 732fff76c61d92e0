"""The GPU suite's dry run: tiny shapes on the CPU, so the script cannot rot between GPU sessions."""

import json

import pytest
import torch

from benchmarks import gpu_suite


@pytest.fixture(scope="module")
def tokenizer():
    return gpu_suite.paper_tokenizer(2000)


def test_gpu_suite_dry_run_measures_every_configuration(tmp_path):
    assert gpu_suite.main(["--dry-run", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert data["meta"]["dry_run"] and data["meta"]["peak_flops"]["measured"] > 0 and data["skipped"] == []
    got = {(r["llm"], r["micro_batch"], r["gradient_checkpointing"]) for r in data["train"]}
    assert got == {(llm, mb, ck) for llm in ("llama-3.1-8b", "llama-3.2-1b") for mb in (1, 2) for ck in (False, True)}
    for r in data["train"]:
        assert r["steps_per_s"] > 0 and r["samples_per_s"] == pytest.approx(r["micro_batch"] * r["steps_per_s"])
        assert 0 < r["mfu_measured"] < 1 and r["model_flops"] > 0
    d = data["decode"]
    assert d["keypoints"] == 17 and d["grammar_slots"] == 4          # digits in groups of 3, as Llama 3
    assert d["engine_parsed"] == 1.0 and d["big_batch_parsed"] == 1.0
    assert d["split_seconds"] == pytest.approx(2000 * d["big_batch_ms_per_instance"] / 1000)
    log = (tmp_path / "gpu_suite.log").read_text()
    assert log.count("[train") == 10 and "[decode] batch 1" in log and "done in" in log


def test_gpu_suite_stops_starting_work_at_its_budget(tmp_path):
    assert gpu_suite.main(["--dry-run", "--out", str(tmp_path), "--budget-s", "0"]) == 0
    data = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert data["train"] == [] and data["decode"] == {}
    assert [s["section"] for s in data["skipped"]] == ["train8b", "decode", "train1b"]


def test_gpu_suite_model_trains_float32_adapters_on_bf16_bases(tokenizer):
    model = gpu_suite.build(gpu_suite.TINY["llm"], gpu_suite.TINY["vision"], tokenizer, torch.device("cpu"),
                            lora=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or n.startswith("projector.") for n in trainable)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}


def test_gpu_suite_model_flops_match_torch_flop_counter(tokenizer):
    """The dense and output-head parts of the model FLOPs equal what torch's counter counts for a
    forward and backward pass (it counts no SDPA attention on the CPU, nor the adapters apart)."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = {**gpu_suite.TINY["llm"], "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4}
    model = gpu_suite.build(shape, gpu_suite.TINY["vision"], tokenizer, torch.device("cpu"), lora=True).train()
    batch = gpu_suite.synthetic_batch(model, 2, 120, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        loss.backward()
    flops = gpu_suite.train_flops(model, 2, 120)
    assert flops["total"] == flops["dense"] + flops["attention"] + flops["head"]
    assert counter.get_total_flops() == pytest.approx(flops["dense"] + flops["head"], rel=0.03)
    assert gpu_suite.train_flops(model, 4, 120)["total"] == 2 * flops["total"]


def test_gpu_suite_records_a_failing_section_and_runs_the_others(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(gpu_suite, "decode_section", broken)
    assert gpu_suite.main(["--dry-run", "--out", str(tmp_path), "--sections", "decode,train1b"]) == 0
    data = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert [e["section"] for e in data["errors"]] == ["decode"] and "illegal memory access" in data["errors"][0]["error"]
    assert {r["llm"] for r in data["train"]} == {"llama-3.2-1b"} and len(data["train"]) == 4

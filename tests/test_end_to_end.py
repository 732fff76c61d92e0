"""End to end through the command line, in-process: train a few steps on a generated data set,
checkpoint, resume, evaluate PCK, predict on an image."""

from __future__ import annotations

import json

import pytest

from capellm.cli import main


def _train(data, out, steps, *extra):
    return main(["train", "--preset", "tiny", "--data.train_file", str(data["ann"]),
                 "--data.image_root", str(data["images"]), "--data.categories", str(data["categories"]),
                 "--train.out_dir", str(out), "--train.max_steps", str(steps), "--train.save_every", "2",
                 *extra])


def test_train_resume_eval_predict(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_data, out, 4) == 0
    assert (out / "model" / "config.yaml").exists()
    assert (out / "run_config.yaml").exists()
    # resume with a longer budget continues from step 4
    assert _train(tiny_data, out, 6, "--resume", "--data.val_file", str(tiny_data["ann"])) == 0
    log = [json.loads(x) for x in (out / "train.log").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((out / "metrics_val.json").read_text())
    assert metrics["overall"]["instances"] == 12
    assert set(metrics["per_category"]) == {"triangle", "star"}
    assert 0.0 <= metrics["overall"]["mPCK"] <= 1.0

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "model"), "--ann", str(tiny_data["ann"]),
                 "--image-root", str(tiny_data["images"]), "--categories", str(tiny_data["categories"]),
                 "--out", str(tmp_path / "m.json"), "--eval.mode", "multi"]) == 0
    table = capsys.readouterr().out
    assert "PCK@0.2" in table and "overall" in table
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["mode"] == "multi" and m["decode"] == "both"            # capellm eval's default
    assert set(m["by_decoding"]) == {"grammar", "official"}
    assert m["by_decoding"]["grammar"]["overall"] == m["overall"]
    assert m["by_decoding"]["official"]["unparsed_answers"] == 0      # the authors' parser never fails
    assert "decoding: official" in table
    # the predictions in the COCO keypoint results format load in pycocotools as results
    from pycocotools.coco import COCO

    for decoding in ("grammar", "official"):
        res_file = tmp_path / f"m_{decoding}_coco_results.json"
        records = json.loads(res_file.read_text())
        assert len(records) == 12 and all(len(r["keypoints"]) % 3 == 0 for r in records)
        gt = COCO(str(tiny_data["ann"]))
        res = gt.loadRes(str(res_file))
        assert len(res.getAnnIds()) == 12 and set(res.getImgIds()) <= set(gt.getImgIds())

    assert main(["predict", "--checkpoint", str(out / "model"), "--image", str(tiny_data["images"] / "star" / "1.png"),
                 "--category", str(tiny_data["categories"] / "star.yaml"), "--box", "5,5,40,40",
                 "--out", str(tmp_path / "p.json")]) == 0
    pred = json.loads((tmp_path / "p.json").read_text())
    assert [k["name"] for k in pred["keypoints"]] == [f"tip {i}" for i in range(5)]
    for k in pred["keypoints"]:
        assert (k["x"] is None) == ("missing" in k)


def test_cli_reports_bad_input_clearly(tiny_data, tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--data.train_file", str(tiny_data["ann"]),
                 "--train.lr", "-1"]) == 2
    assert "train.lr" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: thing\nkeypoints:\n  - name: a\n  - name: a\n")
    assert main(["predict", "--checkpoint", str(tmp_path), "--image", "x.png", "--category", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "keypoints[1]" in err
    with pytest.raises(SystemExit):
        main(["train", "--preset", "tiny"])  # no data.train_file: argparse error


def test_every_command_names_itself_in_its_help(capsys):
    from capellm.cli import COMMANDS

    for command in COMMANDS:
        if command == "data":
            assert main([command, "--help"]) == 0
            assert "usage: capellm data synth" in capsys.readouterr().out
            continue
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        assert f"usage: capellm {command}" in capsys.readouterr().out


def test_without_a_preset_train_and_config_mean_the_paper_not_a_toy(capsys):
    """A forgotten --preset never trains the tiny test model: the default is the paper's configuration."""
    import yaml

    from capellm.config import preset, to_dict

    assert main(["config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == to_dict(preset("paper-l"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default: paper-l)" in capsys.readouterr().out

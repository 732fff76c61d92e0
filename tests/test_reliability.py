"""Bad input and faults, as a hostile user would bring them: every case gets one line naming the
file or field and the documented exit code, and leaves the inputs and earlier results exactly as
they were (hashed before and after). docs/reliability.md lists the promises these cases test."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_dataset
from PIL import Image

from capellm.cli import main


# ---------------------------------------------------------------------------------------------
# helpers


def digest(*paths) -> dict:
    """sha256 of every file under the given paths (files or folders)."""
    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def refused(capsys, argv, code=2, says=()):
    """Run `capellm argv` in-process; it must exit `code` with one error line containing `says`."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("capellm ")]
    assert len(lines) == 1 and ": error: " in lines[0], err
    for s in (says if isinstance(says, (list, tuple)) else [says]):
        assert s in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def data(tmp_path):
    return make_tiny_dataset(tmp_path / "data")


def train_args(data, out, steps=2, *extra):
    return ["train", "--preset", "tiny", "--data.train_file", str(data["ann"]), "--data.image_root",
            str(data["images"]), "--data.categories", str(data["categories"]), "--train.out_dir", str(out),
            "--train.max_steps", str(steps), "--train.save_every", "2", *extra]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = make_tiny_dataset(tmp_path_factory.mktemp("ckdata"))
    out = tmp_path_factory.mktemp("ckrun")
    assert main(train_args(d, out, 2)) == 0
    return out / "model"


def eval_args(ckpt, data, *extra):
    return ["eval", "--checkpoint", str(ckpt), "--ann", str(data["ann"]), "--image-root", str(data["images"]),
            "--categories", str(data["categories"]), "--decode", "grammar", *extra]


def edit_annotations(data, change):
    ann = json.loads(Path(data["ann"]).read_text())
    change(ann)
    Path(data["ann"]).write_text(json.dumps(ann))


# ---------------------------------------------------------------------------------------------
# data loss and wrong results


def test_synth_never_replaces_data_it_did_not_make(tmp_path, capsys):
    real = tmp_path / "mp100"
    (real / "annotations").mkdir(parents=True)
    (real / "images" / "horse").mkdir(parents=True)
    (real / "annotations" / "mp100_split1_test.json").write_text('{"real": true}')
    Image.new("RGB", (8, 8)).save(real / "images" / "horse" / "1.jpg")
    before = digest(real)
    refused(capsys, ["data", "synth", "--out", str(real), "--tiny"], says=["did not make", "nothing was changed"])
    assert digest(real) == before


def test_train_does_not_mix_runs(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(data, out, 2)) == 0
    before = digest(out)
    refused(capsys, train_args(data, out, 2), says=["holds an earlier run", "--resume", "--overwrite"])
    assert digest(out) == before
    # a changed learning rate or model shape on resume: refused, the run's record untouched
    refused(capsys, train_args(data, out, 4, "--resume", "--train.lr", "0.05"), says="train.lr: 0.001 -> 0.05")
    refused(capsys, train_args(data, out, 4, "--resume", "--model.llm.random_config",
                               '{"model_type": "llama", "hidden_size": 32}'), says="model.llm.random_config")
    assert digest(out) == before
    # a longer budget is allowed; --overwrite replaces the run
    assert main(train_args(data, out, 4, "--resume")) == 0
    assert main(train_args(data, out, 2, "--overwrite")) == 0
    assert [json.loads(x)["step"] for x in (out / "train.log").read_text().splitlines()] == [1, 2]


def test_two_runs_into_one_folder_refuse_the_second(data, tmp_path, capsys):
    from capellm.checkpoint import RunLock

    out = tmp_path / "run"
    with RunLock(out):                       # a run in progress holds the folder
        refused(capsys, train_args(data, out, 2), says="another run is writing into this folder")
    assert not (out / "run_config.yaml").exists()


def test_outputs_never_overwrite_inputs(checkpoint, data, tmp_path, capsys):
    img = data["images"] / "star" / "0.png"
    cat = data["categories"] / "star.yaml"
    before = digest(data["root"], checkpoint)
    base = ["predict", "--checkpoint", str(checkpoint), "--category", str(cat)]
    refused(capsys, base + ["--image", str(img), "--vis", str(img)], says="would overwrite the input")
    refused(capsys, base + ["--image", str(img), "--out", str(img)], says="would overwrite the input")
    refused(capsys, base + ["--image", str(img.parent), "--vis", str(img.parent)], says="is the image folder")
    refused(capsys, eval_args(checkpoint, data, "--out", str(data["ann"])), says="would overwrite the input")
    assert digest(data["root"], checkpoint) == before
    # two images with the same stem get a picture each
    folder = tmp_path / "same_stem"
    folder.mkdir()
    shutil.copy(img, folder / "a.png")
    Image.open(img).convert("RGB").save(folder / "a.jpg")
    assert main(base + ["--image", str(folder), "--vis", str(tmp_path / "vis")]) == 0
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["a.jpg.png", "a.png.png"]


def test_a_diverging_run_stops_before_saving_and_predict_stays_valid_json(data, tmp_path, capsys, monkeypatch,
                                                                         checkpoint):
    from capellm.model.capellm import CapeLLM

    real = CapeLLM.forward

    def nan_after_first(self, batch):
        out = real(self, batch)
        nan_after_first.calls += 1
        return {**out, "loss": out["loss"] * float("nan")} if nan_after_first.calls > 2 else out
    nan_after_first.calls = 0
    monkeypatch.setattr(CapeLLM, "forward", nan_after_first)
    out = tmp_path / "nan"
    refused(capsys, train_args(data, out, 4, "--train.save_every", "1"), says=["the loss is nan at step 3",
                                                                               "step-000002"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    assert not (out / "model").exists()
    monkeypatch.setattr(CapeLLM, "forward", real)
    # a model with NaN weights: predict prints valid JSON (null confidence), never NaN
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    from safetensors.torch import load_file, save_file

    w = load_file(str(broken / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in w.items()}, str(broken / "model.safetensors"))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(broken), "--image", str(data["images"] / "star" / "0.png"),
                 "--category", str(data["categories"] / "star.yaml")]) == 0
    doc = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert all(k["confidence"] is None for k in doc["keypoints"])


def test_category_file_must_name_the_annotations_keypoints_in_order(checkpoint, data, capsys):
    star = data["categories"] / "star.yaml"
    text = star.read_text()
    star.write_text(text.replace("tip 0", "tip X").replace("tip 1", "tip 0").replace("tip X", "tip 1"))  # swap
    refused(capsys, eval_args(checkpoint, data), says=["keypoints[0] is 'tip 1'", "names keypoint 0 'tip 0'"])
    star.write_text(text.replace("tip 2", "third tip"))                                                 # rename
    refused(capsys, eval_args(checkpoint, data), says="'third tip'")
    star.write_text(text)
    assert main(eval_args(checkpoint, data, "--eval.max_instances", "2")) == 0


def test_wrong_sizes_empty_files_and_zero_budgets(checkpoint, data, tmp_path, capsys):
    before = digest(data["root"])
    refused(capsys, eval_args(checkpoint, data, "--eval.max_instances", "0"), says="eval.max_instances")
    refused(capsys, train_args(data, tmp_path / "r", 0), says="train.max_steps")
    edit_annotations(data, lambda a: a["images"][0].update(width=128))
    refused(capsys, eval_args(checkpoint, data), says=["images are wrong size", "annotation says 128x64"])
    edit_annotations(data, lambda a: a.update(annotations=[]))
    refused(capsys, eval_args(checkpoint, data), says="no instance to use")
    assert before.keys() == digest(data["root"]).keys()


def test_a_prompt_longer_than_the_llm_is_refused(checkpoint, data, capsys):
    triangle = data["categories"] / "triangle.yaml"
    triangle.write_text(triangle.read_text().replace("The top corner of the triangle.", "very far " * 5000))
    refused(capsys, eval_args(checkpoint, data, "--eval.max_instances", "2"), says=["more than the LLM's",
                                                                                   "shorten its description"])


# ---------------------------------------------------------------------------------------------
# runs that die late


def test_missing_images_are_found_before_the_model_loads(checkpoint, data, tmp_path, capsys, monkeypatch):
    from capellm.model.capellm import CapeLLM

    monkeypatch.setattr(CapeLLM, "from_pretrained", lambda *a, **k: pytest.fail("model loaded before the check"))
    args = eval_args(checkpoint, data)
    args[args.index("--image-root") + 1] = str(tmp_path)
    refused(capsys, args, says=["images are missing", "--image-root"])
    refused(capsys, ["train", "--preset", "tiny", "--data.train_file", str(data["ann"]), "--data.categories",
                     str(data["categories"]), "--train.out_dir", str(tmp_path / "r")],
            says=["images are missing", "--data.image_root", "--data.only_present"])


def truncated_jpeg(path: Path) -> None:
    """A JPEG (under the file's own name) cut short: its header passes the check before a run,
    which does not decode, but decoding fails."""
    import io

    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_an_image_that_fails_mid_run_is_left_out_not_fatal(checkpoint, data, tmp_path, capsys):
    bad = data["images"] / "star" / "1.png"
    truncated_jpeg(bad)
    out = tmp_path / "m.json"
    assert main(eval_args(checkpoint, data, "--out", str(out))) == 0
    m = json.loads(out.read_text())
    assert len(m["failed_instances"]) == 1 and m["overall"]["instances"] == 11
    assert main(train_args(data, tmp_path / "run", 6)) == 0                 # training skips it, too


# ---------------------------------------------------------------------------------------------
# nobody in


def test_resume_never_unpickles(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(data, out, 2)) == 0
    step = out / "checkpoints" / "step-000002"
    for f in ("trainer_state.json", "optimizer.safetensors"):
        (step / f).unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))
    torch.save({"x": Evil()}, step / "trainer_state.pt")
    refused(capsys, train_args(data, out, 4, "--resume"), says=["trainer_state.pt is a pickle", "not loaded"])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "a/../../outside.png"])
def test_file_names_stay_inside_the_image_root(checkpoint, data, capsys, name):
    edit_annotations(data, lambda a: a["images"][0].update(file_name=name))
    refused(capsys, eval_args(checkpoint, data), says=["leads outside the image root", "data.allow_outside_root"])


# ---------------------------------------------------------------------------------------------
# one line instead of a traceback


@pytest.mark.parametrize("change,says", [
    (lambda p: p.write_text("{not json"), "not valid JSON"),
    (lambda p: p.write_text(json.dumps({"annotations": [], "categories": []})), "'images' is missing"),
    (lambda p: edit_annotations({"ann": p}, lambda a: a["annotations"][0].update(keypoints=[1, 2])),
     "field 'keypoints' has 2 values"),
    (lambda p: p.write_text(p.read_text().replace('"keypoints": [', '"keypoints": [NaN, ', 1)), "keypoints"),
    (lambda p: edit_annotations({"ann": p}, lambda a: a["annotations"][0].update(category_id=99)),
     "'category_id' = 99"),
    (lambda p: edit_annotations({"ann": p}, lambda a: a["images"].append(dict(a["images"][0]))),
     "duplicates an earlier image id"),
])
def test_bad_annotation_files(checkpoint, data, capsys, change, says):
    change(Path(data["ann"]))
    refused(capsys, eval_args(checkpoint, data), says=[str(data["ann"]), says])


def test_bad_checkpoints(checkpoint, data, tmp_path, capsys):
    base = eval_args(checkpoint, data)
    ckpt_at = base.index(str(checkpoint))

    def with_checkpoint(folder):
        return base[:ckpt_at] + [str(folder)] + base[ckpt_at + 1:]
    trunc = tmp_path / "truncated"
    shutil.copytree(checkpoint, trunc)
    w = trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    refused(capsys, with_checkpoint(trunc), says=["model.safetensors", "truncated or damaged"])
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    cfg = other / "config.yaml"
    cfg.write_text(cfg.read_text().replace("hidden_size: 64", "hidden_size: 32", 1))
    refused(capsys, with_checkpoint(other), says="has shape")
    notok = tmp_path / "notok"
    shutil.copytree(checkpoint, notok)
    shutil.rmtree(notok / "tokenizer")
    refused(capsys, with_checkpoint(notok), says="no tokenizer")


@pytest.mark.parametrize("extra,says", [
    (["--device", "banana"], "--device: 'banana'"),
    (["--device", "cuda"], "--device cuda"),
    (["--eval.batch_size", "0"], "eval.batch_size"),
])
def test_bad_eval_flags(checkpoint, data, capsys, extra, says):
    if extra[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refused(capsys, eval_args(checkpoint, data, *extra), says=says)


@pytest.mark.parametrize("extra,says", [
    (["--train.lr", "nan"], "train.lr"),
    (["--train.num_workers", "-1"], "train.num_workers"),
])
def test_bad_train_flags(data, tmp_path, capsys, extra, says):
    refused(capsys, train_args(data, tmp_path / "r", 2, *extra), says=says)


def test_bad_config_file_and_run_folder(data, tmp_path, capsys):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- train\n- lr\n")
    refused(capsys, train_args(data, tmp_path / "r", 2, "--config", str(cfg)), says=[str(cfg), "a mapping"])
    file_out = tmp_path / "a_file"
    file_out.write_text("mine")
    refused(capsys, train_args(data, file_out, 2), says="is a file")
    assert file_out.read_text() == "mine"


def test_pairs_protocol_on_too_few_instances(checkpoint, data, capsys):
    refused(capsys, eval_args(checkpoint, data, "--protocol", "pairs"), says="fewer than the 16")


def test_a_full_disk_is_one_line_and_leaves_no_partial_picture(checkpoint, data, tmp_path, capsys, monkeypatch):
    import errno
    import os

    real = os.fdopen

    def full(fd, *a, **k):
        f = real(fd, *a, **k)

        def write(_):
            raise OSError(errno.ENOSPC, "No space left on device")
        f.write = write
        return f
    monkeypatch.setattr(os, "fdopen", full)
    vis = tmp_path / "pic.png"
    refused(capsys, ["predict", "--checkpoint", str(checkpoint), "--image", str(data["images"] / "star" / "0.png"),
                     "--category", str(data["categories"] / "star.yaml"), "--vis", str(vis)],
            says="No space left on device")
    assert not vis.exists() and not list(tmp_path.glob(".pic.png*"))

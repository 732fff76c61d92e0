"""`capellm report` (capellm/report.py): metrics files of the five splits -> Table 2 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capellm.cli import main
from capellm.report import ReportError, collect, markdown, setting_of, split_of


def _write(path: Path, split: int, pck: float, mpck: float, shots: int | None = None) -> Path:
    r = {"overall": {"PCK@0.2": pck, "mPCK": mpck, "instances": 2000},
         "annotation_file": f"/data/mp100/annotations/mp100_split{split}_test.json",
         "protocol": "every instance, no supports"}
    if shots:
        r.update(protocol=f"support-query pairs, {shots}-shot", shots=shots)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    return path


def test_split_and_setting_are_read_from_the_file():
    assert split_of({"annotation_file": "a/mp100_split4_test.json"}, "x.json") == 4
    assert split_of({}, "runs/split2/metrics.json") == 2  # fallback: the metrics file's path
    with pytest.raises(ReportError, match="cannot tell the split"):
        split_of({"annotation_file": "test.json"}, "metrics.json")
    assert setting_of({"protocol": "every instance, no supports"}) == "query only"
    assert setting_of({"protocol": "support-query pairs, 5-shot", "shots": 5}) == "pairs, 5-shot"


def test_averages_the_five_splits(tmp_path, capsys):
    q = [0.90, 0.92, 0.91, 0.93, 0.89]        # mean 0.91   -> 91.00
    p1 = [0.925, 0.93, 0.92, 0.935, 0.915]    # mean 0.925  -> 92.50
    files = []
    for s in (3, 1, 5, 2, 4):                 # order of the arguments does not matter
        files.append(_write(tmp_path / f"s{s}" / "q.json", s, q[s - 1], q[s - 1] - 0.2))
        files.append(_write(tmp_path / f"s{s}" / "p.json", s, p1[s - 1], 0.7, shots=1))
    table = collect(files)
    assert set(table) == {"query only", "pairs, 1-shot"}
    md = markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("| CapeLLM")]
    # PCK@0.2 table first: query only row first, then pairs
    assert rows[0] == "| CapeLLM (ours) | query only | 90.00 | 92.00 | 91.00 | 93.00 | 89.00 | 91.00 |"
    assert rows[1] == "| CapeLLM (ours) | pairs, 1-shot | 92.50 | 93.00 | 92.00 | 93.50 | 91.50 | 92.50 |"
    assert rows[2] == "| CapeLLM (ours) | query only | 70.00 | 72.00 | 71.00 | 73.00 | 69.00 | 71.00 |"  # mPCK
    out = tmp_path / "table.md"
    assert main(["report", "--metrics", *map(str, files), "--out", str(out), "--paper"]) == 0
    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    assert "| Split1 | Split2 | Split3 | Split4 | Split5 | Mean |" in text and "92.60" in text


def test_missing_splits_are_flagged_and_duplicates_refused(tmp_path, capsys):
    a = _write(tmp_path / "a.json", 1, 0.90, 0.6)
    b = _write(tmp_path / "b.json", 2, 0.80, 0.5)
    md = markdown(collect([a, b]))
    assert "| 90.00 | 80.00 |  |  |  | 85.00 (2 splits) |" in md
    c = _write(tmp_path / "c.json", 1, 0.70, 0.4)
    with pytest.raises(ReportError, match="split 1 .* also given by"):
        collect([a, c])
    assert main(["report", "--metrics", str(a), str(c)]) == 2
    assert "also given by" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", "--metrics", str(bad)]) == 2


def test_each_decoding_of_a_file_is_a_row_of_its_own(tmp_path):
    """`capellm eval --decode both` files hold the grammar's and the authors' decoding side by side."""
    files = []
    for s in (1, 2):
        r = {"overall": {"PCK@0.2": 0.9, "mPCK": 0.7}, "decode": "both",
             "annotation_file": f"mp100_split{s}_test.json", "protocol": "every instance, no supports",
             "by_decoding": {"grammar": {"overall": {"PCK@0.2": 0.9, "mPCK": 0.7}},
                             "official": {"overall": {"PCK@0.2": 0.8 + s / 100, "mPCK": 0.6}}}}
        files.append(tmp_path / f"s{s}.json")
        files[-1].write_text(json.dumps(r))
    table = collect(files)
    assert set(table) == {"query only, grammar decoding", "query only, official decoding"}
    assert [table["query only, official decoding"][s]["PCK@0.2"] for s in (1, 2)] == pytest.approx([0.81, 0.82])
    assert setting_of({"decode": "official"}) == "query only, official decoding"

"""PCK / mPCK (capellm/metrics.py) against values computed by hand (../shared/mp100/README.md):
correct iff ||pred - gt|| / max(box_w, box_h) < thr (strictly), labelled keypoints only, an instance
with nothing counted scores 0, NaN is wrong, the mean is over instances."""

from __future__ import annotations

import numpy as np
import pytest

from capellm.metrics import THRESHOLDS, PCKAccumulator, format_table, instance_pck

NAN = float("nan")


def test_thresholds_are_the_mpck_ones():
    assert THRESHOLDS == (0.05, 0.10, 0.15, 0.20, 0.25)


@pytest.mark.parametrize("bbox", [[0, 0, 25, 10], [7, 9, 10, 25]], ids=["w-longer", "h-longer"])
def test_strict_inequality_at_the_boundary(bbox):
    # 3-4-5 triangle: distance 5; max(w, h) = 25 -> 5 / 25 = 0.2 exactly (also in binary floating
    # point: both are the double nearest 0.2). 0.2 < 0.2 is false, 0.2 < 0.25 is true.
    gt = np.array([[10.0, 10.0]])
    pred = np.array([[13.0, 14.0]])
    mask = np.array([True])
    assert instance_pck(pred, gt, mask, bbox, 0.2) == 0.0
    assert instance_pck(pred, gt, mask, bbox, 0.25) == 1.0
    assert instance_pck(gt, gt, mask, bbox, 0.05) == 1.0  # exact hit: 0 < 0.05


def test_normalised_by_longer_box_side():
    # distance 5 (3-4-5); box 20 x 50 at an offset that must not matter.
    #   max(w, h) = 50 -> 5 / 50 = 0.100: correct at 0.15, not at 0.10 (strict) nor 0.05
    #   (by w = 20 it would be 0.25, wrong at 0.15; by the diagonal sqrt(2900) = 53.85 it would be
    #   0.0928, correct at 0.10)
    gt = np.array([[110.0, 220.0]])
    pred = np.array([[113.0, 216.0]])
    bbox = [100.0, 200.0, 20.0, 50.0]
    mask = np.array([True])
    got = [instance_pck(pred, gt, mask, bbox, t) for t in (0.05, 0.10, 0.15)]
    assert got == [0.0, 0.0, 1.0]


def test_only_masked_keypoints_count():
    # norm = max(100, 40) = 100, thr 0.1 -> correct iff distance < 10
    gt = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0]])
    pred = gt + np.array([[1.0, 0.0],     # d = 1   -> correct, counted
                          [0.0, 9.0],     # d = 9   -> correct, counted
                          [50.0, 0.0],    # d = 50  -> wrong, NOT counted
                          [30.0, 40.0]])  # d = 50  -> wrong, counted
    mask = np.array([True, True, False, True])
    # 2 correct of 3 counted = 2/3
    assert instance_pck(pred, gt, mask, [0, 0, 100, 40], 0.1) == pytest.approx(2 / 3)
    # the same with the far-off unlabelled point labelled: 2 of 4 = 0.5
    assert instance_pck(pred, gt, np.ones(4, bool), [0, 0, 100, 40], 0.1) == pytest.approx(0.5)


def test_instance_with_nothing_counted_scores_zero():
    gt = np.array([[10.0, 10.0], [20.0, 20.0]])
    # perfect predictions, but no keypoint counts -> 0 (reference code), not NaN and not 1
    assert instance_pck(gt, gt, np.zeros(2, bool), [0, 0, 50, 50], 0.2) == 0.0


def test_nan_prediction_counts_as_wrong():
    gt = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    pred = np.array([[10.0, 10.0],   # exact -> correct
                     [NAN, NAN],     # missing -> wrong
                     [NAN, 30.0]])   # half missing -> wrong
    # 1 correct of 3 counted
    assert instance_pck(pred, gt, np.ones(3, bool), [0, 0, 50, 50], 0.25) == pytest.approx(1 / 3)
    # a NaN on an unlabelled keypoint changes nothing: 1 of 1
    assert instance_pck(pred, gt, np.array([True, False, False]), [0, 0, 50, 50], 0.25) == 1.0


def test_accumulator_mean_over_instances_not_keypoints():
    acc = PCKAccumulator(thresholds=(0.2,))
    bbox = [0, 0, 100, 100]  # thr 0.2 -> correct iff distance < 20
    # instance A: 1 of 1 correct -> 1.0
    acc.add("c", np.array([[5.0, 5.0]]), np.array([[0.0, 0.0]]), np.array([True]), bbox)
    # instance B: 1 of 4 correct -> 0.25
    gt = np.zeros((4, 2))
    pred = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [30.0, 40.0]])
    acc.add("c", pred, gt, np.ones(4, bool), bbox)
    r = acc.result()
    # over instances: (1.0 + 0.25) / 2 = 0.625; over keypoints it would be 2 / 5 = 0.4
    assert r["overall"]["PCK@0.2"] == pytest.approx(0.625)
    assert r["overall"]["instances"] == 2


def test_mpck_is_the_mean_over_thresholds():
    acc = PCKAccumulator()
    # distance 12 (pred 12 px right), norm = max(100, 80) = 100 -> 0.12:
    # wrong at 0.05, 0.10; correct at 0.15, 0.20, 0.25 -> PCKs [0, 0, 1, 1, 1], mPCK = 3 / 5 = 0.6
    acc.add("c", np.array([[12.0, 0.0]]), np.array([[0.0, 0.0]]), np.array([True]), [0, 0, 100, 80])
    o = acc.result()["overall"]
    assert [o[f"PCK@{t:g}"] for t in THRESHOLDS] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert set(o) == {"PCK@0.05", "PCK@0.1", "PCK@0.15", "PCK@0.2", "PCK@0.25", "mPCK", "instances"}
    assert o["mPCK"] == pytest.approx(0.6)


def _two_categories() -> PCKAccumulator:
    # thresholds 0.1 and 0.2 on a 100-px box: correct iff distance < 10 / < 20
    acc = PCKAccumulator(thresholds=(0.1, 0.2))
    gt = np.zeros((1, 2))
    one = np.array([True])
    bbox = [0, 0, 100, 50]
    acc.add("bird", np.array([[15.0, 0.0]]), gt, one, bbox)  # d = 0.15 -> @0.1: 0, @0.2: 1
    acc.add("bird", np.array([[90.0, 0.0]]), gt, one, bbox)  # d = 0.90 -> @0.1: 0, @0.2: 0
    acc.add("chair", np.array([[5.0, 0.0]]), gt, one, bbox)  # d = 0.05 -> @0.1: 1, @0.2: 1
    return acc


def test_per_category_overall_and_category_mean():
    r = _two_categories().result()
    assert set(r["per_category"]) == {"bird", "chair"}
    bird, chair = r["per_category"]["bird"], r["per_category"]["chair"]
    # bird: @0.1 (0 + 0) / 2 = 0, @0.2 (1 + 0) / 2 = 0.5, mPCK = (0 + 0.5) / 2 = 0.25
    assert (bird["PCK@0.1"], bird["PCK@0.2"], bird["mPCK"], bird["instances"]) == (0.0, 0.5, 0.25, 2)
    # chair: @0.1 1, @0.2 1, mPCK 1
    assert (chair["PCK@0.1"], chair["PCK@0.2"], chair["mPCK"], chair["instances"]) == (1.0, 1.0, 1.0, 1)
    # overall over the 3 instances: @0.1 1/3, @0.2 2/3, mPCK (1/3 + 2/3) / 2 = 0.5
    o = r["overall"]
    assert o["PCK@0.1"] == pytest.approx(1 / 3)
    assert o["PCK@0.2"] == pytest.approx(2 / 3)
    assert o["mPCK"] == pytest.approx(0.5)
    assert o["instances"] == 3
    # category mean, equal weight per category: @0.1 (0 + 1) / 2 = 0.5, @0.2 (0.5 + 1) / 2 = 0.75,
    # mPCK (0.25 + 1) / 2 = 0.625
    cm = r["category_mean"]
    assert cm["PCK@0.1"] == pytest.approx(0.5)
    assert cm["PCK@0.2"] == pytest.approx(0.75)
    assert cm["mPCK"] == pytest.approx(0.625)


def test_category_keys_become_strings():
    acc = PCKAccumulator(thresholds=(0.2,))
    acc.add(7, np.zeros((1, 2)), np.zeros((1, 2)), np.array([True]), [0, 0, 10, 10])
    assert list(acc.result()["per_category"]) == ["7"]


def test_empty_accumulator():
    r = PCKAccumulator().result()
    assert r == {"overall": {}, "per_category": {}, "category_mean": {}}
    assert "overall" not in format_table(r)


def test_format_table_rows():
    r = _two_categories().result()
    table = format_table(r, thresholds=(0.1, 0.2), title="split 1")
    lines = table.splitlines()
    assert lines[0] == "split 1"
    header = lines[1].split()
    assert header == ["category", "n", "PCK@0.1", "PCK@0.2", "mPCK"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    # values in percent with 2 decimals, as computed in test_per_category_overall_and_category_mean
    assert rows["bird"] == ["2", "0.00", "50.00", "25.00"]
    assert rows["chair"] == ["1", "100.00", "100.00", "100.00"]
    assert rows["overall"] == ["3", "33.33", "66.67", "50.00"]
    assert lines[-1].startswith("overall")  # the overall row comes after the categories

"""Support-query pairs (capellm/data/episodes.py) and their PCK (capellm.evaluate.evaluate_pairs):
the pairs pinned on a real MP-100 test file, the construction's invariants, the mask (query AND
every support), and pair-protocol PCK against values computed by hand."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from capellm.data.coco import Instance, KeypointDataset, load_keypoint_dataset
from capellm.data.episodes import (
    EPISODES,
    QUERIES,
    Pair,
    build_pairs,
    pair_mask,
    pairs_digest,
)
from capellm.evaluate import evaluate_pairs, score_pairs

MP100 = Path(__file__).resolve().parents[2] / "shared" / "mp100"
SPLIT1_TEST = MP100 / "annotations" / "mp100_split1_test.json"
THR = (0.05, 0.10, 0.15, 0.20, 0.25)


@pytest.fixture(scope="module")
def split1_test():
    if not SPLIT1_TEST.exists():
        pytest.skip(f"{SPLIT1_TEST} not available")
    return load_keypoint_dataset(SPLIT1_TEST)


# ---------------------------------------------------------------------------------------------
# The pairs of a real test file, pinned.
#
# These values are OUR output. They were cross-checked once (not in this suite) against an
# independent re-typing of the reference's `make_paired_samples` (random.seed(1), np.random.seed(0),
# random.sample over cat2obj built by pycocotools 2.0.11's COCO index with the reference's skip
# rules), on all ten val/test files of ../shared and for 1 and 5 shots: every pair identical, in the
# same order. They were NOT compared with pair lists produced by running the reference code itself
# (mmpose is not installable here) nor with any published list; CPython 3.11.
# A change of digest means the pairs changed: the protocol would no longer match the literature.

SPLIT1_FIRST_CATEGORY = 10
SPLIT1_PINNED = {
    1: {"digest": "206ff6005a07618c0ec932a4e6d538bff8f3ddb4caba8fd81412b075af0369d7",
        "first": [((1000000001016037,), 1000000001016032),
                  ((1000000001016037,), 1000000001016013),
                  ((1000000001016037,), 1000000001016099)],
        "episode1_supports": (1000000001016054,),
        "labelled_pairs_keypoints": 845464},
    5: {"digest": "6e6462ae8ad840343704b605f842bfbc56b97ff40555db9642705a75590cb8dc",
        "first": [((1000000001016037, 1000000001016032, 1000000001016013, 1000000001016099, 1000000001016088),
                   1000000001015988),
                  ((1000000001016037, 1000000001016032, 1000000001016013, 1000000001016099, 1000000001016088),
                   1000000001016066),
                  ((1000000001016037, 1000000001016032, 1000000001016013, 1000000001016099, 1000000001016088),
                   1000000001015987)],
        "episode1_supports": (1000000001016063, 1000000001015987, 1000000001016009, 1000000001016068,
                              1000000001016064),
        "labelled_pairs_keypoints": 757771},
}


@pytest.mark.parametrize("shots", [1, 5])
def test_pairs_of_split1_test_are_pinned(split1_test, shots):
    ds = split1_test
    pin = SPLIT1_PINNED[shots]
    pairs = build_pairs(ds, shots)
    assert len(pairs) == 20 * EPISODES * QUERIES == 60_000
    ann = lambda i: ds.instances[i].ann_id  # noqa: E731
    assert pairs[0].category_id == SPLIT1_FIRST_CATEGORY == ds.category_ids()[0]
    assert [(tuple(ann(s) for s in p.supports), ann(p.query)) for p in pairs[:3]] == pin["first"]
    assert tuple(ann(s) for s in pairs[QUERIES].supports) == pin["episode1_supports"]
    assert sum(int(pair_mask(ds, p).sum()) for p in pairs) == pin["labelled_pairs_keypoints"]
    assert pairs_digest(ds, pairs) == pin["digest"]


def test_real_pairs_structure(split1_test):
    ds = split1_test
    shots = 5
    pairs = build_pairs(ds, shots)
    cats = [p.category_id for p in pairs]
    # categories in the file's order, each a contiguous block of 200 x 15 pairs
    assert list(dict.fromkeys(cats)) == ds.category_ids()
    assert all(cats.count(c) == EPISODES * QUERIES for c in ds.category_ids())
    for e in range(0, len(pairs), QUERIES):
        episode = pairs[e:e + QUERIES]
        assert len({p.supports for p in episode}) == 1 and len({p.episode for p in episode}) == 1
        members = list(episode[0].supports) + [p.query for p in episode]
        assert len(set(members)) == shots + QUERIES  # drawn without replacement
        assert {ds.instances[i].category_id for i in members} == {episode[0].category_id}


def test_loading_a_category_subset_changes_later_pairs(split1_test):
    # the random stream runs on across categories: the second category's pairs depend on the first
    full = build_pairs(split1_test, 1)
    second = split1_test.category_ids()[1]
    sub = load_keypoint_dataset(SPLIT1_TEST, category_ids=[second])
    alone = build_pairs(sub, 1)
    ann_full = [split1_test.instances[p.query].ann_id for p in full if p.category_id == second]
    assert ann_full != [sub.instances[p.query].ann_id for p in alone]


# ---------------------------------------------------------------------------------------------
# Hand-made data sets (no images needed: predictions are given)


def _inst(i: int, cat: int, kps, vis, bbox) -> Instance:
    return Instance(ann_id=100 + i, image_id=i, category_id=cat, file_name=f"c{cat}/{i}.jpg",
                    image_path=Path(f"/nonexistent/c{cat}/{i}.jpg"), width=200, height=200,
                    bbox=np.asarray(bbox, np.float32), keypoints=np.asarray(kps, np.float32),
                    visible=np.asarray(vis, bool))


def _dataset(instances, cats) -> KeypointDataset:
    k = {c: len(next(x for x in instances if x.category_id == c).visible) for c in cats}
    return KeypointDataset(path=Path("hand.json"), instances=instances,
                           categories={c: {"id": c, "name": f"cat{c}"} for c in cats}, num_keypoints=k)


def _uniform(n_per_cat: dict[int, int], k: int = 3) -> KeypointDataset:
    insts = []
    for c, n in n_per_cat.items():
        for _ in range(n):
            i = len(insts)
            vis = [(i + j) % 4 != 0 for j in range(k)]
            insts.append(_inst(i, c, [[10.0 + j, 20.0 + j] for j in range(k)], vis, [0, 0, 50, 50]))
    return _dataset(insts, list(n_per_cat))


def test_build_pairs_is_the_seeded_random_sample_stream():
    # the same draws as the reference loop, written out: seed 1 once, then per category in file
    # order, per episode, random.sample over that category's instances in load order
    ds = _uniform({7: 20, 3: 17, 5: 25})  # file order 7, 3, 5 (not sorted)
    shots, episodes, queries = 2, 4, 3
    random.seed(1)
    np.random.seed(0)
    expected = []
    for c in (7, 3, 5):
        members = [i for i, x in enumerate(ds.instances) if x.category_id == c]
        for e in range(episodes):
            s = random.sample(members, shots + queries)
            expected += [(c, e, tuple(s[:shots]), q) for q in s[shots:]]
    state = random.getstate()
    got = build_pairs(ds, shots, episodes=episodes, queries=queries)
    assert [(p.category_id, p.episode, p.supports, p.query) for p in got] == expected
    assert random.getstate() == state  # a private generator: global random state untouched
    assert build_pairs(ds, shots, episodes=episodes, queries=queries) == got  # deterministic


def test_too_small_category_is_an_error_unless_skipped():
    ds = _uniform({1: 20, 2: 15, 3: 20})
    with pytest.raises(ValueError, match=r"category 2 has 15 instances, fewer than the 16"):
        build_pairs(ds, 1)
    pairs = build_pairs(ds, 1, skip_small=True)
    assert {p.category_id for p in pairs} == {1, 3}
    # a skipped category draws nothing: category 3 gets what it would get right after category 1
    without = _uniform({1: 20, 3: 20})

    def positions(d, ps):  # each query's position within its category's list
        where = {id(x): j for members in d.by_category().values() for j, x in enumerate(members)}
        return [(p.category_id, where[id(d.instances[p.query])]) for p in ps]
    assert positions(ds, pairs) == positions(without, build_pairs(without, 1))
    with pytest.raises(ValueError, match="shots"):
        build_pairs(ds, 0)


# Hand-computed pair-protocol PCK.
#   category 1, K = 3:
#     i0: labels [T, T, F], box 100 x 50 (norm 100)
#     i1: labels [T, F, T], box 40 x 80  (norm 80); prediction: kp0 off by (6, 8) -> 10/80 = 0.125,
#         kp1 off by 500 (unlabelled in i1), kp2 exact
#     i2: labels [T, T, T], box 100 x 100 (norm 100); prediction: kp0 off by (3, 4) -> 5/100 = 0.05,
#         kp1 off by 500, kp2 off by (30, 40) -> 0.5
#   category 2, K = 2:  i3 labels [T, F], i4 labels [F, T]; perfect predictions
#   pairs and masks (query AND supports):
#     A: i0 -> i1   mask [T, F, F]  kp0 0.125         PCK@thr = [0, 0, 1, 1, 1]
#     B: i1 -> i2   mask [T, F, T]  kp0 0.05, kp2 0.5 PCK@thr = [0, .5, .5, .5, .5]  (0.05 < 0.05 false)
#     C: i0,i1 -> i2 (2-shot)  mask [T, F, F]  kp0 0.05          [0, 1, 1, 1, 1]
#     D: i3 -> i4   mask [F, F]  nothing counted -> 0            [0, 0, 0, 0, 0]
#   protocol 1 (query labels only) would score i1 as kp0 and kp2 -> [0, .5, 1, 1, 1]: the support
#   mask changes the result.

def _hand():
    gt1 = [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]
    insts = [
        _inst(0, 1, gt1, [1, 1, 0], [0, 0, 100, 50]),
        _inst(1, 1, gt1, [1, 0, 1], [0, 0, 40, 80]),
        _inst(2, 1, gt1, [1, 1, 1], [0, 0, 100, 100]),
        _inst(3, 2, [[5.0, 5.0], [9.0, 9.0]], [1, 0], [0, 0, 20, 20]),
        _inst(4, 2, [[5.0, 5.0], [9.0, 9.0]], [0, 1], [0, 0, 20, 20]),
    ]
    ds = _dataset(insts, [1, 2])
    g = np.asarray(gt1)
    preds = {1: g + [[6, 8], [500, 0], [0, 0]],
             2: g + [[3, 4], [500, 0], [30, 40]],
             4: np.asarray([[5.0, 5.0], [9.0, 9.0]])}
    pairs = [Pair(1, 0, (0,), 1), Pair(1, 1, (1,), 2), Pair(1, 2, (0, 1), 2), Pair(2, 0, (3,), 4)]
    return ds, preds, pairs


def test_pair_mask_is_query_and_every_support():
    ds, _, pairs = _hand()
    assert pair_mask(ds, pairs[0]).tolist() == [True, False, False]
    assert pair_mask(ds, pairs[1]).tolist() == [True, False, True]
    assert pair_mask(ds, pairs[2]).tolist() == [True, False, False]
    assert pair_mask(ds, pairs[3]).tolist() == [False, False]
    assert ds.instances[1].visible.tolist() == [True, False, True]  # not modified in place


def test_score_pairs_against_hand_computed_values():
    ds, preds, pairs = _hand()
    r = score_pairs(ds, pairs, preds, {1: "cat1", 2: "cat2"}, THR)
    a, b, c, d = [0, 0, 1, 1, 1], [0, .5, .5, .5, .5], [0, 1, 1, 1, 1], [0] * 5
    cat1 = np.mean([a, b, c], 0)
    overall = np.mean([a, b, c, d], 0)
    for j, t in enumerate(THR):
        assert r["per_category"]["cat1"][f"PCK@{t:g}"] == pytest.approx(cat1[j])
        assert r["per_category"]["cat2"][f"PCK@{t:g}"] == pytest.approx(0.0)
        assert r["overall"][f"PCK@{t:g}"] == pytest.approx(overall[j])
    assert r["overall"]["PCK@0.2"] == pytest.approx(0.625)
    assert r["overall"]["mPCK"] == pytest.approx(overall.mean())
    assert r["overall"]["instances"] == 4 and r["per_category"]["cat1"]["instances"] == 3
    assert r["category_mean"]["PCK@0.2"] == pytest.approx((cat1[3] + 0.0) / 2)


class _FakePrediction:
    def __init__(self, keypoints):
        self.keypoints = keypoints
        self.missing = {}


def test_evaluate_pairs_predicts_each_query_once(monkeypatch):
    import capellm.evaluate as ev
    from capellm.config import EvalConfig
    from capellm.data.categories import Category, Keypoint

    ds = _uniform({1: 20, 2: 22})
    rng = np.random.default_rng(0)
    truth = {i: x.keypoints + rng.normal(0, 3, x.keypoints.shape) for i, x in enumerate(ds.instances)}
    calls = []

    def fake_predict(model, instances, categories, batch_size, mode, progress=True, decoding=("grammar",)):
        idx = [ds.instances.index(x) for x in instances]
        calls.extend(idx)
        return {d: [_FakePrediction(truth[i]) for i in idx] for d in decoding}

    monkeypatch.setattr(ev, "predict_instances", fake_predict)
    cats = {c: Category(f"cat{c}", tuple(Keypoint(f"k{j}") for j in range(3)), id=c) for c in (1, 2)}
    r = evaluate_pairs(None, ds, cats, EvalConfig(), shots=1, progress=False)
    pairs = build_pairs(ds, 1)
    assert sorted(calls) == sorted({p.query for p in pairs})  # every query once, nothing else
    assert r["pairs"] == len(pairs) == 2 * EPISODES * QUERIES
    expected = score_pairs(ds, pairs, truth, {1: "cat1", 2: "cat2"}, THR)
    assert r["overall"] == expected["overall"] and r["per_category"] == expected["per_category"]
    assert r["shots"] == 1 and r["protocol"].startswith("support-query pairs")

    calls.clear()
    r = evaluate_pairs(None, ds, cats, EvalConfig(max_instances=5), shots=5, progress=False)
    assert calls and max(calls) < 5 and r["pairs"] == sum(p.query < 5 for p in build_pairs(ds, 5))


def test_cli_eval_pairs_protocol(tmp_path, capsys):
    from conftest import make_tiny_dataset

    from capellm.cli import main
    from capellm.config import preset
    from capellm.model.capellm import CapeLLM

    data = make_tiny_dataset(tmp_path / "data", n_images=16, size=32)
    ckpt = tmp_path / "ckpt"
    CapeLLM(preset("tiny").model).save_pretrained(ckpt)  # random weights: we test the plumbing
    out = tmp_path / "pairs.json"
    args = ["eval", "--checkpoint", str(ckpt), "--ann", str(data["ann"]), "--image-root", str(data["images"]),
            "--categories", str(data["categories"]), "--device", "cpu", "--eval.mode", "multi"]
    # pairs built from all 32 instances; only those whose query is among the first 20 are scored
    # (--eval.max_instances keeps the test fast; both categories have queries there)
    assert main(args + ["--protocol", "pairs", "--shots", "1", "--eval.max_instances", "20",
                        "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    data_ = load_keypoint_dataset(data["ann"], data["images"])
    expected = [p for p in build_pairs(data_, 1) if p.query < 20]
    assert r["pairs"] == len(expected) and r["shots"] == 1 and r["query_instances"] == len({p.query for p in expected})
    assert set(r["per_category"]) == {"triangle", "star"} and 0 <= r["overall"]["PCK@0.2"] <= 1
    with pytest.raises(SystemExit):
        main(args + ["--protocol", "pairs", "--shots", "0"])
    assert "--shots must be >= 1" in capsys.readouterr().err

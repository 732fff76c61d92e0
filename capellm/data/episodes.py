"""Support-query pairs: the MP-100 evaluation protocol of the support-based CAPE literature.

POMNet, CapeFormer, GraphCAPE/PoseAnything and CapeX evaluate on episodes: per test category,
200 episodes, each a random draw of `shots` support instances and 15 query instances of that
category; every query forms one pair with the episode's supports (20 x 200 x 15 = 60,000 pairs per
split file). A keypoint of a pair counts only if it is labelled in the query AND in every support.
CapeLLM needs no supports, but its paper reports this protocol too (Table 2, "Support-Query
Pairs"), so we rebuild exactly the same pairs and score our support-free predictions on them.

How the reference builds the pairs (read in the public repositories; our code is written anew):
  - luminxu/Pose-for-Everything `pomnet/datasets/datasets/mp100/transformer_dataset.py`,
    flyinglynx/CapeFormer `capeformer/datasets/datasets/mp100/test_dataset.py` and
    orhir/PoseAnything `models/datasets/datasets/mp100/test_dataset.py`, all identical here:
    `make_paired_samples()` calls `random.seed(1)` and `np.random.seed(0)`, then
        for cls in valid_class_ids:              # None in every test config -> coco.getCatIds()
            for _ in range(num_episodes):        # 200 in the test configs
                shots = random.sample(cat2obj[cls], num_shots + num_queries)   # queries: 15
                supports, queries = shots[:num_shots], shots[num_shots:]
                one pair (supports + [query]) per query, in that order
  - `cat2obj[cls]` lists the category's instances in load order: images in `getImgIds()` order
    (the JSON's), each image's annotations in JSON order, after the box-cleaning and skip rules.
    That is exactly `KeypointDataset.instances` / `by_category()` (capellm.data.coco).
    `getCatIds()` is the JSON's category order = `KeypointDataset.category_ids()`.
  - The mask: `TestBaseDataset._report_metric` (CapeFormer, PoseAnything; POMNet's
    `TransformerBaseDataset` likewise) ANDs the query's visibility with every support's.
  - The test `TestPoseDataset` (CapeFormer, PoseAnything) and POMNet's test dataset do NOT drop
    instances whose image file is missing (PoseAnything's training/val dataset does, with
    `os.path.exists`). So the published pairs are those of the full annotation file.

What matters for reproducing them, and what does not:
  - `random.seed(1)` matters, and it is set ONCE before the loop: the stream runs on across
    categories, so the pairs of a category depend on every earlier category (on its size, since
    `random.sample` may redraw). Reproducing the pairs of one category needs the whole file,
    loaded without a category filter. We use a private `random.Random(1)`, which draws the same
    Mersenne Twister stream as the module-level `random.seed(1)`, without touching global state.
  - `np.random.seed(0)` does not matter: nothing between it and the end of the loop draws from
    numpy (the test pipeline has no random step either). We do not seed numpy.
  - `random.sample(population, k)` depends only on `len(population)` and the generator state (its
    algorithm, pool or set-based by size, has been the same in CPython 3.x, sets aside), so we
    sample our list of instance indices directly.
  - A category with fewer than `shots + 15` instances makes `random.sample` fail in the reference;
    here it is an error too, unless `skip_small=True` (a user's partial MP-100, where pairs can no
    longer match the published ones anyway): such a category is then left out and draws nothing.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np

from capellm.data.coco import KeypointDataset
from capellm.errors import CapellmError

EPISODES = 200  # episodes per test category (the reference test configs)
QUERIES = 15  # queries per episode
SEED = 1  # random.seed(1) in the reference's make_paired_samples


@dataclass(frozen=True)
class Pair:
    """One support-query pair; instances are indices into `KeypointDataset.instances`."""

    category_id: int
    episode: int  # episode index within the category (0 .. episodes-1)
    supports: tuple[int, ...]  # `shots` instance indices
    query: int



class EpisodeError(CapellmError):
    """The support-query protocol cannot be built on this annotation file (too few instances)."""

def build_pairs(dataset: KeypointDataset, shots: int, episodes: int = EPISODES, queries: int = QUERIES,
                seed: int = SEED, skip_small: bool = False) -> list[Pair]:
    """The reference's support-query pairs of `dataset`, in the reference's order.

    Categories in file order; per category `episodes` draws of `shots + queries` instances; each
    draw gives `queries` pairs (query order as drawn). Raises ValueError naming the category when
    one has too few instances, unless `skip_small`.
    """
    if shots < 1 or queries < 1 or episodes < 1:
        raise EpisodeError(f"shots, queries and episodes must be >= 1, got {shots}, {queries}, {episodes}")
    rng = random.Random(seed)
    index = {id(x): i for i, x in enumerate(dataset.instances)}
    pairs: list[Pair] = []
    for cid, members in dataset.by_category().items():
        population = [index[id(x)] for x in members]  # this category's instances, in load order
        if len(population) < shots + queries:
            if skip_small:
                continue
            raise EpisodeError(
                f"{dataset.path}: category {cid} has {len(population)} instances, fewer than the "
                f"{shots + queries} one episode draws ({shots} supports + {queries} queries)")
        for e in range(episodes):
            drawn = rng.sample(population, shots + queries)
            supports = tuple(drawn[:shots])
            pairs.extend(Pair(cid, e, supports, q) for q in drawn[shots:])
    return pairs


def pair_mask(dataset: KeypointDataset, pair: Pair) -> np.ndarray:
    """bool [K]: keypoints labelled in the query and in every support (the reference's mask)."""
    mask = dataset.instances[pair.query].visible.copy()
    for s in pair.supports:
        mask &= dataset.instances[s].visible
    return mask


def pairs_digest(dataset: KeypointDataset, pairs: list[Pair]) -> str:
    """sha256 over the pairs as annotation ids, one line per pair: "cat:sup,sup,...>query".

    Written in annotation ids (not list positions) so it names the same pairs whatever subset of
    the file was loaded; used by the tests to pin the construction.
    """
    h = hashlib.sha256()
    inst = dataset.instances
    for p in pairs:
        sup = ",".join(str(inst[s].ann_id) for s in p.supports)
        h.update(f"{p.category_id}:{sup}>{inst[p.query].ann_id}\n".encode())
    return h.hexdigest()

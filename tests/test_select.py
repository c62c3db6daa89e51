"""Selection of a filter's kept candidates: strata, quotas, rank and threshold modes (pure functions)."""

import numpy as np
import pytest

from hisyngen.errors import HisynError
from hisyngen.filtering.select import (
    Selection, ThresholdTally, area_order, pixel_shares, quotas, select_rank, select_threshold, stratum, stratum_names,
)


def test_stratum_is_the_dominant_class_and_the_classes_present():
    assert stratum([0.0, 0.7, 0.3, 0.0]) == "1:1+2"
    assert stratum([0.2, 0.0, 0.8, 0.0]) == "2:0+2"
    assert stratum([0.5, 0.5, 0.0, 0.0]) == "0:0+1"  # a tie goes to the lower class index
    assert stratum([0.0, 0.0, 0.0, 0.0]) == "none"
    assert stratum([0.2, 0.0, 0.8, 0.0], stratify=False) == "all"
    assert stratum_names("2:0+2", ("TUM", "STR", "LYM", "NEC")) == "LYM (TUM+LYM)"


def test_quotas_are_proportional_and_sum_to_the_count():
    strata = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5
    # exact 5, 3, 1.5, 0.5: c and d tie on the remainder, the more frequent stratum wins it
    assert quotas(strata, 10) == {"a": 5, "b": 3, "c": 2, "d": 0}
    q = quotas(strata, 7)  # exact 3.5, 2.1, 1.05, 0.35: floors 3+2+1+0, the one left goes to a (.5)
    assert q == {"a": 4, "b": 2, "c": 1, "d": 0}
    rng = np.random.default_rng(0)
    for _ in range(50):
        names = [f"s{i}" for i in rng.integers(0, 9, size=int(rng.integers(1, 300)))]
        count = int(rng.integers(1, 200))
        q = quotas(names, count)
        assert sum(q.values()) == count
        for s, n in q.items():  # each within one of its exact share
            assert abs(n - count * names.count(s) / len(names)) < 1
    with pytest.raises(HisynError):
        quotas([], 3)


def test_rank_keeps_each_stratums_quota_of_its_best_scores():
    # the discriminator dislikes stratum "rare": a plain top-k would drop it entirely
    strata = ["common"] * 6 + ["rare"] * 4
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.30, 0.10, 0.20, 0.05]
    kept = select_rank(strata, scores, 5)  # quotas: common 3, rare 2
    assert kept == [0, 1, 2, 6, 8]
    top5 = sorted(range(10), key=lambda p: -scores[p])[:5]
    assert all(strata[p] == "common" for p in top5)  # what stratification prevents
    # ties broken by position, independent of input order of equal scores
    assert select_rank(["x"] * 4, [0.5, 0.5, 0.5, 0.5], 2) == [0, 1]


def test_threshold_without_quotas_is_the_papers_first_n_above_the_threshold():
    scores = [0.2, 0.6, 0.7, 0.1, 0.9, 0.55]
    assert select_threshold(["all"] * 6, scores, 3, 0.5, stratify=False) == [1, 2, 4]
    assert select_threshold(["all"] * 6, scores, 5, 0.5, stratify=False) is None  # not enough yet


def test_threshold_with_quotas_waits_for_every_stratum():
    strata = ["a", "b", "a", "b", "a", "b", "a", "b"]
    scores = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.95]
    # quotas a 2, b 2; only one b passes -> not done, although four candidates passed
    assert select_threshold(strata, scores, 4, 0.5, stratify=True) is None
    tally = ThresholdTally(4, 0.5, stratify=True)
    tally.add(strata, scores)
    assert not tally.done() and tally.kept == 3
    needed, worst = tally.outlook()
    assert worst == "b" and needed == pytest.approx(8 * 2 / 1)
    more = strata + ["b", "a"], scores + [0.99, 0.1]
    assert select_threshold(*more, 4, 0.5, stratify=True) == [0, 2, 7, 8]
    tally.add(["b", "a"], [0.99, 0.1])
    assert tally.done()


def test_quotas_keep_the_class_mix_a_biased_discriminator_would_skew():
    # Candidates of two kinds; the "discriminator" scores anything holding class 2 low. Threshold
    # without quotas (the paper) loses class 2; rank and threshold with quotas keep its share.
    rng = np.random.default_rng(1)
    rows, scores = [], []
    for _ in range(2000):
        pair = [(0, 1), (0, 2), (1, 2)][int(rng.integers(3))]
        f = np.zeros(3)
        split = rng.uniform(0.2, 0.8)
        f[pair[0]], f[pair[1]] = split, 1 - split
        rows.append({"fractions": [round(float(v), 6) for v in f]})
        scores.append(float(rng.uniform(0, 0.6) if f[2] > 0 else rng.uniform(0.3, 1.0)))
    before = pixel_shares(rows, 3)
    strata = [stratum(r["fractions"]) for r in rows]
    paper = select_threshold(["all"] * len(rows), scores, 200, 0.5, stratify=False)
    ranked = select_rank(strata, scores, 200)
    thresholded = select_threshold(strata, scores, 200, 0.5, stratify=True)
    assert pixel_shares([rows[p] for p in paper], 3)[2] < before[2] - 0.15
    for kept in (ranked, thresholded):
        after = pixel_shares([rows[p] for p in kept], 3)
        assert max(abs(a - b) for a, b in zip(after, before)) < 0.03


def _biased_within_stratum(seed: int, n: int):
    """Two-class candidates (class 0 + class 2, one stratum) whose scores fall with class 2's area:
    a discriminator that reads the rare class as synthetic, within a stratum quotas cannot split."""
    rng = np.random.default_rng(seed)
    fractions, scores = [], []
    for _ in range(n):
        rare = float(rng.uniform(0.05, 0.45))
        fractions.append([round(1 - rare, 6), 0.0, round(rare, 6)])
        scores.append(float(np.clip(1 - 2 * rare + rng.normal(0, 0.1), 0, 1)))
    return fractions, scores


def test_match_area_keeps_a_class_from_shrinking_within_its_stratum():
    fractions, scores = _biased_within_stratum(3, 1000)
    strata = [stratum(f) for f in fractions]
    assert len(set(strata)) == 1  # quotas alone cannot help here
    rows = [{"fractions": f} for f in fractions]
    before = pixel_shares(rows, 3)[2]
    plain = pixel_shares([rows[p] for p in select_rank(strata, scores, 200)], 3)[2]
    matched_kept = select_rank(strata, scores, 200, fractions)
    matched = pixel_shares([rows[p] for p in matched_kept], 3)[2]
    assert plain < before - 0.08  # the top scores hold far less of class 2
    assert abs(matched - before) < 0.01
    assert len(matched_kept) == len(set(matched_kept)) == 200
    # still a selection by realism: each kept candidate is the best of ~5 with nearly its area, so
    # the kept mean score is far above that of all candidates
    assert np.mean([scores[p] for p in matched_kept]) > np.mean(scores) + 0.05


def test_match_area_keeps_the_best_of_each_run_of_neighbouring_areas():
    # stratum 0:0+1 with class 1 (rarest overall) at 10-40%; the scores prefer little class 1
    fractions = [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0],
                 [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    scores = [0.9, 0.1, 0.8, 0.2, 0.5, 0.6, 0.7, 0.4]
    strata = [stratum(f) for f in fractions]
    assert select_rank(strata, scores, 4) == [0, 2, 5, 6]  # plain: class 1 at 10% and 20%
    # runs by class-1 area: {0 (10%), 2 (20%)} -> 0 and {3 (30%), 1 (40%)} -> 3; stratum 2:2 has one
    # area, so its runs are in position order: {4, 5} -> 5, {6, 7} -> 6
    assert select_rank(strata, scores, 4, fractions) == [0, 3, 5, 6]
    assert select_rank(strata, scores, 2, fractions) == [0, 6]  # one run per stratum: its best
    with pytest.raises(ValueError):
        select_rank(strata, scores, 4, fractions[:-1])


def test_area_order_puts_the_rarest_class_first():
    # class 2 is rarest over these candidates, then class 0: they order by class 2's area, then class 0's
    fractions = [[0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.0, 0.95, 0.05]]
    key = area_order(fractions)
    assert sorted(range(4), key=key) == [3, 2, 1, 0]
    # areas within 0.1% of the image are equal: the next-rarest class decides
    assert sorted(range(2), key=area_order([[0.3, 0.5999, 0.1001], [0.2, 0.6996, 0.1004]])) == [1, 0]


def test_selection_settings_are_checked_and_recorded():
    assert Selection().to_dict() == {"mode": "rank", "stratify": True, "oversample": 5.0, "match_area": True}
    # a rank corpus selected before match_area existed keeps its identity (no key = off)
    assert Selection(match_area=False).to_dict() == {"mode": "rank", "stratify": True, "oversample": 5.0}
    assert "match_area" not in Selection(mode="threshold").to_dict()  # threshold mode ignores it
    for selection in (Selection(), Selection(match_area=False), Selection.paper(), Selection(oversample=2.0)):
        assert Selection.from_dict(selection.to_dict()).to_dict() == selection.to_dict()
    assert not Selection.from_dict({"mode": "rank", "stratify": True, "oversample": 5.0}).match_area
    assert Selection.paper().to_dict() == {"mode": "threshold", "stratify": False, "threshold": 0.5}
    assert Selection(oversample=2.5).budget(10) == 25 and Selection(oversample=1).budget(7) == 7
    for bad in ({"mode": "best"}, {"oversample": 0.5}, {"threshold": 1.0}):
        with pytest.raises(HisynError):
            Selection(**bad)


def test_the_public_command_of_a_rank_corpus_reproduces_its_area_matching():
    # a card's "how it was made" command must select the same samples: a rank corpus filtered
    # before match_area existed (no key) needs --no-match-area now that it is the default
    from types import SimpleNamespace
    from pathlib import Path

    from hisyngen.export.provenance import corpus_command

    def command(selection):
        config = SimpleNamespace(source={"root": "/data/BCSS"}, strategy="mosaic", count=10, seed=0, params={},
                                 filter={"selection": selection, "batch_size": 64})
        return corpus_command(SimpleNamespace(config=config, folder=Path("/out/mosaic")))

    assert "--no-match-area" in command(Selection(match_area=False).to_dict())
    assert "--no-match-area" not in command(Selection().to_dict())
    assert "--no-match-area" not in command(Selection.paper().to_dict())


def test_rank_refuses_to_keep_more_than_it_scored():
    fractions = [[1.0, 0.0], [0.0, 1.0]]
    for given in (None, fractions):  # the same error with and without area matching
        with pytest.raises(ValueError, match="cannot keep 3 of 2"):
            select_rank(["0:0", "1:1"], [0.5, 0.4], 3, given)

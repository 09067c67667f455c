"""Claims over several partitions (dmmvae.compare): intervals, per-split differences, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmmvae.compare import (
    BETTER,
    LEVEL,
    WORSE,
    best_reference,
    claims,
    interval,
    paired_difference,
    summary,
)


def test_interval_is_students_t_over_splits():
    iv = interval([0.1, 0.2, 0.3, 0.4, 0.5])
    # mean 0.3, sd 0.1581, t(0.975, 4) = 2.7764: half-width 0.1963
    assert iv.mean == pytest.approx(0.3)
    assert iv.high - iv.mean == pytest.approx(2.7764451 * np.std([.1, .2, .3, .4, .5], ddof=1) / np.sqrt(5))
    assert iv.n == 5 and interval([0.4]).low == 0.4 and np.isnan(interval([]).mean)


def _rows(values: dict[str, list[float]], metric="foscttm/mean", dataset="d"):
    return pd.DataFrame([{"dataset": dataset, "model": m, "split": s, "metric": metric, "value": v}
                         for m, vs in values.items() for s, v in enumerate(vs)])


def test_per_split_difference_removes_the_partition_variation():
    # both methods vary a lot with the split, but ours is always 0.02 below the reference:
    # the intervals of the two means overlap, the per-split difference is clearly negative
    ref = [0.10, 0.30, 0.20, 0.40, 0.25]
    rows = _rows({"ours": [v - 0.02 for v in ref], "ref": ref})
    d = paired_difference(rows, "d", "ours", "ref", "foscttm/mean")
    assert d["difference"] == pytest.approx(-0.02) and d["verdict"] == BETTER
    assert interval(ref).low < np.mean(ref) - 0.02  # means alone could not tell them apart
    worse = paired_difference(rows, "d", "ref", "ours", "foscttm/mean")
    assert worse["verdict"] == WORSE
    # label transfer: higher is better, so the same sign means the opposite verdict
    lt = _rows({"ours": [v - 0.02 for v in ref], "ref": ref}, metric="label_transfer_acc/mean")
    assert paired_difference(lt, "d", "ours", "ref", "label_transfer_acc/mean")["verdict"] == WORSE


def test_noise_around_zero_is_level():
    rows = _rows({"ours": [0.30, 0.22, 0.27, 0.24, 0.26], "ref": [0.28, 0.25, 0.25, 0.26, 0.25]})
    assert paired_difference(rows, "d", "ours", "ref", "foscttm/mean")["verdict"] == LEVEL


def test_claims_take_the_best_reference_per_dataset_and_metric():
    rows = pd.concat([_rows({"ours": [0.2] * 3, "weak": [0.4] * 3, "strong": [0.25, 0.26, 0.24]}),
                      _rows({"ours": [0.5] * 3, "weak": [0.6] * 3, "strong": [0.4] * 3},
                            metric="label_transfer_acc/mean")])
    assert best_reference(rows, "d", ["weak", "strong"], "foscttm/mean") == "strong"
    table = claims(rows, ["ours"], ["weak", "strong"], ["foscttm/mean", "label_transfer_acc/mean"])
    # the best reference is per metric: "weak" transfers labels best (higher is better there)
    assert list(table["reference"]) == ["strong", "weak"]
    assert list(table["verdict"]) == [BETTER, WORSE]
    text = summary(rows, ["foscttm/mean"])
    assert text.loc[("d", "ours"), "foscttm/mean"].startswith("0.200 [0.200, 0.200]")


def test_the_best_reference_is_one_with_splits_to_compare():
    """A reference run on one split only (a long budget still running) is not the rival while
    another has several splits, even when its one value is better."""
    rows = _rows({"ours": [0.2, 0.21, 0.19], "full": [0.25, 0.26, 0.24]})
    one = _rows({"partial": [0.1]})
    both = pd.concat([rows, one])
    assert best_reference(both, "d", ["full", "partial"], "foscttm/mean") == "full"
    assert best_reference(one, "d", ["full", "partial"], "foscttm/mean") == "partial"
    assert claims(both, ["ours"], ["full", "partial"], ["foscttm/mean"])["verdict"].tolist() == [BETTER]


def test_references_are_ranked_on_the_splits_they_share():
    """A reference with two splits of five is ranked against the others on those two splits: its
    mean there (0.186) is worse than the five-split reference's on the same two (0.183), though
    better than that reference's five-split mean (0.193), which includes harder partitions."""
    rows = pd.concat([_rows({"five": [0.180, 0.186, 0.20, 0.20, 0.199]}),
                      _rows({"two": [0.188, 0.184]})])
    assert best_reference(rows, "d", ["five", "two"], "foscttm/mean") == "five"
    better_where_shared = pd.concat([_rows({"five": [0.180, 0.186, 0.20, 0.20, 0.199]}),
                                     _rows({"two": [0.170, 0.175]})])
    assert best_reference(better_where_shared, "d", ["five", "two"], "foscttm/mean") == "two"
    # no two splits in common: each reference's own mean, as before
    apart = pd.concat([_rows({"five": [0.18, 0.19]}),
                       pd.DataFrame([{"dataset": "d", "model": "two", "split": s,
                                      "metric": "foscttm/mean", "value": 0.182} for s in (5, 6)])])
    assert best_reference(apart, "d", ["five", "two"], "foscttm/mean") == "two"


def test_a_reference_still_running_and_behind_does_not_change_the_rival():
    """Two references with five splits: "a" is better over the five, "b" over the first four. A
    third, run on those four splits and far behind, must leave the rival where it was."""
    five = _rows({"a": [0.30, 0.30, 0.30, 0.30, 0.20], "b": [0.29, 0.29, 0.29, 0.29, 0.40]})
    behind = _rows({"weak": [0.6, 0.6, 0.6, 0.6]})
    assert best_reference(five, "d", ["a", "b"], "foscttm/mean") == "a"
    assert best_reference(pd.concat([five, behind]), "d", ["a", "b", "weak"], "foscttm/mean") == "a"
    # higher is better for label transfer: the same holds with the direction turned
    flip = lambda t: t.assign(metric="label_transfer_acc/mean", value=1 - t["value"])  # noqa: E731
    assert best_reference(pd.concat([flip(five), flip(behind)]), "d", ["a", "b", "weak"],
                          "label_transfer_acc/mean") == "a"
    # ahead of the leader on the splits they share, the running reference is the rival
    ahead = _rows({"fast": [0.25, 0.25, 0.25, 0.25]})
    assert best_reference(pd.concat([five, ahead]), "d", ["a", "b", "fast"], "foscttm/mean") == "fast"


def test_one_split_gives_no_verdict():
    rows = _rows({"ours": [0.1], "ref": [0.3]})
    d = paired_difference(rows, "d", "ours", "ref", "foscttm/mean")
    assert d["verdict"] == "n/a" and d["n_splits"] == 1

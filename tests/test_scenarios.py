"""The PROTOCOL split and the scenario masks."""

import numpy as np
import pytest

from dmmvae.constants import SPLIT, TEST, TRAIN, visible_key
from dmmvae.data.scenarios import (
    assign_patterns,
    make_scenario,
    protocol_split,
    scenario_patterns,
    scenario_summary,
)
from dmmvae.data.synthetic import simulate_shared_private


def test_protocol_split_matches_the_protocol_formula():
    n = 1003
    split = protocol_split(n, seed=7)
    perm = np.random.default_rng(7).permutation(n)
    n_train = int(0.8 * n)
    assert (split[perm[:n_train]] == TRAIN).all()
    assert (split[perm[n_train:]] == TEST).all()
    assert (split == TRAIN).sum() == 802


@pytest.fixture(scope="module")
def mdata():
    m = simulate_shared_private(
        n_cells=500,
        modalities={
            "rna": {"kind": "rna", "n_features": 30},
            "atac": {"kind": "atac", "n_features": 40},
            "adt": {"kind": "adt", "n_features": 10},
        },
    )
    m.obs[SPLIT] = protocol_split(m.n_obs, 0)
    return m


def _vis(s):
    return s.obs[[visible_key(m) for m in s.mod]].to_numpy(bool)


def test_paired_shows_everything_to_train_cells_only(mdata):
    s = make_scenario(mdata, "paired")
    train = (s.obs[SPLIT] == TRAIN).to_numpy()
    assert _vis(s)[train].all()
    assert not _vis(s)[~train].any()


def test_diagonal_has_no_paired_train_cell_and_even_groups(mdata):
    s = make_scenario(mdata, "diagonal")
    vis = _vis(s)
    assert (vis.sum(1) <= 1).all()
    counts = scenario_summary(s)
    assert set(counts) == {"rna", "atac", "adt"}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == 400


def test_mosaic_paired_fraction(mdata):
    s = make_scenario(mdata, "mosaic", paired_fraction=0.25)
    counts = scenario_summary(s)
    assert counts["rna+atac+adt"] == 100
    assert counts["rna"] + counts["atac"] + counts["adt"] == 300


def test_custom_patterns_for_three_modalities(mdata):
    pats = [
        {"modalities": ["rna", "adt"], "fraction": 0.5},
        {"modalities": ["atac"], "fraction": 0.5},
    ]
    s = make_scenario(mdata, "mosaic", patterns=pats)
    assert scenario_summary(s) == {"rna+adt": 200, "atac": 200}


def test_bad_patterns_are_rejected_with_the_reason(mdata):
    with pytest.raises(ValueError, match="sum to"):
        scenario_patterns("mosaic", ["rna", "atac"], patterns=[{"modalities": ["rna"], "fraction": 0.3}])
    with pytest.raises(ValueError, match="lacks"):
        scenario_patterns("mosaic", ["rna"], patterns=[{"modalities": ["adt"], "fraction": 1.0}])
    with pytest.raises(ValueError, match="valid kinds"):
        scenario_patterns("vertical", ["rna"])


def test_assign_patterns_sizes_follow_fractions():
    which = assign_patterns(10, [(("a",), 1 / 3), (("b",), 1 / 3), (("c",), 1 / 3)], seed=0)
    assert sorted(np.bincount(which).tolist()) == [3, 3, 4]


def test_scenario_round_trips_through_h5mu(mdata, tmp_path):
    import mudata as md

    s = make_scenario(mdata, "mosaic", paired_fraction=0.5)
    s.write(tmp_path / "s.h5mu")
    back = md.read_h5mu(tmp_path / "s.h5mu")
    assert (back.obs[visible_key("adt")].to_numpy() == s.obs[visible_key("adt")].to_numpy()).all()
    assert back.uns["scenario"]["patterns"]["rna+atac+adt"] == 0.5

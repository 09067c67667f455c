"""Blind selection by construction (dmmvae.selection; PROTOCOL "Choosing settings (blind)")."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic import gene_split, scenario

from dmmvae import selection
from dmmvae.constants import LABEL, SPLIT, TEST, TRAIN
from dmmvae.data.scenarios import make_scenario
from dmmvae.methods import build_model
from dmmvae.methods.baselines.seurat_v3 import SeuratV3

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
TRAINING = {"max_epochs": 15, "batch_size": 128, "progress_bar": False}


def test_train_only_drops_every_test_cell_and_the_signals_refuse_test_cells():
    sc = scenario(kind="diagonal", n_cells=300)
    n_test = int((sc.obs[SPLIT] == TEST).sum())
    blind = selection.train_only(sc)
    assert set(blind.obs[SPLIT]) == {TRAIN} and blind.n_obs == sc.n_obs - n_test
    assert blind.uns["selection"]["n_test_dropped"] == n_test
    assert all(a.n_obs == blind.n_obs for a in blind.mod.values())
    # the synthetic modalities share no linked feature: linked anchors off (else MissingLinksError)
    model = build_model("dmmvae", {"n_hidden": 32, "n_latent": 8, "anchor_weight": 0})
    model.fit(blind, seed=0, training=TRAINING)
    # no anchor, so no score (NaN, not 0)
    assert np.isnan(selection.validation_anchor_foscttm(model, blind, TRAINING, 0))
    assert 0 <= selection.train_label_transfer(model, blind) <= 1
    with pytest.raises(selection.TestCellsError, match="train_only"):
        selection.train_label_transfer(model, sc)
    with pytest.raises(selection.TestCellsError):
        selection.validation_anchor_foscttm(model, sc, TRAINING, 0)


def test_label_signal_is_real():
    """The train-cell label transfer of a trained model beats the same model scored with its
    train labels shuffled."""
    blind = selection.train_only(scenario(kind="paired", n_cells=400))
    model = build_model("dmmvae", {"n_hidden": 32, "n_latent": 8})
    model.fit(blind, seed=0, training=TRAINING)
    lt = selection.train_label_transfer(model, blind)
    shuffled = blind.copy()
    rng = np.random.default_rng(0)
    shuffled.obs[LABEL] = rng.permutation(shuffled.obs[LABEL].astype(str).to_numpy())
    chance = selection.train_label_transfer(model, shuffled)
    print(f"train label transfer {lt:.3f}, labels shuffled {chance:.3f}")
    assert lt > chance + 0.2


def test_the_anchor_signal_scores_a_collapsed_encoder_at_chance_not_best():
    """Held-back anchor FOSCTTM counts a tie as half a closer cell: codes that all coincide (a
    collapsed encoder) score 0.5, not PROTOCOL's strict count's 0, which a sweep's rule would
    rank first; codes that keep each pair nearest score 0 and random codes about 0.5."""
    import torch

    from dmmvae.metrics import foscttm

    rng = np.random.default_rng(0)
    n = 200
    pairs = torch.stack([torch.arange(n), torch.from_numpy(rng.permutation(n))], 1)
    za = torch.from_numpy(rng.normal(size=(n, 8)))
    zb = torch.empty_like(za)
    zb[pairs[:, 1]] = za[pairs[:, 0]] + 0.01 * torch.from_numpy(rng.normal(size=(n, 8)))
    assert selection._pairs_foscttm(torch.cdist(za, zb), pairs) == 0.0
    assert abs(selection._pairs_foscttm(torch.cdist(za, torch.randn(n, 8, dtype=za.dtype)),
                                        pairs) - 0.5) < 0.05
    collapsed = torch.zeros(n, 8, dtype=za.dtype)
    assert selection._pairs_foscttm(torch.cdist(collapsed, collapsed), pairs) == pytest.approx(
        0.5 * (n - 1) / n)
    # the test metric keeps PROTOCOL's strict count (GLUE's definition): 0 for collapsed codes
    assert foscttm(collapsed.numpy(), collapsed.numpy()) == 0.0


def test_the_code_spread_flags_a_collapsed_encoder_and_not_a_trained_one():
    """A trained model's held-back codes spread; the same model with its encoders' last layers
    zeroed (every code its bias: collapsed) spreads 0, and the sweeps' report names that row
    only; centred random codes spread about 1 whatever their scale."""
    import torch

    blind = selection.train_only(scenario(kind="diagonal", n_cells=300))
    model = build_model("dmmvae", {"n_hidden": 32, "n_latent": 8, "anchor_weight": 0})
    model.fit(blind, seed=0, training=TRAINING)
    trained = selection.heldback_code_spread(model, blind, TRAINING, 0)
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if name.startswith("encoders.") and name.endswith(".out.weight"):
                p.zero_()
    flat = selection.heldback_code_spread(model, blind, TRAINING, 0)
    print(f"held-back code spread: trained {trained:.3f}, collapsed {flat:.2g}")
    assert trained > 0.1 and flat < selection.COLLAPSED_SPREAD
    z = np.random.default_rng(0).normal(size=(500, 8))
    assert selection._code_spread({"a": (1e3 * z,), "b": (1e-3 * z,)}) == pytest.approx(1, abs=0.05)
    rows = pd.DataFrame({"config": ["{}", "{\"x\": 1}", "{\"x\": 2}"], "dataset": "d",
                         "seed": 0, "heldback_code_spread": [trained, flat, np.nan]})
    report = selection.collapsed(rows).splitlines()
    assert report[0].endswith("1 of 2 rows checked") and len(report) == 2
    assert report[1].startswith('  {"x": 1} on d, seed 0')
    assert "not checked" in selection.collapsed(rows.drop(columns="heldback_code_spread"))


def test_validation_imputation_scores_held_back_train_cells_and_beats_an_untrained_model():
    """Cross-modal imputation of the held-back train cells of a paired scenario: a trained
    model's per-cell Pearson beats the same model after one epoch, in both directions; the
    diagonal scenario has no such cell (its cells show one modality); test cells are refused."""
    sc = scenario(kind="paired", n_cells=400)
    blind = selection.train_only(sc)
    scores = {}
    for epochs in (1, 30):
        model = build_model("mvae", {"n_hidden": 32, "n_latent": 8})
        model.fit(blind, seed=0, training={**TRAINING, "max_epochs": epochs})
        scores[epochs] = selection.validation_imputation(model, blind, TRAINING, 0)
    print(scores)
    assert set(scores[30]) == {"rna->atac", "atac->rna"} == set(scores[1])
    for direction, value in scores[30].items():
        assert value > scores[1][direction] + 0.02, scores
    with pytest.raises(selection.TestCellsError):
        selection.validation_imputation(model, sc, TRAINING, 0)
    diagonal = selection.train_only(scenario(kind="diagonal", n_cells=300))
    model = build_model("mvae", {"n_hidden": 32, "n_latent": 8})
    model.fit(diagonal, seed=0, training=TRAINING)
    assert selection.validation_imputation(model, diagonal, TRAINING, 0) == {}


@pytest.mark.parametrize("script", ["bench_dmmvae_sweep.py", "bench_reference_sweep.py"])
def test_the_sweep_cannot_compute_a_test_number(script):
    """The selection scripts read their data through train_only and import no evaluation code."""
    tree = ast.parse((BENCH / script).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and (m.startswith("dmmvae.evaluate") or m.startswith("dmmvae.metrics"))
                   for m in imported)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "train_only" in calls and "evaluate_predictions" not in calls
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    assert not any("test" in c for c in sweep.__dict__.get("COLUMNS", ()))


def test_the_budget_grid_sets_the_training_loop_not_the_model():
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    configs = sweep.configurations(sweep.GRIDS["noanchor_budget"])
    budgets = [(c["training.max_epochs"], c["training.early_stopping_patience"]) for c in configs]
    assert budgets == [(100, 30), (400, 100)]
    assert all(c["anchor_weight"] == 0.0 and c["graph_decoder"] == "embedding" for c in configs)
    # that every other key is a parameter dmmvae accepts: the test below, for every grid


def test_the_leave_one_out_grid_removes_one_of_glues_vae_parts_at_a_time():
    """``noanchor_vae_parts_loo`` starts at ``noanchor_vae_parts``' all-at-once configuration and
    each further configuration puts back this model's value of exactly one part."""
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    every = sweep.configurations(sweep.GRIDS["noanchor_vae_parts_loo"])
    assert every[0] in sweep.configurations(sweep.GRIDS["noanchor_vae_parts"])
    assert every[0]["graph_decoder"] == "glue" and every[0]["atac_features"] == "linked"
    changed = [{k for k in c if c[k] != every[0][k]} for c in every[1:]]
    assert changed == [{"atac_input", "atac_features"}, {"atac_features"}, {"rna_input"},
                       {"graph_decoder"}, {"norm"}, {"likelihoods"},
                       {"likelihood_scale", "graph_weight"}]
    assert all(c[k] == sweep.VAE_BASE_PARTS[k]
               for c, keys in zip(every[1:], changed, strict=True) for k in keys)
    # the three parts whose removal cost most, alone together: the other four at this model's values
    every_part, core = sweep.configurations(sweep.GRIDS["noanchor_vae_parts_core"])
    assert every_part == every[0]
    assert {k for k in core if core[k] != sweep.VAE_BASE_PARTS.get(k, core[k])} == {
        "graph_decoder", "likelihoods", "likelihood_scale", "graph_weight"}


def _sweep():
    """The D-MMVAE sweep script as a module."""
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    return sweep


def _is_shipped_noanchor(sweep, params: dict) -> bool:
    """Whether a sweep configuration fits the same model as config/diagonal.yaml's shipped
    ``dmmvae_noanchor`` (its training keys included)."""
    from dmmvae.config import load_config

    entry = load_config(BENCH.parent / "config" / "diagonal.yaml")["models"]["dmmvae_noanchor"]
    shipped = {**entry["params"], **{f"training.{k}": v for k, v in entry["training"].items()}}
    return sweep.same_model(json.dumps(params, sort_keys=True), json.dumps(shipped, sort_keys=True))


def test_the_vae_parts_grid_with_the_adversary_starts_at_the_shipped_anchor_free_model():
    """``noanchor_vae_parts_adv``: its first configuration is the same model as the shipped
    ``dmmvae_noanchor`` (config/diagonal.yaml, training keys included); its second is that model
    with all seven of GLUE's VAE parts (the leave-one-out grid's first configuration) and the
    adversary's weight in per-feature units, the adversary and the two stages kept."""
    sweep = _sweep()
    base, every_part = sweep.configurations(sweep.GRIDS["noanchor_vae_parts_adv"])
    assert _is_shipped_noanchor(sweep, base)
    no_adversary = sweep.configurations(sweep.GRIDS["noanchor_vae_parts_loo"])[0]
    vae_keys = sweep.VAE_PARTS_KEY.split(",")
    assert {k: every_part[k] for k in vae_keys} == {k: no_adversary[k] for k in vae_keys}
    assert {k for k in every_part if every_part[k] != base[k]} <= {*vae_keys,
                                                                  "latent_adversarial_weight"}
    assert every_part["latent_adversarial_weight"] == 0.025 and every_part["glue_stages"]
    assert every_part["align_burnin"] == base["align_burnin"] == 67


def test_the_rebuilt_glue_grid_puts_every_asked_difference_into_the_shipped_model():
    """``noanchor_glue_rebuilt``: its first configuration is the shipped ``dmmvae_noanchor``; its
    second is ``noanchor_glue_everything``'s GLUE configuration with the four later readings of
    scglue (linked peaks decoded, graph convolution, budget in steps, update order) as the grids
    that asked them one at a time set them."""
    sweep = _sweep()
    base, rebuilt = sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt"])
    assert _is_shipped_noanchor(sweep, base)
    everything = sweep.configurations(sweep.GRIDS["noanchor_glue_everything"])[0]
    assert {k: rebuilt[k] for k in everything} == everything
    changed = set()
    for grid in ("noanchor_linked_peaks", "noanchor_glue_graph", "noanchor_glue_steps",
                 "noanchor_glue_order"):
        first, glue_reading = sweep.configurations(sweep.GRIDS[grid])[:2]
        diff = {k: v for k, v in glue_reading.items() if first[k] != v}
        assert diff and {k: rebuilt[k] for k in diff} == diff, grid
        changed |= set(diff)
    assert changed == {"atac_input", "atac_features", "graph_norm", "graph_init",
                       "training.budget", "adversary_order"}
    assert {k for k in rebuilt if rebuilt[k] != base[k]} == (
        {k for k in everything if everything[k] != base[k]} | changed)


def test_the_lean_rebuilt_grid_leaves_out_only_the_parts_that_anti_align_rna_adt():
    """``noanchor_glue_rebuilt_lean``: the shipped model and the rebuilt configuration, then the
    rebuilt one with GLUE's feature embeddings and per-feature likelihood back at the shipped
    model's values (the weights too, as they are in the likelihood's units), nothing else."""
    sweep = _sweep()
    base, rebuilt, lean = sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt_lean"])
    assert [base, rebuilt] == sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt"])
    changed = {k for k in lean if lean[k] != rebuilt[k]}
    assert changed == {"graph_decoder", "likelihood_scale", "latent_adversarial_weight",
                       "graph_weight"}
    assert {k: lean[k] for k in changed} == {k: base[k] for k in changed}
    assert lean["likelihoods"] == {"atac": "nb"} and lean["training.budget"] == "glue"


def test_the_rna_atac_rebuilt_grid_puts_back_only_the_feature_embeddings():
    """``noanchor_glue_rebuilt_atac``: the rebuilt configuration with only GLUE's variational
    feature embeddings replaced by the shipped model's plain ones (per-feature likelihood and
    GLUE's weights kept), asked on the RNA+ATAC stand-ins only; the same fit as the lean grid's
    third configuration with the per-feature likelihood and its weights held back at GLUE's."""
    sweep = _sweep()
    base, rebuilt, plain = sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt_atac"])
    assert [base, rebuilt] == sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt"])
    assert {k for k in plain if plain[k] != rebuilt[k]} == {"graph_decoder"}
    assert plain["graph_decoder"] == base["graph_decoder"] == "embedding"
    assert plain["likelihood_scale"] == "per_feature"
    assert sweep.DATASETS_OF_GRID["noanchor_glue_rebuilt_atac"] == ["snare_mop5232",
                                                                    "bmmc_multiome500"]
    lean = sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt_lean"])[2]
    held = {"likelihood_scale": "per_feature", "latent_adversarial_weight": 0.025,
            "graph_weight": 0.01}
    assert {**lean, **held} == plain


def test_rule_weighs_each_dataset_equally_over_its_seeds():
    def row(config, dataset, seed, anchors, labels):
        return {"config": config, "dataset": dataset, "seed": seed,
                "validation_anchor_foscttm": anchors, "train_label_transfer": labels}

    rows = pd.DataFrame([
        # "a" is better on the dataset with three seeds, "b" by more on the one with a single seed
        *[row(c, "three", s, 0.30 if c == "a" else 0.34, 0.5) for c in "ab" for s in range(3)],
        row("a", "one", 0, 0.40, 0.5), row("b", "one", 0, 0.34, 0.5),
    ])
    table = selection.rank(rows, "anchors")
    # per dataset first: a 0.35, b 0.34; pooled rows would rank "a" first (0.325 vs 0.34)
    assert list(table.index) == ["b", "a"]
    assert table.loc["b", "rule"] == pytest.approx(0.34)
    both = selection.rank(rows, "anchors+labels")
    assert both.loc["a", "rule"] == pytest.approx((0.30 + 0.40) / 2 + 0.5)
    with pytest.raises(ValueError, match="valid"):
        selection.rank(rows, "test_foscttm")


def test_every_sweep_configuration_is_one_dmmvae_accepts():
    """Each configuration of each grid builds: its model keys are parameters ``dmmvae`` accepts
    in that combination (e.g. GLUE's LSI over all peaks is never asked with the cycle term) and
    its ``training.`` keys settings the loop accepts; no grid repeats a configuration, and a
    grid that varies one parameter under two keys is refused."""
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    from dmmvae.methods.modules.dmmvae import DMMVAE
    from dmmvae.methods.training.loop import resolve_training

    for name, grid in sweep.GRIDS.items():
        configs = sweep.configurations(grid)
        assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs), name
        for c in configs:
            model, training = sweep.split_params(c)
            try:
                DMMVAE.check_params(model)
                resolve_training(training)
            except ValueError as err:
                raise AssertionError(f"grid {name}: {c}: {err}") from err
    with pytest.raises(ValueError, match="varies in both"):
        sweep.configurations({"n_latent": [8, 16], "n_hidden,n_latent": [(64, 8), (128, 16)]})
    atac = {c["atac_input"] for c in sweep.configurations(sweep.GRIDS["noanchor_atac_input"])}
    assert atac == {"lsi_all", "lsi_all+peaks", "lsi+peaks"}


def _linked_gene_split():
    """:func:`_synthetic.gene_split` of 500 cells sharing 100 genes, diagonal scenario."""
    return make_scenario(gene_split(500, 100), "diagonal", seed=0)


def test_heldback_signals_score_a_reference_through_its_public_api_on_train_cells_only():
    """A reference that aligns (Seurat v3 on a linked gene split) scores far better than the
    random control on both signals; it is fitted without the held-back cells, every train cell
    is embedded, and data holding test cells are refused."""
    sc = _linked_gene_split()
    blind = selection.train_only(sc)
    val = selection._validation_cells(blind, TRAINING, 0)
    seen = []

    class Spy(SeuratV3):
        def fit(self, mdata, **kw):
            seen.append(mdata.obs_names[(mdata.obs[SPLIT] == TRAIN).to_numpy()])
            return super().fit(mdata, **kw)

    ours = selection.heldback_signals(Spy(), blind, TRAINING, 0)
    control = selection.heldback_signals(build_model("random"), blind, TRAINING, 0)
    print(ours, control)
    assert len(seen) == 1 and not set(seen[0]) & set(blind.obs_names[val])
    assert len(seen[0]) == blind.n_obs - len(val) and len(val) > 0
    assert ours["validation_anchor_foscttm"] < 0.25 < 0.4 < control["validation_anchor_foscttm"]
    assert ours["train_label_transfer"] > control["train_label_transfer"] + 0.3
    assert ours["heldback_code_spread"] > 0.1 and control["heldback_code_spread"] > 0.1
    with pytest.raises(selection.TestCellsError):
        selection.heldback_signals(build_model("seurat_v3"), sc, TRAINING, 0)


def test_heldback_signals_hand_the_device_to_a_method_that_trains_on_one_only():
    """``device`` reaches ``fit`` of a method with ``uses_device`` (GLUE on a GPU), and a CPU
    method is called as before, without one."""
    blind = selection.train_only(_linked_gene_split())
    seen = []

    class Spy(SeuratV3):
        def fit(self, mdata, **kw):
            seen.append((type(self).uses_device, kw.pop("device", None)))
            return super().fit(mdata, **kw)

    class DeviceSpy(Spy):
        uses_device = True

    selection.heldback_signals(Spy(), blind, TRAINING, 0, device="cuda")
    selection.heldback_signals(DeviceSpy(), blind, TRAINING, 0, device="cuda")
    selection.heldback_signals(DeviceSpy(), blind, TRAINING, 0)
    assert seen == [(False, None), (True, "cuda"), (True, "cpu")]


def test_the_reference_grids_start_at_the_recipe_and_every_configuration_builds():
    sys.path.insert(0, str(BENCH))
    import bench_reference_sweep as sweep

    assert all(SeuratV3.DEFAULTS[k] in v for k, v in sweep.SEURAT_AXES.items())  # recipe asked
    for method, grid in sweep.GRIDS.items():
        assert grid[0] == {} and {} not in grid[1:], method
        assert len({json.dumps(c, sort_keys=True) for c in grid}) == len(grid), method
        for c in grid:
            build_model(method, c)  # unknown keys fail here
    assert sweep.SEURAT_RECIPE not in sweep.GRIDS["seurat_v3"]  # it is {}


def test_dmmvae_signals_read_only_the_modality_each_train_cell_shows():
    """On a diagonal scenario D-MMVAE's signals encode each train cell from the one modality it
    shows: one code per shown (cell, modality), and scrambling every hidden modality's values
    changes neither signal (both would move if a hidden partner were read)."""
    from dmmvae.constants import visible_key

    blind = selection.train_only(_linked_gene_split())
    model = build_model("dmmvae", {"n_hidden": 32, "n_latent": 8})
    model.fit(blind, seed=0, training=TRAINING)
    codes = selection._codes(model, blind, np.arange(blind.n_obs))
    for m, (z, _, rows) in codes.items():
        shown = np.flatnonzero(blind.obs[visible_key(m)].to_numpy(bool))
        assert len(shown) < blind.n_obs
        assert sorted(rows.cpu().numpy()) == list(shown) and len(z) == len(shown)

    scrambled = blind.copy()
    rng = np.random.default_rng(1)

    def scramble(a, hidden, donors):
        a = a.toarray() if hasattr(a, "toarray") else np.array(a)
        a[hidden] = a[donors]
        return a

    for m, ad in scrambled.mod.items():  # each hidden row becomes another cell's shown row
        hidden = ~scrambled.obs[visible_key(m)].to_numpy(bool)
        donors = rng.permutation(np.flatnonzero(~hidden))[: hidden.sum()]
        ad.X = scramble(ad.X, hidden, donors)
        for name in list(ad.layers):
            ad.layers[name] = scramble(ad.layers[name], hidden, donors)
        for name in list(ad.obsm):
            ad.obsm[name] = scramble(ad.obsm[name], hidden, donors)
    before = (selection.validation_anchor_foscttm(model, blind, TRAINING, 0),
              selection.train_label_transfer(model, blind))
    after = (selection.validation_anchor_foscttm(model, scrambled, TRAINING, 0),
             selection.train_label_transfer(model, scrambled))
    print(before, after)
    assert np.isfinite(before[0]) and before == pytest.approx(after, abs=1e-6)


def test_the_reask_report_compares_choices_on_configurations_asked_again_everywhere():
    """--reask-report ranks the old and new rows of a grid on the configurations the new rows hold
    on every (stand-in, seed) the old ones did, so a grid still running is not misread."""
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    def rows(values):
        return pd.DataFrame([{"config": c, "dataset": d, "seed": 0,
                              "validation_anchor_foscttm": v, "train_label_transfer": 0.5}
                             for (c, d), v in values.items()])

    old = rows({("a", "x"): 0.1, ("a", "y"): 0.1, ("b", "x"): 0.2, ("b", "y"): 0.2,
                ("c", "x"): 0.3, ("c", "y"): 0.3})
    # c is ahead now but asked on one stand-in only: left out; among a and b, b leads
    new = rows({("a", "x"): 0.3, ("a", "y"): 0.3, ("b", "x"): 0.2, ("b", "y"): 0.1,
                ("c", "x"): 0.0})
    out = sweep.compare_reask("graph", old, new)  # rule "anchors"
    assert (out["choice_before"], out["choice_now"], out["same_choice"]) == ("a", "b", False)
    assert out["configurations_compared"] == 2 and out["rows_compared"] == 4
    assert out["rank_now_of_choice_before"] == 2 and out["margin_now"] == pytest.approx(0.15)
    assert out["cells_compared"] == "2 of 2"
    assert sweep.compare_reask("graph", old, new.iloc[:1]) == {}
    # nothing asked again on stand-in y yet: a and c compared on x alone, said so
    partial = sweep.compare_reask("graph", old, new[new["dataset"] == "x"].iloc[[0, 2]])
    assert partial["cells_compared"] == "1 of 2" and partial["configurations_compared"] == 2
    assert (partial["choice_before"], partial["choice_now"]) == ("a", "c")
    # one configuration complete (c, first asked on x alone) is not a comparison: a and c on x
    first = old[(old["config"] != "c") | (old["dataset"] == "x")]
    partial = sweep.compare_reask("graph", first, new[new["dataset"] == "x"].iloc[[0, 2]])
    assert partial["cells_compared"] == "1 of 2" and partial["configurations_compared"] == 2
    assert out["seeds_now"] == ""
    # asked again over one more seed, where a leads: over both seeds a 0.15, b 0.175
    more = pd.concat([new, rows({("a", "x"): 0.0, ("a", "y"): 0.0, ("b", "x"): 0.2,
                                 ("b", "y"): 0.2}).assign(seed=1)])
    out = sweep.compare_reask("graph", old, more)
    assert out["choice_now"] == "b" and out["seeds_now"] == "0 1"
    assert out["choice_all_seeds"] == "a" and out["margin_all_seeds"] == pytest.approx(0.025)


def test_a_grid_can_be_asked_again_from_another_earlier_choice():
    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep
    from _common import configurations

    grid = {**sweep.GRIDS["knn"], **sweep.fixed(["anchor_components=3"])}
    todo = configurations(grid)
    assert len(todo) == len(configurations(sweep.GRIDS["knn"])) == 3
    assert {c["anchor_components"] for c in todo} == {3} and {c["n_knn"] for c in todo} == {5, 10, 20}
    with pytest.raises(SystemExit, match="KEY=JSON"):
        sweep.fixed(["anchor_components"])


def test_the_chain_report_says_whether_a_question_asked_again_is_complete(monkeypatch):
    """A question of dmmvae_global's chain asked again is `complete` only when every
    configuration has every (stand-in, seed) cell it was first asked on; its choice names the
    values of the keys the grid varies."""
    sys.path.insert(0, str(BENCH))
    import json

    import bench_dmmvae_sweep as sweep
    from _common import configurations

    held = {"anchor_components": 3}
    configs = [json.dumps(c, sort_keys=True)
               for c in configurations({**sweep.GRIDS["knn"], **sweep.fixed(["anchor_components=3"])})]
    cells = [("x", 0), ("y", 0)]
    monkeypatch.setattr(sweep, "old_rows", lambda grid: pd.DataFrame(
        [{"dataset": d, "seed": s} for d, s in cells]))
    fos = dict(zip(configs, [0.30, 0.20, 0.25], strict=True))  # n_knn 5, 10, 20 by the grid's order
    rows = pd.DataFrame([{"config": c, "dataset": d, "seed": s, "validation_anchor_foscttm": fos[c],
                          "train_label_transfer": 0.5} for c in configs for d, s in cells])
    out = sweep.chain_step("knn", held, rows)
    assert out["complete"] and out["configurations"] == "3 / 3"
    assert out["choice"] == "n_knn 10" and out["margin"] == pytest.approx(0.05)
    assert out["held_at"] == '{"anchor_components": 3}'
    partial = sweep.chain_step("knn", held, rows.iloc[1:])  # one cell of one configuration missing
    assert not partial["complete"] and partial["configurations"] == "3 / 3"
    assert not sweep.chain_step("knn", held, rows[rows["config"] != configs[0]])["complete"]


def test_a_configuration_another_grid_fitted_is_copied_not_fitted_again(tmp_path):
    """--copy-from: a row of another grid whose configuration fits the same model (defaults
    filled in, same training keys) is copied under this grid's configuration and marked; a
    configuration that differs in one value, another seed or a stand-in not asked is not."""
    sys.path.insert(0, str(BENCH))
    import json

    import bench_dmmvae_sweep as sweep

    from dmmvae.methods import MODELS

    default_scale = MODELS["dmmvae"].DEFAULTS["likelihood_scale"]
    grid = [{"anchor_weight": 0.0, "likelihood_scale": default_scale, "training.max_epochs": 400},
            {"anchor_weight": 0.0, "likelihood_scale": "per_feature", "training.max_epochs": 400}]
    source = tmp_path / "dmmvae_reask_other.csv"
    same = json.dumps({"anchor_weight": 0.0, "training.max_epochs": 400}, sort_keys=True)
    other_budget = json.dumps({"anchor_weight": 0.0, "training.max_epochs": 100}, sort_keys=True)
    pd.DataFrame([{"config": same, "dataset": "x", "seed": 0, "validation_anchor_foscttm": 0.3},
                  {"config": same, "dataset": "x", "seed": 1, "validation_anchor_foscttm": 0.4},
                  {"config": same, "dataset": "z", "seed": 0, "validation_anchor_foscttm": 0.5},
                  {"config": other_budget, "dataset": "y", "seed": 0,
                   "validation_anchor_foscttm": 0.6}]).to_csv(source, index=False)
    done: set = set()
    rows = sweep.copied_rows([source], grid, ["x", "y"], 0, done)
    assert [(r["config"], r["dataset"], r["validation_anchor_foscttm"]) for r in rows] == [
        (json.dumps(grid[0], sort_keys=True), "x", 0.3)]
    assert "copied from dmmvae_reask_other.csv" in rows[0]["source"]
    assert done == {(json.dumps(grid[0], sort_keys=True), "x", 0)}
    assert sweep.copied_rows([source], grid, ["x", "y"], 0, done) == []   # already there
    seedless = tmp_path / "dmmvae_sweep_old.csv"
    pd.DataFrame([{"config": same, "dataset": "x", "validation_anchor_foscttm": 0.3}]).to_csv(
        seedless, index=False)
    with pytest.raises(SystemExit, match="dmmvae_sweep_old.csv: no seed column"):
        sweep.copied_rows([seedless], grid, ["x", "y"], 0, set())


def _seed0_row(config, dataset, anchors):
    """A sweep row on seed 0 with this anchor signal and a label transfer of 0.5."""
    return {"config": config, "dataset": dataset, "seed": 0,
            "validation_anchor_foscttm": anchors, "train_label_transfer": 0.5}


def test_sweep_report_of_an_unfinished_grid_ranks_on_the_cells_every_configuration_holds():
    """A configuration not yet fitted on the slowest stand-in is not ranked on a mean over
    fewer (easier) stand-ins: the report keeps the (stand-in, seed) cells both hold and says so."""
    rows = pd.DataFrame([_seed0_row("a", "easy", 0.20), _seed0_row("a", "hard", 0.45),
                         _seed0_row("b", "easy", 0.30)])
    assert selection.rank(rows, "anchors").index[0] == "b"  # 0.30 against a's 0.325
    common = selection.common_cells(rows)
    assert set(common["dataset"]) == {"easy"}
    assert selection.rank(common, "anchors").index[0] == "a"
    assert selection.incomplete(rows, common).startswith("incomplete: ranked on the 1 of 2")
    assert selection.incomplete(common, selection.common_cells(common)) == ""


def test_expected_best_is_the_mean_best_over_every_draw_of_k_configurations():
    from itertools import combinations

    scores = np.random.default_rng(0).normal(1.0, 0.1, size=7)
    for k in range(1, 8):
        draws = [min(c) for c in combinations(scores, k)]
        assert selection.expected_best(scores, k) == pytest.approx(np.mean(draws))
    assert selection.expected_best(scores, 1) == pytest.approx(scores.mean())
    assert selection.expected_best(scores, 7) == pytest.approx(scores.min())
    with pytest.raises(ValueError, match="1..7"):
        selection.expected_best(scores, 8)


def test_reference_sweep_report_ranks_an_unfinished_grid_on_the_common_cells(tmp_path):
    """The reference sweep's report (GLUE's grid runs over several sessions) ranks as D-MMVAE's
    does: on the cells every configuration holds, with the line that says it."""
    out = tmp_path / "glue.csv"
    pd.DataFrame([_seed0_row("{}", "easy", 0.20), _seed0_row("{}", "hard", 0.45),
                  _seed0_row('{"lam_align": 0.2}', "easy", 0.30)]).to_csv(out, index=False)
    run = subprocess.run([sys.executable, str(BENCH / "bench_reference_sweep.py"), "--method",
                          "glue", "--report-only", "--out", str(out)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "incomplete: ranked on the 1 of 2" in run.stdout
    assert "(lowest mean): {}; the recipe ranks 1 of 2" in run.stdout
    # one common cell ("easy"): rules 0.20 + 1 - 0.5 and 0.30 + 1 - 0.5, so k=1 is their mean
    assert "k=1 0.7500, k=2 0.7000" in run.stdout


def test_the_anchor_free_model_takes_the_rna_atac_rule_s_choice_for_rna_atac_only():
    """``dmmvae_noanchor`` (config/diagonal.yaml) fits, on RNA+ATAC, the configuration the rule
    ranks first on the RNA+ATAC stand-ins' committed rows (grid ``noanchor_glue_rebuilt_atac``:
    GLUE rebuilt in this model, over the shipped model on every seed), with scglue's graph
    batches (``graph_batches: 32``, GLUE's own constant, not a grid setting); on RNA+ADT its own
    settings, the shipped model that grid starts from."""
    from dmmvae.config import load_config
    from dmmvae.methods import apply_recipe

    sweep = _sweep()
    shipped, rebuilt = sweep.configurations(sweep.GRIDS["noanchor_glue_rebuilt_atac"])[:2]
    entry = load_config(BENCH.parent / "config" / "diagonal.yaml")["models"]["dmmvae_noanchor"]

    def as_config(kinds):
        params, training, recipe = apply_recipe(entry["params"], entry["training"],
                                                entry["recipes"], kinds)
        return recipe, json.dumps({**params, **{f"training.{k}": v for k, v in training.items()}},
                                  sort_keys=True)

    recipe, on_atac = as_config(("rna", "atac"))
    assert not sweep.same_model(on_atac, json.dumps(rebuilt, sort_keys=True))
    assert recipe == "rna_atac" and sweep.same_model(
        on_atac, json.dumps({**rebuilt, "graph_batches": 32}, sort_keys=True))
    recipe, on_adt = as_config(("rna", "adt"))
    assert recipe is None and sweep.same_model(on_adt, json.dumps(shipped, sort_keys=True))
    rows = pd.read_csv(BENCH / "results" / "dmmvae_sweep_noanchor_glue_rebuilt_atac.csv")
    rows = rows[rows["config"].isin([json.dumps(c, sort_keys=True) for c in (shipped, rebuilt)])]
    assert set(rows["dataset"]) == {"snare_mop5232", "bmmc_multiome500"}
    assert len(rows) == 12 and set(rows["seed"]) == {0, 1, 2}  # both, every stand-in and seed
    table = selection.rank(rows, sweep.RULE_OF_GRID["noanchor_glue_rebuilt_atac"])
    assert json.loads(table.index[0]) == rebuilt

"""GLUE (scglue) and MaxFuse as diagonal reference methods: both read the benchmark's stored
links, see no paired train cell, and must align the pbmc68k gene split (two halves of the genes,
10 % of them linked by name) clearly better than random. Without the optional package the run
is a ``not_installed`` failure record, not a crash."""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dmmvae.constants import LSI, LSI_ALL
from dmmvae.data.demo import HALF_A, HALF_B
from dmmvae.data.links import link_matrix
from dmmvae.data.prepare import prepare_dataset
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.methods import MissingDependencyError, MissingLinksError
from dmmvae.methods.external.glue import GLUE, guidance_graph
from dmmvae.methods.external.maxfuse import MaxFuse, recipe_for
from dmmvae.metrics import foscttm

ROOT = Path(__file__).resolve().parents[1]

#: GLUE budget for the tests: a few epochs per stage (GLUE's automatic budget is far larger)
FAST_GLUE = {"max_epochs": 40, "h_dim": 64, "n_pcs": 30, "latent_dim": 16}


@functools.cache
def gene_split(link_fraction: float):
    raw = prepare_dataset("gs", {"source": "pbmc68k_genesplit",
                                 "params": {"link_fraction": link_fraction}}, cache_dir=".")
    return make_scenario(preprocess(raw, None, seed=0), "diagonal")


def _foscttm(method, sc) -> float:
    train = (sc.obs["split"] == "train").to_numpy()
    assert not (sc.obs["visible_" + HALF_A].to_numpy(bool)
                & sc.obs["visible_" + HALF_B].to_numpy(bool))[train].any()
    method.fit(sc, seed=0)
    p = method.predict(sc)
    n_test = int((~train).sum())
    for m in (HALF_A, HALF_B, "joint"):
        assert p.embeddings[m].shape[0] == n_test and np.isfinite(p.embeddings[m]).all()
    return foscttm(p.embeddings[HALF_A], p.embeddings[HALF_B])


def test_guidance_graph_holds_every_stored_link_and_a_self_loop_per_feature():
    sc = gene_split(0.1)
    g, n_links = guidance_graph(sc, {m: f"{m}:" for m in sc.mod})
    L = link_matrix(sc, HALF_A, HALF_B).tocoo()
    assert n_links == {f"{HALF_A}-{HALF_B}": L.nnz} and L.nnz > 0
    assert g.number_of_nodes() == sum(a.n_vars for a in sc.mod.values())
    assert g.number_of_edges() == g.number_of_nodes() + L.nnz
    a_names = sc.mod[HALF_A].var_names
    b_names = sc.mod[HALF_B].var_names
    i, j = L.row[0], L.col[0]
    edge = g.edges[f"{HALF_A}:{a_names[i]}", f"{HALF_B}:{b_names[j]}"]
    assert edge["sign"] == 1 and 0 < edge["weight"] <= 1
    assert all(g.has_edge(v, v) for v in g.nodes)


def test_missing_packages_are_not_installed_records(monkeypatch):
    monkeypatch.setitem(sys.modules, "scglue", None)  # makes `import scglue` fail
    monkeypatch.setitem(sys.modules, "maxfuse", None)
    for method, name in ((GLUE(), "scglue"), (MaxFuse(), "maxfuse")):
        with pytest.raises(MissingDependencyError, match=f"{name} is not installed"):
            method.fit(gene_split(0.1), seed=0)


def test_glue_aligns_the_gene_split_without_pairs():
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    fos = _foscttm(GLUE(**FAST_GLUE), gene_split(0.1))
    assert fos < 0.4, fos  # random: ~0.49; measured 0.33 with these few epochs


def test_glue_and_maxfuse_need_links():
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    for method in (GLUE(**FAST_GLUE), MaxFuse()):
        with pytest.raises(MissingLinksError, match="no linked feature"):
            method.fit(gene_split(0.0), seed=0)


def test_maxfuse_with_links_that_carry_nothing_stops_as_missing_links():
    """Links exist but no linked gene varies in the train cells of both modalities (a weak-link
    set): MaxFuse stops with missing_links (recorded as a failed run), not another error."""
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    sc = gene_split(0.1).copy()
    linked = np.unique(link_matrix(sc, HALF_A, HALF_B).tocoo().col)
    b = sc.mod[HALF_B]
    X = b.X.toarray() if hasattr(b.X, "toarray") else np.array(b.X)
    X[:, linked] = 1.0
    b.X = X
    for layer in list(b.layers):
        L = b.layers[layer]
        L = L.toarray() if hasattr(L, "toarray") else np.array(L)
        L[:, linked] = 1.0
        b.layers[layer] = L
    with pytest.raises(MissingLinksError, match="linked genes vary"):
        MaxFuse().fit(sc, seed=0)


def test_maxfuse_aligns_the_gene_split_without_pairs():
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    fos = _foscttm(MaxFuse(), gene_split(0.1))
    assert fos < 0.3, fos  # random: ~0.5


# ---- MaxFuse at its authors' recipe, by modality pair (docs/maxfuse_recipe.md) ----------------
def _standin(shared_data, name: str, partner: str, annotation: str | None = None):
    tenx = shared_data / "tenx"
    h5 = str(tenx / f"{name}.filtered_feature_bc_matrix.h5")
    spec = {"source": "local",
            "modalities": {"rna": {"format": "10x_h5", "path": h5},
                           partner: {"format": "10x_h5", "path": h5}},
            "labels": {"path": str(tenx / f"{name}.labels.csv"), "column": "cell_type"}}
    params = {"links": {"gene_annotation": str(shared_data / "annotation" / annotation)}} \
        if annotation else None
    raw = prepare_dataset(name, spec, cache_dir=tempfile.gettempdir())
    return make_scenario(preprocess(raw, params, seed=0), "diagonal")


@pytest.fixture(scope="module")
def multiome500(shared_data):
    return _standin(shared_data, "neurips2021_bmmc_multiome_500", "atac", "hg38_genes.bed")


@pytest.fixture(scope="module")
def cite600(shared_data):
    return _standin(shared_data, "neurips2021_bmmc_cite_600", "adt")


def test_maxfuse_recipe_follows_the_modality_pair():
    assert recipe_for(("rna", "atac")) == recipe_for(("atac", "rna")) == "rna_atac"
    assert recipe_for(("rna", "adt")) == "cite"
    assert recipe_for(("gaussian", "gaussian")) == "legacy"
    name, used, overrides = MaxFuse().settings(("rna", "atac"))
    assert (name, overrides) == ("rna_atac", [])
    # the strong-link notebooks' values (mf_pbmc.ipynb)
    assert used["init_wt"] == used["refine_wt"] == 0.7 and used["n_iters"] == 8
    assert used["refine_svd"] == [200, None] and used["filter_prop"] == 0.4
    assert used["metacell_size"] == 2 and used["matching_ratio"] == 5
    name, used, _ = MaxFuse().settings(("rna", "adt"))
    # the CITE-seq tutorial's values (docs/citeseq_pbmc_evaluate.ipynb)
    assert name == "cite" and used["n_iters"] == 3 and used["refine_svd"] == [30, 30]
    assert used["init_svd"] == [25, 20] and used["filter_prop"] == 0.3
    with pytest.raises(ValueError, match="recipe must be one of"):
        MaxFuse(recipe="tonsil").settings(("rna", "adt"))


@pytest.mark.shared_data
def test_maxfuse_runs_the_rna_atac_recipe_on_all_peak_lsi(multiome500):
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    m = MaxFuse()
    m.fit(multiome500, seed=0)
    info = m.train_info
    assert info["recipe"] == "rna_atac" and "strong-link" in info["recipe_source"]
    assert info["settings"]["n_iters"] == 8 and info["settings"]["refine_wt"] == 0.7
    assert info["user_overrides"] == []
    assert info["inputs"]["active"]["atac"] == "obsm['X_lsi_all'] components 2-50"
    assert info["active_features"]["atac"] == 49
    # RNA active = its shared (linked, most variable) genes, as in the notebooks
    assert info["active_features"]["rna"] == info["shared_features"]
    p = m.predict(multiome500)
    n_test = int((multiome500.obs["split"] == "test").sum())
    assert p.embeddings["atac"].shape == (n_test, 15)  # the authors' 15 components
    assert p.info["recipe"] == "rna_atac" and np.isfinite(p.embeddings["joint"]).all()


@pytest.mark.shared_data
def test_maxfuse_falls_back_to_the_kept_peak_lsi_with_a_note(multiome500):
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    sc = multiome500.copy()
    del sc.mod["atac"].obsm[LSI_ALL]
    m = MaxFuse(n_iters=1)
    m.fit(sc, seed=0)
    assert m.train_info["inputs"]["active"]["atac"].startswith(f"obsm['{LSI}']")
    assert any("used obsm['X_lsi']" in n for n in m.predict(sc).info["notes"])


@pytest.mark.shared_data
def test_maxfuse_runs_the_cite_recipe_and_a_user_value_wins(cite600):
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    m = MaxFuse()
    m.fit(cite600, seed=0)
    info = m.train_info
    assert info["recipe"] == "cite" and "citeseq_pbmc_evaluate" in info["recipe_source"]
    assert info["settings"]["n_iters"] == 3 and info["settings"]["matching_ratio"] == 3
    assert "normalize_total + log1p" in info["inputs"]["active"]["adt"]
    m2 = MaxFuse(n_iters=2, refine_wt=0.5, embedding_dims=10)
    m2.fit(cite600, seed=0)
    s = m2.train_info["settings"]
    assert (s["n_iters"], s["refine_wt"], s["init_wt"]) == (2, 0.5, 0.7)
    assert m2.train_info["user_overrides"] == ["embedding_dims", "n_iters", "refine_wt"]
    assert m2.predict(cite600).embeddings["adt"].shape[1] == 10
    legacy = MaxFuse(recipe="legacy")
    legacy.fit(cite600, seed=0)
    assert legacy.train_info["settings"]["init_wt"] == 0.3


# ---- GLUE at its authors' recipe (docs/recipes.md) ---------------------------------------
#: a few epochs and small layers: enough to check what GLUE reads and records
TINY_GLUE = {"max_epochs": 4, "h_dim": 32, "latent_dim": 8, "n_pcs": 20}


@pytest.mark.shared_data
def test_glue_reads_the_all_peak_lsi_and_records_its_budget(multiome500, caplog):
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    from dmmvae.methods.external.glue import linked_features

    m = GLUE(**TINY_GLUE)
    with caplog.at_level("WARNING", logger="dmmvae.methods.external.glue"):
        m.fit(multiome500, seed=0)
    info = m.train_info
    atac = multiome500.mod["atac"]
    n_lsi_peaks = int(atac.uns["lsi_all"]["n_peaks"])
    assert n_lsi_peaks > atac.n_vars  # all peaks, not only the kept ones
    assert info["encoder_input"]["atac"] == (
        f"obsm['{LSI_ALL}']: {atac.obsm[LSI_ALL].shape[1]} components over {n_lsi_peaks} peaks")
    assert info["atac_lsi_peaks"] == {"atac": n_lsi_peaks}
    # decoder: GLUE's highly variable peaks = the kept peaks the guidance graph links to a gene
    n_linked = int(linked_features(multiome500, ["rna", "atac"])["atac"].sum())
    assert 0 < n_linked < atac.n_vars
    assert info["decoder_features"] == {"rna": multiome500.mod["rna"].n_vars, "atac": n_linked}
    assert info["graph_vertices"] == multiome500.mod["rna"].n_vars + n_linked
    # the user's cap: epochs per stage, the automatic budget it overrides, a WARNING and a note
    auto = info["auto_budget"]["max_epochs"]
    assert auto > 4 and set(info["epochs_per_stage"]) == {"pretrain", "finetune"}
    assert all(1 <= n <= 4 for n in info["epochs_per_stage"].values())
    assert all(info["stages"][s]["max_epochs"] == 4 for s in ("pretrain", "finetune"))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("max_epochs=4" in w and f"automatic budget of {auto} epochs" in w for w in warned)
    notes = m.predict(multiome500).info["notes"]
    assert any("max_epochs=4 set by the user" in n and str(auto) in n for n in notes)


@pytest.mark.shared_data
def test_glue_falls_back_to_the_kept_peak_lsi_with_a_note(multiome500):
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    sc = multiome500.copy()
    del sc.mod["atac"].obsm[LSI_ALL]
    m = GLUE(**TINY_GLUE, atac_features="all")
    m.fit(sc, seed=0)
    atac = sc.mod["atac"]
    assert m.train_info["encoder_input"]["atac"] == (
        f"obsm['{LSI}']: {atac.obsm[LSI].shape[1]} components over {atac.n_vars} peaks")
    assert m.train_info["decoder_features"]["atac"] == atac.n_vars
    assert any(f"used obsm['{LSI}']" in n for n in m.predict(sc).info["notes"])


@pytest.mark.shared_data
def test_glue_reads_the_kept_peak_lsi_when_asked_without_a_fallback_note(multiome500):
    """``atac_input: lsi`` (the ablation on dmmvae's ATAC input) reads ``obsm["X_lsi"]`` although
    the all-peak LSI is there, and says so without the fallback note."""
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    m = GLUE(**TINY_GLUE, atac_input="lsi")
    m.fit(multiome500, seed=0)
    atac = multiome500.mod["atac"]
    assert LSI_ALL in atac.obsm
    assert m.train_info["encoder_input"]["atac"] == (
        f"obsm['{LSI}']: {atac.obsm[LSI].shape[1]} components over {atac.n_vars} peaks")
    assert m.train_info["atac_lsi_peaks"] == {"atac": atac.n_vars}
    # what the network reads, not only what train_info says: its first layer's width
    first = next(x for x in m._model.net.x2u["atac"].modules() if isinstance(x, torch.nn.Linear))
    assert atac.obsm[LSI].shape[1] != atac.obsm[LSI_ALL].shape[1]
    assert first.in_features == atac.obsm[LSI].shape[1]
    assert not any("used obsm" in n for n in m.predict(multiome500).info["notes"])
    with pytest.raises(ValueError, match="atac_input must be one of"):
        GLUE.validate_params({"atac_input": "peaks"})


def test_glue_default_is_the_automatic_budget_of_scglue(monkeypatch, caplog):
    """max_epochs None: scglue resolves its AUTO budget (no cap, no warning), and
    ``automatic_budget`` computes the same values. Training itself is stubbed out."""
    scglue = pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    from dmmvae.methods.external.glue import automatic_budget

    seen = []
    monkeypatch.setattr(scglue.models.scglue.SCGLUETrainer, "fit",
                        lambda self, *a, **kw: seen.append(kw))
    sc = gene_split(0.1)
    m = GLUE(h_dim=16, latent_dim=8, n_pcs=10)
    with caplog.at_level("WARNING", logger="dmmvae.methods.external.glue"):
        m.fit(sc, seed=0)
    info = m.train_info
    n_cells = sum(info["n_train_cells"].values())  # diagonal: disjoint cells
    auto = automatic_budget(scglue, n_cells, 2e-3, 128)
    assert info["auto_budget"] == auto and auto["max_epochs"] > 48
    assert [kw["max_epochs"] for kw in seen] == [auto["max_epochs"]] * 2
    assert [kw["patience"] for kw in seen] == [auto["patience"]] * 2
    assert [kw["reduce_lr_patience"] for kw in seen] == [auto["reduce_lr_patience"]] * 2
    # pretraining has no alignment (burn-in inf, recorded as None); fine-tuning GLUE's burn-in
    assert info["stages"]["pretrain"]["align_burnin"] is None
    assert info["stages"]["finetune"]["align_burnin"] == auto["align_burnin"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "notes" not in info or not any("set by the user" in n for n in info["notes"])


def test_glue_finetunes_on_the_callers_torch_threads():
    """GLUE's balancing weights between its stages run scanpy's neighbour search; numba's
    OpenMP layer, started there, sets the libgomp it shares with torch to all cores, and
    fine-tuning ran on two threads although the caller asked for one (on two shared cores the
    spinning second thread made each fine-tuning epoch ~8x slower). A fresh interpreter, as in a
    benchmark or workflow job (numba's pool starts once per process); training is stubbed out."""
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba sees one core here, so its OpenMP pool cannot widen torch's")
    import subprocess

    code = """
import sys, torch, scglue
sys.path.insert(0, "tests")
from test_glue_maxfuse import GLUE, gene_split
torch.set_num_threads(1)
seen = []
scglue.models.scglue.SCGLUETrainer.fit = lambda self, *a, **kw: seen.append(torch.get_num_threads())
GLUE(h_dim=16, latent_dim=8, n_pcs=10).fit(gene_split(0.1), seed=0)
import scanpy, anndata, numpy as np
scanpy.pp.neighbors(anndata.AnnData(np.random.default_rng(0).normal(size=(50, 5))))
print(seen, torch.get_num_threads())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout.strip().splitlines()[-1]
    # both stages on the caller's one thread; a later neighbour search (numba already started)
    # leaves torch alone, so only the first one, inside the fit, could have widened it
    assert out == "[1, 1] 1", out


def test_glue_without_finetuning_is_its_pretrained_model(monkeypatch):
    """``finetune: False`` (the ablation of GLUE's second stage): one stage, scglue's
    pretraining (its adversary plays on codes noised at full strength throughout, align_burnin
    inf), and its model is the result; on the gene split it still aligns, less than at random."""
    scglue = pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    m = GLUE(**FAST_GLUE, finetune=False)
    fos = _foscttm(m, gene_split(0.1))
    info = m.train_info
    assert list(info["stages"]) == ["pretrain"] and info["epochs_per_stage"]["finetune"] == 0
    assert info["stages"]["pretrain"]["align_burnin"] is None  # inf: the noise never fades
    assert fos < 0.45, fos  # random: ~0.49
    seen = []
    monkeypatch.setattr(scglue.models.scglue.SCGLUETrainer, "fit",
                        lambda self, *a, **kw: seen.append(kw))
    GLUE(h_dim=16, latent_dim=8, n_pcs=10, finetune=False).fit(gene_split(0.1), seed=0)
    assert len(seen) == 1 and seen[0]["align_burnin"] == np.inf


def test_glue_rejects_unknown_likelihoods_and_peak_sets():
    pytest.importorskip("scglue", reason="scglue not installed (optional reference extra)")
    assert GLUE().params["adt_likelihood"] == "NBMixture"  # scglue 0.4.0's CITE-seq support
    assert GLUE().params["atac_features"] == "linked" and GLUE().params["max_epochs"] is None
    with pytest.raises(ValueError, match="atac_features must be one of"):
        GLUE(atac_features="top").fit(gene_split(0.1), seed=0)

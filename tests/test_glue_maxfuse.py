"""GLUE (scglue) and MaxFuse as diagonal reference methods: both read the benchmark's stored
links, see no paired train cell, and must align the pbmc68k gene split (two halves of the genes,
10 % of them linked by name) clearly better than random. Without the optional package the run
is a ``not_installed`` failure record, not a crash."""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from dmmvae.data.demo import HALF_A, HALF_B
from dmmvae.data.links import link_matrix
from dmmvae.data.prepare import prepare_dataset
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.methods import MissingDependencyError, MissingLinksError
from dmmvae.methods.glue import GLUE, guidance_graph
from dmmvae.methods.maxfuse import MaxFuse
from dmmvae.metrics import foscttm

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


def test_maxfuse_aligns_the_gene_split_without_pairs():
    pytest.importorskip("maxfuse", reason="maxfuse not installed (optional reference extra)")
    fos = _foscttm(MaxFuse(), gene_split(0.1))
    assert fos < 0.3, fos  # random: ~0.5

"""Small synthetic scenarios shared by the model tests (cached: built once per session)."""

from __future__ import annotations

import functools

import mudata as md
import numpy as np
import torch

from dmmvae.constants import LABEL, SPLIT, TEST, TRAIN, visible_key
from dmmvae.data.links import add_links
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.methods import build_model
from dmmvae.methods.training.batches import MultimodalData, build_spec
from dmmvae.metrics import foscttm, imputation_scores, label_transfer

MOD_SPECS = {
    "rna": {"kind": "rna", "n_features": 150, "n_private": 2},
    "atac": {"kind": "atac", "n_features": 250, "n_private": 2},
    "adt": {"kind": "adt", "n_features": 25, "n_private": 2},
}


@functools.cache
def preprocessed(mods: tuple[str, ...], n_cells: int, seed: int = 0):
    raw = simulate_shared_private(
        n_cells=n_cells, modalities={m: MOD_SPECS[m] for m in mods}, seed=seed
    )
    return preprocess(raw, seed=seed)


@functools.cache
def gene_split(n_cells: int = 600, overlap: int = 100):
    """One simulated RNA modality split into two overlapping gene sets (``overlap`` genes in
    both, linked by name): the synthetic analogue of gene <-> protein links."""
    raw = simulate_shared_private(
        n_cells=n_cells, modalities={"rna": {"kind": "rna", "n_features": 300, "n_private": 2}}, seed=0
    )
    pre = preprocess(raw, seed=0)
    a = pre.mod["rna"]
    half = (a.n_vars + overlap) // 2
    with md.set_options(pull_on_update=False):
        out = md.MuData({"genes_a": a[:, :half].copy(), "genes_b": a[:, a.n_vars - half :].copy()})
    out.obs = pre.obs.copy()
    add_links(out)  # the preprocessing step that links the shared genes by name
    return out


def scenario(mods=("rna", "atac"), kind="paired", n_cells=300, seed=0):
    return make_scenario(preprocessed(tuple(mods), n_cells, seed), kind, seed=seed)


def labels_of_test_cells(mdata):
    return mdata.obs[LABEL].to_numpy()[mdata.obs[SPLIT].to_numpy() == TEST]


@functools.cache
def random_foscttm() -> float:
    """FOSCTTM of the ``random`` control on the 600-cell paired scenario (about 0.5)."""
    sc = scenario(n_cells=600)
    m = build_model("random")
    m.fit(sc, seed=0)
    p = m.predict(sc)
    return foscttm(p.embeddings["rna"], p.embeddings["atac"])


def fit_predict_diagonal(variant: str, params: dict, training: dict):
    """Train ``variant`` on the diagonal RNA/ATAC scenario (no paired train cell, checked);
    assert the loss fell and every prediction is finite with both imputation directions."""
    sc = scenario(kind="diagonal")
    train = sc.obs[SPLIT].to_numpy() == TRAIN
    both = sc.obs[visible_key("rna")].to_numpy() & sc.obs[visible_key("atac")].to_numpy()
    assert not both[train].any()  # no train cell is paired
    model = build_model(variant, params)
    hist = model.fit(sc, seed=0, training=training)
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    p = model.predict(sc)
    assert set(p.imputations) == {("rna", "atac"), ("atac", "rna")}
    for arr in [*p.embeddings.values(), *p.imputations.values(), *p.generated.values()]:
        assert np.isfinite(arr).all()
    return p


def fit_predict_paired(variant: str, training: dict):
    """Train ``variant`` (64 hidden units) on the 600-cell paired RNA/ATAC scenario and score its
    test-cell predictions: ``(scenario, history, predictions, scores)`` with ``scores`` holding
    FOSCTTM (RNA vs ATAC embeddings), the random control's FOSCTTM, label-transfer accuracy and
    the per-cell Pearson of ATAC->RNA imputation. Thresholds are the caller's."""
    sc = scenario(n_cells=600)
    model = build_model(variant, {"n_hidden": 64})
    hist = model.fit(sc, seed=0, training=training)
    p = model.predict(sc)
    test = sc.obs[SPLIT].to_numpy() == TEST
    pred = p.imputations[("atac", "rna")]
    lt = label_transfer(p.embeddings["rna"], p.embeddings["atac"], labels_of_test_cells(sc))
    scores = {
        "foscttm": foscttm(p.embeddings["rna"], p.embeddings["atac"]),
        "random_foscttm": random_foscttm(),
        "label_transfer": lt["acc_mean"],
        "rna_pearson": imputation_scores(sc.mod["rna"].X[test].toarray(), pred, "rna")[
            "pearson_cell"
        ],
    }
    return sc, hist, p, scores


def train_batch(mdata, spec, n=64):
    """The first ``n`` train cells of ``mdata`` as one minibatch (scenario masks applied)."""
    data = MultimodalData(mdata, spec)
    rows = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TRAIN)[:n]
    return data.batch(torch.as_tensor(rows))


def built_module(model_name: str, params: dict, kind: str = "paired"):
    """An untrained ``model_name`` MODULE built on a synthetic RNA+ATAC ``kind`` scenario, and
    a train batch of it: ``(module, spec, batch)``."""
    sc = scenario(kind=kind)
    spec = build_spec(sc)
    module = build_model(model_name, params).module
    module.build(spec)
    return module, spec, train_batch(sc, spec)


def hidden_atac_batch(model_name: str, params: dict):
    """An untrained ``model_name`` MODULE in eval mode and a mosaic-scenario train batch whose ATAC
    input requires grad: ``(module, batch, x_atac, hidden)``, ``hidden`` = rows that show RNA but
    not ATAC (checked to exist, beside rows that show ATAC)."""
    model, spec, batch = built_module(model_name, params, "mosaic")
    model.eval()
    hidden = ~batch["mask"]["atac"] & batch["mask"]["rna"]
    assert hidden.any() and batch["mask"]["atac"].any()
    x = batch["x"]["atac"].clone().requires_grad_(True)
    batch["x"]["atac"] = x
    return model, batch, x, hidden

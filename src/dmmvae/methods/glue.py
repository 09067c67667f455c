"""``glue``: GLUE (graph-linked unified embedding; Cao & Gao 2022, ``scglue``) as a reference
method for the diagonal scenario, its guidance graph built from the links the benchmark stores.

Optional: ``scglue`` is imported inside the method; without it the run is recorded as
``not_installed`` (:class:`MissingDependencyError`) with the install hint.

What GLUE sees (train cells only, scenario masks respected)
-----------------------------------------------------------
- One AnnData per modality holding the train cells that SHOW that modality (``visible_<mod>``);
  in the diagonal scenario these are disjoint cells, GLUE's own setting (unpaired modalities).
  Cells that show two modalities (paired / mosaic) enter each modality's AnnData separately
  (GLUE's unpaired model; the pairing is not used).
- Feature names are prefixed with the modality (``rna:CD3E``, ``adt:CD3``) so that the
  guidance graph has one vertex per feature even when two modalities share names.
- Likelihoods and encoder inputs (GLUE's tutorials): RNA: negative binomial on
  ``layers["counts"]``, encoder input = PCA (``n_pcs`` 100) of the scoring normalisation,
  scaled per gene, both fitted on the RNA train cells; ATAC: negative binomial on counts,
  encoder input = the LSI of preprocessing (``obsm["X_lsi"]``, fitted on train cells) when
  present; ADT: ``adt_likelihood`` (``NB`` on counts, or ``Normal`` on the CLR of ``.X``), no
  reduction; ``gaussian`` modalities: ``Normal`` on ``.X`` with a PCA input like RNA.
- The guidance graph is built directly from ``mdata.uns["links"]`` (:func:`link_matrix`): one
  undirected edge per link with its weight (clipped into (0, 1], GLUE's requirement) and sign
  +1, plus a self-loop of weight 1 on every feature. No genomic-coordinate helper of scglue is
  used (so no bedtools binary is needed): the links are the ones every linked method reads.
  A modality with no link to any other one stops the run with :class:`MissingLinksError`.

Training (``scglue.models.fit_SCGLUE``'s recipe, run stage by stage so that the device, the
time limit and the per-epoch history are ours): pretraining without alignment, balancing weights
estimated from the pretrained embeddings (``scglue.data.estimate_balancing_weight``), then
fine-tuning from the pretrained weights (seed + 1, as scglue does). ``max_epochs`` / ``patience``
``None`` keep GLUE's automatic values (scaled by learning rate and data size, with its early
stopping). ``training.time_limit_minutes`` applies: pretraining stops at half of it and
fine-tuning at all of it (training ends early, as for the scvi-tools references;
``train_info["time_limit_reached"]``).

Predictions (test cells): each modality's embedding is GLUE's encoder mean from that modality
alone (``encode_data``); the joint embedding is their mean. No imputation (GLUE's API has no
cross-modal prediction; listed in ``info["notes"]``).
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import anndata as ad
import mudata as md
import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA

from ..constants import COUNTS, JOINT, LSI, MODALITY_KIND, SPLIT, TEST, TRAIN, visible_key
from ..data.links import link_matrix
from ..io import InputError, Predictions
from ._base import Method, MissingDependencyError, MissingLinksError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "scglue is not installed; the reference method glue needs it. Install the optional extra: "
    "pip install -e .[refs] (scglue==0.4.1), or leave glue out of the config"
)
#: obs column GLUE reads its balancing weights from (scglue's own key name)
_BALANCE = "balancing_weight"
_REP = "X_glue_input"


def import_scglue():
    """``import scglue`` or a :class:`MissingDependencyError` naming the extra to install."""
    try:
        import scglue
    except ImportError as e:
        raise MissingDependencyError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return scglue


@contextmanager
def _scglue_settings(scglue) -> Iterator[None]:
    """CPU placement is ours (no NVML probing), and no background shuffling process."""
    cfg = scglue.config
    saved = (cfg.CPU_ONLY, cfg.GRAPH_SHUFFLE_NUM_WORKERS, cfg.ARRAY_SHUFFLE_NUM_WORKERS)
    cfg.CPU_ONLY, cfg.GRAPH_SHUFFLE_NUM_WORKERS, cfg.ARRAY_SHUFFLE_NUM_WORKERS = True, 0, 0
    try:
        yield
    finally:
        cfg.CPU_ONLY, cfg.GRAPH_SHUFFLE_NUM_WORKERS, cfg.ARRAY_SHUFFLE_NUM_WORKERS = saved


def guidance_graph(mdata: md.MuData, prefix: dict[str, str]):
    """The networkx guidance graph of the stored links: vertices ``<mod>:<feature>``, an edge
    per link (weight clipped into (0, 1], sign +1) and a self-loop per feature."""
    g = nx.Graph()
    names = {m: [f"{prefix[m]}{v}" for v in mdata.mod[m].var_names.astype(str)] for m in prefix}
    for m in prefix:
        g.add_edges_from((v, v, {"weight": 1.0, "sign": 1}) for v in names[m])
    n_links: dict[str, int] = {}
    for a, b in itertools.combinations(prefix, 2):
        L = sp.coo_matrix(link_matrix(mdata, a, b))
        keep = L.data > 0
        w = np.minimum(L.data[keep], 1.0)
        g.add_edges_from(
            (names[a][i], names[b][j], {"weight": float(x), "sign": 1})
            for i, j, x in zip(L.row[keep], L.col[keep], w, strict=True)
        )
        n_links[f"{a}-{b}"] = int(keep.sum())
    return g, n_links


class _History:
    """scglue training plugin: per-epoch losses, and termination at a wall-clock deadline."""

    def __init__(self, stage: str, deadline: float | None, rows: list[dict]) -> None:
        self.stage, self.deadline, self.rows = stage, deadline, rows
        self.reached = False

    def attach(self, net, trainer, train_engine, val_engine, train_loader, val_loader,
               directory) -> None:
        import ignite

        @train_engine.on(ignite.engine.Events.EPOCH_COMPLETED)
        def _record(engine):
            row = {"stage": self.stage, "epoch": int(engine.state.epoch)}
            row.update({f"train_{k}": float(v) for k, v in engine.state.metrics.items()})
            if val_engine is not None:
                row.update({f"val_{k}": float(v) for k, v in val_engine.state.metrics.items()})
            self.rows.append(row)
            if self.deadline is not None and time.perf_counter() > self.deadline:
                self.reached = True
                engine.terminate()


class GLUE(Method):
    """GLUE (scglue) on the benchmark's links (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 50,  # GLUE's default
        "h_depth": 2,
        "h_dim": 256,
        "dropout": 0.2,
        "n_pcs": 100,  # RNA / gaussian encoder input (GLUE tutorial: 100 PCs)
        "adt_likelihood": "NB",  # "NB" (counts) or "Normal" (CLR of .X)
        "lr": 2e-3,
        "lam_graph": 0.02,
        "lam_align": 0.05,
        "batch_size": 128,
        "max_epochs": None,  # None: GLUE's automatic value (per stage)
        "patience": None,  # None: GLUE's automatic early-stopping patience
        "balance": True,  # estimate balancing weights between pretraining and fine-tuning
    }
    is_neural: ClassVar[bool] = True
    uses_device: ClassVar[bool] = True
    #: epochs, batch size and lr are GLUE's own (``params``); of ``training`` only the time limit
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset({"time_limit_minutes"})

    # ---- data -------------------------------------------------------------------------------
    def _likelihood(self, a: ad.AnnData) -> tuple[str, bool]:
        """(GLUE prob_model, whether it reads counts)."""
        kind = a.uns.get(MODALITY_KIND, "gaussian")
        if kind in ("rna", "atac"):
            return "NB", True
        if kind == "adt":
            lik = str(self.params["adt_likelihood"])
            if lik not in ("NB", "Normal"):
                raise ValueError(f"glue: adt_likelihood must be 'NB' or 'Normal', got {lik!r}")
            return lik, lik == "NB"
        return "Normal", False

    def _fit_reps(self, mdata: md.MuData, rows: dict[str, np.ndarray], seed: int) -> None:
        """Encoder inputs: PCA of the scaled scoring normalisation for RNA / gaussian, fitted
        on that modality's train cells; stored LSI for ATAC; none for ADT."""
        self._pca: dict[str, tuple[np.ndarray, np.ndarray, PCA]] = {}
        for m in self._mods:
            a = mdata.mod[m]
            kind = a.uns.get(MODALITY_KIND, "gaussian")
            if kind not in ("rna", "gaussian"):
                continue
            X = _dense(a.X[rows[m]])
            mu, sd = X.mean(0), X.std(0)
            sd = np.where(sd > 0, sd, 1.0)
            k = int(min(self.params["n_pcs"], X.shape[0] - 1, X.shape[1] - 1))
            pca = PCA(n_components=k, random_state=seed).fit(np.clip((X - mu) / sd, -10, 10))
            self._pca[m] = (mu, sd, pca)

    def _rep(self, mdata: md.MuData, m: str, rows: np.ndarray) -> np.ndarray | None:
        a = mdata.mod[m]
        if m in self._pca:
            mu, sd, pca = self._pca[m]
            return pca.transform(np.clip((_dense(a.X[rows]) - mu) / sd, -10, 10)).astype(
                np.float32)
        if a.uns.get(MODALITY_KIND) == "atac" and LSI in a.obsm:
            return np.asarray(a.obsm[LSI][rows], dtype=np.float32)
        return None

    def _adata(self, mdata: md.MuData, m: str, rows: np.ndarray) -> ad.AnnData:
        scglue = import_scglue()
        a = mdata.mod[m]
        prob, counts = self._likelihood(a)
        if counts and COUNTS not in a.layers:
            raise InputError(
                f"{getattr(mdata, 'filename', None) or 'scenario MuData'}: modality '{m}' has no "
                f"layers['{COUNTS}']; glue's {prob} likelihood needs raw counts. Fix: preprocess "
                "raw counts with dmmvae.data.preprocess."
            )
        X = a.layers[COUNTS][rows] if counts else a.X[rows]
        X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, np.float32)
        out = ad.AnnData(X=X, obs=pd.DataFrame(index=mdata.obs_names[rows].astype(str)),
                         var=pd.DataFrame(index=[f"{m}:{v}" for v in a.var_names.astype(str)]))
        rep = self._rep(mdata, m, rows)
        if rep is not None:
            out.obsm[_REP] = rep
        scglue.models.configure_dataset(out, prob, use_highly_variable=False,
                                        use_rep=_REP if rep is not None else None)
        return out

    # ---- training ---------------------------------------------------------------------------
    def _stage(self, scglue, adatas, graph, *, stage, seed, device, deadline, rows,
               pretrained=None):
        p = self.params
        init = {k: p[k] for k in ("latent_dim", "h_depth", "h_dim", "dropout")}
        model = scglue.models.SCGLUEModel(adatas, sorted(graph.nodes), random_seed=seed,
                                          shared_batches=False, **init)
        model.net.device = _torch_device(device)
        if pretrained is not None:
            model.adopt_pretrained_model(pretrained)
        model.compile(lam_graph=float(p["lam_graph"]), lam_align=float(p["lam_align"]),
                      lr=float(p["lr"]))
        hist = _History(stage, deadline, rows)
        trainer = model.trainer
        # scglue's SCGLUEModel.fit takes no plugin; its trainer's fit does: bind ours to it
        trainer.fit = _with_plugins(trainer.fit, [hist])
        fit = {"data_batch_size": int(p["batch_size"])}
        if p["max_epochs"] is not None:
            # GLUE sets burn-in and patiences as fixed fractions of its automatic epoch budget
            # (8, 4 and 2 of 48 "progress" units); keep those fractions for a given budget, else
            # the adversarial alignment may never start within max_epochs
            epochs, cls = int(p["max_epochs"]), scglue.models.SCGLUEModel
            frac = {"align_burnin": cls.ALIGN_BURNIN_PRG, "patience": cls.PATIENCE_PRG,
                    "reduce_lr_patience": cls.REDUCE_LR_PATIENCE_PRG}
            fit["max_epochs"] = epochs
            fit.update({k: max(1, math.ceil(epochs * v / cls.MAX_EPOCHS_PRG))
                        for k, v in frac.items()})
        if p["patience"] is not None:
            fit["patience"] = int(p["patience"])
        if stage == "pretrain":  # fit_SCGLUE's pretraining: no adversarial alignment
            fit.update(align_burnin=np.inf, safe_burnin=False)
        with tempfile.TemporaryDirectory(prefix="dmmvae_glue_") as tmp:
            model.fit(adatas, graph, directory=tmp, **fit)
        del trainer.fit
        return model, hist.reached

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        scglue = import_scglue()
        import torch

        self._mods = list(mdata.mod)
        if len(self._mods) < 2:
            raise InputError(f"glue: needs at least two modalities; the scenario has {self._mods}")
        t0 = time.perf_counter()
        limit = (training or {}).get("time_limit_minutes")
        limit_s = 60.0 * float(limit) if limit else None
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        rows = {}
        for m in self._mods:
            key = visible_key(m)
            shown = train & (mdata.obs[key].to_numpy(bool) if key in mdata.obs else True)
            rows[m] = np.flatnonzero(shown)
            if len(rows[m]) < 10:
                raise InputError(f"glue: only {len(rows[m])} train cells show '{m}'; need >= 10")
        graph, n_links = guidance_graph(mdata, {m: f"{m}:" for m in self._mods})
        linked = {m for pair, n in n_links.items() if n for m in pair.split("-")}
        if set(self._mods) - linked:
            raise MissingLinksError(
                f"glue: modalities {sorted(set(self._mods) - linked)} have no linked feature "
                f"(links per pair: {n_links}); GLUE's guidance graph needs them. Fix: give gene "
                "coordinates (10x 'interval' or gene_annotation) or protein->gene links"
            )
        torch.manual_seed(int(seed))
        self._fit_reps(mdata, rows, int(seed))
        adatas = {m: self._adata(mdata, m, rows[m]) for m in self._mods}
        history: list[dict] = []
        reached: list[bool] = []
        balance_fallback: list[str] = []
        with _scglue_settings(scglue):
            pre, hit = self._stage(scglue, adatas, graph, stage="pretrain", seed=int(seed),
                                   device=device, rows=history,
                                   deadline=t0 + limit_s / 2 if limit_s else None)
            reached.append(hit)
            if self.params["balance"]:
                for m, a in adatas.items():
                    a.obsm["X_glue_pretrain"] = pre.encode_data(m, a)
                with np.errstate(invalid="ignore", divide="ignore"):
                    scglue.data.estimate_balancing_weight(
                        *adatas.values(), use_rep="X_glue_pretrain", key_added=_BALANCE)
                for m, a in adatas.items():
                    w = a.obs[_BALANCE].to_numpy(float)
                    if not (np.isfinite(w).all() and w.sum() > 0):  # no cluster matched
                        a.obs[_BALANCE] = 1.0
                        balance_fallback.append(m)
                    a.uns[scglue.config.ANNDATA_KEY]["use_dsc_weight"] = _BALANCE
                    del a.obsm["X_glue_pretrain"]
            self._model, hit = self._stage(scglue, adatas, graph, stage="finetune",
                                           seed=int(seed) + 1, device=device, rows=history,
                                           pretrained=pre,
                                           deadline=t0 + limit_s if limit_s else None)
            reached.append(hit)
        hist = pd.DataFrame(history)
        self.train_info = {
            "scglue_version": scglue.__version__,
            "n_train_cells": {m: int(len(r)) for m, r in rows.items()},
            "graph_vertices": int(graph.number_of_nodes()),
            "graph_links": n_links,
            "epochs_per_stage": hist.groupby("stage")["epoch"].max().astype(int).to_dict()
            if len(hist) else {},
            "time_limit_reached": bool(any(reached)),
            # modalities whose balancing weights were undefined (no cluster matched across
            # modalities after pretraining): uniform weights were used instead
            "balancing_uniform": balance_fallback,
            "train_seconds": time.perf_counter() - t0,
        }
        return hist

    # ---- outputs ----------------------------------------------------------------------------
    def predict(self, mdata) -> Predictions:
        scglue = import_scglue()
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        emb: dict[str, np.ndarray] = {}
        with _scglue_settings(scglue):
            for m in self._mods:
                emb[m] = self._model.encode_data(m, self._adata(mdata, m, test))
        emb[JOINT] = np.mean([emb[m] for m in self._mods], axis=0)
        notes = ["no imputation: GLUE's public API has no cross-modal prediction"]
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           info={"model": "glue", "params": self.params, "notes": notes,
                                 **self.train_info})

    def checkpoint(self) -> dict[str, Any]:
        """Params, train info and the GLUE network's weights."""
        model = getattr(self, "_model", None)
        state = ({k: v.detach().cpu() for k, v in model.net.state_dict().items()}
                 if model is not None else {})
        return {"class": type(self).__name__, "params": self.params,
                "train_info": getattr(self, "train_info", {}), "state_dict": state}

    def save(self, path: str) -> None:
        import torch

        torch.save(self.checkpoint(), path)


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _torch_device(device: str):
    import torch

    dev = str(device)
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(dev)


def _with_plugins(fit, plugins):
    def wrapped(*args, **kwargs):
        return fit(*args, plugins=plugins, **kwargs)

    return wrapped


__all__ = ["GLUE", "INSTALL_HINT", "guidance_graph", "import_scglue"]

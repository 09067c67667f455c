"""``glue``: GLUE (graph-linked unified embedding; Cao & Gao 2022, ``scglue``) as a reference
method for the diagonal scenario, at its authors' recipe, its guidance graph built from the links
the benchmark stores. Recipe, sources and measurements: ``docs/recipes.md``.

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
- Likelihoods, encoder inputs and decoder features (GLUE's tutorials ``docs/preprocessing.ipynb``
  / ``docs/training.ipynb`` and the paper's ``evaluation/workflow/scripts/run_GLUE.py``):
  RNA: negative binomial on ``layers["counts"]`` of the kept (highly variable) genes, encoder
  input = PCA (``n_pcs`` 100) of the scoring normalisation, scaled per gene (clipped at 10),
  both fitted on the RNA train cells. ATAC: negative binomial on counts; encoder input = GLUE's
  LSI over ALL peaks (``obsm["X_lsi_all"]``, 100 components, fitted on train cells by
  preprocessing), falling back to ``obsm["X_lsi"]`` (the kept peaks) with a note
  (``atac_input: lsi`` reads that one by choice, an ablation); decoder
  features (``atac_features``): ``"linked"`` (default, GLUE's ``use_highly_variable``: the peaks
  the guidance graph connects to a gene, here among the peaks the scenario file keeps) or
  ``"all"`` kept peaks. ADT: ``adt_likelihood`` ``"NBMixture"`` on counts (default: scglue
  0.4.0's CITE-seq support, docs/release.rst and ``docs/test citeseq tutorial.ipynb``), ``"NB"``
  on counts, or ``"Normal"`` on the CLR of ``.X``; no reduction (as that notebook).
  ``gaussian`` modalities: ``Normal`` on ``.X`` with a PCA input like RNA.
- The guidance graph is built directly from ``mdata.uns["links"]`` (:func:`link_matrix`): one
  undirected edge per link with its weight (clipped into (0, 1], GLUE's requirement) and sign
  +1, plus a self-loop of weight 1 on every feature, then restricted to the features the
  decoders use (the tutorial's ``guidance_hvf``). No genomic-coordinate helper of scglue is used
  (no bedtools binary needed): the links are the ones every linked method reads (gene body or
  2 kb promoter overlap, weight 1: ``rna_anchored_guidance_graph``'s defaults; protein -> gene,
  weight 1: ``generate_prot_guidance_graph``). A modality with no link to any other one stops
  the run with :class:`MissingLinksError`.

Training (``scglue.models.fit_SCGLUE``'s recipe, run stage by stage so that the device, the
time limit and the per-epoch history are ours): pretraining (its adversary plays on codes noised
at 1.5x their spread throughout: ``align_burnin`` inf), balancing weights
estimated from the pretrained embeddings (``scglue.data.estimate_balancing_weight``), then
fine-tuning from the pretrained weights (seed + 1, as scglue does). ``max_epochs`` / ``patience``
``None`` (default) keep GLUE's automatic budget per stage: ``max(ceil(48 / lr / batches per
epoch), 48)`` epochs with its early stopping (patience ``4 / lr / batches``, learning-rate
reduction ``2 / lr / batches``, alignment burn-in ``8 / lr / batches``). A ``max_epochs`` set by
the user is a cap on that budget: it is logged as a WARNING naming the budget it overrides and
written in the result's notes. ``training.time_limit_minutes`` applies: pretraining stops at half
of it and fine-tuning at all of it (``train_info["time_limit_reached"]``).

``train_info`` records the automatic budget, the values each stage ran with, the epochs run per
stage, the encoder input and decoder features of each modality (for ATAC the peaks of its LSI),
the balancing fallback and the notes.

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
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import mudata as md
import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA

from ...constants import (
    COUNTS,
    JOINT,
    LSI,
    LSI_ALL,
    MODALITY_KIND,
    SPLIT,
    TEST,
    TRAIN,
    visible_key,
)
from ...data.links import link_matrix, linked_features
from ...io import InputError, Predictions
from ...runtime import torch_threads_kept
from .._base import Method, MissingDependencyError, MissingLinksError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "scglue is not installed; the reference method glue needs it. Install the optional extra: "
    "pip install -e .[refs] (scglue==0.4.1), or leave glue out of the config"
)
#: obs column GLUE reads its balancing weights from (scglue's own key name)
_BALANCE = "balancing_weight"
_REP = "X_glue_input"
#: scglue's validation split in ``SCGLUEModel.fit`` (the automatic budget counts train batches)
_VAL_SPLIT = 0.1
ADT_LIKELIHOODS = ("NBMixture", "NB", "Normal")
ATAC_FEATURES = ("linked", "all")
ATAC_INPUTS = ("lsi_all", "lsi")
STAGES = ("pretrain", "finetune")


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


def automatic_budget(scglue, n_cells: int, lr: float, batch_size: int) -> dict[str, int]:
    """GLUE's automatic epoch budget per stage (``SCGLUEModel.fit``, ``AUTO`` values): each
    count is ``max(ceil(progress / lr / batches_per_epoch), ceil(progress))`` with
    ``batches_per_epoch = n_cells * (1 - 0.1) / batch_size`` (``n_cells``: distinct cells over
    the modalities) and progress 48 (epochs), 4 (patience), 2 (learning-rate reduction) and 8
    (alignment burn-in)."""
    cls = scglue.models.SCGLUEModel
    per_epoch = n_cells * (1 - _VAL_SPLIT) / batch_size

    def count(progress: float) -> int:
        return max(math.ceil(progress / lr / per_epoch), math.ceil(progress))

    return {"max_epochs": count(cls.MAX_EPOCHS_PRG), "patience": count(cls.PATIENCE_PRG),
            "reduce_lr_patience": count(cls.REDUCE_LR_PATIENCE_PRG),
            "align_burnin": count(cls.ALIGN_BURNIN_PRG)}


class _History:
    """scglue training plugin: per-epoch losses, termination at a wall-clock deadline, and
    the epoch of the checkpoint GLUE's early stopping restored at the end."""

    def __init__(self, stage: str, deadline: float | None, rows: list[dict]) -> None:
        self.stage, self.deadline, self.rows = stage, deadline, rows
        self.reached = False
        self.restored: int | None = None

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

        # attached after scglue's EarlyStopping, so this runs after it restored a checkpoint
        @train_engine.on(ignite.engine.Events.COMPLETED | ignite.engine.Events.TERMINATE)
        def _restored(engine):
            epochs = [int(p.stem.split("_")[-1]) for p in Path(directory).glob("checkpoint_*.pt")
                      if p.stem.split("_")[-1].isdigit()]
            self.restored = max(epochs) if epochs else None


class GLUE(Method):
    """GLUE (scglue) on the benchmark's links (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 50,  # GLUE's default
        "h_depth": 2,
        "h_dim": 256,
        "dropout": 0.2,
        "n_pcs": 100,  # RNA / gaussian encoder input (GLUE tutorial: 100 PCs)
        # "NBMixture" (counts; scglue 0.4.0's CITE-seq support), "NB" (counts) or "Normal" (CLR)
        "adt_likelihood": "NBMixture",
        # ATAC decoder features: "linked" (GLUE: peaks the guidance graph links to a gene) or
        # "all" kept peaks
        "atac_features": "linked",
        # ATAC encoder input: "lsi_all" (GLUE: the LSI over all peaks) or "lsi" (the LSI of the
        # peaks kept for scoring, obsm["X_lsi"]: the input dmmvae reads; an ablation)
        "atac_input": "lsi_all",
        "lr": 2e-3,
        "lam_graph": 0.02,
        "lam_align": 0.05,
        "batch_size": 128,
        "max_epochs": None,  # None: GLUE's automatic budget per stage (a value is a user's cap)
        "patience": None,  # None: GLUE's automatic early-stopping patience
        "balance": True,  # estimate balancing weights between pretraining and fine-tuning
        # False: the pretrained model is the result (scglue's first stage: the adversary plays
        # at lam_align on codes noised at 1.5x their spread throughout, align_burnin = inf; with
        # lam_align 0 the graph-tied VAE alone): ablations of GLUE, not its recipe
        "finetune": True,
    }
    is_neural: ClassVar[bool] = True
    uses_device: ClassVar[bool] = True

    @classmethod
    def validate_params(cls, params) -> None:
        """Unknown keys, then the values of ``adt_likelihood`` and ``atac_features`` (when a
        config is read, before any data is prepared)."""
        super().validate_params(params)
        p = {**cls.DEFAULTS, **params}
        if str(p["adt_likelihood"]) not in ADT_LIKELIHOODS:
            raise ValueError(f"glue: adt_likelihood must be one of {list(ADT_LIKELIHOODS)}, "
                             f"got {p['adt_likelihood']!r}")
        if str(p["atac_input"]) not in ATAC_INPUTS:
            raise ValueError(f"glue: atac_input must be one of {list(ATAC_INPUTS)}, "
                             f"got {p['atac_input']!r}")
        if str(p["atac_features"]) not in ATAC_FEATURES:
            raise ValueError(f"glue: atac_features must be one of {list(ATAC_FEATURES)}, "
                             f"got {p['atac_features']!r}")

    #: epochs, batch size and lr are GLUE's own (``params``); of ``training`` only the time limit
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset({"time_limit_minutes"})

    # ---- data -------------------------------------------------------------------------------
    def _likelihood(self, a: ad.AnnData) -> tuple[str, bool]:
        """(GLUE prob_model, whether it reads counts)."""
        kind = a.uns.get(MODALITY_KIND, "gaussian")
        if kind in ("rna", "atac"):
            return "NB", True
        if kind == "adt":
            lik = str(self.params["adt_likelihood"])  # checked by validate_params
            return lik, lik != "Normal"
        return "Normal", False

    def _select_features(self, mdata: md.MuData) -> None:
        """Decoder features per modality: every kept feature, except ATAC with
        ``atac_features="linked"`` (the peaks with a link, GLUE's highly variable peaks)."""
        choice = str(self.params["atac_features"])  # checked by validate_params
        linked = linked_features(mdata, self._mods)
        self._features = {}
        for m in self._mods:
            a = mdata.mod[m]
            if a.uns.get(MODALITY_KIND) == "atac" and choice == "linked":
                self._features[m] = np.flatnonzero(linked[m])
            else:
                self._features[m] = np.arange(a.n_vars)

    def _fit_reps(self, mdata: md.MuData, rows: dict[str, np.ndarray], seed: int) -> None:
        """Encoder inputs: PCA of the scaled scoring normalisation for RNA / gaussian, fitted
        on that modality's train cells; stored LSI for ATAC (all peaks when present); none for
        ADT. Describes each in ``self._inputs``."""
        self._pca: dict[str, tuple[np.ndarray, np.ndarray, PCA]] = {}
        self._inputs: dict[str, str] = {}
        self._atac_keys: dict[str, str] = {}
        for m in self._mods:
            a = mdata.mod[m]
            kind = a.uns.get(MODALITY_KIND, "gaussian")
            if kind == "atac":
                want_all = self.params["atac_input"] == "lsi_all"
                key = (LSI_ALL if want_all and LSI_ALL in a.obsm else LSI if LSI in a.obsm
                       else None)
                if key is None:
                    self._inputs[m] = f"none: {len(self._features[m])} peak counts"
                    self._notes.append(f"glue: '{m}' has no stored LSI; its encoder read the "
                                       "peak counts (GLUE's recipe reads an all-peak LSI)")
                    continue
                self._atac_keys[m] = key
                if key == LSI_ALL:  # preprocessing records the peaks its LSI read
                    n_peaks = int((a.uns.get("lsi_all") or {}).get("n_peaks", 0)) or None
                else:
                    n_peaks = int(a.n_vars)
                self._inputs[m] = (f"obsm['{key}']: {a.obsm[key].shape[1]} components over "
                                   f"{n_peaks if n_peaks is not None else 'all'} peaks")
                self._lsi_peaks[m] = n_peaks
                if key == LSI and want_all:
                    self._notes.append(
                        f"glue: no obsm['{LSI_ALL}'] for '{m}'; its encoder used obsm['{LSI}'] "
                        f"(LSI of the {a.n_vars} peaks kept for scoring), not GLUE's all-peak LSI")
                continue
            if kind not in ("rna", "gaussian"):
                self._inputs[m] = f"none: {len(self._features[m])} features"
                continue
            X = _dense(a.X[rows[m]])
            mu, sd = X.mean(0), X.std(0)
            sd = np.where(sd > 0, sd, 1.0)
            k = int(min(self.params["n_pcs"], X.shape[0] - 1, X.shape[1] - 1))
            pca = PCA(n_components=k, random_state=seed).fit(np.clip((X - mu) / sd, -10, 10))
            self._pca[m] = (mu, sd, pca)
            self._inputs[m] = f"PCA: {k} components of {a.n_vars} scaled features"

    def _rep(self, mdata: md.MuData, m: str, rows: np.ndarray) -> np.ndarray | None:
        a = mdata.mod[m]
        if m in self._pca:
            mu, sd, pca = self._pca[m]
            return pca.transform(np.clip((_dense(a.X[rows]) - mu) / sd, -10, 10)).astype(
                np.float32)
        if m in self._atac_keys:  # the stored LSI _fit_reps chose
            return np.asarray(a.obsm[self._atac_keys[m]][rows], dtype=np.float32)
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
        cols = self._features[m]
        X = a.layers[COUNTS][rows] if counts else a.X[rows]
        X = X[:, cols]
        X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, np.float32)
        names = a.var_names.astype(str)[cols]
        out = ad.AnnData(X=X, obs=pd.DataFrame(index=mdata.obs_names[rows].astype(str)),
                         var=pd.DataFrame(index=[f"{m}:{v}" for v in names]))
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
        used: dict[str, Any] = {}
        # scglue's SCGLUEModel.fit takes no plugin; its trainer's fit does: bind ours to it
        # (and read the epoch budget scglue resolved from its AUTO values)
        trainer.fit = _with_plugins(trainer.fit, [hist], used)
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
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dmmvae_glue_") as tmp:
            model.fit(adatas, graph, directory=tmp, **fit)
        del trainer.fit
        summary = {k: (None if isinstance(v, float) and math.isinf(v) else v)
                   for k, v in used.items()}
        summary.update(restored_epoch=hist.restored, seconds=time.perf_counter() - t0)
        return model, hist.reached, summary

    def _budget_notes(self, auto: dict[str, int], n_cells: int) -> None:
        """A user's ``max_epochs`` / ``patience``: a WARNING naming GLUE's automatic value it
        overrides, and a note in the result."""
        p = self.params
        base = (f"GLUE's automatic budget of {auto['max_epochs']} epochs per stage (early "
                f"stopping patience {auto['patience']}, from {n_cells} cells, batch "
                f"{p['batch_size']}, lr {p['lr']})")
        if p["max_epochs"] is not None:
            msg = (f"glue: max_epochs={int(p['max_epochs'])} set by the user overrides {base}; "
                   "a cap, not the authors' recipe")
            log.warning(msg)
            self._notes.append(msg)
        if p["patience"] is not None:
            msg = (f"glue: patience={int(p['patience'])} set by the user overrides GLUE's "
                   f"automatic early-stopping patience of {auto['patience']} epochs")
            log.warning(msg)
            self._notes.append(msg)

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        scglue = import_scglue()
        import torch

        self._mods = list(mdata.mod)
        self._notes: list[str] = []
        self._lsi_peaks: dict[str, int | None] = {}
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
        self._select_features(mdata)
        used_names = [f"{m}:{v}" for m in self._mods
                      for v in mdata.mod[m].var_names.astype(str)[self._features[m]]]
        graph = graph.subgraph(used_names).copy()  # the tutorial's guidance_hvf
        torch.manual_seed(int(seed))
        self._fit_reps(mdata, rows, int(seed))
        adatas = {m: self._adata(mdata, m, rows[m]) for m in self._mods}
        n_cells = len(set().union(*(a.obs_names for a in adatas.values())))
        auto = automatic_budget(scglue, n_cells, float(self.params["lr"]),
                                int(self.params["batch_size"]))
        self._budget_notes(auto, n_cells)
        history: list[dict] = []
        reached: list[bool] = []
        stages: dict[str, dict] = {}
        balance_fallback: list[str] = []
        with _scglue_settings(scglue):
            pre, hit, stages["pretrain"] = self._stage(
                scglue, adatas, graph, stage="pretrain", seed=int(seed), device=device,
                rows=history,
                deadline=t0 + limit_s / (2 if self.params["finetune"] else 1) if limit_s else None)
            reached.append(hit)
            if not self.params["finetune"]:
                self._model = pre
            elif self.params["balance"]:
                for m, a in adatas.items():
                    a.obsm["X_glue_pretrain"] = pre.encode_data(m, a)
                # its scanpy neighbours (numba) would leave torch on all cores for finetuning
                with np.errstate(invalid="ignore", divide="ignore"), torch_threads_kept():
                    scglue.data.estimate_balancing_weight(
                        *adatas.values(), use_rep="X_glue_pretrain", key_added=_BALANCE)
                for m, a in adatas.items():
                    w = a.obs[_BALANCE].to_numpy(float)
                    if not (np.isfinite(w).all() and w.sum() > 0):  # no cluster matched
                        a.obs[_BALANCE] = 1.0
                        balance_fallback.append(m)
                    a.uns[scglue.config.ANNDATA_KEY]["use_dsc_weight"] = _BALANCE
                    del a.obsm["X_glue_pretrain"]
            if balance_fallback:
                self._notes.append(
                    f"glue: balancing weights undefined for {balance_fallback} (no cluster of "
                    "the pretrained embeddings matched across modalities at cosine >= 0.5); "
                    "uniform weights used")
            if self.params["finetune"]:
                self._model, hit, stages["finetune"] = self._stage(
                    scglue, adatas, graph, stage="finetune", seed=int(seed) + 1,
                    device=device, rows=history, pretrained=pre,
                    deadline=t0 + limit_s if limit_s else None)
                reached.append(hit)
        hist = pd.DataFrame(history)
        epochs = hist.groupby("stage")["epoch"].max().astype(int).to_dict() if len(hist) else {}
        self.train_info = {
            "scglue_version": scglue.__version__,
            "n_train_cells": {m: int(len(r)) for m, r in rows.items()},
            "graph_vertices": int(graph.number_of_nodes()),
            "graph_links": n_links,
            "decoder_features": {m: int(len(self._features[m])) for m in self._mods},
            "encoder_input": dict(self._inputs),
            "atac_lsi_peaks": dict(self._lsi_peaks),
            "likelihood": {m: self._likelihood(mdata.mod[m])[0] for m in self._mods},
            # GLUE's automatic budget for these cells (per stage) and what each stage ran with
            "auto_budget": auto,
            "stages": stages,
            "epochs_per_stage": {s: int(epochs.get(s, 0)) for s in STAGES},
            "time_limit_reached": bool(any(reached)),
            # modalities whose balancing weights were undefined (no cluster matched across
            # modalities after pretraining): uniform weights were used instead
            "balancing_uniform": balance_fallback,
            "train_seconds": time.perf_counter() - t0,
        }
        if self._notes:
            self.train_info["notes"] = list(self._notes)
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
        notes = ["no imputation: GLUE's public API has no cross-modal prediction",
                 *self.train_info.get("notes", [])]
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           info={"model": "glue", "params": self.params, **self.train_info,
                                 "notes": notes})

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


def _with_plugins(fit, plugins, used: dict):
    """``fit`` with our plugins added; records the budget scglue passes to its trainer."""
    keys = ("max_epochs", "patience", "reduce_lr_patience", "align_burnin")

    def wrapped(*args, **kwargs):
        used.update({k: kwargs.get(k) for k in keys})
        return fit(*args, plugins=plugins, **kwargs)

    return wrapped


__all__ = ["GLUE", "INSTALL_HINT", "automatic_budget", "guidance_graph", "import_scglue",
           "linked_features"]

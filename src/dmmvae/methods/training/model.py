"""The MODEL layer of the VAE variants (scvi-tools' module / model split).

:class:`VAEModel` is what the registry holds for a VAE variant: a :class:`~._base.Method`
that wraps one :class:`~.vae.MultimodalVAE` module (``self.module``, built from the
parameters) and owns what is not arithmetic:

- ``fit(mdata, *, training, seed, device)``: builds the module from the data and trains it
  with the one loop (:func:`._loop.fit_model`); ``train_info`` records what happened;
- ``predict(mdata)``: embeddings, imputations, cross-generated and prior-generated cells of
  the TEST cells (:class:`dmmvae.io.Predictions`, scoring normalisation of the PROTOCOL);
- ``checkpoint()`` / ``save(path)`` / ``load(path)``.

``vae_model(ModuleClass)`` makes the model class of a variant (one registry line); a
variant that needs data-level set-up before training subclasses :class:`VAEModel` here:
:class:`MMAAVIModel` (discriminator groups from the batch / modality pattern) and
:class:`DMMVAEModel` (the anchor space: a CCA on the linked genes of the train cells, or
structure-only GW anchors; the algorithms live in :mod:`.anchors`, re-exported here).

Where no train cell shows two modalities, a variant whose aligning parts all need linked
features (``guidance_graph``, D-MMVAE's ``cca`` / ``features`` anchors) and finds none stops
with :class:`~._base.MissingLinksError` instead of training unaligned
(:meth:`VAEModel.check_graph_links`); with paired train cells those parts are optional.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from ...constants import (
    BATCH,
    BATCH_KEYS,
    COUNTS,
    JOINT,
    LSI,
    LSI_ALL,
    SPLIT,
    TEST,
    TRAIN,
    visible_key,
)
from ...data.links import linked_view
from ...io import InputError, Predictions
from .._base import Method, MissingLinksError
from ..anchors import (
    SEURAT_K_SCORE,
    as_list,
    cca_anchor_space,
    global_anchor_pairs,
    gw_anchor_pairs,
)
from ..modules.dmmvae import DMMVAE, LSI_ALL_INPUTS
from ..modules.graph import links_per_pair, unlinked_modalities
from ..modules.mmaavi import MMAAVI
from ..modules.scmodal import ScMODAL
from ..modules.vae import MultimodalVAE
from ..modules.views import log_view
from .batches import DataSpec, MultimodalData, _source, build_spec, modality_kind
from .loop import fit_model

#: imputations of wider targets are stored in float16 by ``Predictions.write`` (dmmvae.io)
WIDE_FEATURES = 20000


def _imputation_dtype(n_features: int) -> type:
    return np.float16 if n_features > WIDE_FEATURES else np.float32


class VAEModel(Method):
    """A VAE variant as a :class:`Method`: ``module_class`` + fitting, prediction, checkpoints."""

    module_class: ClassVar[type[MultimodalVAE]] = MultimodalVAE
    is_neural: ClassVar[bool] = True
    uses_device: ClassVar[bool] = True
    TRAINING_KEYS: ClassVar[str] = "all"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.DEFAULTS = cls.module_class.DEFAULTS

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> None:
        """Unknown keys, then the module's own checks of values and combinations (its
        ``check_params``, where it has one): both run when a config is read."""
        super().validate_params(params)
        check = getattr(cls.module_class, "check_params", None)
        if check is not None:
            check(dict(params))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.module = self.module_class(**params)
        self.params = self.module.params

    @property
    def train_info(self) -> dict[str, Any]:
        return self.module.train_info

    @property
    def spec(self) -> DataSpec | None:
        return self.module.spec

    def fit(
        self,
        mdata: md.MuData,
        *,
        training: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> pd.DataFrame:
        """Build the module from ``mdata`` and train it (the one loop); returns the history.
        Raises :class:`._loop.TrainingFailure` on a non-finite loss or the time limit, and
        :class:`._base.MissingLinksError` when ``guidance_graph`` is on and a modality has no
        linked feature (:meth:`check_graph_links`)."""
        self.check_graph_links(mdata)
        return fit_model(self.module, mdata, seed=seed, device=device, training=training)

    def link_free_alignment(self) -> bool:
        """Whether the variant has an aligning part that needs no linked feature (besides
        paired train cells): none here; D-MMVAE's structure-only GW anchors are one."""
        return False

    def check_graph_links(self, mdata: md.MuData) -> None:
        """Linked parts with nothing to link: stop rather than train silently without them.

        Where no train cell shows two modalities (diagonal), only linked features can tie the
        modalities' codes together; a variant whose aligning parts all read links
        (``guidance_graph``; D-MMVAE's ``cca`` / ``features`` anchors, :class:`DMMVAEModel`)
        would train unaligned while its results read as the graph's or the anchors'. It stops
        with :class:`._base.MissingLinksError` (GLUE's wrapper does the same), unless it has a
        link-free aligning part (:meth:`link_free_alignment`). With paired train cells the pairs
        align and the linked parts are optional: the run goes on."""
        if shows_pairs(mdata) or self.link_free_alignment():
            return
        parts = self.linked_parts()
        if not parts:
            return
        spec = build_spec(mdata, self.params.get("likelihoods"))
        missing = unlinked_modalities(spec)
        if missing:
            name = type(self.module).__name__.lower()
            raise MissingLinksError(
                f"{name}: modalities {missing} have no linked feature (links per pair: "
                f"{links_per_pair(spec)}) and no train cell shows two modalities, so "
                f"{' and '.join(parts)} cannot align them. Fix: give gene coordinates (10x "
                "'interval' or gene_annotation) or protein->gene links; or align by structure "
                "(dmmvae: anchor_space: gw, anchor_scope: global); or, to run it unaligned on "
                f"purpose, {self.unaligned_settings()}"
            )

    def linked_parts(self) -> list[str]:
        """The variant's settings that need linked features to align anything."""
        return ["guidance_graph: true"] if self.params.get("guidance_graph") else []

    def unaligned_settings(self) -> str:
        """The settings that turn every part of :meth:`linked_parts` off (named in the error)."""
        return "guidance_graph: false"

    def module_data(self, mdata: md.MuData) -> md.MuData:
        """The data as the module reads it (its features and links): ``mdata`` itself, except
        for a model that trains on some of the features (``DMMVAEModel`` with
        ``atac_features: linked``); what reads the module directly (``dmmvae.selection``)
        batches this, not ``mdata``."""
        return mdata

    @torch.no_grad()
    def predict(self, mdata: md.MuData, *, batch_size: int = 512, seed: int = 0) -> Predictions:
        """Embeddings, imputations and prior samples of the TEST cells, in minibatches.

        Outputs are preallocated arrays filled batch by batch (no list of parts and
        concatenation, which doubled the peak for wide modalities); batches hold at most
        ``2**24`` dense values (``rows x features``), and never fewer than 64 rows.
        Imputations of targets wider than :data:`WIDE_FEATURES` are held in float16, the
        precision :meth:`dmmvae.io.Predictions.write` stores them in (halves the largest
        array of a 10x Multiome prediction); everything else is float32.
        """
        mod = self.module
        mod.eval()
        mods = mod.modalities
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        n = len(test)
        width = {m: mod.spec.modalities[m].n_features for m in mods}
        bs = max(1, min(int(batch_size), max(64, (1 << 24) // max(1, sum(width.values())))))
        data = MultimodalData(mdata, mod.spec, mod.device)
        emb = {m: np.empty((n, mod.latent_dim), np.float32) for m in [*mods, JOINT]}
        imp = {
            (s, t): np.empty((n, width[t]), _imputation_dtype(width[t]))
            for s in mods
            for t in mods
            if s != t
        }
        gen = {m: np.empty((n, width[m]), np.float32) for m in mods}
        cross = {k: np.empty_like(v) for k, v in imp.items()}  # sampled, for the realism test
        torch.manual_seed(seed + 1)

        def put(out: np.ndarray, start: int, values: Tensor) -> None:
            out[start : start + len(values)] = values.float().cpu().numpy()

        start = 0
        for batch in data.batches(test, bs, mods=mods):
            qz = mod.encode(batch)
            masks = batch[BATCH_KEYS.MASK]
            put(emb[JOINT], start, mod.embed(qz, masks))
            for s in mods:
                put(emb[s], start, mod.embed({s: qz[s]}, {s: masks[s]}))
                tgts = [t for t in mods if t != s]
                px = mod.impute_params(qz, masks, s, tgts)
                for t in tgts:
                    put(imp[(s, t)], start, mod.scoring_mean(t, px[t]))
                    put(cross[(s, t)], start, mod.scoring_sample(t, px[t]))
            start += len(batch[BATCH_KEYS.INDEX])
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        for start in range(0, n, bs):
            k = min(bs, n - start)
            px = mod.generative(mod.sample_prior(k, g))
            for m in mods:
                put(gen[m], start, mod.scoring_sample(m, px[m]))
        return Predictions(
            obs_names=np.asarray(mdata.obs_names)[test],
            embeddings=emb,
            imputations=imp,
            generated=gen,
            info={"model": type(mod).__name__, "params": self.params, **self.train_info,
                  **mod.prediction_info()},
            cross_generated=cross,
        )

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        mod = self.module
        return {
            "class": type(mod).__name__,
            "params": self.params,
            "spec": mod.spec.to_dict() if mod.spec else None,
            "n_classes": mod.n_classes,
            "extra": mod.checkpoint_extra(),
            "train_info": mod.train_info,
            "state_dict": {k: v.detach().cpu() for k, v in mod.state_dict().items()},
        }

    def save(self, path: str) -> None:
        torch.save(self.checkpoint(), path)

    @classmethod
    def load(cls, path: str, map_location: str = "cpu") -> VAEModel:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
        model = cls(**ckpt["params"])
        mod = model.module
        mod.n_classes = int(ckpt.get("n_classes", 0))
        mod.restore_extra(dict(ckpt.get("extra") or {}))
        mod.build(DataSpec.from_dict(ckpt["spec"]))
        mod.load_state_dict(ckpt["state_dict"])
        mod.train_info = dict(ckpt.get("train_info", {}))
        return model


def vae_model(module_class: type[MultimodalVAE]) -> type[VAEModel]:
    """The model class of a VAE variant module (what ``MODELS`` registers)."""
    return type(
        f"{module_class.__name__}Model",
        (VAEModel,),
        {"module_class": module_class, "__doc__": module_class.__doc__,
         "__module__": module_class.__module__},
    )


# --------------------------------------------------------------------------------------
# models of the variants that need data-level set-up before training
# --------------------------------------------------------------------------------------
def discriminator_groups(mdata: md.MuData, mode: str) -> tuple[np.ndarray, list[str]]:
    """Group codes (one per cell, ``-1`` outside the train split) and names for ``discriminate``
    = ``mode``: the dataset batch, the modality pattern a train cell shows, or both."""
    parts = []
    if mode in ("batch", "batch+pattern") and BATCH in mdata.obs:
        parts.append(mdata.obs[BATCH].astype(str).to_numpy())
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    if mode in ("pattern", "batch+pattern"):
        cols = []
        for m in mdata.mod:
            key = visible_key(m)
            vis = mdata.obs[key].to_numpy(bool) if key in mdata.obs else train
            cols.append(np.where(vis, m, ""))
        parts.append(np.array(["+".join(x for x in row if x) for row in zip(*cols, strict=True)]))
    if not parts:
        return np.full(mdata.n_obs, -1, dtype=np.int64), []
    labels = np.array(["|".join(row) for row in zip(*parts, strict=True)]) if len(parts) > 1 else parts[0]
    names = sorted(set(labels[train]))
    lookup = {v: i for i, v in enumerate(names)}
    codes = np.array([lookup.get(v, -1) for v in labels], dtype=np.int64)
    codes[~train] = -1
    return codes, names


class MMAAVIModel(VAEModel):
    """mmAAVI's model: assigns the discriminator groups from the data before training."""

    module_class = MMAAVI

    def fit(self, mdata, *, training=None, seed=0, device="cpu"):
        self.module.set_groups(*discriminator_groups(mdata, self.params["discriminate"]))
        hist = super().fit(mdata, training=training, seed=seed, device=device)
        self.train_info["discriminator_groups"] = (
            self.module.group_names if self.module.n_groups else []
        )
        return hist


def shows_pairs(mdata: md.MuData) -> bool:
    """Whether some train cell shows two modalities (paired or mosaic scenario)."""
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    shown = sum(mdata.obs[visible_key(m)].to_numpy(bool) if visible_key(m) in mdata.obs else train
                for m in mdata.mod)
    return bool(np.any(np.asarray(shown)[train] >= 2))


def lsi_inputs(mdata: md.MuData) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{modality: (idf, loadings, tfidf scale)}`` of every ATAC modality of ``mdata`` (the
    LSI that preprocessing fitted on train cells), checked to reproduce ``obsm["X_lsi"]`` on
    train cells; an :class:`InputError` naming the fix when a modality lacks it."""
    from ...data.preprocess._atac import tfidf
    from ...schema import schema_defaults

    # files preprocessed before the scale was stored in uns["lsi"] used the default
    default_scale = float(schema_defaults("preprocessing")["atac"]["tfidf_scale"])
    src = _source(mdata)
    out = {}
    for m, a in mdata.mod.items():
        if modality_kind(mdata, m) != "atac":
            continue
        if LSI not in a.obsm or "lsi_loadings" not in a.varm or "idf" not in a.var:
            raise InputError(
                f"{src}: ATAC modality '{m}' has no LSI (obsm['{LSI}'], varm['lsi_loadings'], "
                "var['idf']), which atac_input 'lsi' reads. Fix: preprocess it with "
                "preprocessing atac.n_lsi > 0, or set atac_input: peaks")
        scale = float(dict(a.uns.get("lsi", {})).get("tfidf_scale", default_scale))
        idf = np.asarray(a.var["idf"], np.float32)
        loadings = np.asarray(a.varm["lsi_loadings"], np.float32)
        rows = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TRAIN)[:64]
        x = sp.csr_matrix(a.layers[COUNTS][rows] if COUNTS in a.layers else a.X[rows])
        x.eliminate_zeros()  # before binarising: a stored zero is a closed peak
        x.data[:] = 1.0
        got = np.asarray(tfidf(x.astype(np.float32), idf, scale) @ loadings)
        want = np.asarray(a.obsm[LSI])[rows]
        if not np.allclose(got, want, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(want).max()))):
            raise InputError(
                f"{src}: ATAC modality '{m}': the stored LSI is not the projection of its peaks "
                f"with var['idf'] and varm['lsi_loadings'] (TF-IDF scale {scale:g}). Fix: "
                "preprocess the dataset again with this version, or set atac_input: peaks")
        out[m] = (idf, loadings, scale)
    return out


def lsi_all_inputs(mdata: md.MuData) -> dict[str, np.ndarray]:
    """``{modality: obsm["X_lsi_all"]}`` of every ATAC modality of ``mdata`` (GLUE's LSI over
    all peaks, fitted on train cells by preprocessing; rows = the data's cells), which
    ``atac_input`` lsi_all reads; an :class:`InputError` naming the fix when one lacks it."""
    src = _source(mdata)
    out = {}
    for m, a in mdata.mod.items():
        if modality_kind(mdata, m) != "atac":
            continue
        if LSI_ALL not in a.obsm or a.n_obs != mdata.n_obs:
            raise InputError(
                f"{src}: ATAC modality '{m}' has no LSI over all peaks (obsm['{LSI_ALL}'] for "
                "every cell), which atac_input 'lsi_all' reads. Fix: preprocess it with "
                "preprocessing atac.n_lsi_all > 0, or set atac_input: lsi+peaks")
        out[m] = np.asarray(a.obsm[LSI_ALL], np.float32)
    return out


def pca_inputs(mdata: md.MuData, n_pcs: int, seed: int
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``{modality: (mean, sd, centre, components (G, K))}`` of every RNA modality of ``mdata``:
    GLUE's RNA encoder input (scglue's preprocessing tutorial: ``normalize_total`` 1e4,
    ``log1p``, ``scale`` with ``max_value`` 10, PCA ``n_pcs``), fitted on the train cells that
    show the modality (PROTOCOL: nothing is fitted on test cells), read by ``rna_input`` pca.
    An :class:`InputError` naming the fix when a modality has no counts or too few cells."""
    from sklearn.decomposition import PCA

    src = _source(mdata)
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out = {}
    for m, a in mdata.mod.items():
        if modality_kind(mdata, m) != "rna":
            continue
        if COUNTS not in a.layers:
            raise InputError(f"{src}: RNA modality '{m}' has no layers['{COUNTS}'], from which "
                             "rna_input 'pca' computes GLUE's input. Fix: preprocess it with this "
                             "version, or set rna_input: counts")
        shown = train & (mdata.obs[visible_key(m)].to_numpy(bool)
                         if visible_key(m) in mdata.obs else True)
        rows = np.flatnonzero(shown)
        k = int(min(n_pcs, len(rows) - 1, a.n_vars - 1))
        if k < 1:
            raise InputError(f"{src}: RNA modality '{m}' has {len(rows)} train cells and "
                             f"{a.n_vars} genes, too few for rna_input 'pca'. Fix: set "
                             "rna_input: counts")
        # the view PCAInput computes from a batch's counts (log_view), here on the train rows
        counts = sp.csr_matrix(a.layers[COUNTS][rows], dtype=np.float64).toarray()
        view = log_view("counts", torch.as_tensor(counts)).numpy()
        mean, sd = view.mean(0), view.std(0, ddof=1)  # scanpy's scale: unbiased variance
        sd = np.where(sd > 0, sd, 1.0)
        pca = PCA(n_components=k, random_state=seed).fit(np.clip((view - mean) / sd, -10, 10))
        out[m] = (mean.astype(np.float32), sd.astype(np.float32),
                  pca.mean_.astype(np.float32), pca.components_.T.astype(np.float32))
    return out


class ScMODALModel(VAEModel):
    """scMODAL's model: its anchors (mutual nearest neighbours on linked features) are its one
    part that ties cells of different modalities together; GAN, cycle and geometry terms match
    distributions and shapes, not cells. In the diagonal scenario a modality with no linked
    feature stops the run (:meth:`check_graph_links`), as GLUE's and MaxFuse's wrappers do."""

    module_class = ScMODAL

    def linked_parts(self) -> list[str]:
        parts = super().linked_parts()
        if self.params["anchors"] in ("auto", "features") and float(self.params["lambda_mnn"]) > 0:
            parts.append(f"anchors '{self.params['anchors']}' (mutual nearest neighbours on "
                         "linked features)")
        return parts

    def unaligned_settings(self) -> str:
        return "anchors: none"


def widen_predictions(pred: Predictions, cols: dict[str, np.ndarray],
                      widths: dict[str, int]) -> Predictions:
    """``pred`` of a model that decodes only the columns ``cols[m]`` of modality ``m``, with
    every output of ``m`` (imputations, generated and cross-generated cells) put back at the
    data's full width ``widths[m]``; the columns it does not decode are NaN (not predicted)."""
    def widen(m: str, arr: np.ndarray) -> np.ndarray:
        if m not in cols:
            return arr
        out = np.full((arr.shape[0], widths[m]), np.nan, dtype=arr.dtype)
        out[:, cols[m]] = arr
        return out

    pred.imputations = {(s, t): widen(t, a) for (s, t), a in pred.imputations.items()}
    pred.cross_generated = {(s, t): widen(t, a) for (s, t), a in (pred.cross_generated or {}).items()}
    pred.generated = {m: widen(m, a) for m, a in pred.generated.items()}
    pred.info["decoded_features"] = {m: int(len(c)) for m, c in cols.items()}
    return pred


class DMMVAEModel(VAEModel):
    """D-MMVAE's model: finds the anchor space (and, with ``anchor_scope: global``, the anchors)
    from the data (train cells) before training."""

    module_class = DMMVAE

    def link_free_alignment(self) -> bool:
        return float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] == "gw"

    def linked_parts(self) -> list[str]:
        parts = super().linked_parts()
        if float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] in ("cca", "features"):
            parts.append(f"anchor_space '{self.params['anchor_space']}'")
        return parts

    def unaligned_settings(self) -> str:
        return "anchor_weight: 0 and guidance_graph: false"

    def fit(self, mdata, *, training=None, seed=0, device="cpu"):
        self.check_graph_links(mdata)  # before the anchors, which may take minutes
        spaces, note = {}, ""
        if float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] == "cca":
            spaces, note = cca_anchor_space(mdata, seed, self.params["anchor_components"])
            unanchored = [m for m in mdata.mod if not any(m in pair for pair in spaces)]
            if unanchored and not shows_pairs(mdata):
                raise MissingLinksError(
                    f"dmmvae: anchor_space 'cca' (anchor_weight {self.params['anchor_weight']}) "
                    f"found no CCA anchor space for modalities {unanchored}: {note}. Without "
                    "it they would train with no anchor while the run reads as anchored. Fix: "
                    "set anchor_space: gw (structure-only anchors, no link needed) or "
                    "anchor_weight: 0, or give gene coordinates (10x 'interval' or "
                    "gene_annotation) / protein->gene links"
                )
        pairs = {}
        if float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] == "gw":
            pairs, note = gw_anchor_pairs(mdata, as_list(self.params["anchor_components"]), seed)
        weights = None
        if spaces and self.params["anchor_scope"] == "global":
            k_score = SEURAT_K_SCORE if self.params["anchor_scoring"] else 0
            pairs, weights = global_anchor_pairs(mdata, spaces, int(self.params["n_knn"]), k_score)
            note += "; global anchors: " + ", ".join(f"{a}+{b} {len(ij)}" for (a, b), ij in pairs.items())
            if weights:
                note += " (Seurat-scored, mean score " + ", ".join(
                    f"{w.mean():.2f}" for w in weights.values()) + ")"
            spaces = {}
        self.module.set_anchor_space(spaces, note)
        self.module.set_anchor_partners(pairs, mdata.n_obs, weights)
        if self.params["atac_input"] in LSI_ALL_INPUTS:
            self.module.set_lsi_all_input(lsi_all_inputs(mdata))
        elif self.params["atac_input"] != "peaks":
            self.module.set_lsi_input(lsi_inputs(mdata))
        if self.params["rna_input"] != "counts":
            self.module.set_pca_input(pca_inputs(mdata, int(self.params["rna_pcs"]), seed))
        mdata = self.module_data(mdata)  # after every input above read all peaks
        if not self.params["glue_stages"]:
            return super().fit(mdata, training=training, seed=seed, device=device)
        return self._fit_glue_stages(mdata, training, seed, device)

    def _fit_glue_stages(self, mdata, training, seed: int, device: str) -> pd.DataFrame:
        """GLUE's two stages (scglue ``fit_SCGLUE``): pretrain with the burn-in noise always on,
        then fine-tune from the pretraining's best weights (no KL warm-up, the module's
        burn-in, the minibatch order of ``seed + 1``, the same validation cells). The history
        numbers the epochs on from one stage to the next (column ``stage``)."""
        self.module.pretraining = True
        try:
            first = super().fit(mdata, training=training, seed=seed, device=device)
        finally:
            self.module.pretraining = False
        info = dict(self.train_info)
        second = fit_model(self.module, mdata, seed=seed, device=device,
                           training={**(training or {}), "kl_warmup_epochs": 0},
                           init_state=copy.deepcopy(self.module.state_dict()),
                           order_seed=seed + 1)
        n1 = len(first)
        second["epoch"] += n1
        self.module.train_info.update({
            "epochs_run": n1 + len(second),
            "best_epoch": n1 + int(self.module.train_info["best_epoch"]),
            "train_seconds": info["train_seconds"] + self.module.train_info["train_seconds"],
            "epochs_per_stage": {"pretrain": n1, "finetune": len(second)},
            "pretrain_best_epoch": int(info["best_epoch"]),
        })
        return pd.concat([first.assign(stage="pretrain"), second.assign(stage="finetune")],
                         ignore_index=True)

    def module_data(self, mdata: md.MuData) -> md.MuData:
        """With ``atac_features: linked``, ``mdata`` with only the linked peaks (links
        re-indexed, :func:`dmmvae.data.links.linked_view`)."""
        if self.params["atac_features"] != "linked":
            return mdata
        return linked_view(mdata, "atac")[0]

    def predict(self, mdata: md.MuData, *, batch_size: int = 512, seed: int = 0) -> Predictions:
        if self.params["atac_input"] in LSI_ALL_INPUTS:  # the rows of THIS data's cells
            self.module.set_lsi_all_input(lsi_all_inputs(mdata))
        if self.params["atac_features"] != "linked":
            return super().predict(mdata, batch_size=batch_size, seed=seed)
        view, cols = linked_view(mdata, "atac")
        pred = super().predict(view, batch_size=batch_size, seed=seed)
        return widen_predictions(pred, cols, {m: mdata.mod[m].n_vars for m in cols})


__all__ = [
    "WIDE_FEATURES",
    "DMMVAEModel",
    "MMAAVIModel",
    "VAEModel",
    "lsi_all_inputs",
    "lsi_inputs",
    "pca_inputs",
    "discriminator_groups",
    "vae_model",
]

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
:class:`DMMVAEModel` (the anchor space: a CCA on the linked genes of the train cells).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from ..constants import BATCH, COUNTS, JOINT, LSI, SPLIT, TEST, TRAIN, visible_key
from ..io import InputError, Predictions
from ._base import Method, NotApplicableError
from ._loop import fit_model
from .data import DataSpec, MultimodalData, modality_kind
from .dmmvae import DMMVAE
from .gw_ot import _as_list, import_ot, modality_views
from .linked_cca import LinkedCCA
from .mmaavi import MMAAVI
from .vae import MultimodalVAE

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
        Raises :class:`._loop.TrainingFailure` on a non-finite loss or the time limit."""
        return fit_model(self.module, mdata, seed=seed, device=device, training=training)

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
            masks = batch["mask"]
            put(emb[JOINT], start, mod.embed(qz, masks))
            for s in mods:
                put(emb[s], start, mod.embed({s: qz[s]}, {s: masks[s]}))
                tgts = [t for t in mods if t != s]
                px = mod.impute_params(qz, masks, s, tgts)
                for t in tgts:
                    put(imp[(s, t)], start, mod.scoring_mean(t, px[t]))
                    put(cross[(s, t)], start, mod.scoring_sample(t, px[t]))
            start += len(batch["index"])
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


def cca_anchor_space(mdata, seed: int = 0, n_components: int = 20) -> tuple[dict, str]:
    """Canonical embeddings (Seurat-v3 CCA on linked genes, :class:`~.linked_cca.LinkedCCA`,
    ``n_components`` of them) of every TRAIN cell from its own modality: ``({(anchor, partner):
    (coords_a, coords_b)}, note)``, rows = cells of ``mdata`` (zeros outside the train split).
    Empty with the reason when the CCA cannot be fitted (no or too few linked genes)."""
    cca = LinkedCCA(n_components=int(n_components))
    try:
        cca.fit(mdata, seed=seed)
    except (NotApplicableError, InputError) as err:
        return {}, f"no CCA anchor space ({str(err).split(';')[0]}); linked features used"
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out = {}
    for partner, emb in cca.cell_embeddings(mdata, train).items():
        anchor = cca._anchor
        coords = {}
        for m in (anchor, partner):
            full = np.zeros((mdata.n_obs, emb[m].shape[1]), np.float32)
            full[train] = emb[m]
            coords[m] = full
        out[(anchor, partner)] = (coords[anchor], coords[partner])
    genes = cca.train_info["linked_genes"]
    return out, f"CCA on {genes} linked genes fitted on the train cells"


#: Seurat v3's ``k.score``: neighbours per cell and dataset when anchors are scored
SEURAT_K_SCORE = 30


def seurat_anchor_scores(ua: np.ndarray, ub: np.ndarray, ij: np.ndarray,
                         k_score: int = SEURAT_K_SCORE) -> np.ndarray:
    """Seurat v3's anchor scores (Stuart et al. 2019, "scoring anchors"): for an anchor (i of
    ``ua``, j of ``ub``), the shared neighbours of its two cells, each cell's neighbourhood
    being its ``k_score`` nearest cells of ``ua`` and of ``ub``; the counts are divided by
    ``2 k_score``, then scaled between their 1 % and 90 % quantiles and clipped to [0, 1].
    ``ij``: local row numbers (into ``ua``, ``ub``)."""
    from sklearn.neighbors import NearestNeighbors

    if len(ij) == 0:
        return np.zeros(0)
    nn_a = NearestNeighbors(n_neighbors=min(k_score, len(ua))).fit(ua)
    nn_b = NearestNeighbors(n_neighbors=min(k_score, len(ub))).fit(ub)

    def hood(x):  # neighbours in a (ids 0..) and in b (ids offset by len(ua))
        return np.hstack([nn_a.kneighbors(x)[1], nn_b.kneighbors(x)[1] + len(ua)])

    hi, hj = hood(ua[ij[:, 0]]), hood(ub[ij[:, 1]])
    shared = np.array([len(np.intersect1d(x, y)) for x, y in zip(hi, hj, strict=True)], float)
    score = shared / (2 * k_score)
    lo, hi_q = np.quantile(score, [0.01, 0.9])
    return np.clip((score - lo) / max(hi_q - lo, 1e-12), 0.0, 1.0)


def global_anchor_pairs(mdata, spaces: dict, k: int, k_score: int = 0
                        ) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """Seurat's anchors: mutual ``k``-nearest neighbours between the TRAIN cells that show
    ``a`` but not ``b`` and those that show ``b`` but not ``a``, in the per-cell coordinates
    ``spaces`` of :func:`cca_anchor_space` (canonical vectors it already L2-normalises, so
    Euclidean neighbours are cosine neighbours). Returns ``(pairs, scores)``: pairs
    ``{(a, b): int array (n_pairs, 2)}`` of row numbers; with ``k_score`` > 0 Seurat's score of
    every pair (:func:`seurat_anchor_scores`) ``{(a, b): float array (n_pairs,)}``, else ``{}``."""
    from sklearn.neighbors import NearestNeighbors

    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out, scores = {}, {}
    for (a, b), (ca, cb) in spaces.items():
        va = train & mdata.obs[visible_key(a)].to_numpy(bool)
        vb = train & mdata.obs[visible_key(b)].to_numpy(bool)
        ra, rb = np.flatnonzero(va & ~vb), np.flatnonzero(vb & ~va)
        if len(ra) < 2 or len(rb) < 2:
            continue
        ua, ub = ca[ra], cb[rb]
        nab = NearestNeighbors(n_neighbors=min(k, len(rb))).fit(ub).kneighbors(ua)[1]
        nba = NearestNeighbors(n_neighbors=min(k, len(ra))).fit(ua).kneighbors(ub)[1]
        ab = {(i, j) for i, row in enumerate(nab) for j in row}
        mutual = sorted((i, j) for j, row in enumerate(nba) for i in row if (i, j) in ab)
        out[(a, b)] = np.array([(ra[i], rb[j]) for i, j in mutual], dtype=np.int64).reshape(-1, 2)
        if k_score:
            local = np.array(mutual, dtype=np.int64).reshape(-1, 2)
            scores[(a, b)] = seurat_anchor_scores(ua, ub, local, k_score)
    return out, scores


def gw_anchor_pairs(mdata, n_pcs: list[int], seed: int = 0, max_cells: int = 1500,
                    ) -> tuple[dict[tuple[str, str], np.ndarray], str]:
    """Structure-only anchors, for modalities with NO linked feature: per pair of modalities
    (a, b), exact Gromov-Wasserstein (POT's conditional gradient from the product coupling,
    uniform marginals) between the TRAIN cells that show ``a`` but not ``b`` and those that
    show ``b`` but not ``a``, on cosine distances of each modality's own view
    (:func:`~.gw_ot.modality_views`: PCA, or LSI for ATAC); ``n_pcs`` is self-tuned by the
    lowest GW distance, as ``gw_ot`` does. Each cell's partner is its largest coupling entry,
    both directions kept. At most ``max_cells`` cells per side (a seeded subsample).
    ``({(a, b): int array (n_pairs, 2)}, note)`` of row numbers."""
    ot = import_ot()
    rng = np.random.default_rng(seed)
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    mods = list(mdata.mod)
    out, notes = {}, []
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            va = train & mdata.obs[visible_key(a)].to_numpy(bool)
            vb = train & mdata.obs[visible_key(b)].to_numpy(bool)
            rows = {a: np.flatnonzero(va & ~vb), b: np.flatnonzero(vb & ~va)}
            if min(len(r) for r in rows.values()) < 10:
                continue
            for m, r in rows.items():
                if len(r) > max_cells:
                    rows[m] = np.sort(rng.choice(r, max_cells, replace=False))
            ra, rb = rows[a], rows[b]
            views = {m: modality_views(mdata, m, rows[m], list(n_pcs), seed) for m in (a, b)}
            p, q = np.full(len(ra), 1 / len(ra)), np.full(len(rb), 1 / len(rb))
            best = None
            for n in n_pcs:
                Za, Zb = views[a][n](ra), views[b][n](rb)
                Da, Db = 1 - Za @ Za.T, 1 - Zb @ Zb.T  # cosine distances (unit rows)
                Da, Db = Da / max(Da.max(), 1e-12), Db / max(Db.max(), 1e-12)
                T, log = ot.gromov.gromov_wasserstein(Da, Db, p, q, "square_loss", log=True,
                                                      max_iter=2000)
                if best is None or log["gw_dist"] < best[0]:
                    best = (float(log["gw_dist"]), n, np.asarray(T))
            gw, n, T = best
            ij = np.unique(np.vstack([np.c_[np.arange(len(ra)), T.argmax(1)],
                                      np.c_[T.argmax(0), np.arange(len(rb))]]), axis=0)
            out[(a, b)] = np.c_[ra[ij[:, 0]], rb[ij[:, 1]]].astype(np.int64)
            notes.append(f"{a}+{b}: GW on {len(ra)}+{len(rb)} cells, {n} components "
                         f"(GW {gw:.4g}), {len(ij)} pairs")
    return out, "structure-only GW anchors: " + "; ".join(notes)


def lsi_inputs(mdata: md.MuData) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{modality: (idf, loadings, tfidf scale)}`` of every ATAC modality of ``mdata`` (the
    LSI that preprocessing fitted on train cells), checked to reproduce ``obsm["X_lsi"]`` on
    train cells; an :class:`InputError` naming the fix when a modality lacks it."""
    from ..data.preprocess._atac import tfidf
    from ..schema import schema_defaults

    # files preprocessed before the scale was stored in uns["lsi"] used the default
    default_scale = float(schema_defaults("preprocessing")["atac"]["tfidf_scale"])
    src = str(getattr(mdata, "filename", None) or "the scenario MuData")
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


class DMMVAEModel(VAEModel):
    """D-MMVAE's model: finds the anchor space (and, with ``anchor_scope: global``, the anchors)
    from the data (train cells) before training."""

    module_class = DMMVAE

    def fit(self, mdata, *, training=None, seed=0, device="cpu"):
        spaces, note = {}, ""
        if float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] == "cca":
            spaces, note = cca_anchor_space(mdata, seed, self.params["anchor_components"])
        pairs = {}
        if float(self.params["anchor_weight"]) > 0 and self.params["anchor_space"] == "gw":
            pairs, note = gw_anchor_pairs(mdata, _as_list(self.params["anchor_components"]), seed)
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
        if self.params["atac_input"] != "peaks":
            self.module.set_lsi_input(lsi_inputs(mdata))
        return super().fit(mdata, training=training, seed=seed, device=device)


__all__ = [
    "WIDE_FEATURES",
    "DMMVAEModel",
    "MMAAVIModel",
    "VAEModel",
    "cca_anchor_space",
    "gw_anchor_pairs",
    "seurat_anchor_scores",
    "global_anchor_pairs",
    "lsi_inputs",
    "discriminator_groups",
    "vae_model",
]

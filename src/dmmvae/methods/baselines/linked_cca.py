"""``linked_cca``: the Seurat-v3-style diagonal control (PROTOCOL "Controls and reference
methods"): CCA between two modalities expressed in the SAME linked genes, with no pairing.

Recipe (Stuart et al. 2019, "Comprehensive integration of single-cell data", CCA anchors step):

1. Express each partner modality in genes through its links (:func:`dmmvae.data.links.gene_space`:
   gene activity for ATAC, linked proteins for ADT, same-name features otherwise) and keep the
   genes both sides share (at least one link, non-constant on the train cells of each side).
2. Count data are log-normalised (``normalize_total(1e4)`` + ``log1p``), then each side is
   standardised per gene on ITS OWN train cells (clipped at +-10, Seurat's ``ScaleData``).
3. CCA as Seurat computes it: the truncated SVD of ``X_a X_b^T`` (train cells of a x train cells
   of b; evaluated through a linear operator, never formed), whose singular vectors are the
   canonical cell embeddings. Gene loadings ``W_a = X_b^T v / d`` and ``W_b = X_a^T u / d``
   reproduce them (``u = X_a W_a``) and place any cell, test cells included, from its own
   modality alone; every embedding is L2-normalised per cell, as Seurat does.

No pair is used: train cells of each side are all cells that show that modality, whether or
not they also show the other (so paired and mosaic scenarios work the same way). The anchor is
the first modality of the file (RNA in every stand-in); with three modalities each partner is
aligned to the anchor and the anchor's embedding is the one of its first partner (documented
limitation: two partners are then compared only through the anchor).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd

from ...constants import JOINT, SPLIT, TEST
from ...io import Predictions
from .._base import Method
from ..anchors import LinkedGeneCCA


def anchored_predictions(mdata: md.MuData, cell_embeddings, info: dict | None = None
                         ) -> Predictions:
    """The test cells' predictions of a method that aligns every partner to one anchor:
    ``cell_embeddings(mdata, rows)`` gives ``{partner: {anchor: z, partner: z}}``; each
    modality keeps its embedding (the anchor's: the one of its first partner), the joint one is
    their mean."""
    test = mdata.obs[SPLIT].to_numpy() == TEST
    emb: dict[str, np.ndarray] = {}
    for pair in cell_embeddings(mdata, test).values():
        for m, z in pair.items():
            emb.setdefault(m, z)
    emb[JOINT] = np.mean([emb[m] for m in emb], axis=0)
    return Predictions(mdata.obs_names[test], embeddings=emb, info=info)


class LinkedCCA(Method):
    """Seurat-v3-style CCA on linked genes (see the module docstring; the algorithm is
    :class:`~dmmvae.methods.anchors.LinkedGeneCCA`)."""

    needs_unpaired = True  # a diagonal control (PROTOCOL): not run on paired scenarios

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_components": 20,  # canonical components (Seurat's default dims 1:20 for anchors)
        "clip": 10.0,  # ScaleData clip
        "min_genes": 5,  # fewer shared linked genes than this stops with a clear error
        "standardize_cells": True,  # RunCCA(standardize=TRUE): z-score each cell over genes
    }

    @property
    def anchor(self) -> str:
        """The modality every partner is aligned to (set by :meth:`fit`)."""
        return self._cca.anchor

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        p = self.params
        self._cca = LinkedGeneCCA(p["n_components"], p["clip"], p["min_genes"],
                                  p["standardize_cells"]).fit(mdata, seed=seed)
        self.train_info = dict(self._cca.train_info)
        return pd.DataFrame()

    def cell_embeddings(self, mdata, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Canonical embeddings of the cells ``rows`` (:meth:`LinkedGeneCCA.cell_embeddings`)."""
        return self._cca.cell_embeddings(mdata, rows)

    def predict(self, mdata) -> Predictions:
        return anchored_predictions(mdata, self.cell_embeddings)


__all__ = ["LinkedCCA", "anchored_predictions"]

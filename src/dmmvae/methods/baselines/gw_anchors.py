"""``gw_anchors``: the structure-only anchors of ``dmmvae_gw`` with no VAE (its ablation control).

``dmmvae_gw`` pairs the diagonal train cells of two modalities by an exact Gromov-Wasserstein
coupling on cosine distances of each modality's own view (:func:`.anchors.gw_anchor_pairs`, the
view's width self-tuned by the lowest GW distance) and then trains a VAE that pulls the codes of
those pairs together. This control keeps the same coupling (same function, same parameters) and
drops the VAE: every train cell of the partner modality is placed at the mean anchor-view
position of the anchor cells it is paired with (a barycentric projection through the pairs);
test cells are placed as ``gw_ot`` places them, at the mean position of their ``k_place``
nearest train cells in their own view. Whatever ``dmmvae_gw`` scores above this control is what
the VAE adds to the coupling.

The anchor is the first modality of the file; every other one is aligned to it. Needs no link
and no pair; diagonal and mosaic only (``needs_unpaired``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ...constants import JOINT, SPLIT, TEST, TRAIN, visible_key
from ...io import Predictions
from .._base import Method
from ..anchors import as_list, gw_anchor_pairs, modality_views, place_by_neighbours


class GWAnchors(Method):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "anchor_components": [20, 30, 50],  # dmmvae_gw's: the view widths GW self-tunes over
        "max_cells": 1500,  # per side, as gw_anchor_pairs' default
        "k_place": 5,  # nearest train cells that place a test cell (gw_ot's default)
    }
    needs_unpaired = True

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mods = list(mdata.mod)
        self._anchor = anchor = mods[0]
        widths = as_list(self.params["anchor_components"])
        pairs, note = gw_anchor_pairs(mdata, widths, seed, int(self.params["max_cells"]))
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        n = max(widths)  # the embedding: the anchor's widest view
        self._views = {}
        self._placed = {}
        rows_a = np.flatnonzero(train & mdata.obs[visible_key(anchor)].to_numpy(bool))
        self._views[anchor] = modality_views(mdata, anchor, rows_a, [n], seed)[n]
        for partner in mods[1:]:
            ij = pairs.get((anchor, partner))
            if ij is None or len(ij) == 0:
                raise RuntimeError(f"gw_anchors: no GW pair between '{anchor}' and '{partner}' "
                                   f"(too few diagonal train cells); {note}")
            rows_b = np.flatnonzero(train & mdata.obs[visible_key(partner)].to_numpy(bool))
            self._views[partner] = modality_views(mdata, partner, rows_b, [n], seed)[n]
            cells_b = np.unique(ij[:, 1])
            za = self._views[anchor](ij[:, 0])
            # barycentric projection through the pairs: the mean anchor view of each b cell's partners
            row = np.searchsorted(cells_b, ij[:, 1])
            pos = np.zeros((len(cells_b), za.shape[1]))
            np.add.at(pos, row, za)
            pos /= np.bincount(row)[:, None]
            self._placed[partner] = (self._views[partner](cells_b), pos)
        self.train_info = {"anchors": note, "view_components": n}
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        emb = {self._anchor: self._views[self._anchor](test)}
        for partner, (z_train, pos) in self._placed.items():
            emb[partner] = place_by_neighbours(z_train, pos, self._views[partner](test),
                                               int(self.params["k_place"]))
        emb[JOINT] = np.mean(list(emb.values()), axis=0)
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           info={"model": "gw_anchors", "params": self.params, **self.train_info})

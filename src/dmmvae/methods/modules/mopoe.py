"""``mopoe``: mixture of products of experts over modality subsets (Sutter et al. 2021).

Fusion (embeddings): for the available modalities ``V`` of a cell, the uniform mixture over
the non-empty subsets ``S ⊆ V`` of ``PoE(prior, q_m for m in S)``, as its moment-matched
Gaussian. Objective: :func:`.objectives.mopoe_elbo` (``sampling`` "stratified" or "select").
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...constants import BATCH_KEYS
from .objectives import (
    Gaussian,
    mixture_moments,
    mopoe_elbo,
    nonempty_subsets,
    product_of_experts,
    subset_mask,
)
from .vae import LossOutput, MultimodalVAE


class MoPoE(MultimodalVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **MultimodalVAE.DEFAULTS,
        "sampling": "stratified",  # "stratified" (all subsets) | "select" (one subset per cell)
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["sampling"] not in ("stratified", "select"):
            raise ValueError(
                f"mopoe: unknown sampling '{self.params['sampling']}'; valid: ['select', 'stratified']"
            )

    def fuse(self, qz, masks) -> Gaussian:
        mods = [m for m in qz if m in masks]
        if len(mods) == 1:
            return product_of_experts(qz, masks)
        subsets = nonempty_subsets(mods)
        comps, cmask = {}, {}
        for s in subsets:
            v = subset_mask(s, masks)
            key = "+".join(s)
            comps[key] = product_of_experts({m: qz[m] for m in s}, {m: masks[m] & v for m in s})
            cmask[key] = v
        return mixture_moments(comps, cmask)

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        qz = self.encode(batch)
        per_cell, terms = mopoe_elbo(
            qz,
            batch[BATCH_KEYS.MASK],
            self.make_decode(batch),
            self.kl_scale(kl_weight),
            sampling=self.params["sampling"],
        )
        return self.loss_output(per_cell, terms, z=self.fuse(qz, batch[BATCH_KEYS.MASK]).mu)


__all__ = ["MoPoE"]

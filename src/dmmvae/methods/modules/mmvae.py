"""``mmvae``: mixture of experts (Shi et al. 2019; single-cell form scMM, Minoura et al. 2021).

Fusion: the uniform mixture of the visible experts; as one Gaussian (embeddings) its
moment-matched form, whose mean is the average of the expert means. Objective
(:func:`.objectives.moe_stratified_elbo`): stratified over experts, each ``z ~ q_r``
reconstructs every visible modality (self- and cross-modal terms). ``estimator``: ``"elbo"``
(scMM default), ``"iwae"`` or ``"dreg"`` with ``k`` importance samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...constants import BATCH_KEYS
from .objectives import mixture_moments, moe_stratified_elbo
from .vae import LossOutput, MultimodalVAE


class MMVAE(MultimodalVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **MultimodalVAE.DEFAULTS,
        "estimator": "elbo",  # "elbo" | "iwae" | "dreg"
        "k": 1,  # samples per expert (importance samples for iwae / dreg)
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["estimator"] not in ("elbo", "iwae", "dreg"):
            raise ValueError(
                f"mmvae: unknown estimator '{self.params['estimator']}'; valid: ['dreg', 'elbo', 'iwae']"
            )

    def fuse(self, qz, masks):
        return mixture_moments(qz, masks)

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        qz = self.encode(batch)
        per_cell, terms = moe_stratified_elbo(
            qz,
            batch[BATCH_KEYS.MASK],
            self.make_decode(batch),
            self.kl_scale(kl_weight),
            estimator=self.params["estimator"],
            k=int(self.params["k"]),
        )
        return self.loss_output(per_cell, terms, z=self.fuse(qz, batch[BATCH_KEYS.MASK]).mu)


__all__ = ["MMVAE"]

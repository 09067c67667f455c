"""``mvae``: product of experts with a prior expert (Wu & Goodman 2018).

Fusion: ``PoE(N(0, I), q_m for the visible m)``. Objective
(:func:`.objectives.poe_subsampled_elbo`): the joint ELBO plus, for cells showing >= 2
modalities, the unimodal ELBO of each visible modality, so that the posterior from one
modality alone is trained (needed for single-modality embeddings and imputation).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...constants import BATCH_KEYS
from .objectives import poe_subsampled_elbo, product_of_experts
from .vae import LossOutput, MultimodalVAE


class MVAE(MultimodalVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {**MultimodalVAE.DEFAULTS}

    def fuse(self, qz, masks):
        return product_of_experts(qz, masks, prior_expert=True)

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        qz = self.encode(batch)
        per_cell, terms = poe_subsampled_elbo(
            qz, batch[BATCH_KEYS.MASK], self.make_decode(batch), self.kl_scale(kl_weight)
        )
        return self.loss_output(per_cell, terms, z=self.fuse(qz, batch[BATCH_KEYS.MASK]).mu)


__all__ = ["MVAE"]

"""``mmvae_plus``: MMVAE++ (Märtens & Yau 2024, arXiv 2403.06338), shared + private latents.

Latent structure
----------------
Each modality ``m`` has two encoders: a *shared* one ``q(z_s | x_m)`` (``n_latent`` dims, the
base class's ``encoders``) and a *private* one ``q(w_m | x_m)`` (``n_private`` dims,
``private_encoders``). Decoder ``m`` reads ``[z_s, w_m]``.

Objective (the paper's modified MMVAE, stratified over the visible modalities ``V``;
:func:`.objectives.shared_private_elbo`)
------------------------------------------------------------------------------------
For every ``r in V``, ``z_s ~ q(z_s | x_r)`` and, for every ``d in V``:

- ``d != r`` (cross-modal prediction): ``log p(x_d | z_s, w_d = 0)``; the private part is set
  to zero as in the authors' code (``cross_private="prior"`` samples ``w_d ~ N(0, I)``
  instead, the MMVAE+ choice of Palumbo et al. 2023). Gradients reach the shared encoder
  of ``r`` only through these terms.
- ``d == r`` (self-reconstruction): ``log p(x_d | stopgrad(z_s), w_d)``, ``w_d ~ q(w_d | x_d)``:
  the self term may *use* the shared code but cannot shape it, so modality-specific
  variation cannot leak into ``z_s`` through self-reconstruction (the paper's fix for the
  regime where private variance dominates). ``detach_self_shared=False`` gives the
  unmodified shared/private MMVAE for ablations.

KL terms: ``KL(q(z_s|x_r) || N(0,I))`` averaged over ``r in V`` plus ``KL(q(w_m|x_m) || N(0,I))``
for every visible ``m``, times the warm-up weight and ``beta``.

Embeddings and the rest of the contract
---------------------------------------
Embeddings are the SHARED latent only (``n_latent`` columns, ``Predictions.info
["shared_dims"]`` lists them: all columns): the private dimensions describe one modality
and are not comparable across modalities, so they are left out of every embedding (they are
used for self-reconstruction and prior generation only). Joint embedding = mean of the
visible shared-expert means (the moment-matched mixture). Imputation ``src -> tgt`` decodes
``[mean of q(z_s | x_src), w_tgt = 0]``, the same path the cross-modal terms train. Prior
samples draw ``[z_s, w] ~ N(0, I)``.

Diagonal data: a cell showing one modality has no cross-modal term, so the shared encoder
receives only its KL gradient and the shared latent collapses to the prior; MMVAE++ needs
paired (or mosaic) train cells to learn anything shared.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...constants import BATCH_KEYS
from .nn import Decoder
from .objectives import Gaussian, mixture_moments, shared_private_elbo
from .spec import ModalitySpec
from .vae import LossOutput, MultimodalVAE

CROSS_PRIVATE = ("zero", "prior")


class MMVAEPlus(MultimodalVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **MultimodalVAE.DEFAULTS,
        "n_private": 4,  # private dimensions per modality
        "cross_private": "zero",  # private code in cross-modal terms: "zero" | "prior"
        "detach_self_shared": True,  # the MMVAE++ stop-gradient (False = plain shared/private MMVAE)
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["cross_private"] not in CROSS_PRIVATE:
            raise ValueError(
                f"mmvae_plus: unknown cross_private '{self.params['cross_private']}'; "
                f"valid: {list(CROSS_PRIVATE)}"
            )
        if int(self.params["n_private"]) < 1:
            raise ValueError("mmvae_plus: n_private must be >= 1")

    # ------------------------------------------------------------------ building
    @property
    def n_private(self) -> int:
        return int(self.params["n_private"])

    def make_decoder(self, ms: ModalitySpec, n_in: int | None = None) -> Decoder:
        return super().make_decoder(ms, n_in or self.latent_dim + self.n_private)

    def build_extra(self, spec) -> None:
        self.private_encoders = nn.ModuleDict(
            {m: self.make_encoder(ms, self.n_private) for m, ms in spec.modalities.items()}
        )

    # ------------------------------------------------------------------ encoding
    def encode_private(self, batch: dict[str, Any]) -> dict[str, Gaussian]:
        """``q(w_m | x_m)`` for every modality in the batch; hidden rows get ``N(0, I)``."""
        return self.encode(batch, encoders=self.private_encoders)

    def fuse(self, qz, masks) -> Gaussian:
        return mixture_moments(qz, masks)

    def _cross_private(self, like: Tensor) -> Tensor:
        shape = (*like.shape[:-1], self.n_private)
        if self.params["cross_private"] == "prior" and self.training:
            return torch.randn(shape, device=like.device, dtype=like.dtype)
        return like.new_zeros(shape)

    # ------------------------------------------------------------------ objective
    def loss_terms(
        self, batch: dict[str, Any], kl_weight: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Gaussian]]:
        """Per-cell loss, per-cell named terms and the shared posteriors
        (:func:`.objectives.shared_private_elbo`)."""
        qs = self.encode(batch)
        qw = self.encode_private(batch)
        x, lib = batch[BATCH_KEYS.X], batch[BATCH_KEYS.LIBRARY]

        def decode_one(z: Tensor, d: str) -> Tensor:
            dec = self.decoders[d]
            return dec.likelihood.log_prob(x[d], dec(z, lib[d]))

        per_cell, terms = shared_private_elbo(
            qs,
            qw,
            batch[BATCH_KEYS.MASK],
            decode_one,
            self.kl_scale(kl_weight),
            cross_private=self._cross_private,
            detach_self_shared=bool(self.params["detach_self_shared"]),
        )
        return per_cell, terms, qs

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        per_cell, terms, qs = self.loss_terms(batch, kl_weight)
        return self.loss_output(per_cell, terms, z=self.fuse(qs, batch[BATCH_KEYS.MASK]).mu)

    # ------------------------------------------------------------------ prediction
    def impute_params(self, qz, masks, src, tgts):
        z_s = qz[src].mu
        return self.generative(torch.cat([z_s, self._cross_private(z_s)], -1), mods=tgts)

    def sample_prior(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, self.latent_dim + self.n_private, generator=generator).to(self.device)

    def prediction_info(self) -> dict[str, Any]:
        return {
            "shared_dims": list(range(self.latent_dim)),
            "private_dims": (
                "excluded from embeddings (modality-specific; used for self-reconstruction and "
                f"prior generation only; {self.n_private} per modality)"
            ),
        }


__all__ = ["MMVAEPlus"]

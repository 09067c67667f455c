"""``mlp_fusion``: concatenated modality means through an MLP into one posterior.

Each modality's encoder gives a mean vector ``h_m`` (its ``mu``); the fusion MLP reads
``[h_m * mask_m for m] + [mask_m for m]`` and outputs ``(mu, logvar)`` of one Gaussian
posterior, decoded into every visible modality; KL annealing comes from the training
warm-up (``training.kl_warmup_epochs``).

Missing modalities: a hidden modality enters as zeros WITH its mask indicator, so the MLP
knows it is absent rather than reading zeros as data. That alone would never train the
single-modality path on paired data, so training also uses modality dropout: with
probability ``modality_dropout`` a cell that shows >= 2 modalities is encoded from one of
them (chosen at random) while still reconstructing all it shows — the cross-modal signal
that single-modality embeddings and imputations need. On diagonal data every cell already
shows one modality.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ...constants import BATCH_KEYS
from .nn import LOGVAR_MAX, LOGVAR_MIN, MLP
from .objectives import Gaussian, count_visible, single_elbo
from .vae import LossOutput, MultimodalVAE


class MLPFusion(MultimodalVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **MultimodalVAE.DEFAULTS,
        "modality_dropout": 0.5,  # probability that a multi-modality cell is encoded from one
        "fusion_hidden": 128,  # width of the fusion MLP's hidden layer
    }

    def build_extra(self, spec) -> None:
        n = len(spec.modalities)
        self.fusion = MLP(
            n * self.latent_dim + n,
            2 * self.latent_dim,
            int(self.params["fusion_hidden"]),
            1,
            float(self.params["dropout"]),
            self.params["norm"] if self.params["norm"] != "batch" else "layer",
        )

    def fuse(self, qz, masks) -> Gaussian:
        ref = next(iter(qz.values())).mu
        parts, flags = [], []
        for m in self.modalities:
            if m in qz and m in masks:
                k = masks[m].unsqueeze(1).to(ref.dtype)
                parts.append(qz[m].mu * k)
                flags.append(k)
            else:
                parts.append(torch.zeros_like(ref))
                flags.append(ref.new_zeros(ref.shape[0], 1))
        h = self.fusion(torch.cat(parts + flags, dim=1))
        mu, lv = h.float().chunk(2, dim=-1)
        return Gaussian(mu, lv.clamp(LOGVAR_MIN, LOGVAR_MAX))

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        qz = self.encode(batch)
        masks = batch[BATCH_KEYS.MASK]
        enc_masks = masks
        p = float(self.params["modality_dropout"])
        if self.training and p > 0 and len(masks) > 1:
            mods = list(masks)
            ref = masks[mods[0]]
            drop = (torch.rand(ref.shape, device=ref.device) < p) & (count_visible(masks) >= 2)
            scores = torch.stack(
                [
                    torch.where(masks[m], torch.rand(ref.shape, device=ref.device), -1.0)
                    for m in mods
                ]
            )
            keep = scores.argmax(0)
            enc_masks = {m: torch.where(drop, keep == i, masks[m]) for i, m in enumerate(mods)}
        q = self.fuse(qz, enc_masks)
        elbo, recon, kl = single_elbo(
            q, self.make_decode(batch), list(masks), masks, self.kl_scale(kl_weight)
        )
        terms = {f"recon_{m}": v for m, v in recon.items()}
        terms["kl"] = kl
        return self.loss_output(-elbo, terms, z=q.mu)


__all__ = ["MLPFusion"]

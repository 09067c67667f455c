"""What a module carries from one training step to the next, owned by the training loop.

A module's ``loss(batch, kl_weight, state)`` reads the state and writes nothing; what a step
wants to change comes back in ``LossOutput.updates`` and :meth:`TrainingState.update` applies it
after the optimiser step. One state per fit (:func:`.loop.fit_model` makes it); it is not part
of a checkpoint: prediction needs none of it.

Keys of ``LossOutput.updates`` this layer understands:

- ``"recon_scale"``: the new running size of the reconstruction term (a float), which
  D-MMVAE expresses its alignment weights in;
- ``"codes"``: ``{modality: (B, d) tensor}``, the detached codes of the batch's cells; stored
  per train cell (rows where the batch shows the modality) for terms that compare a cell with
  other cells' latest codes (D-MMVAE's global anchors, its anchor refresh).

Other keys (e.g. ``"disc_inputs"``, read within the same step) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...constants import BATCH_KEYS


@dataclass
class TrainingState:
    """Cross-step state of one fit over ``n_obs`` cells (row numbers = ``BATCH_KEYS.INDEX``).

    ``recon_scale``: running reconstruction size (None before the first training step).
    ``codes[m]``: ``(n_obs, d)`` latest detached code of each cell showing modality ``m``;
    ``filled[m]``: ``(n_obs,)`` whether that cell has one yet.
    ``epoch``: the epoch being trained (set by the loop); ``warmup_epochs``: the loop's KL
    warm-up, after which the full objective (D-MMVAE's adversaries) is on.
    """

    n_obs: int
    warmup_epochs: int = 0
    epoch: int = 0
    recon_scale: float | None = None
    codes: dict[str, Tensor] = field(default_factory=dict)
    filled: dict[str, Tensor] = field(default_factory=dict)

    def update(self, updates: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Apply a training step's ``LossOutput.updates`` for the cells of ``batch``."""
        if updates.get("recon_scale") is not None:
            self.recon_scale = float(updates["recon_scale"])
        codes = updates.get("codes") or {}
        if not codes:
            return
        device = next(iter(codes.values())).device
        idx = batch[BATCH_KEYS.INDEX].to(device)
        for m, z in codes.items():
            rows = batch[BATCH_KEYS.MASK][m].to(device)
            if m not in self.codes:
                self.codes[m] = z.new_zeros((self.n_obs, z.shape[1]))
                self.filled[m] = torch.zeros(self.n_obs, dtype=torch.bool, device=device)
            self.codes[m][idx[rows]] = z[rows].detach()
            self.filled[m][idx[rows]] = True


__all__ = ["TrainingState"]

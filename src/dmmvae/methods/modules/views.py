"""Common views of minibatches that the alignment terms compare (scMODAL, D-MMVAE).

- :func:`log_view`: counts -> ``log1p(1e4 * x / sum(x))`` (library-size normalised log), other
  targets (ATAC 0/1, gaussian values) as they are.
- :class:`LinkedFeatures`: the links of the preprocessed file between two modalities
  (:mod:`dmmvae.data.links`, read through :meth:`.data.DataSpec.link`: a protein and the gene
  that encodes it, a gene and its linked peaks, same-name features), ready to map a minibatch
  of each modality into the SAME feature space: modality ``a``'s linked features, and for
  ``b`` the weighted sum of its features linked to each of them (a protein's level; the gene
  activity of peaks). Both views are standardised over the minibatch rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .objectives import standardise


def log_view(target: str, x: Tensor) -> Tensor:
    """Log-normalised view of a target batch (counts), the values as they are otherwise."""
    if target == "counts":
        return torch.log1p(1e4 * x / x.sum(-1, keepdim=True).clamp_min(1e-8))
    return x


@dataclass
class LinkedFeatures:
    """Links ``a -> b`` as tensors: ``genes`` (the distinct linked features of ``a``),
    ``inverse`` (for each link, the position of its ``a`` feature in ``genes``), ``ib`` (the
    ``b`` feature of each link) and ``w`` (the link weights)."""

    genes: Tensor
    inverse: Tensor
    ib: Tensor
    w: Tensor

    @classmethod
    def from_spec(cls, spec, a: str, b: str) -> LinkedFeatures:
        la, lb, lw = spec.link(a, b)
        genes, inverse = np.unique(la, return_inverse=True)
        return cls(*(torch.as_tensor(v) for v in (genes, inverse, lb, lw.astype(np.float32))))

    @property
    def n_features(self) -> int:
        return len(self.genes)

    @property
    def n_links(self) -> int:
        return len(self.ib)

    def views(self, xa: Tensor, target_a: str, xb: Tensor, target_b: str) -> tuple[Tensor, Tensor]:
        """Rows of ``a`` and rows of ``b`` in ``a``'s linked-feature space, standardised."""
        genes, inverse, ib, w = (t.to(xa.device) for t in (self.genes, self.inverse, self.ib, self.w))
        fa = standardise(log_view(target_a, xa)[:, genes])
        vb = log_view(target_b, xb)[:, ib] * w
        fb = vb.new_zeros(vb.shape[0], len(genes)).index_add_(1, inverse, vb)
        return fa, standardise(fb)


__all__ = ["LinkedFeatures", "log_view"]

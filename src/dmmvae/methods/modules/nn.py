"""Building blocks (plain ``torch.nn``): an MLP, a per-modality Gaussian encoder and a decoder.

- :class:`MLP` ``(n_in -> n_hidden x n_layers -> n_out)`` with optional batch/layer norm,
  ReLU and dropout; accepts any leading batch dimensions (``(K, B, d)`` for importance samples).
- :class:`Encoder` ``x -> (mu, logvar)`` of a diagonal Gaussian; ``log1p_input=True`` for count
  modalities (the input is ``log1p(counts)``), False for ``.X`` (ATAC 0/1, gaussian values).
- :class:`Decoder` ``(z, library) -> params`` of its :class:`~.likelihoods.Likelihood`.

Norm default is ``"layer"``: unlike batch norm it does not depend on which cells share a
minibatch, so a cell's encoding is the same whether it is encoded with others that show the
modality or alone at prediction time (scvi-tools uses batch norm; ``norm="batch"`` is offered).
"""

from __future__ import annotations

from torch import Tensor, nn

from .likelihoods import Likelihood

NORMS = ("batch", "layer", "none")
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


def _norm(kind: str | None, width: int) -> nn.Module:
    if kind in (None, "none", False):
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width, momentum=0.01, eps=1e-3)
    if kind == "layer":
        return nn.LayerNorm(width, elementwise_affine=False)
    raise ValueError(f"unknown norm '{kind}'; valid norms are {list(NORMS)}")


class MLP(nn.Module):
    """``n_layers`` hidden blocks (Linear -> norm -> ReLU -> Dropout) then a Linear output."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        norm: str | None = "layer",
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_in
        for _ in range(n_layers):
            blocks += [nn.Linear(width, n_hidden), _norm(norm, n_hidden), nn.ReLU()]
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = n_hidden
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(width, n_out)
        self._flatten = norm == "batch"

    def forward(self, x: Tensor) -> Tensor:
        if self._flatten and x.dim() > 2:  # BatchNorm1d wants (N, C)
            lead = x.shape[:-1]
            return self.out(self.body(x.reshape(-1, x.shape[-1]))).reshape(*lead, -1)
        return self.out(self.body(x))


class Encoder(nn.Module):
    """Diagonal-Gaussian encoder of one modality: ``x -> (mu, logvar)``."""

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        *,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        norm: str | None = "layer",
        log1p_input: bool = True,
    ) -> None:
        super().__init__()
        self.log1p_input = log1p_input
        self.n_latent = n_latent
        self.net = MLP(n_input, 2 * n_latent, n_hidden, n_layers, dropout, norm)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x.clamp_min(0.0).log1p() if self.log1p_input else x)
        mu, logvar = h.float().chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class Decoder(nn.Module):
    """``z -> likelihood parameters`` of one modality (the likelihood module is owned here)."""

    def __init__(
        self,
        n_latent: int,
        likelihood: Likelihood,
        *,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.0,
        norm: str | None = "layer",
    ) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.net = MLP(n_latent, likelihood.n_outputs, n_hidden, n_layers, dropout, norm)

    def forward(self, z: Tensor, library: Tensor | None = None) -> dict[str, Tensor]:
        """``library``: ``(B, 1)`` observed totals (count likelihoods), broadcast over samples."""
        return self.likelihood.params(self.likelihood.split_heads(self.net(z)), library)


__all__ = ["MLP", "NORMS", "Decoder", "Encoder"]

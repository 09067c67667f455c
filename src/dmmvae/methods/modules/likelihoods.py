"""Observation models ("likelihoods") of the decoders: a dict registry name -> class.

Every likelihood is a ``torch.nn.Module`` (it owns its learned per-feature dispersion or
variance) with the same small interface, so every variant works with any of them:

- ``heads``: names of the decoder output heads; the decoder's last layer emits
  ``len(heads) * n_features`` values, split into one ``(..., n_features)`` tensor per head.
- ``target``: which data the likelihood scores, and hence what a batch holds for the modality:
  ``"counts"`` (``layers["counts"]``), ``"binary"`` (counts > 0, or ``.X > 0`` without counts)
  or ``"values"`` (``.X``, the scoring normalization).
- ``params(heads, library) -> dict``: distribution parameters from the raw heads;
  ``library`` is a ``(B, 1)`` tensor of observed totals over the modelled features (count
  likelihoods only; the decoder outputs softmax frequencies ``rho`` and ``mean = library * rho``).
- ``log_prob(x, params, nonzero=None) -> (..., B)``: log-likelihood per cell, summed over
  features; ``nonzero`` (optional, :func:`nonzero_entries` of ``x``) lets count likelihoods
  evaluate their data-only terms on the non-zero entries without searching ``x`` again.
- ``mean(params)``, ``sample(params)``, ``prob_nonzero(params)``: ``(..., B, F)``.

``to_scoring`` turns a decoded mean (or a sample) into the PROTOCOL scoring normalization of
the modality kind (see its docstring). Defaults per modality kind: :data:`DEFAULT_LIKELIHOOD`.
Maths is plain ``torch`` (``lgamma``, ``softplus``, ``logsumexp``); no pyro / scvi-tools.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-8

DEFAULT_LIKELIHOOD: dict[str, str] = {
    "rna": "nb",
    "adt": "nb",
    "atac": "bernoulli",
    "gaussian": "gaussian",
}


def _nb_log_prob(x: Tensor, log_mu: Tensor, log_theta: Tensor) -> Tensor:
    """Elementwise log NB(x; mean=exp(log_mu), inverse dispersion=exp(log_theta))."""
    theta = log_theta.exp()
    log_theta_mu = torch.logaddexp(log_theta, log_mu)
    return (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (log_theta - log_theta_mu)
        + x * (log_mu - log_theta_mu)
    )


def nonzero_entries(x: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
    """``(index tuple, values)`` of the non-zero entries of ``x`` (the sparse view of a batch)."""
    idx = x.nonzero(as_tuple=True)
    return idx, x[idx]


def _nb_count_term(
    x: Tensor, log_theta: Tensor, nonzero: tuple[tuple[Tensor, ...], Tensor] | None = None
) -> Tensor:
    """``sum_f lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)`` per row of ``x``.

    The part of the NB log-likelihood that does not depend on the mean: it vanishes where
    ``x == 0``, so it is evaluated on the non-zero entries only (a count matrix is mostly
    zeros; ``lgamma`` and its ``digamma`` gradient are the costliest elementwise functions of
    the training step) on CPU. ``log_theta`` is per feature ``(F,)``.
    """
    if log_theta.dim() != 1 or x.device.type != "cpu":
        # dense form: per-cell dispersion, and on GPUs (ample elementwise throughput; the
        # scatter-add of the sparse form is not deterministic on CUDA)
        theta = log_theta.exp()
        return (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0)).sum(-1)
    idx, vals = nonzero if nonzero is not None else nonzero_entries(x)
    theta = log_theta.exp()
    cols = idx[-1]
    term = (
        torch.lgamma(vals + theta.index_select(0, cols))
        - torch.lgamma(theta).index_select(0, cols)
        - torch.lgamma(vals + 1.0)
    )
    lead = x.shape[:-1]
    row = idx[0] if len(idx) == 2 else _ravel(idx[:-1], lead)
    out = torch.zeros(math.prod(lead), dtype=term.dtype, device=x.device)
    return out.index_add(0, row, term).reshape(lead)


def _ravel(idx: tuple[Tensor, ...], shape: tuple[int, ...]) -> Tensor:
    """Row-major linear index of a multi-index (``numpy.ravel_multi_index`` in torch)."""
    flat = torch.zeros_like(idx[0])
    for i, n in zip(idx, shape, strict=True):
        flat = flat * n + i
    return flat


def _nb_mean_term(x: Tensor, log_mu: Tensor, log_theta: Tensor) -> Tensor:
    """Elementwise ``theta log(theta/(theta+mu)) + x log(mu/(theta+mu))``: the rest of log NB.

    With ``d = log(mu / theta)`` this is ``x d - (x + theta) softplus(d)`` (fewer passes over
    the ``(B, F)`` arrays than the ``logaddexp`` form, and as stable).
    """
    d = log_mu - log_theta
    return x * d - (x + log_theta.exp()) * F.softplus(d)


def _nb_sample(mu: Tensor, theta: Tensor) -> Tensor:
    """Gamma-Poisson sample of NB(mean mu, inverse dispersion theta)."""
    theta = theta.expand_as(mu)
    rate = torch.distributions.Gamma(concentration=theta, rate=theta / mu.clamp_min(EPS)).sample()
    return torch.poisson(rate)


class Likelihood(nn.Module):
    """Base class; see the module docstring for the interface."""

    name: ClassVar[str] = ""
    heads: ClassVar[tuple[str, ...]] = ("loc",)
    target: ClassVar[str] = "counts"

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = int(n_features)

    @property
    def n_outputs(self) -> int:
        """Width of the decoder's last layer."""
        return len(self.heads) * self.n_features

    def split_heads(self, out: Tensor) -> dict[str, Tensor]:
        if len(self.heads) == 1:  # no split: its backward would copy the gradient (a cat)
            return {self.heads[0]: out}
        return dict(zip(self.heads, out.split(self.n_features, dim=-1), strict=True))

    def params(self, heads: dict[str, Tensor], library: Tensor | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def log_prob(
        self,
        x: Tensor,
        params: dict[str, Tensor],
        nonzero: tuple[tuple[Tensor, ...], Tensor] | None = None,
    ) -> Tensor:
        """``nonzero``: optional ``nonzero_entries(x)`` (reused across calls on one batch)."""
        raise NotImplementedError

    def mean(self, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def sample(self, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def prob_nonzero(self, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


class NegativeBinomial(Likelihood):
    """NB with library size: ``mean = library * softmax(h)``, learned per-feature dispersion."""

    name = "nb"
    heads = ("logits",)
    target = "counts"

    def __init__(self, n_features: int) -> None:
        super().__init__(n_features)
        self.log_theta = nn.Parameter(torch.full((n_features,), math.log(5.0)))

    def params(self, heads, library=None):
        log_rho = F.log_softmax(heads["logits"].float(), dim=-1)
        log_lib = torch.log(library.clamp_min(1.0)) if library is not None else 0.0
        return {"log_mu": log_rho + log_lib, "log_theta": self.log_theta.clamp(-8.0, 12.0)}

    def log_prob(self, x, params, nonzero=None):
        lt = params["log_theta"]
        return _nb_mean_term(x, params["log_mu"], lt).sum(-1) + _nb_count_term(x, lt, nonzero)

    def mean(self, params):
        return params["log_mu"].exp()

    def sample(self, params):
        return _nb_sample(params["log_mu"].exp(), params["log_theta"].exp())

    def prob_nonzero(self, params):
        # P(x=0) = (theta / (theta + mu))^theta
        log_p0 = params["log_theta"].exp() * (
            params["log_theta"] - torch.logaddexp(params["log_theta"], params["log_mu"])
        )
        return -torch.expm1(log_p0)


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """ZINB: the NB above mixed with a point mass at zero (logit ``dropout`` head)."""

    name = "zinb"
    heads = ("logits", "dropout")

    def params(self, heads, library=None):
        p = super().params(heads, library)
        p["pi_logits"] = heads["dropout"].float()
        return p

    def log_prob(self, x, params, nonzero=None):
        pi = params["pi_logits"]
        nb = _nb_log_prob(x, params["log_mu"], params["log_theta"])
        log_not_pi = -F.softplus(pi)  # log(1 - sigmoid(pi))
        log_pi = -F.softplus(-pi)  # log sigmoid(pi)
        zero = torch.logaddexp(log_pi, log_not_pi + nb)
        return torch.where(x < 0.5, zero, log_not_pi + nb).sum(-1)

    def mean(self, params):
        return torch.sigmoid(-params["pi_logits"]) * params["log_mu"].exp()

    def sample(self, params):
        x = super().sample(params)
        keep = torch.bernoulli(torch.sigmoid(-params["pi_logits"]))
        return x * keep

    def prob_nonzero(self, params):
        return torch.sigmoid(-params["pi_logits"]) * super().prob_nonzero(params)


class NegativeBinomialMixture(Likelihood):
    """Two-component NB mixture for ADT (background / foreground, the totalVI design).

    ``mu_back = library * softmax(h_back)``, ``mu_fore = mu_back * (1 + softplus(h_fore))``,
    ``P(background) = sigmoid(h_mix)``; one learned dispersion per feature.
    """

    name = "nbmix"
    heads = ("back", "fore", "mix")
    target = "counts"

    def __init__(self, n_features: int) -> None:
        super().__init__(n_features)
        self.log_theta = nn.Parameter(torch.full((n_features,), math.log(5.0)))

    def params(self, heads, library=None):
        log_back = F.log_softmax(heads["back"].float(), dim=-1)
        if library is not None:
            log_back = log_back + torch.log(library.clamp_min(1.0))
        log_fore = log_back + torch.log1p(F.softplus(heads["fore"].float()) + EPS)
        return {
            "log_mu_back": log_back,
            "log_mu_fore": log_fore,
            "mix_logits": heads["mix"].float(),
            "log_theta": self.log_theta.clamp(-8.0, 12.0),
        }

    def log_prob(self, x, params, nonzero=None):
        # the count term lgamma(x+theta) - lgamma(theta) - lgamma(x+1) is common to both
        # components (one dispersion): log-sum-exp of the mean terms, plus it once
        lt = params["log_theta"]
        lb = _nb_mean_term(x, params["log_mu_back"], lt) - F.softplus(-params["mix_logits"])
        lf = _nb_mean_term(x, params["log_mu_fore"], lt) - F.softplus(params["mix_logits"])
        return torch.logaddexp(lb, lf).sum(-1) + _nb_count_term(x, lt, nonzero)

    def mean(self, params):
        w = torch.sigmoid(params["mix_logits"])
        return w * params["log_mu_back"].exp() + (1 - w) * params["log_mu_fore"].exp()

    def sample(self, params):
        back = torch.bernoulli(torch.sigmoid(params["mix_logits"])).bool()
        mu = torch.where(back, params["log_mu_back"], params["log_mu_fore"]).exp()
        return _nb_sample(mu, params["log_theta"].exp())

    def prob_nonzero(self, params):
        w = torch.sigmoid(params["mix_logits"])
        lt = params["log_theta"]
        th = lt.exp()
        p0b = torch.exp(th * (lt - torch.logaddexp(lt, params["log_mu_back"])))
        p0f = torch.exp(th * (lt - torch.logaddexp(lt, params["log_mu_fore"])))
        return 1 - (w * p0b + (1 - w) * p0f)


class _BernoulliLogLik(torch.autograd.Function):
    """``sum_f x * l - softplus(l)`` over the last axis; backward ``g * (x - sigmoid(l))``.

    Autograd of the plain expression makes six passes over the ``(..., B, F)`` logits in the
    backward (ATAC: F ~ 10^4-10^5 peaks), this one three; ``x`` broadcasts against ``l``.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, x: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(logits, x)
        return (x * logits).sum(-1) - F.softplus(logits).sum(-1)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        logits, x = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        d_logits = d_x = None
        if ctx.needs_input_grad[0]:
            d_logits = _sum_to((x - torch.sigmoid(logits)).mul_(g), logits.shape)
        if ctx.needs_input_grad[1]:
            shape = torch.broadcast_shapes(logits.shape, x.shape)
            d_x = _sum_to((logits * g).expand(shape), x.shape)
        return d_logits, d_x


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    while t.dim() > len(shape):
        t = t.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and t.shape[i] != 1:
            t = t.sum(i, keepdim=True)
    return t


class Bernoulli(Likelihood):
    """Bernoulli on binarised data (ATAC peaks); ``mean`` = the predicted probability."""

    name = "bernoulli"
    heads = ("logits",)
    target = "binary"

    def params(self, heads, library=None):
        return {"logits": heads["logits"].float()}

    def log_prob(self, x, params, nonzero=None):
        # log p = sum_f x * logits - softplus(logits), with a fused backward
        logits = params["logits"]
        if logits.shape[-1] != x.shape[-1]:  # broadcast over features: plain autograd
            return (x * logits - F.softplus(logits)).sum(-1)
        return _BernoulliLogLik.apply(logits, x)

    def mean(self, params):
        return torch.sigmoid(params["logits"])

    def sample(self, params):
        return torch.bernoulli(torch.sigmoid(params["logits"]))

    def prob_nonzero(self, params):
        return torch.sigmoid(params["logits"])


class Gaussian(Likelihood):
    """Gaussian on normalised values (``.X``); learned per-feature variance."""

    name = "gaussian"
    heads = ("loc",)
    target = "values"

    def __init__(self, n_features: int) -> None:
        super().__init__(n_features)
        self.log_var = nn.Parameter(torch.zeros(n_features))

    def params(self, heads, library=None):
        return {"loc": heads["loc"].float(), "log_var": self.log_var.clamp(-10.0, 6.0)}

    def log_prob(self, x, params, nonzero=None):
        lv = params["log_var"]
        return (
            -0.5 * ((x - params["loc"]) ** 2 * torch.exp(-lv) + lv + math.log(2 * math.pi))
        ).sum(-1)

    def mean(self, params):
        return params["loc"]

    def sample(self, params):
        return params["loc"] + torch.randn_like(params["loc"]) * torch.exp(0.5 * params["log_var"])

    def prob_nonzero(self, params):
        return params["loc"].clamp(0.0, 1.0)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "nb": NegativeBinomial,
    "zinb": ZeroInflatedNegativeBinomial,
    "nbmix": NegativeBinomialMixture,
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
}


def get_likelihood(name: str) -> type[Likelihood]:
    try:
        return LIKELIHOODS[name]
    except KeyError:
        raise ValueError(
            f"unknown likelihood '{name}'; valid likelihoods are {sorted(LIKELIHOODS)}"
        ) from None


def clr(x: Tensor) -> Tensor:
    """PROTOCOL ADT normalization: log1p(x) - mean over the cell's proteins of log1p(x)."""
    lx = torch.log1p(x.clamp_min(0.0))
    return lx - lx.mean(-1, keepdim=True)


def to_scoring(
    kind: str,
    lik: Likelihood,
    values: Tensor,
    *,
    kept_fraction: float = 1.0,
    is_probability: bool = False,
) -> Tensor:
    """Convert a decoded mean (or a likelihood sample) into the scoring normalization of ``kind``.

    - ``values`` of a ``"values"`` likelihood are already in the scoring space (returned as is).
    - ``"binary"`` likelihoods (and ``is_probability=True``): probabilities / 0-1 draws, as is.
    - count likelihoods: RNA -> ``log1p(1e4 * f * x / sum(x))`` where ``f`` (``kept_fraction``)
      is the median over train cells of the fraction of a cell's counts that fall in the kept
      genes (PROTOCOL normalizes over ALL genes, the model sees only the kept ones);
      ADT -> CLR of the counts; ATAC -> caller passes ``prob_nonzero`` with ``is_probability``.
    """
    if lik.target != "counts" or is_probability:
        return values
    if kind == "rna":
        total = values.sum(-1, keepdim=True).clamp_min(EPS)
        return torch.log1p(1e4 * kept_fraction * values / total)
    if kind == "adt":
        return clr(values)
    if kind == "atac":
        return (values > 0).to(values.dtype)
    return values


__all__ = [
    "DEFAULT_LIKELIHOOD",
    "LIKELIHOODS",
    "Bernoulli",
    "Gaussian",
    "Likelihood",
    "NegativeBinomial",
    "NegativeBinomialMixture",
    "ZeroInflatedNegativeBinomial",
    "clr",
    "get_likelihood",
    "nonzero_entries",
    "to_scoring",
]

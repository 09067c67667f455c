"""Objectives, apart from the architectures (the iffsid/mmvae separation), in plain ``torch``.

Conventions
-----------
- A posterior is a :class:`Gaussian` ``(mu, logvar)`` of shape ``(B, d)``.
- Masks are bool tensors ``(B,)`` per modality: True where the cell SHOWS the modality.
  A hidden modality contributes nothing: its expert is left out of products and mixtures and
  its reconstruction term is zeroed with ``torch.where`` (no imputation by zeros).
- ``decode(z, mods) -> {mod: log p(x_mod | z)}`` is a callable supplied by the model
  (decoders + likelihoods + the batch); ``z`` may carry a leading sample axis ``(K, B, d)``
  and the result then is ``(K, B)`` per modality. A decode with ``decode.stackable = True``
  (``MultimodalVAE.make_decode`` without batch norm) also gets the draws of several
  posteriors stacked on that axis, so each decoder runs once per objective evaluation.
- Every objective returns ``(per_cell_loss (B,), terms)``: the loss to MINIMISE per cell
  (negative ELBO), and a dict of named per-cell terms (positive log-likelihoods, KLs) that the
  model averages into its history. ``kl_weight`` is the warm-up factor (0 -> 1) times ``beta``.

Fusion rules: :func:`product_of_experts` (with prior expert), :func:`mixture_moments`
(moment-matched Gaussian of a uniform mixture, for embeddings), :func:`mixture_log_prob`.
Objectives (every variant's, next to each other): :func:`poe_subsampled_elbo` (MVAE),
:func:`moe_stratified_elbo` (MMVAE / scMM / D-MMVAE's VAE part; ``estimator`` "elbo", "iwae"
or "dreg"), :func:`mopoe_elbo` (MoPoE), :func:`shared_private_elbo` (MMVAE++),
:func:`gmm_prior_kl` (mmAAVI's mixture prior), :func:`single_elbo`.
Adversarial and alignment terms: :func:`modality_confusion` + :func:`labelled_codes`
(latent modality adversary of D-MMVAE and scMODAL), :func:`gan_generator_loss` /
:func:`gan_discriminator_loss` (D-MMVAE's output discriminators), :func:`cycle_loss`
(D-MMVAE, scMODAL), :func:`geometry_loss` and :func:`anchor_loss` (scMODAL; anchors on linked
features also in D-MMVAE). The models own the networks; these functions own the arithmetic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)

DecodeFn = Callable[[Tensor, Sequence[str]], dict[str, Tensor]]


@dataclass
class Gaussian:
    """Diagonal Gaussian ``N(mu, exp(logvar))``; shapes ``(..., B, d)``."""

    mu: Tensor
    logvar: Tensor

    @property
    def var(self) -> Tensor:
        return self.logvar.exp()

    @property
    def std(self) -> Tensor:
        return (0.5 * self.logvar).exp()

    def rsample(self, n: int | None = None) -> Tensor:
        """Reparameterised draw; ``n`` adds a leading sample axis ``(n, B, d)``."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        return self.mu + self.std * torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density summed over the last axis; ``z`` broadcasts against ``(B, d)``."""
        return (-0.5 * ((z - self.mu) ** 2 / self.var + self.logvar + LOG_2PI)).sum(-1)

    def detach(self) -> Gaussian:
        return Gaussian(self.mu.detach(), self.logvar.detach())

    def kl_standard(self) -> Tensor:
        """``KL(self || N(0, I))`` per cell."""
        return kl_standard(self.mu, self.logvar)


def standard_normal_like(g: Gaussian) -> Gaussian:
    return Gaussian(torch.zeros_like(g.mu), torch.zeros_like(g.logvar))


def kl_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, e^logvar) || N(0, I))`` summed over the latent axis."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def kl_gaussians(q: Gaussian, p: Gaussian) -> Tensor:
    """``KL(q || p)`` for diagonal Gaussians, summed over the latent axis."""
    return 0.5 * (p.logvar - q.logvar + (q.var + (q.mu - p.mu) ** 2) / p.var - 1.0).sum(-1)


def standard_log_prob(z: Tensor) -> Tensor:
    return (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def masked(values: Tensor, mask: Tensor) -> Tensor:
    """Zero the entries of hidden cells (``torch.where``, so NaN/inf there cannot leak)."""
    return torch.where(mask, values, torch.zeros_like(values))


def count_visible(masks: Mapping[str, Tensor]) -> Tensor:
    return torch.stack([m.to(torch.float32) for m in masks.values()]).sum(0)


# --------------------------------------------------------------------------------------
# fusion rules
# --------------------------------------------------------------------------------------
def product_of_experts(
    experts: Mapping[str, Gaussian], masks: Mapping[str, Tensor], prior_expert: bool = True
) -> Gaussian:
    """Precision-weighted product of the visible experts (and of ``N(0, I)`` when ``prior_expert``).

    A cell with no visible expert gets the prior (or, without prior expert, ``N(0, I)`` too).
    """
    mods = [m for m in experts if m in masks]
    ref = experts[mods[0]]
    precision = torch.ones_like(ref.mu) if prior_expert else torch.full_like(ref.mu, 1e-8)
    weighted = torch.zeros_like(ref.mu)
    for m in mods:
        t = torch.exp(-experts[m].logvar) * masks[m].unsqueeze(-1).to(ref.mu.dtype)
        precision = precision + t
        weighted = weighted + experts[m].mu * t
    var = 1.0 / precision
    mu = weighted * var
    if not prior_expert:
        none = count_visible({m: masks[m] for m in mods}) == 0
        mu = torch.where(none.unsqueeze(-1), torch.zeros_like(mu), mu)
        var = torch.where(none.unsqueeze(-1), torch.ones_like(var), var)
    return Gaussian(mu, torch.log(var))


def mixture_moments(experts: Mapping[str, Gaussian], masks: Mapping[str, Tensor]) -> Gaussian:
    """Moment-matched Gaussian of the uniform mixture of the visible experts (embedding use)."""
    mods = [m for m in experts if m in masks]
    w = torch.stack([masks[m].to(experts[m].mu.dtype) for m in mods])  # (M, B)
    n = w.sum(0).clamp_min(1.0)
    mus = torch.stack([experts[m].mu for m in mods])
    second = torch.stack([experts[m].var + experts[m].mu ** 2 for m in mods])
    mu = (w.unsqueeze(-1) * mus).sum(0) / n.unsqueeze(-1)
    var = (w.unsqueeze(-1) * second).sum(0) / n.unsqueeze(-1) - mu**2
    none = (w.sum(0) == 0).unsqueeze(-1)
    var = torch.where(none, torch.ones_like(var), var.clamp_min(1e-8))
    return Gaussian(mu, torch.log(var))


def mixture_log_prob(
    z: Tensor, experts: Mapping[str, Gaussian], masks: Mapping[str, Tensor]
) -> Tensor:
    """``log (1/|V|) sum_{m in V} q_m(z)`` over the visible experts ``V`` of each cell."""
    mods = [m for m in experts if m in masks]
    lp = torch.stack([experts[m].log_prob(z) for m in mods])  # (M, ..., B)
    mk = torch.stack([masks[m] for m in mods])  # (M, B)
    mk = mk.reshape(mk.shape[0], *([1] * (lp.dim() - 2)), mk.shape[1]).expand_as(lp)
    # cells with no visible expert keep finite values (their terms are masked by the caller);
    # an all -inf logsumexp would send NaN gradients through torch.where
    lp = torch.where(mk | ~mk.any(0, keepdim=True), lp, torch.full_like(lp, -torch.inf))
    n = mk.sum(0).clamp_min(1).to(lp.dtype)
    return torch.logsumexp(lp, 0) - torch.log(n)


def nonempty_subsets(mods: Sequence[str]) -> list[tuple[str, ...]]:
    """All non-empty subsets of ``mods`` (MoPoE's powerset), smallest first."""
    return [s for r in range(1, len(mods) + 1) for s in itertools.combinations(mods, r)]


def subset_mask(subset: Sequence[str], masks: Mapping[str, Tensor]) -> Tensor:
    """True where the cell shows every modality of ``subset``."""
    out = masks[subset[0]]
    for m in subset[1:]:
        out = out & masks[m]
    return out


# --------------------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------------------
def _sum_recon(logp: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
    return sum(masked(v, masks[m]) for m, v in logp.items())


def single_elbo(
    q: Gaussian,
    decode: DecodeFn,
    mods: Sequence[str],
    masks: Mapping[str, Tensor],
    kl_weight: float,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """ELBO of one posterior reconstructing ``mods`` (masked): ``(elbo, recon terms, kl)``."""
    z = q.rsample()
    logp = decode(z, mods)
    recon = {m: masked(v, masks[m]) for m, v in logp.items()}
    kl = q.kl_standard()
    elbo = sum(recon.values()) - kl_weight * kl
    return elbo, recon, kl


def _stackable(decode: DecodeFn) -> bool:
    """Whether ``decode`` may get latents of several posteriors stacked on a leading axis."""
    return bool(getattr(decode, "stackable", False))


def poe_subsampled_elbo(
    experts: Mapping[str, Gaussian],
    masks: Mapping[str, Tensor],
    decode: DecodeFn,
    kl_weight: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MVAE (Wu & Goodman 2018): joint PoE ELBO plus the unimodal ELBO terms.

    joint: ``q(z|X_V) = PoE(prior, q_m for m in V)`` reconstructs every visible modality.
    unimodal (the "sub-sampled" terms, so single-modality inference is trained): for every
    visible ``m`` of a cell showing >= 2 modalities, ``PoE(prior, q_m)`` reconstructs ``x_m``.
    With 2-3 modalities every unimodal subset is used (no random sub-sampling needed).
    With a ``stackable`` decode, modality ``m`` is decoded once from ``stack(z_joint, z_m)``
    (same draws, same values, one decoder call per modality).
    """
    mods = list(experts)
    n_vis = count_visible(masks)
    joint = product_of_experts(experts, masks)
    multi = n_vis >= 2
    if not _stackable(decode):
        elbo, recon, kl = single_elbo(joint, decode, mods, masks, kl_weight)
        uni_sum = torch.zeros_like(elbo)
        for m in mods:
            mm = masks[m] & multi
            q_m = product_of_experts({m: experts[m]}, {m: mm})
            e_m, _, _ = single_elbo(q_m, decode, [m], {m: mm}, kl_weight)
            uni_sum = uni_sum + masked(e_m, mm)
    else:
        z_joint = joint.rsample()
        uni = {}
        for m in mods:  # draws in the order of the unstacked form
            mm = masks[m] & multi
            q_m = product_of_experts({m: experts[m]}, {m: mm})
            uni[m] = (mm, q_m, q_m.rsample())
        recon = {}
        uni_sum = torch.zeros_like(z_joint[..., 0])
        for m in mods:
            mm, q_m, z_m = uni[m]
            lp = decode(torch.stack([z_joint, z_m]), [m])[m]  # (2, B)
            recon[m] = masked(lp[0], masks[m])
            e_m = masked(lp[1], mm) - kl_weight * q_m.kl_standard()
            uni_sum = uni_sum + masked(e_m, mm)
        kl = joint.kl_standard()
        elbo = sum(recon.values()) - kl_weight * kl
    terms = {f"recon_{m}": v for m, v in recon.items()}
    terms["kl"] = kl
    terms["elbo_unimodal"] = uni_sum
    return -(elbo + uni_sum), terms


def moe_stratified_elbo(
    experts: Mapping[str, Gaussian],
    masks: Mapping[str, Tensor],
    decode: DecodeFn,
    kl_weight: float | Tensor,
    *,
    estimator: str = "elbo",
    k: int = 1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MMVAE (Shi et al. 2019) / scMM: stratified mixture-of-experts objective.

    For each cell with visible modalities ``V``: ``(1/|V|) sum_{r in V}`` of the bound
    computed with ``z ~ q_r`` reconstructing EVERY visible modality (self + cross terms):

    - ``"elbo"``: ``E[sum_d log p(x_d|z)] - kl_weight * KL(q_r || p)`` (scMM's naive ELBO);
    - ``"iwae"``: ``log mean_k exp(sum_d log p(x_d|z_k) + w (log p(z_k) - log q_mix(z_k)))``
      with ``q_mix`` the uniform mixture of the visible experts (the "looser" stratified IWAE);
    - ``"dreg"``: the same bound with doubly-reparameterised gradients (Tucker et al. 2019):
      ``q`` parameters detached inside the weights, squared normalised weights on the path
      through ``z``.
    ``kl_weight`` may be a per-cell tensor (``"elbo"`` only). Terms: ``recon_<d>`` (self),
    ``cross_<r>_to_<d>``, ``kl``.
    """
    mods = list(experts)
    n_vis = count_visible(masks).clamp_min(1.0)
    terms: dict[str, Tensor] = {}
    if estimator == "elbo":
        total = 0.0
        kl_sum = 0.0
        stacked = None
        if _stackable(decode):  # every expert's draw through each decoder in one call
            zs = [experts[r].rsample() if k == 1 else experts[r].rsample(k) for r in mods]
            stacked = decode(torch.stack(zs), mods)  # {d: (R, [K,] B)}
        for i, r in enumerate(mods):
            q = experts[r]
            if stacked is not None:
                logp = {d: v[i] for d, v in stacked.items()}
            else:
                z = q.rsample() if k == 1 else q.rsample(k)
                logp = decode(z, mods)
            if k > 1:
                logp = {d: v.mean(0) for d, v in logp.items()}
            kl = masked(q.kl_standard(), masks[r])
            rec = 0.0
            for d, v in logp.items():
                v = masked(v, masks[d] & masks[r])
                key = f"recon_{d}" if d == r else f"cross_{r}_to_{d}"
                terms[key] = v / n_vis
                rec = rec + v
            total = total + rec - kl_weight * kl
            kl_sum = kl_sum + kl
        terms["kl"] = kl_sum / n_vis
        return -total / n_vis, terms
    if estimator not in ("iwae", "dreg"):
        raise ValueError(
            f"unknown estimator '{estimator}'; valid estimators are ['dreg', 'elbo', 'iwae']"
        )
    detached = {m: q.detach() for m, q in experts.items()}
    bound = 0.0
    surrogate = 0.0
    for r in mods:
        q = experts[r]
        z = q.rsample(k)  # (K, B, d)
        # DReG: the path through z stays; the mixture density uses detached parameters
        z_in = z
        q_set = detached if estimator == "dreg" else experts
        logp = decode(z_in, mods)
        rec = sum(masked(v, masks[d] & masks[r]) for d, v in logp.items())
        lw = rec + kl_weight * (standard_log_prob(z_in) - mixture_log_prob(z_in, q_set, masks))
        lw = masked(lw, masks[r].expand_as(lw))
        iw = log_mean_exp(lw, 0)
        bound = bound + iw
        if estimator == "dreg":
            with torch.no_grad():
                w = torch.softmax(lw, 0)
            if z_in.requires_grad:
                z_in.register_hook(lambda g, w=w: w.unsqueeze(-1) * g)
            surrogate = surrogate + (w * lw).sum(0)
        else:
            surrogate = surrogate + iw
        for d, v in logp.items():
            key = f"recon_{d}" if d == r else f"cross_{r}_to_{d}"
            terms[key] = masked(v.mean(0), masks[d] & masks[r]) / n_vis
    terms["iwae_bound"] = bound / n_vis
    if estimator == "dreg" and not torch.is_grad_enabled():
        surrogate = bound  # evaluation (validation, early stopping): the bound itself
    return -surrogate / n_vis, terms


def mopoe_elbo(
    experts: Mapping[str, Gaussian],
    masks: Mapping[str, Tensor],
    decode: DecodeFn,
    kl_weight: float,
    *,
    sampling: str = "stratified",
) -> tuple[Tensor, dict[str, Tensor]]:
    """MoPoE (Sutter et al. 2021): mixture over modality subsets of products of experts.

    For a cell with visible set ``V``, the joint posterior is the uniform mixture over the
    non-empty subsets ``S ⊆ V`` of ``q_S = PoE(prior, q_m for m in S)``. Reconstruction of
    every visible modality is taken under that mixture and the KL term is the mixture's upper
    bound ``mean_S KL(q_S || p)`` (as in the paper's code). ``sampling="stratified"`` averages
    the reconstruction over all subsets exactly (lower variance); ``"select"`` draws one subset
    per cell (the paper's mixture-component selection; cheaper with 3 modalities).
    """
    mods = list(experts)
    subsets = nonempty_subsets(mods)
    valid = [subset_mask(s, masks) for s in subsets]
    n_valid = torch.stack([v.to(torch.float32) for v in valid]).sum(0).clamp_min(1.0)
    recon_tot = {m: 0.0 for m in mods}
    kl_tot = 0.0
    if sampling == "select":
        # one valid subset per cell, uniformly: argmax of masked Gumbel noise
        noise = torch.rand(len(subsets), *n_valid.shape, device=n_valid.device)
        noise = torch.where(torch.stack(valid), noise, torch.full_like(noise, -1.0))
        chosen = noise.argmax(0)
    elif sampling != "stratified":
        raise ValueError(f"unknown sampling '{sampling}'; valid: ['select', 'stratified']")
    qs = []
    for s, v in zip(subsets, valid, strict=True):
        q_s = product_of_experts({m: experts[m] for m in s}, {m: masks[m] & v for m in s})
        qs.append(q_s)
        kl_tot = kl_tot + masked(q_s.kl_standard(), v)
    if sampling == "stratified":
        for q_s, v in zip(qs, valid, strict=True):
            logp = decode(q_s.rsample(), mods)
            for m, lp in logp.items():
                recon_tot[m] = recon_tot[m] + masked(lp, masks[m] & v)
        recon = {m: r / n_valid for m, r in recon_tot.items()}
    else:
        sel = torch.nn.functional.one_hot(chosen, len(subsets)).T.unsqueeze(-1).to(qs[0].mu.dtype)
        mu = (torch.stack([q.mu for q in qs]) * sel).sum(0)
        lv = (torch.stack([q.logvar for q in qs]) * sel).sum(0)
        logp = decode(Gaussian(mu, lv).rsample(), mods)
        recon = {m: masked(lp, masks[m]) for m, lp in logp.items()}
    kl = kl_tot / n_valid
    terms = {f"recon_{m}": r for m, r in recon.items()}
    terms["kl"] = kl
    elbo = sum(recon.values()) - kl_weight * kl
    return -elbo, terms


def shared_private_elbo(
    shared: Mapping[str, Gaussian],
    private: Mapping[str, Gaussian],
    masks: Mapping[str, Tensor],
    decode_one: Callable[[Tensor, str], Tensor],
    kl_weight: float,
    *,
    cross_private: Callable[[Tensor], Tensor],
    detach_self_shared: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MMVAE++ (Märtens & Yau 2024): the stratified MoE bound with shared + private latents.

    ``shared[m]`` is ``q(z_s | x_m)``, ``private[m]`` is ``q(w_m | x_m)``; ``decode_one(z, d)``
    returns ``log p(x_d | z)`` for ``z = [z_s, w_d]``. For every visible ``r`` (stratified),
    ``z_s ~ q(z_s | x_r)`` and for every visible ``d``:

    - ``d != r`` (cross-modal prediction): ``log p(x_d | z_s, cross_private(z_s))``; the
      private part is a zero code or a prior draw (the caller's ``cross_private``). Gradients
      reach the shared encoder of ``r`` only through these terms.
    - ``d == r``: ``log p(x_d | stopgrad(z_s), w_d)``, ``w_d ~ q(w_d | x_d)`` (the paper's
      stop-gradient; ``detach_self_shared=False`` gives the plain shared/private MMVAE).

    KL: ``KL(q(z_s|x_r) || N(0,I))`` averaged over visible ``r`` plus ``KL(q(w_m|x_m) ||
    N(0,I))`` for every visible ``m``, times ``kl_weight``. Per-cell terms: ``recon_<d>``,
    ``cross_<r>_to_<d>`` (both divided by the number of visible modalities), ``kl_shared``,
    ``kl_private``.
    """
    mods = list(shared)
    n_vis = count_visible(masks).clamp_min(1.0)
    w_samples = {m: private[m].rsample() for m in mods}
    terms: dict[str, Tensor] = {}
    total = 0.0
    kl_s = 0.0
    for r in mods:
        z_s = shared[r].rsample()
        for d in mods:
            if d == r:
                z = torch.cat([z_s.detach() if detach_self_shared else z_s, w_samples[d]], -1)
                key = f"recon_{d}"
            else:
                z = torch.cat([z_s, cross_private(z_s)], -1)
                key = f"cross_{r}_to_{d}"
            lp = masked(decode_one(z, d), masks[d] & masks[r])
            terms[key] = lp / n_vis
            total = total + lp
        kl_s = kl_s + masked(shared[r].kl_standard(), masks[r])
    kl_p = sum(masked(private[m].kl_standard(), masks[m]) for m in mods)
    terms["kl_shared"] = kl_s / n_vis
    terms["kl_private"] = kl_p
    per_cell = -(total / n_vis) + kl_weight * (kl_s / n_vis + kl_p)
    return per_cell, terms


def gmm_prior_kl(
    z: Tensor, q: Gaussian, pz: Gaussian, u: Gaussian, logits_c: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """mmAAVI's mixture prior ``p(z | c, u)``, ``c ~ Cat(1/K)``, ``u ~ N(0, I)``: KL terms.

    ``z`` is one draw of ``q(z | x)``, ``pz = p(z | c, u)`` at the relaxed one-hot ``c ~ q(c|z)``
    and ``u ~ q(u | z, c)`` (the caller's networks), ``u`` the Gaussian ``q(u | z, c)`` and
    ``logits_c`` those of ``q(c | z)``. Returns per cell ``(kl_z, kl_u, kl_c)``:
    ``log q(z|x) - log p(z|c,u)`` (one-sample estimate), ``KL(q(u|z,c) || N(0,I))`` and
    ``KL(q(c|z) || Cat(1/K))``.
    """
    kl_z = q.log_prob(z) - pz.log_prob(z)
    kl_u = u.kl_standard()
    log_qc = torch.log_softmax(logits_c, -1)
    kl_c = (log_qc.exp() * (log_qc + math.log(logits_c.shape[-1]))).sum(-1)
    return kl_z, kl_u, kl_c


# --------------------------------------------------------------------------------------
# adversarial and alignment terms (D-MMVAE, scMODAL, mmAAVI)
# --------------------------------------------------------------------------------------
def labelled_codes(
    codes: Mapping[str, Tensor], masks: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """The codes of the visible rows of every modality, stacked, with the modality's index
    (its position in ``codes``) as label: the input of a modality-of-origin discriminator."""
    zs, ys = [], []
    for i, (m, z) in enumerate(codes.items()):
        rows = masks[m]
        zs.append(z[rows])
        ys.append(torch.full((int(rows.sum()),), i, dtype=torch.long, device=rows.device))
    return torch.cat(zs), torch.cat(ys)


def modality_confusion(logits: Tensor) -> Tensor:
    """``KL(uniform || D(z))`` averaged over rows: what the encoders minimise against a
    modality-of-origin discriminator with ``logits`` (rows, M). Zero at perfect confusion and
    bounded by the discriminator's confidence (unlike the saturating minimax of two-player
    GANs); the cross-entropy to the uniform label minus ``log M``."""
    logp = torch.log_softmax(logits, -1)
    return (-logp.mean(-1)).mean() - math.log(logits.shape[-1])


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``-log D(fake)`` (mean over rows)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``-log D(real) - log(1 - D(fake))`` (means over rows)."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def cycle_loss(z: Tensor, z_back: Tensor, *, relative: bool = False) -> Tensor:
    """Latent cycle consistency per cell: mean squared difference between a code and the code
    recovered by re-encoding its translation into another modality. ``relative=True`` divides
    by the mean per-dimension variance of ``z`` over the rows (not detached): scale-free."""
    out = (z - z_back).pow(2).mean(-1)
    return out / z.var(0).mean().clamp_min(1e-8) if relative else out


def standardise(x: Tensor) -> Tensor:
    """Columns to mean 0, sd 1 over the rows of the minibatch."""
    return (x - x.mean(0, keepdim=True)) / x.std(0, keepdim=True).clamp_min(1e-4)


def gaussian_kernel(x: Tensor) -> Tensor:
    """``exp(-mean_f (x_i - x_j)^2 / 2)``: scMODAL's row kernel."""
    return torch.exp(-torch.cdist(x, x).pow(2) / (2 * x.shape[1]))


def geometry_loss(view: Tensor, z: Tensor, clamp: float = 0.975) -> Tensor:
    """scMODAL's geometry preservation for one modality: minus the cosine similarity (capped
    at ``clamp``) between the rows of the Gaussian kernel of the (standardised) input view and
    of the codes ``z``, averaged over rows."""
    kx, kz = gaussian_kernel(view), gaussian_kernel(z)
    return -F.cosine_similarity(kx, kz, dim=1).clamp(max=clamp).mean()


def mutual_nearest_neighbours(a: Tensor, b: Tensor, k: int) -> Tensor:
    """``(len(a), len(b))`` 0/1 matrix of mutual ``k``-nearest neighbours by cosine similarity."""
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    ka, kb = min(k, sim.shape[1]), min(k, sim.shape[0])
    ab = torch.zeros_like(sim).scatter_(1, sim.topk(ka, dim=1).indices, 1.0)
    ba = torch.zeros_like(sim).scatter_(0, sim.topk(kb, dim=0).indices, 1.0)
    return ab * ba


def anchor_loss(
    fa: Tensor, fb: Tensor, za: Tensor, zb: Tensor, k: int, *, relative: bool = False
) -> Tensor | None:
    """Soft anchors between cells of two modalities that share no cell (scMODAL's MNN term).

    ``fa``/``fb``: the two sets of cells in a COMMON feature space (linked features: a gene and
    its protein, a gene and its gene activity); ``za``/``zb`` their codes. Anchors ``S`` are
    mutual ``k``-nearest neighbours (cosine) in the feature space, found without gradient; the
    loss is ``sum S_ij |za_i - zb_j|^2 / (d sum S)`` (``d`` = latent width). None when no
    anchor is found. ``relative=True`` divides by the mean over ALL pairs (not detached), so
    the loss is scale-free: shrinking every code (a collapse towards the prior mean) does not
    lower it, only bringing anchors closer than other pairs does."""
    with torch.no_grad():
        s = mutual_nearest_neighbours(fa, fb, k)
    if s.sum() == 0:
        return None
    d = torch.cdist(za, zb).pow(2) / za.shape[-1]
    out = (s * d).sum() / s.sum()
    return out / d.mean().clamp_min(1e-8) if relative else out


__all__ = [
    "DecodeFn",
    "Gaussian",
    "anchor_loss",
    "count_visible",
    "cycle_loss",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "gaussian_kernel",
    "geometry_loss",
    "gmm_prior_kl",
    "labelled_codes",
    "modality_confusion",
    "mutual_nearest_neighbours",
    "shared_private_elbo",
    "standardise",
    "kl_gaussians",
    "kl_standard",
    "log_mean_exp",
    "masked",
    "mixture_log_prob",
    "mixture_moments",
    "moe_stratified_elbo",
    "mopoe_elbo",
    "nonempty_subsets",
    "poe_subsampled_elbo",
    "product_of_experts",
    "single_elbo",
    "standard_log_prob",
    "standard_normal_like",
    "subset_mask",
]

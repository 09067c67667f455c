"""``MultimodalVAE``: the MODULE every VAE variant subclasses (scvi-tools' module / model split).

A pure ``torch.nn.Module``: networks, fusion, the objective (arithmetic in :mod:`.objectives`)
and the per-step training hooks; no data files, no AnnData/MuData, no fitting loop, no I/O.
The training layer (:class:`~dmmvae.methods.training.model.VAEModel`, what the registry holds)
owns fitting (the one loop, :func:`~dmmvae.methods.training.loop.fit_model`, which trains a
module), the state a module carries across steps
(:class:`~dmmvae.methods.training.state.TrainingState`), prediction on the test cells of a
MuData and checkpoints. A variant = a fusion rule + an objective + options: it subclasses
:class:`MultimodalVAE`, overrides only what differs, and is registered as
``vae_model(MyVariant)``.

Contract (what a variant implements)
------------------------------------
- ``fuse(qz, masks) -> Gaussian``: the posterior given the modalities in ``qz``/``masks`` (any
  subset; a cell's modality counts only where its mask is True). Used for the joint embedding,
  for single-modality embeddings (``fuse({m: q_m}, {m: mask_m})``) and for cross-modal
  imputation. Its ``.mu`` is the embedding.
- ``loss(batch, kl_weight, state=None) -> LossOutput``: the objective, usually one call into
  :mod:`.objectives` with ``self.make_decode(batch)``; ``kl_weight`` is the warm-up factor
  (multiply by ``params["beta"]`` yourself, or use :meth:`kl_scale`). A pure function of the
  batch, the parameters and ``state`` (the training layer's cross-step state, None outside a
  fit): it writes nothing; what it wants stored goes in ``LossOutput.updates``.

Hooks a variant MAY override
----------------------------
- ``DEFAULTS`` (extend ``MultimodalVAE.DEFAULTS``), ``build_extra(spec)`` (more modules),
  ``make_encoder(ms)`` / ``make_decoder(ms, n_in)`` (other widths), ``latent_dim`` (size of
  the ``z`` the decoders and the semi-supervised classifier take).
- ``configure_optimizers(cfg) -> {name: optimizer}`` and ``train_step(batch, kl_weight,
  optimizers, ctx, state) -> {term: tensor}`` for adversarial variants (discriminator steps);
  :meth:`main_step` does the model's own step (and hands the loss's ``updates`` to
  ``state.update``); use ``ctx.autocast()`` and ``ctx.step(loss, optimizer)`` (AMP scaling +
  gradient clipping) for the others.
  ``on_epoch_end(epoch, warmup_epochs, state)`` runs after each epoch when defined.
- ``impute_params(qz, masks, src, tgts)``: decoder parameters of ``tgts`` from ``src`` alone
  (default: decode ``fuse({src})``'s mean); ``sample_prior(n, generator)`` (default
  ``N(0, I)`` of ``latent_dim``); ``embed(qz, masks)`` (default ``fuse(...).mu``);
  ``prediction_info()`` (what the variant adds to ``Predictions.info``);
  ``checkpoint_extra()`` / ``restore_extra(extra)`` (plain values to rebuild its modules).

Fixed methods
-------------
- ``encode(batch) -> {mod: Gaussian}``: every modality present in the batch; rows where the
  modality is hidden get ``N(0, I)`` (mu = 0, logvar = 0) with NO gradient path to the data.
- ``generative(z, library, mods) -> {mod: params}`` (decoder parameters; median train library
  when ``library`` is None).
- ``make_decode(batch)``: the ``decode(z, mods) -> {mod: log p(x_mod|z)}`` callable of
  :mod:`.objectives`.
- ``loss_output(per_cell, terms, z)``: batch means -> :class:`LossOutput`.

Batches follow :mod:`dmmvae.methods.training.batches`. Predictions follow :class:`dmmvae.io.Predictions` with imputations
and prior samples converted to the PROTOCOL scoring normalization
(:func:`.likelihoods.to_scoring`; RNA: ``log1p(1e4 * f * rho)``, f = median train fraction of
counts in the kept genes; ADT: CLR of predicted mean counts at the median train library;
ATAC: predicted probability of a non-zero count; gaussian: predicted mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...constants import BATCH_KEYS
from .likelihoods import get_likelihood, nonzero_entries, to_scoring
from .nn import MLP, Decoder, Encoder
from .objectives import DecodeFn, Gaussian
from .spec import DataSpec, ModalitySpec

#: likelihood draws averaged into a count modality's imputation (:meth:`MultimodalVAE.scoring_mean`)
SCORING_SAMPLES = 64


@dataclass
class LossOutput:
    """Result of ``loss``: the scalar to minimise and named scalar terms for the history.

    ``z``: the per-cell latent (B, latent_dim) the semi-supervised classifier reads (None: no
    classifier term). ``updates``: state for the training hooks (see the field).
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    z: Tensor | None = None
    #: what the step wants stored in the training state after the optimiser step
    #: (``TrainingState.update``: "recon_scale", "codes"), or passes to its own discriminator
    #: steps ("disc_inputs"); the loss itself writes no state
    updates: dict[str, Any] = field(default_factory=dict)

    def detached_terms(self) -> dict[str, Tensor]:
        out = {"loss": self.loss.detach()}
        out.update({k: v.detach() for k, v in self.terms.items()})
        return out


def make_optimizer(params, cfg: dict[str, Any], lr: float | None = None) -> torch.optim.Optimizer:
    """The training config's optimiser (``cfg["optimizer"]``, default AdamW) with ``cfg["lr"]``
    / ``cfg["weight_decay"]``: AdamW fused where torch has the kernel, or RMSprop (GLUE's
    optimiser, ``scglue``'s ``compile(optim="RMSprop")``; ``weight_decay`` as its L2 term).

    The fused (single-kernel) AdamW update exists for CPU and CUDA tensors; measured on the
    benchmark MVAE (about 30 parameter tensors) it takes 0.6 ms per step on one CPU thread
    against 3.2 ms for the default per-tensor loop. Same update rule, so a config trains alike.
    """
    params = list(params)
    if cfg.get("optimizer", "adamw") == "rmsprop":
        return torch.optim.RMSprop(params, lr=float(cfg["lr"] if lr is None else lr),
                                   weight_decay=float(cfg["weight_decay"]))
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and all(
        p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) for p in params
    )
    return torch.optim.AdamW(
        params,
        lr=float(cfg["lr"] if lr is None else lr),
        weight_decay=float(cfg["weight_decay"]),
        fused=fused or None,
    )


class MultimodalVAE(nn.Module):
    """Base of the VAE variant modules; see the module docstring for the contract."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_latent": 16,  # latent dimensions
        "n_hidden": 128,  # width of the hidden layers of encoders and decoders
        "n_layers": 1,  # hidden layers per encoder / decoder
        "dropout": 0.1,  # encoder dropout (decoders use none)
        "norm": "layer",  # "layer" | "batch" | "none"
        "likelihoods": {},  # {modality: likelihood name}; defaults by modality kind
        "beta": 1.0,  # weight of the KL term (after warm-up)
        "classifier_weight": 1.0,  # semi-supervised label head (training.semi_supervised_fraction)
    }
    def __init__(self, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(
                f"model '{type(self).__name__}': unknown parameter(s) {unknown}; "
                f"valid parameters are {sorted(self.DEFAULTS)}"
            )
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}
        self.spec: DataSpec | None = None
        self.n_classes = 0
        self.classifier: nn.Module | None = None
        #: filled by the training loop: device, epochs, best epoch, seconds, status, config
        self.train_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ building
    @property
    def latent_dim(self) -> int:
        return int(self.params["n_latent"])

    @property
    def modalities(self) -> list[str]:
        assert self.spec is not None, "model not built; call fit() or build(spec) first"
        return self.spec.names

    def make_encoder(self, ms: ModalitySpec, n_out: int | None = None) -> nn.Module:
        p = self.params
        return Encoder(
            ms.n_features,
            n_out or int(p["n_latent"]),
            n_hidden=int(p["n_hidden"]),
            n_layers=int(p["n_layers"]),
            dropout=float(p["dropout"]),
            norm=p["norm"],
            log1p_input=ms.target == "counts",
        )

    def make_decoder(self, ms: ModalitySpec, n_in: int | None = None) -> Decoder:
        p = self.params
        return Decoder(
            n_in or self.latent_dim,
            get_likelihood(ms.likelihood)(ms.n_features),
            n_hidden=int(p["n_hidden"]),
            n_layers=int(p["n_layers"]),
            dropout=0.0,
            norm=p["norm"],
        )

    def build(self, spec: DataSpec) -> None:
        """Create the modules for the data described by ``spec`` (called by fit / load)."""
        self.spec = spec
        self.encoders = nn.ModuleDict(
            {m: self.make_encoder(ms) for m, ms in spec.modalities.items()}
        )
        self.decoders = nn.ModuleDict(
            {m: self.make_decoder(ms) for m, ms in spec.modalities.items()}
        )
        if self.n_classes > 0:
            self.classifier = MLP(
                self.latent_dim, self.n_classes, int(self.params["n_hidden"]), 1, 0.1, None
            )
        self.build_extra(spec)

    def build_extra(self, spec: DataSpec) -> None:
        """Hook: variants add modules here (discriminators, fusion MLPs, ...)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ contract
    def encode(
        self, batch: dict[str, Any], encoders: nn.ModuleDict | None = None
    ) -> dict[str, Gaussian]:
        """Posterior of each modality in the batch from ``encoders`` (default: ``self.encoders``);
        rows that do not show the modality get ``N(0, I)`` placeholders (left out by fusion)."""
        encoders = self.encoders if encoders is None else encoders
        out = {}
        for m, x in batch[BATCH_KEYS.X].items():
            mask = batch[BATCH_KEYS.MASK][m]
            enc = encoders[m]
            if self.params["norm"] == "batch":  # batch statistics from visible rows only
                rows = mask.nonzero().squeeze(1)
                mu = x.new_zeros(x.shape[0], enc.n_latent)
                lv = x.new_zeros(x.shape[0], enc.n_latent)
                if len(rows) > 1 or (len(rows) == 1 and not self.training):
                    mu_v, lv_v = enc(x.index_select(0, rows))
                    mu = mu.index_copy(0, rows, mu_v)
                    lv = lv.index_copy(0, rows, lv_v)
            else:  # per-row norms: encode all rows, keep visible ones
                mu, lv = enc(x)
                keep = mask.unsqueeze(1)
                mu = torch.where(keep, mu, torch.zeros_like(mu))
                lv = torch.where(keep, lv, torch.zeros_like(lv))
            out[m] = Gaussian(mu, lv)
        return out

    def fuse(self, qz: dict[str, Gaussian], masks: dict[str, Tensor]) -> Gaussian:
        raise NotImplementedError

    def loss(self, batch: dict[str, Any], kl_weight: float = 1.0, state: Any = None) -> LossOutput:
        raise NotImplementedError

    def _median_library(self, m: str, like: Tensor) -> Tensor:
        return like.new_full((1, 1), self.spec.modalities[m].median_library)

    def generative(
        self,
        z: Tensor,
        library: dict[str, Tensor] | None = None,
        mods: list[str] | None = None,
    ) -> dict[str, dict[str, Tensor]]:
        """Decoder parameters per modality; ``library=None`` uses the median train library."""
        out = {}
        for m in mods or self.modalities:
            lib = library[m] if library is not None else self._median_library(m, z)
            out[m] = self.decoders[m](z, lib)
        return out

    def make_decode(self, batch: dict[str, Any]) -> DecodeFn:
        """The ``decode(z, mods)`` of :mod:`.objectives` for ``batch``.

        The non-zero entries of each count target are found once per batch (the data loader
        hands them over in ``batch[BATCH_KEYS.NONZERO]``) and shared by every call, so the NB count term
        is evaluated on them only. ``decode.stackable`` tells the objectives that latents of
        several posteriors may be stacked on a leading axis and decoded in ONE call per
        modality (bigger matrix products, each data term once); not with batch norm, whose
        statistics would then mix the stacked posteriors.
        """
        x, lib = batch[BATCH_KEYS.X], batch[BATCH_KEYS.LIBRARY]
        given = batch.get(BATCH_KEYS.NONZERO) or {}
        nz: dict[str, Any] = {}

        def decode(z: Tensor, mods) -> dict[str, Tensor]:
            out = {}
            for m in mods:
                dec = self.decoders[m]
                if m not in nz and dec.likelihood.target == "counts" and x[m].device.type == "cpu":
                    nz[m] = given.get(m) or nonzero_entries(x[m])  # GPUs use the dense form
                out[m] = dec.likelihood.log_prob(x[m], dec(z, lib[m]), nonzero=nz.get(m))
            return out

        decode.stackable = self.params["norm"] != "batch"  # type: ignore[attr-defined]
        return decode

    def kl_scale(self, kl_weight: float) -> float:
        return float(kl_weight) * float(self.params["beta"])

    @staticmethod
    def loss_output(
        per_cell: Tensor, terms: dict[str, Tensor], z: Tensor | None = None
    ) -> LossOutput:
        return LossOutput(per_cell.mean(), {k: v.mean() for k, v in terms.items()}, z)

    # ------------------------------------------------------------------ training hooks
    def forward(self, batch: dict[str, Any], kl_weight: float = 1.0, state: Any = None) -> LossOutput:
        return self.training_loss(batch, kl_weight, state)

    def training_loss(
        self, batch: dict[str, Any], kl_weight: float = 1.0, state: Any = None
    ) -> LossOutput:
        """``loss`` plus the semi-supervised classifier term on labelled cells."""
        out = self.loss(batch, kl_weight, state)
        if self.classifier is not None and out.z is not None:
            lab = batch[BATCH_KEYS.LABEL]
            ce = F.cross_entropy(self.classifier(out.z), lab.clamp_min(0), reduction="none")
            ce = torch.where(lab >= 0, ce, torch.zeros_like(ce)).mean()
            out.loss = out.loss + float(self.params["classifier_weight"]) * ce
            out.terms["classifier"] = ce
        return out

    def configure_optimizers(self, cfg: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
        return {"main": make_optimizer(self.parameters(), cfg)}


    def adversarial_optimizers(
        self, cfg: dict[str, Any], disc_params: list[nn.Parameter], disc_lr: float | None = None
    ) -> dict[str, torch.optim.Optimizer]:
        """``{"main": ..., "disc": ...}``: the model's parameters minus the discriminators', and
        the discriminators' own (lr ``disc_lr`` or ``cfg``'s; with AdamW its default weight
        decay 0.01, with RMSprop ``cfg``'s, as GLUE)."""
        disc_ids = {id(p) for p in disc_params}
        main = [p for p in self.parameters() if id(p) not in disc_ids]
        adam = cfg.get("optimizer", "adamw") == "adamw"
        disc_cfg = {**cfg, "weight_decay": 0.01} if adam else cfg
        return {
            "main": make_optimizer(main, cfg),
            "disc": make_optimizer(disc_params, disc_cfg, lr=disc_lr),
        }
    def main_step(self, batch, kl_weight: float, optimizers, ctx, state=None) -> LossOutput:
        """One step of ``optimizers["main"]`` on ``training_loss``, then the step's ``updates``
        go to ``state``; returns the loss output (an adversarial ``train_step`` reads its
        discriminator inputs)."""
        opt = optimizers["main"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            out = self.training_loss(batch, kl_weight, state)
        ctx.step(out.loss, opt)
        if state is not None:
            state.update(out.updates, batch)
        return out

    def train_step(self, batch, kl_weight: float, optimizers, ctx, state=None) -> dict[str, Tensor]:
        return self.main_step(batch, kl_weight, optimizers, ctx, state).detached_terms()

    @torch.no_grad()
    def validation_step(self, batch, kl_weight: float = 1.0, state=None) -> dict[str, Tensor]:
        return self.training_loss(batch, kl_weight, state).detached_terms()

    def embed(self, qz: dict[str, Gaussian], masks: dict[str, Tensor]) -> Tensor:
        return self.fuse(qz, masks).mu

    def impute_params(
        self, qz: dict[str, Gaussian], masks: dict[str, Tensor], src: str, tgts: list[str]
    ) -> dict[str, dict[str, Tensor]]:
        z = self.fuse({src: qz[src]}, {src: masks[src]}).mu
        return self.generative(z, mods=tgts)

    def sample_prior(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def scoring_mean(self, m: str, params: dict[str, Tensor]) -> Tensor:
        """The imputation of modality ``m``: the expected scoring view of a cell drawn from the
        decoder's likelihood ``params`` (the prediction that minimises the squared error in the
        space the metrics compare). ATAC: the probability of a nonzero, the exact expectation
        of the binarised view. Count likelihoods: the mean over :data:`SCORING_SAMPLES` draws
        of the view of each drawn cell, because the view is not linear (``log1p`` of a
        library-normalised cell, CLR) and the view of the decoded mean overstates the genes
        a cell rarely shows. Other likelihoods decode in the scoring space: their mean."""
        ms = self.spec.modalities[m]
        lik = self.decoders[m].likelihood
        if ms.kind == "atac":
            return to_scoring(ms.kind, lik, lik.prob_nonzero(params), is_probability=True)
        if lik.target != "counts":
            return to_scoring(ms.kind, lik, lik.mean(params), kept_fraction=ms.kept_fraction)
        total = None
        for _ in range(SCORING_SAMPLES):
            view = self.scoring_sample(m, params).float()
            total = view if total is None else total.add_(view)
        return total / SCORING_SAMPLES

    def scoring_sample(self, m: str, params: dict[str, Tensor]) -> Tensor:
        ms = self.spec.modalities[m]
        lik = self.decoders[m].likelihood
        return to_scoring(ms.kind, lik, lik.sample(params), kept_fraction=ms.kept_fraction)

    def prediction_info(self) -> dict[str, Any]:
        """Hook: what a variant adds to ``Predictions.info`` (e.g. which anchors it used)."""
        return {}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extra(self) -> dict[str, Any]:
        """Hook: plain values a variant needs to rebuild its modules (saved in the checkpoint)."""
        return {}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        """Hook: set what :meth:`checkpoint_extra` saved, before the modules are rebuilt."""


__all__ = ["SCORING_SAMPLES", "LossOutput", "MultimodalVAE", "make_optimizer"]

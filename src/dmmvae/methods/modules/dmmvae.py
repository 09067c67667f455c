"""``dmmvae``: D-MMVAE as its seed describes it (zdebruine/D-MMVAE, README figures 1-4).

Architecture (seed figure 2): ``x_m -> expert encoder_m -> core encoder -> q(z | x_m)`` and
``z -> core decoder -> expert decoder_m -> p(x_m | z)``. With ``shared_core: true`` the core
(one MLP each way) is shared by every modality; ``false`` gives separate encoders / decoders
per modality (the MMVAE layout). ``guidance_graph`` adds mmAAVI's graph decoders
(:mod:`.graph`; needs ``shared_core: false``). ``atac_input`` sets what an ATAC encoder reads:
the binary peaks, the LSI of preprocessing over the kept peaks (:class:`LSIInput`), GLUE's
LSI over ALL peaks of the dataset (``obsm["X_lsi_all"]``, read per cell: :meth:`DMMVAE.encode`),
or one of the two LSIs with the peaks. ``rna_input: pca`` is GLUE's RNA encoder input
(:class:`PCAInput`: the PCA of the scaled log-normalised genes, fitted on the RNA train cells
and computed from each batch's counts).

Objective (every term in :mod:`.objectives`): the stratified mixture-of-experts bound of MMVAE
(:func:`moe_stratified_elbo`), whose cross-modal terms need paired cells, plus the aligning
terms below. With ``likelihood_scale: sum`` (default) the bound sums over features and the
aligning weights are in **reconstruction units** (:meth:`DMMVAE.w`): multiplied by a running
mean of the magnitude of the per-cell reconstruction log-likelihood they compete with.
``likelihood_scale: per_feature`` is GLUE's normalisation (scglue ``SCGLUEModel.compute_losses``):
each modality's log-likelihood is divided by its feature count and a cell's KL by the mean
feature count of the modalities it shows, and the aligning weights and the graph weight are
absolute, so that GLUE's ``lam_align`` and ``lam_graph`` carry over (:data:`GLUE_PER_FEATURE`).

- ``latent_adversarial_weight`` (seed figure 3): a discriminator on ``z`` guesses the modality
  of origin; the encoders minimise :func:`modality_confusion` (``latent_adversary_loss:
  confusion``) or, as GLUE does (``minimax``: scglue ``gen_loss = vae_loss - lam_align *
  dsc_loss``), maximise the discriminator's cross-entropy.
- ``output_adversarial_weight`` (seed figure 4): per modality ``d`` a discriminator tells real
  cells of ``d`` from cells cross-generated into ``d`` from cells that do NOT show ``d``
  (decoded at the median train library and sampled from the likelihood), both in a common
  normalised view (:func:`generated_view`); non-saturating GAN loss.
- ``cycle_weight``: a translation re-encoded recovers its code (:func:`cycle_loss`).
- ``anchor_weight``: cells that show one modality but not the other are pulled towards their
  anchors (:func:`anchor_loss`, scale-free). ``anchor_space``: where anchors are found, the
  minibatch's linked features (``features``), the canonical space of a Seurat-v3 CCA on the
  linked genes fitted on all train cells (``cca``; :func:`~dmmvae.methods.anchors.cca_anchor_space`)
  or, with no linked feature needed, an exact Gromov-Wasserstein coupling of the two
  modalities' train cells (``gw``; :func:`~dmmvae.methods.anchors.gw_anchor_pairs`).
  ``anchor_scope: global`` finds the anchors once among all train cells (Seurat's mutual
  ``n_knn`` nearest neighbours, optionally scored: ``anchor_scoring``) and reads each
  partner's code from the training state's memory of the latest codes; ``anchor_refresh`` adds latent mutual
  neighbours to them every so many epochs (:meth:`DMMVAE.on_epoch_end`).

Adversaries are off during the KL warm-up (``training.kl_warmup_epochs``) and on at full weight
afterwards (``align_burnin``: GLUE's burn-in, noise on the latent discriminator's input fading
over that many epochs, no weights kept and no patience counted until it is over); each training
step updates the discriminators ``disc_steps`` times on the detached inputs the loss returned. Cross-step state (the running reconstruction scale, every train cell's latest code) lives in
the training layer (:class:`~dmmvae.methods.training.state.TrainingState`, one per fit):
:meth:`DMMVAE.loss` reads it and writes nothing; the new scale, the codes to remember and the
discriminators' inputs go back in ``LossOutput.updates``, which :meth:`DMMVAE.train_step` hands
to the state after the optimiser step. The validation loss (held-back train cells, early
stopping) is the VAE bound plus the weighted anchor and cycle terms.

All weights 0 with ``shared_core: false`` build no discriminator and run exactly the
:class:`~.mmvae.MMVAE` code path (``tests/test_models_variants.py``). The configs' variants and
how their settings were chosen (train-only rules): ``config/diagonal.yaml``,
``docs/models.md`` and ``docs/diagonal.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...constants import BATCH_KEYS
from .graph import GRAPH_DEFAULTS, GuidanceGraph
from .likelihoods import get_likelihood
from .mmvae import MMVAE
from .nn import LOGVAR_MAX, LOGVAR_MIN, MLP
from .objectives import (
    anchor_loss,
    cycle_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    labelled_codes,
    masked,
    modality_confusion,
    moe_stratified_elbo,
    mutual_nearest_neighbours,
)
from .spec import ModalitySpec
from .vae import LossOutput
from .views import LinkedFeatures, log_view

#: GLUE's burn-in noise exaggeration (scglue ``SCGLUETrainer.BURNIN_NOISE_EXAG``)
BURNIN_NOISE = 1.5
WEIGHTS = ("latent_adversarial_weight", "output_adversarial_weight", "cycle_weight", "anchor_weight")
ANCHOR_SPACES = ("cca", "features", "gw")
ANCHOR_SCOPES = ("batch", "global")
ATAC_INPUTS = ("peaks", "lsi", "lsi+peaks", "lsi_all", "lsi_all+peaks")
LIKELIHOOD_SCALES = ("sum", "per_feature")
ADVERSARY_LOSSES = ("confusion", "minimax")
#: the ``adversary_order`` values: when the discriminators step, after or before the VAE step
ADVERSARY_ORDERS = ("after", "before")
#: the ``burnin_noise_scale`` values: the burn-in noise's scale per latent dimension
BURNIN_NOISE_SCALES = ("unit", "batch_std")
RNA_INPUTS = ("counts", "pca", "pca+counts")
#: GLUE's weights (scglue 0.4.1: ``lam_align`` 0.05, ``lam_graph`` 0.02) in this model's
#: ``likelihood_scale: per_feature`` units. GLUE sums its M modalities' per-feature likelihoods
#: (each the mean over that modality's cells) where this model averages over all cells: with
#: the two modalities of a diagonal pair in equal numbers GLUE's terms are M = 2 times this
#: model's, so its weights are divided by 2; its graph term is the mean of the positive and
#: negative edges' losses and ``lam_graph`` multiplies it by M (``lam_graph * M * g_nll`` over M),
#: this one the sum of the two means (twice GLUE's), so ``graph_weight`` is 0.02 / 2
GLUE_PER_FEATURE = {"likelihood_scale": "per_feature", "latent_adversarial_weight": 0.05 / 2,
                    "graph_weight": 0.02 / 2}
#: the ``atac_input`` values that read the per-cell LSI over ALL peaks (``obsm["X_lsi_all"]``)
LSI_ALL_INPUTS = ("lsi_all", "lsi_all+peaks")
#: the ``atac_features`` values: which peaks an ATAC decoder reconstructs
ATAC_FEATURES = ("all", "linked")


class ExpertEncoder(nn.Module):
    """``x -> expert block -> shared core -> (mu, logvar)``."""

    def __init__(self, expert: nn.Module, core: nn.Module, n_latent: int, log1p_input: bool):
        super().__init__()
        self.expert, self.core = expert, core
        self.n_latent, self.log1p_input = n_latent, log1p_input

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.expert(x.clamp_min(0.0).log1p() if self.log1p_input else x)
        mu, logvar = self.core(h).float().chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class LSIInput(nn.Module):
    """An encoder that reads a binary ATAC batch through the LSI of preprocessing:
    ``tfidf(x) = log1p(scale * x / n_open(cell)) * idf`` (the train IDF), projected on the
    train-fitted LSI loadings (what :func:`dmmvae.data.preprocess._atac._process_atac` stores in
    ``obsm["X_lsi"]``) and standardised per cell (GLUE's ATAC input); ``keep_peaks`` appends
    the peaks themselves (``log1p`` of them when they are counts, ``log1p_peaks``: the inner
    encoder reads coordinates, which a ``log1p`` would clip at 0). The IDF and loadings are
    buffers, saved with the weights."""

    def __init__(self, encoder: nn.Module, n_peaks: int, n_lsi: int, keep_peaks: bool,
                 log1p_peaks: bool = False) -> None:
        super().__init__()
        self.encoder, self.keep_peaks, self.log1p_peaks = encoder, keep_peaks, log1p_peaks
        self.n_latent = encoder.n_latent
        self.register_buffer("idf", torch.zeros(n_peaks))
        self.register_buffer("loadings", torch.zeros(n_peaks, n_lsi))
        self.register_buffer("scale", torch.tensor(1e4))

    def set_lsi(self, idf: np.ndarray, loadings: np.ndarray, scale: float) -> None:
        self.idf.copy_(torch.as_tensor(idf, dtype=torch.float32))
        self.loadings.copy_(torch.as_tensor(loadings, dtype=torch.float32))
        self.scale.fill_(float(scale))

    def lsi(self, x: Tensor) -> Tensor:
        """The (unstandardised) LSI coordinates of the rows of ``x``."""
        x = x.float().clamp_min(0.0)
        tf = torch.log1p(self.scale * x / x.sum(-1, keepdim=True).clamp_min(1.0)) * self.idf
        return tf @ self.loadings

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = self.lsi(x)
        u = (u - u.mean(-1, keepdim=True)) / u.std(-1, keepdim=True).clamp_min(1e-6)
        if not self.keep_peaks:
            return self.encoder(u)
        peaks = x.to(u.dtype)
        return self.encoder(torch.cat([u, peaks.clamp_min(0.0).log1p() if self.log1p_peaks
                                       else peaks], -1))


class PCAInput(nn.Module):
    """An encoder that reads an RNA count batch through GLUE's RNA input (scglue's
    preprocessing tutorial: ``normalize_total`` 1e4, ``log1p``, ``scale`` clipped at 10, PCA):
    ``((clip((log1p(1e4 x / sum x) - mean) / sd, +-10) - centre) @ components``, every part
    fitted on the RNA train cells (:func:`~dmmvae.methods.training.model.pca_inputs`) and kept
    as buffers, saved with the weights; ``keep_counts`` appends ``log1p`` of the counts."""

    def __init__(self, encoder: nn.Module, n_genes: int, n_pcs: int, keep_counts: bool) -> None:
        super().__init__()
        self.encoder, self.keep_counts = encoder, keep_counts
        self.n_latent = encoder.n_latent
        for name, shape in (("mean", (n_genes,)), ("sd", (n_genes,)), ("centre", (n_genes,)),
                            ("components", (n_genes, n_pcs))):
            self.register_buffer(name, torch.zeros(shape))

    def set_pca(self, mean, sd, centre, components) -> None:
        for name, value in (("mean", mean), ("sd", sd), ("centre", centre),
                            ("components", components)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))

    def pca(self, x: Tensor) -> Tensor:
        """The PCA coordinates of the count rows ``x``."""
        v = log_view("counts", x.float().clamp_min(0.0))
        s = ((v - self.mean) / self.sd).clamp(-10.0, 10.0)
        return (s - self.centre) @ self.components

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = self.pca(x)
        return self.encoder(torch.cat([u, x.float().clamp_min(0.0).log1p()], -1)
                            if self.keep_counts else u)


class ExpertDecoder(nn.Module):
    """``z -> shared core -> expert block -> likelihood parameters``."""

    def __init__(self, core: nn.Module, expert: nn.Module, likelihood: nn.Module):
        super().__init__()
        self.core, self.expert, self.likelihood = core, expert, likelihood

    def forward(self, z: Tensor, library: Tensor | None = None) -> dict[str, Tensor]:
        out = self.expert(torch.relu(self.core(z)))
        return self.likelihood.params(self.likelihood.split_heads(out), library)


def generated_view(target: str, lik, params: dict[str, Tensor], temperature: float) -> Tensor:
    """A cell SAMPLED from the likelihood, in the view the output discriminator reads."""
    if target == "binary":
        return torch.distributions.RelaxedBernoulli(
            torch.tensor(float(temperature), device=params["logits"].device), logits=params["logits"]
        ).rsample()
    mean = lik.mean(params)
    with torch.no_grad():
        sample = lik.sample(params)
    if target == "counts":
        mean_view, sample_view = log_view(target, mean), log_view(target, sample.to(mean.dtype))
    else:
        mean_view, sample_view = mean, sample.to(mean.dtype)
    return mean_view + (sample_view - mean_view).detach()  # straight-through


class DMMVAE(GuidanceGraph, MMVAE):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **MMVAE.DEFAULTS,
        "shared_core": False,  # expert encoders/decoders around one core VAE (seed figure 2)
        "latent_adversarial_weight": 0.01,  # modality-of-origin adversary on z (feature units)
        "output_adversarial_weight": 0.0,  # real vs cross-generated cells per modality
        "cycle_weight": 0.0,  # re-encoded translations recover their code (off: see module doc)
        "anchor_weight": 1.0,  # mutual nearest neighbours on linked features
        "anchor_space": "features",  # where anchors are found: "cca" (Seurat-style CCA on the linked
        # genes, fitted once on all train cells) | "features" (the minibatch's linked features) |
        # "gw" (structure only, no link needed: Gromov-Wasserstein between the train cells)
        "anchor_scope": "batch",  # "batch": mutual neighbours among a minibatch's cells |
        # "global": among ALL train cells in the CCA space (Seurat's anchors), found once; the
        # partners' codes come from a memory of each train cell's latest code
        "n_knn": 5,  # anchors: mutual k-nearest neighbours (within a minibatch, or global)
        "anchor_components": 20,  # canonical components of the anchor CCA (anchor_space cca);
        # with anchor_space gw: the view's components, a list is self-tuned by the lowest GW
        "anchor_scoring": False,  # anchor_scope global: weight each anchor by Seurat's score
        # (shared neighbours of its two cells, k 30, quantile-scaled to [0, 1]; 0 drops it)
        "anchor_refresh": 0,  # anchor_scope global: every this many epochs after the KL warm-up,
        # add the mutual nearest neighbours of the remembered codes (latent space, train cells,
        # all features) to the anchors found before training; 0 = anchors fixed
        "atac_input": "peaks",  # what an ATAC encoder reads: "peaks" (the binary peaks) | "lsi"
        # (the LSI of the kept peaks, obsm["X_lsi"]'s projection, standardised per cell) |
        # "lsi+peaks" (both, concatenated) | "lsi_all" (GLUE's encoder input: the LSI over ALL
        # peaks, obsm["X_lsi_all"], fitted on train cells by preprocessing) | "lsi_all+peaks"
        "atac_features": "all",  # what an ATAC decoder reconstructs: "all" (every kept peak) |
        # "linked" (GLUE's decoded peaks: only those with a stored link to a gene; the model
        # trains on and imputes them, the other peaks' imputations are NaN); with atac_input
        # lsi_all or lsi_all+peaks (the LSI of "lsi" projects every kept peak) or peaks
        "rna_input": "counts",  # what an RNA encoder reads: "counts" (log1p of the counts) |
        # "pca" (GLUE's: PCA of the scaled log-normalised genes, train-fitted; PCAInput) |
        # "pca+counts" (both, concatenated)
        "rna_pcs": 100,  # rna_input pca: components (GLUE's tutorial: 100)
        "min_links": 3,  # fewest linked features that give a modality pair anchors
        "latent_adversary_loss": "confusion",  # what the encoders minimise against the latent
        # discriminator: "confusion" (KL(uniform || D(z))) | "minimax" (minus its cross-entropy
        # with the true modality, GLUE's)
        "burnin_noise_scale": "unit",  # the burn-in noise on the discriminator's input:
        # "unit" (N(0, 1) per dimension) | "batch_std" (GLUE's: N(0, the batch's standard
        # deviation of that dimension of the codes))
        "disc_steps": 3,  # discriminator updates per training step
        "adversary_order": "after",  # when the discriminators step: "after" the VAE step, on
        # its detached inputs | "before" it, on a fresh forward pass of the batch (scglue's
        # order: the encoders then play against the discriminator just updated)
        "disc_hidden": 64,  # hidden width of the discriminators
        "disc_depth": 1,  # hidden layers of the discriminators (GLUE's: 2 of 256, dropout 0.2)
        "disc_dropout": 0.0,  # dropout of the discriminators' hidden layers
        "align_burnin": 0,  # epochs after the KL warm-up over which the latent discriminator's
        # input carries N(0, 1.5^2) noise fading linearly to 0, and in which no weights are kept
        # and no patience counted (GLUE's burn-in); 0 = off
        "disc_lr": None,  # discriminator learning rate (None = training lr)
        # GLUE's two stages (scglue fit_SCGLUE): a pretraining with the burn-in noise on the
        # latent discriminator's input at full strength throughout (weights kept, patience
        # counted), then a fine-tuning from its best weights with the burn-in above
        "glue_stages": False,
        "relaxed_temperature": 0.5,  # relaxed-Bernoulli temperature of generated binary cells
        "likelihood_scale": "sum",  # "sum": log-likelihoods summed over features, aligning
        # weights in reconstruction units | "per_feature": GLUE's normalisation (module doc)
        **GRAPH_DEFAULTS,  # mmAAVI's guidance graph as an option (methods/_graph.py)
    }

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Every value and combination of ``params`` (merged with the defaults) that D-MMVAE
        accepts; a ``ValueError`` naming the parameter and the allowed values otherwise. Runs
        when a config is read (``dmmvae.config.check_models``) and when the module is built."""
        p = {**cls.DEFAULTS, **params}
        for k in WEIGHTS:
            if float(p[k]) < 0:
                raise ValueError(f"dmmvae: {k} must be >= 0, got {p[k]}")
        if p["guidance_graph"] and p["shared_core"]:
            raise ValueError("dmmvae: guidance_graph needs shared_core false (the hybrid decoder "
                             "wraps a modality's own MLP decoder)")
        if p["anchor_space"] not in ANCHOR_SPACES:
            raise ValueError(
                f"dmmvae: unknown anchor_space '{p['anchor_space']}'; valid: {list(ANCHOR_SPACES)}"
            )
        if p["anchor_scope"] not in ANCHOR_SCOPES:
            raise ValueError(
                f"dmmvae: unknown anchor_scope '{p['anchor_scope']}'; valid: {list(ANCHOR_SCOPES)}"
            )
        if p["anchor_scope"] == "global" and p["anchor_space"] == "features":
            raise ValueError("dmmvae: anchor_scope 'global' finds its anchors in the CCA space "
                             "or by GW; set anchor_space: cca or gw (or anchor_scope: batch)")
        if p["anchor_scoring"] and (p["anchor_scope"], p["anchor_space"]) != ("global", "cca"):
            raise ValueError("dmmvae: anchor_scoring scores Seurat's global anchors in the CCA space; "
                             "set anchor_scope: global and anchor_space: cca (or anchor_scoring: false)")
        for k in ("disc_depth", "disc_steps", "disc_hidden"):
            if int(p[k]) < 1:
                raise ValueError(f"dmmvae: {k} must be >= 1, got {p[k]}")
        if not 0 <= float(p["disc_dropout"]) < 1:
            raise ValueError(f"dmmvae: disc_dropout must be in [0, 1), got {p['disc_dropout']}")
        if int(p["align_burnin"]) < 0:
            raise ValueError(f"dmmvae: align_burnin must be >= 0 (epochs), got {p['align_burnin']}")
        if p["glue_stages"] and not float(p["latent_adversarial_weight"]) > 0:
            raise ValueError("dmmvae: glue_stages pretrains against the latent discriminator; set "
                             "latent_adversarial_weight > 0 (or glue_stages: false)")
        if int(p["anchor_refresh"]) < 0:
            raise ValueError(f"dmmvae: anchor_refresh must be >= 0, got {p['anchor_refresh']}")
        if int(p["anchor_refresh"]) and p["anchor_scope"] != "global":
            raise ValueError("dmmvae: anchor_refresh re-finds global anchors among the remembered "
                             "codes of all train cells; set anchor_scope: global (or anchor_refresh: 0)")
        if p["anchor_space"] == "gw" and p["anchor_scope"] != "global":
            raise ValueError("dmmvae: anchor_space 'gw' pairs cells once, among all train cells; "
                             "set anchor_scope: global")
        if p["atac_input"] not in ATAC_INPUTS:
            raise ValueError(f"dmmvae: unknown atac_input '{p['atac_input']}'; "
                             f"valid: {list(ATAC_INPUTS)}")
        if p["atac_input"] in LSI_ALL_INPUTS and float(p["cycle_weight"]) > 0:
            raise ValueError(f"dmmvae: atac_input '{p['atac_input']}' reads a cell's stored LSI "
                             "over all peaks, which a cross-generated cell (the cycle term) "
                             "lacks; set cycle_weight: 0 or atac_input: lsi / lsi+peaks")
        if p["atac_features"] not in ATAC_FEATURES:
            raise ValueError(f"dmmvae: unknown atac_features '{p['atac_features']}'; "
                             f"valid: {list(ATAC_FEATURES)}")
        if p["atac_features"] == "linked" and p["atac_input"] in ("lsi", "lsi+peaks"):
            raise ValueError(f"dmmvae: atac_features 'linked' keeps only the linked peaks, but "
                             f"atac_input '{p['atac_input']}' projects every kept peak on the "
                             "stored LSI; set atac_input: lsi_all (GLUE's), lsi_all+peaks or "
                             "peaks (or atac_features: all)")
        if p["latent_adversary_loss"] not in ADVERSARY_LOSSES:
            raise ValueError(f"dmmvae: unknown latent_adversary_loss '{p['latent_adversary_loss']}'; "
                             f"valid: {list(ADVERSARY_LOSSES)}")
        if p["adversary_order"] not in ADVERSARY_ORDERS:
            raise ValueError(f"dmmvae: unknown adversary_order '{p['adversary_order']}'; "
                             f"valid: {list(ADVERSARY_ORDERS)}")
        if p["burnin_noise_scale"] not in BURNIN_NOISE_SCALES:
            raise ValueError(f"dmmvae: unknown burnin_noise_scale '{p['burnin_noise_scale']}'; "
                             f"valid: {list(BURNIN_NOISE_SCALES)}")
        if p["rna_input"] not in RNA_INPUTS:
            raise ValueError(f"dmmvae: unknown rna_input '{p['rna_input']}'; "
                             f"valid: {list(RNA_INPUTS)}")
        if int(p["rna_pcs"]) < 1:
            raise ValueError(f"dmmvae: rna_pcs must be >= 1, got {p['rna_pcs']}")
        if p["rna_input"] != "counts" and p["shared_core"]:
            raise ValueError("dmmvae: rna_input 'pca' wraps a modality's own encoder; set "
                             "shared_core: false (or rna_input: counts)")
        if p["likelihood_scale"] not in LIKELIHOOD_SCALES:
            raise ValueError(f"dmmvae: unknown likelihood_scale '{p['likelihood_scale']}'; "
                             f"valid: {list(LIKELIHOOD_SCALES)}")
        if p["likelihood_scale"] == "per_feature" and p["estimator"] != "elbo":
            raise ValueError("dmmvae: likelihood_scale 'per_feature' scales the terms of the "
                             f"ELBO; set estimator: elbo (got '{p['estimator']}') or "
                             "likelihood_scale: sum")
        cls.check_graph_params(p)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.check_params(self.params)
        #: atac_input lsi: per ATAC modality the LSI width, and (idf, loadings, tfidf scale) of
        #: preprocessing (:meth:`set_lsi_input`; a checkpoint restores the widths, and its
        #: weights the values)
        self._lsi_widths: dict[str, int] = {}
        self._lsi: dict[str, tuple[Any, Any, float]] = {}
        #: atac_input lsi_all: per ATAC modality the cells' LSI over all peaks (n_obs, K), read
        #: by row number (:meth:`set_lsi_all_input`; set from the data at fit and predict)
        self._lsi_all: dict[str, Tensor] = {}
        #: rna_input pca: per RNA modality (mean, sd, centre, components) fitted on its train
        #: cells (:meth:`set_pca_input`), and the PCA widths (kept in a checkpoint)
        self._pca: dict[str, tuple[Any, Any, Any, Any]] = {}
        self._pca_widths: dict[str, int] = {}
        #: per linked pair (a, b): per-cell coordinates (n_obs, k) of a and of b in which the
        #: anchors are found (set by the model from the data, :func:`cca_anchor_space`)
        self._anchor_spaces: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        self._anchor_space_note = ""
        #: anchor_scope global: per linked pair (a, b), each cell's anchor partners among the
        #: cells of b, ``(n_obs, n_knn)`` row numbers padded with -1 (set by the model)
        self._partners: dict[tuple[str, str], Tensor] = {}
        self._partner_weights: dict[tuple[str, str], Tensor] = {}  # same shape, in [0, 1]
        #: the anchors found before training, ``{(a, b): (pairs, weights or None)}``
        self._initial_pairs: dict[tuple[str, str], tuple[Any, Any]] = {}
        #: anchor_refresh: pairs added by the latest refresh, per "a+b"
        self.refreshed: dict[str, int] = {}

    def set_anchor_partners(self, pairs: dict[tuple[str, str], Any], n_obs: int,
                            weights: dict[tuple[str, str], Any] | None = None) -> None:
        """Global anchors ``{(a, b): int array (n_pairs, 2)}`` of row numbers (a cell of a, its
        partner of b), e.g. from :func:`~._model.global_anchor_pairs`; both directions kept.
        ``weights``: per pair a score in [0, 1] (Seurat's anchor scores), else all 1."""
        self._initial_pairs = {
            key: (np.asarray(ij).reshape(-1, 2),
                  None if weights is None or key not in weights else np.asarray(weights[key]))
            for key, ij in pairs.items()}
        self._build_partner_tables(self._initial_pairs, n_obs)

    def _build_partner_tables(self, pairs: dict[tuple[str, str], tuple[Any, Any]], n_obs: int
                              ) -> None:
        """``{(a, b): (pairs (n, 2), weights (n,) or None)}`` -> per-cell partner tables (at
        most ``n_knn`` partners per cell, in the order given)."""
        k = int(self.params["n_knn"])
        self._partners, self._partner_weights = {}, {}
        for (a, b), (ij, wts) in pairs.items():
            ij = torch.as_tensor(np.asarray(ij), dtype=torch.long).reshape(-1, 2)
            w = (torch.ones(len(ij)) if wts is None
                 else torch.as_tensor(np.asarray(wts), dtype=torch.float32))
            for (u, v), (src, dst) in (((a, b), (ij[:, 0], ij[:, 1])), ((b, a), (ij[:, 1], ij[:, 0]))):
                table = torch.full((n_obs, k), -1, dtype=torch.long)
                wtable = torch.zeros((n_obs, k))
                order = torch.argsort(src, stable=True)
                src, dst, ws = src[order], dst[order], w[order]
                if len(src):  # position of each pair among its source cell's partners
                    first = torch.searchsorted(src, src)
                    slot = torch.arange(len(src)) - first
                    keep = slot < k
                    table[src[keep], slot[keep]] = dst[keep]
                    wtable[src[keep], slot[keep]] = ws[keep]
                self._partners[(u, v)] = table
                self._partner_weights[(u, v)] = wtable

    def on_epoch_end(self, epoch: int, warmup_epochs: int, state) -> None:
        """``anchor_refresh``: after the KL warm-up, every ``anchor_refresh`` epochs the global
        anchors become those found before training plus the mutual ``n_knn``-nearest
        neighbours between the remembered codes (``state.codes``, the training layer's
        :class:`~dmmvae.methods.training.state.TrainingState`) of the train cells that show
        ``a`` only and those that show ``b`` only (MaxFuse's and scMODAL's refinement: the
        latent space sees every feature, not only the linked ones)."""
        every = int(self.params["anchor_refresh"])
        if not every or not self._initial_pairs or epoch + 1 < warmup_epochs or (epoch + 1) % every:
            return
        k = int(self.params["n_knn"])
        pairs = dict(self._initial_pairs)
        self.refreshed = {}
        for (a, b), (ij, wts) in self._initial_pairs.items():
            if a not in state.codes or b not in state.codes:
                continue
            ra = torch.nonzero(state.filled[a] & ~state.filled[b]).squeeze(1)
            rb = torch.nonzero(state.filled[b] & ~state.filled[a]).squeeze(1)
            if len(ra) <= k or len(rb) <= k:
                continue
            mutual = mutual_nearest_neighbours(state.codes[a][ra], state.codes[b][rb], k)
            i, j = torch.nonzero(mutual, as_tuple=True)
            new = torch.stack([ra[i], rb[j]], 1).cpu().numpy()
            both = np.vstack([ij, new])
            _, first = np.unique(both, axis=0, return_index=True)
            first = np.sort(first)  # the pairs found before training keep their slots
            pairs[(a, b)] = (both[first],
                             None if wts is None else np.r_[wts, np.ones(len(new))][first])
            self.refreshed[f"{a}+{b}"] = int(len(first) - len(ij))
        self._build_partner_tables(pairs, state.n_obs)

    def _global_anchor_term(self, a: str, b: str, idx: Tensor, za: Tensor, state
                            ) -> Tensor | None:
        """Relative squared distance of cells of ``a`` (codes ``za``, row numbers ``idx``) to
        the remembered codes (``state.codes``) of their global partners in ``b``, over that to
        random remembered codes of ``b``; None when no partner has a code yet."""
        if state is None or b not in state.codes or (a, b) not in self._partners:
            return None
        mem, filled = state.codes[b], state.filled[b]
        rows = idx.to(self._partners[(a, b)].device)  # the tables stay where they were built
        part = self._partners[(a, b)][rows].to(za.device)  # (B, k)
        w = self._partner_weights[(a, b)][rows].to(za.device) * (
            (part >= 0) & filled[part.clamp_min(0)])
        if not bool((w > 0).any()):
            return None
        d = (za[:, None, :] - mem[part.clamp_min(0)]).pow(2).mean(-1)
        near = (d * w).sum() / w.sum()
        pool = filled.nonzero().squeeze(1)
        pick = pool[torch.randint(len(pool), (min(256, len(pool)),), device=pool.device)]
        far = torch.cdist(za, mem[pick]).pow(2).mean() / za.shape[-1]
        return near / far.clamp_min(1e-8)

    def set_anchor_space(self, spaces: dict[tuple[str, str], tuple[Any, Any]], note: str = "") -> None:
        """Per-cell anchor-finding coordinates ``{(a, b): (coords_a, coords_b)}`` (rows = cells
        of the MuData), e.g. the canonical embeddings of :class:`~.linked_cca.LinkedCCA`."""
        self._anchor_spaces = {}
        for (a, b), (ca, cb) in spaces.items():
            ta, tb = torch.as_tensor(ca, dtype=torch.float32), torch.as_tensor(cb, dtype=torch.float32)
            self._anchor_spaces[(a, b)] = (ta, tb)
            self._anchor_spaces[(b, a)] = (tb, ta)
        self._anchor_space_note = note

    # ------------------------------------------------------------------ building
    @property
    def per_feature(self) -> bool:
        return self.params["likelihood_scale"] == "per_feature"

    def w(self, name: str, scale: float | None = None) -> float:
        """Weight ``name`` in reconstruction units (see module doc): times ``scale``, the
        running mean of the per-cell reconstruction log-likelihood's magnitude (``None``, before
        the first training step: the mean feature count); as it is with ``likelihood_scale:
        per_feature``."""
        if self.per_feature:
            return float(self.params[name])
        return float(self.params[name]) * (self.feature_scale if scale is None else scale)

    def graph_term_scale(self) -> float:
        """Multiplier of ``graph_weight`` (:meth:`GuidanceGraph.add_graph_term`): the feature
        count with summed likelihoods, 1 with per-feature ones."""
        return 1.0 if self.per_feature else super().graph_term_scale()

    def make_decode(self, batch):
        """The base decode; with ``likelihood_scale: per_feature`` each modality's
        log-likelihood divided by its feature count."""
        decode = super().make_decode(batch)
        if not self.per_feature:
            return decode
        n = {m: float(ms.n_features) for m, ms in self.spec.modalities.items()}

        def per_feature(z, mods):
            return {m: v / n[m] for m, v in decode(z, mods).items()}

        per_feature.stackable = decode.stackable  # type: ignore[attr-defined]
        return per_feature

    def cell_kl_scale(self, kl_weight: float, masks) -> float | Tensor:
        """The KL weight of each cell: :meth:`kl_scale`, divided with ``likelihood_scale:
        per_feature`` by the mean feature count of the modalities the cell shows (GLUE's KL
        per feature)."""
        base = self.kl_scale(kl_weight)
        if not self.per_feature:
            return base
        mods = list(masks)
        shown = torch.stack([masks[m].float() for m in mods])
        sizes = torch.tensor([float(self.spec.modalities[m].n_features) for m in mods],
                             device=shown.device).unsqueeze(1)
        mean_size = (shown * sizes).sum(0) / shown.sum(0).clamp_min(1.0)
        return base / mean_size

    def _step_scale(self, out: LossOutput, state) -> float | None:
        """The reconstruction scale of this step: in training, the running mean
        (``state.recon_scale``) updated with this batch's reconstruction size (detached), else
        the running mean as it is."""
        old = None if state is None else state.recon_scale
        if not self.training:
            return old
        recon = sum(v for k, v in out.terms.items() if k.startswith("recon_"))
        new = float(abs(recon.detach()))
        return new if old is None else 0.98 * old + 0.02 * new

    @property
    def has_adversaries(self) -> bool:
        return float(self.params["latent_adversarial_weight"]) > 0 or float(
            self.params["output_adversarial_weight"]
        ) > 0

    def set_lsi_input(self, lsi: dict[str, tuple[Any, Any, float]]) -> None:
        """``{modality: (idf (F,), loadings (F, K), tfidf scale)}`` of the ATAC modalities
        (``atac_input`` lsi), read by :meth:`make_encoder`."""
        self._lsi = dict(lsi)
        self._lsi_widths = {m: int(np.shape(loadings)[1]) for m, (_, loadings, _) in self._lsi.items()}

    def set_lsi_all_input(self, tables: dict[str, Any]) -> None:
        """``{modality: (n_obs, K) per-cell LSI over all peaks}`` of the ATAC modalities
        (``atac_input`` lsi_all), rows in the order of the data's cells; an encoder of such a
        modality reads its batch's rows of it (:meth:`encode`). A table's width must match the
        one the encoder was built for."""
        for m, t in tables.items():
            if m in self._lsi_widths and self._lsi_widths[m] != np.shape(t)[1]:
                raise ValueError(f"dmmvae: modality '{m}': the LSI over all peaks has "
                                 f"{np.shape(t)[1]} components, the model was built for "
                                 f"{self._lsi_widths[m]}; preprocess with the same atac.n_lsi_all")
        self._lsi_all = {m: torch.as_tensor(np.asarray(t), dtype=torch.float32)
                         for m, t in tables.items()}
        self._lsi_widths = {m: int(np.shape(t)[1]) for m, t in tables.items()}

    def set_pca_input(self, pca: dict[str, tuple[Any, Any, Any, Any]]) -> None:
        """``{modality: (mean (G,), sd (G,), centre (G,), components (G, K))}`` of the RNA
        modalities (``rna_input`` pca), read by :meth:`make_encoder`."""
        self._pca = dict(pca)
        self._pca_widths = {m: int(np.shape(c)[1]) for m, (_, _, _, c) in self._pca.items()}

    def encode(self, batch: dict[str, Any], encoders: nn.ModuleDict | None = None):
        """As :meth:`VAE.encode`; with ``atac_input`` lsi_all an ATAC encoder reads the batch
        rows' LSI over all peaks (with their peaks appended for ``lsi_all+peaks``)."""
        if not self._lsi_all or self.params["atac_input"] not in LSI_ALL_INPUTS:
            return super().encode(batch, encoders)
        rows = batch[BATCH_KEYS.INDEX].cpu()
        x = dict(batch[BATCH_KEYS.X])
        for m, table in self._lsi_all.items():
            if m in x:
                u = table[rows].to(x[m].device)
                if self.params["atac_input"] != "lsi_all+peaks":
                    x[m] = u
                    continue
                peaks = x[m].to(u.dtype)
                if self.spec is not None and self.spec.modalities[m].target == "counts":
                    peaks = peaks.clamp_min(0.0).log1p()  # as an encoder of counts reads them
                x[m] = torch.cat([u, peaks], -1)
        return super().encode({**batch, BATCH_KEYS.X: x}, encoders)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"lsi_widths": self._lsi_widths, "pca_widths": self._pca_widths}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        self._lsi_widths = {m: int(k) for m, k in dict(extra.get("lsi_widths") or {}).items()}
        self._pca_widths = {m: int(k) for m, k in dict(extra.get("pca_widths") or {}).items()}
        self._lsi, self._lsi_all, self._pca = {}, {}, {}

    def make_encoder(self, ms: ModalitySpec, n_out: int | None = None) -> nn.Module:
        if ms.name in self._pca_widths and self.params["rna_input"] != "counts":
            k = self._pca_widths[ms.name]
            keep = self.params["rna_input"] == "pca+counts"
            # the inner encoder reads coordinates (and log1p counts), not counts to log1p
            inner = self._make_encoder(dataclasses.replace(
                ms, n_features=k + (ms.n_features if keep else 0), target="gaussian"), n_out)
            enc = PCAInput(inner, ms.n_features, k, keep)
            if ms.name in self._pca:
                enc.set_pca(*self._pca[ms.name])
            return enc
        # the LSI encoders read coordinates (and the peaks, log1p'd by :meth:`encode` /
        # LSIInput when they are counts), never LSI coordinates to log1p
        if ms.name in self._lsi_widths and self.params["atac_input"] in LSI_ALL_INPUTS:
            keep = self.params["atac_input"] == "lsi_all+peaks"
            n_in = self._lsi_widths[ms.name] + (ms.n_features if keep else 0)
            return self._make_encoder(
                dataclasses.replace(ms, n_features=n_in, target="gaussian"), n_out)
        if ms.name in self._lsi_widths and self.params["atac_input"] != "peaks":
            n_lsi = self._lsi_widths[ms.name]
            keep = self.params["atac_input"] == "lsi+peaks"
            inner = self._make_encoder(dataclasses.replace(
                ms, n_features=n_lsi + (ms.n_features if keep else 0), target="gaussian"), n_out)
            enc = LSIInput(inner, ms.n_features, n_lsi, keep, ms.target == "counts")
            if ms.name in self._lsi:
                enc.set_lsi(*self._lsi[ms.name])
            return enc
        return self._make_encoder(ms, n_out)

    def _make_encoder(self, ms: ModalitySpec, n_out: int | None = None) -> nn.Module:
        if not self.params["shared_core"]:
            return super().make_encoder(ms, n_out)
        p = self.params
        h, layers, norm = int(p["n_hidden"]), int(p["n_layers"]), p["norm"]
        if not hasattr(self, "core_encoder"):
            self.core_encoder = MLP(h, 2 * self.latent_dim, h, layers, float(p["dropout"]), norm)
        expert = MLP(ms.n_features, h, h, 1, float(p["dropout"]), norm)
        return ExpertEncoder(expert, self.core_encoder, self.latent_dim, ms.target == "counts")

    def make_decoder(self, ms: ModalitySpec, n_in: int | None = None):
        if not self.params["shared_core"]:
            return super().make_decoder(ms, n_in)
        p = self.params
        h, layers, norm = int(p["n_hidden"]), int(p["n_layers"]), p["norm"]
        if not hasattr(self, "core_decoder"):
            self.core_decoder = MLP(self.latent_dim, h, h, layers, 0.0, norm)
        lik = get_likelihood(ms.likelihood)(ms.n_features)
        return ExpertDecoder(self.core_decoder, MLP(h, lik.n_outputs, h, 1, 0.0, norm), lik)

    def build_extra(self, spec) -> None:
        super().build_extra(spec)
        mods = spec.names
        self.feature_scale = float(np.mean([ms.n_features for ms in spec.modalities.values()]))
        h, depth = int(self.params["disc_hidden"]), int(self.params["disc_depth"])
        drop = float(self.params["disc_dropout"])
        self.latent_disc = None
        self.output_discs = None
        # created after every MMVAE module, and only when used: weights 0 == MMVAE exactly
        if float(self.params["latent_adversarial_weight"]) > 0 and len(mods) > 1:
            self.latent_disc = MLP(self.latent_dim, len(mods), h, depth, drop, None)
        if float(self.params["output_adversarial_weight"]) > 0 and len(mods) > 1:
            self.output_discs = nn.ModuleDict(
                {m: MLP(ms.n_features, 1, h, depth, drop, None) for m, ms in spec.modalities.items()}
            )
        self.links: dict[tuple[str, str], LinkedFeatures] = {}
        self.anchor_report: dict[str, str] = {}
        for i, a in enumerate(mods):
            for b in mods[i + 1 :]:
                lf = LinkedFeatures.from_spec(spec, a, b)
                if float(self.params["anchor_weight"]) <= 0:
                    self.anchor_report[f"{a}+{b}"] = "anchors off (anchor_weight 0)"
                elif (a, b) in self._partners and self.params["anchor_space"] == "gw":
                    self.links[(a, b)] = lf  # GW anchors need no linked feature
                    self.anchor_report[f"{a}+{b}"] = self._anchor_space_note
                elif lf.n_features >= int(self.params["min_links"]):
                    self.links[(a, b)] = lf
                    where = (
                        "among all train cells in the CCA space of" if (a, b) in self._partners
                        else "in the CCA space of" if (a, b) in self._anchor_spaces else "on"
                    )
                    self.anchor_report[f"{a}+{b}"] = (
                        f"mutual nearest neighbours {where} {lf.n_features} linked features "
                        f"({lf.n_links} links)" + (f"; {self._anchor_space_note}" if self._anchor_space_note else "")
                    )
                else:
                    self.anchor_report[f"{a}+{b}"] = (
                        f"no anchors ({lf.n_features} linked features < min_links="
                        f"{self.params['min_links']})"
                    )

    @property
    def burnin_epochs(self) -> int:
        """Epochs after the KL warm-up in which the training loop keeps no weights and counts
        no patience: ``align_burnin`` when the latent adversary is on, else 0."""
        if self.pretraining:
            return 0
        return int(self.params["align_burnin"]) if self.latent_disc is not None else 0

    #: True in the first of GLUE's two stages (``glue_stages``, set by the model's ``fit``)
    pretraining = False

    def burnin_noise(self, state) -> float:
        """Scale of the noise (N(0, 1), or N(0, the batch's sd per dimension) with
        ``burnin_noise_scale: batch_std``) added to the latent discriminator's input at
        ``state.epoch``: 1.5 at the first adversarial epoch, falling linearly to 0 over
        ``align_burnin`` epochs (GLUE's ``BURNIN_NOISE_EXAG`` and ``align_burnin``); 1.5 at every
        epoch of the pretraining stage (``glue_stages``)."""
        if self.pretraining:
            return BURNIN_NOISE
        burnin = int(self.params["align_burnin"])
        if not burnin or state is None:
            return 0.0
        done = max(int(state.epoch) - int(state.warmup_epochs), 0)
        return BURNIN_NOISE * max(1.0 - done / burnin, 0.0)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        out: list[nn.Parameter] = []
        for mod in (self.latent_disc, self.output_discs):
            if mod is not None:
                out += list(mod.parameters())
        return out

    def configure_optimizers(self, cfg: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
        if not self.discriminator_parameters():
            return super().configure_optimizers(cfg)
        return self.adversarial_optimizers(
            cfg, self.discriminator_parameters(), disc_lr=self.params["disc_lr"]
        )

    # ------------------------------------------------------------------ objective
    def _alignment_terms(self, batch, qz, scale: float | None = None, state=None
                         ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Weighted cycle + anchor terms (part of the validation loss too), and the codes the
        global anchors remember (training steps only; empty otherwise)."""
        masks, x = batch[BATCH_KEYS.MASK], batch[BATCH_KEYS.X]
        mods = list(qz)
        z = {m: qz[m].mu for m in mods}
        total = torch.zeros((), device=z[mods[0]].device)
        terms: dict[str, Tensor] = {}
        remember: dict[str, Tensor] = {}
        if float(self.params["cycle_weight"]) > 0 and len(mods) > 1:
            cyc = torch.zeros_like(z[mods[0]][:, 0])
            for r in mods:
                for d in mods:
                    if d == r:
                        continue
                    dec = self.decoders[d]
                    x_rd = dec.likelihood.mean(dec(z[r], self._median_library(d, z[r])))
                    z_back, _ = self.encoders[d](x_rd)
                    cyc = cyc + masked(cycle_loss(z[r], z_back, relative=True), masks[r])
            cyc = cyc.mean()
            total = total + self.w("cycle_weight", scale) * cyc
            terms["cycle"] = cyc.detach()
        if self.links:
            anc = torch.zeros_like(total)
            for (a, b), lf in self.links.items():
                # cells that show both are paired: the MoE cross terms align them, and they
                # must not be re-matched to feature neighbours; anchors link unpaired cells
                ra, rb = masks[a] & ~masks[b], masks[b] & ~masks[a]
                if (a, b) in self._partners:  # global anchors, partners from the memory
                    idx = batch[BATCH_KEYS.INDEX].to(z[a].device)
                    parts = [t for t in (self._global_anchor_term(a, b, idx[ra], z[a][ra], state),
                                         self._global_anchor_term(b, a, idx[rb], z[b][rb], state))
                             if t is not None]
                    if parts:
                        anc = anc + sum(parts) / len(parts)
                    continue
                if int(ra.sum()) < 2 or int(rb.sum()) < 2:
                    continue
                if (a, b) in self._anchor_spaces:  # fixed per-cell coordinates (e.g. CCA)
                    ca, cb = self._anchor_spaces[(a, b)]
                    idx = batch[BATCH_KEYS.INDEX].cpu()
                    dev = z[a].device
                    fa, fb = ca[idx[ra.cpu()]].to(dev), cb[idx[rb.cpu()]].to(dev)
                else:
                    ta, tb = self.spec.modalities[a].target, self.spec.modalities[b].target
                    fa, fb = lf.views(x[a][ra], ta, x[b][rb], tb)
                term = anchor_loss(
                    fa, fb, z[a][ra], z[b][rb], int(self.params["n_knn"]), relative=True
                )
                if term is not None:
                    anc = anc + term
            total = total + self.w("anchor_weight", scale) * anc
            terms["anchors"] = anc.detach()
            if self._partners and self.training:
                remember = {m: zm.detach() for m, zm in z.items()}
        return total, terms, remember

    def loss(self, batch, kl_weight: float = 1.0, state=None) -> LossOutput:
        qz = self.encode(batch)
        masks = batch[BATCH_KEYS.MASK]
        per_cell, terms = moe_stratified_elbo(
            qz,
            masks,
            self.make_decode(batch),
            self.cell_kl_scale(kl_weight, masks),
            estimator=self.params["estimator"],
            k=int(self.params["k"]),
        )
        out = self.loss_output(per_cell, terms, z=self.fuse(qz, masks).mu)
        scale = self._step_scale(out, state)  # the size of what the alignment terms compete with
        if self.training:
            out.updates["recon_scale"] = scale
        self.add_graph_term(out)
        align, extra, remember = self._alignment_terms(batch, qz, scale, state)
        out.loss = out.loss + align
        out.terms.update(extra)
        if remember:
            out.updates["codes"] = remember
        # adversaries start once the KL warm-up is over (the VAE is warmed up first)
        if self.training and kl_weight >= 1.0 and self.has_adversaries:
            gen, extra, disc_inputs = self._generator_terms(batch, qz, scale, self.burnin_noise(state))
            out.loss = out.loss + gen
            out.terms.update(extra)
            out.updates["disc_inputs"] = disc_inputs
        return out

    def _generator_terms(self, batch, qz, scale: float | None = None, noise: float = 0.0):
        masks, x = batch[BATCH_KEYS.MASK], batch[BATCH_KEYS.X]
        mods = list(qz)
        gen = torch.zeros((), device=next(iter(x.values())).device)
        terms: dict[str, Tensor] = {}
        inputs: dict[str, Any] = {}
        if self.latent_disc is not None:
            z, y = labelled_codes({m: qz[m].mu for m in mods}, masks)
            if noise > 0:  # the burn-in: the discriminator sees noisy codes, the encoders too
                sd = (z.std(0).detach() if self.params["burnin_noise_scale"] == "batch_std"
                      and len(z) > 1 else 1.0)
                z = z + noise * sd * torch.randn_like(z)
            if len(z):
                logits = self.latent_disc(z)
                confusion = (-F.cross_entropy(logits, y)
                             if self.params["latent_adversary_loss"] == "minimax"
                             else modality_confusion(logits))
                gen = gen + self.w("latent_adversarial_weight", scale) * confusion
                terms["adv_latent"] = confusion.detach()
                inputs["latent"] = (z.detach(), y)
        if self.output_discs is not None:
            temp = float(self.params["relaxed_temperature"])
            real_views, gen_views = {}, {}
            g_loss = torch.zeros_like(gen)
            for d in mods:
                ms = self.spec.modalities[d]
                dec = self.decoders[d]
                fakes = []
                for r in mods:
                    rows = masks[r] & ~masks[d]  # virtual cells: sources that do not show d
                    if r == d or not rows.any():
                        continue
                    z_r = qz[r].rsample()[rows]
                    params = dec(z_r, self._median_library(d, z_r))
                    fakes.append(generated_view(ms.target, dec.likelihood, params, temp))
                if not fakes or not masks[d].any():
                    continue
                fake = torch.cat(fakes)
                g_loss = g_loss + gan_generator_loss(self.output_discs[d](fake).squeeze(-1))
                real_views[d] = log_view(ms.target, x[d][masks[d]])
                gen_views[d] = fake.detach()
            if gen_views:
                gen = gen + self.w("output_adversarial_weight", scale) * g_loss
                terms["adv_output"] = g_loss.detach()
                inputs["output"] = (real_views, gen_views)
        return gen, terms, inputs

    def discriminator_loss(self, inputs: dict[str, Any]) -> Tensor | None:
        """Loss of the discriminators on the detached inputs of the last VAE step."""
        loss = None
        if "latent" in inputs:
            z, y = inputs["latent"]
            loss = torch.nn.functional.cross_entropy(self.latent_disc(z), y)
        if "output" in inputs:
            real_views, gen_views = inputs["output"]
            for d, real in real_views.items():
                term = gan_discriminator_loss(
                    self.output_discs[d](real).squeeze(-1), self.output_discs[d](gen_views[d]).squeeze(-1)
                )
                loss = term if loss is None else loss + term
        return loss

    def train_step(self, batch, kl_weight: float, optimizers, ctx, state=None) -> dict[str, Tensor]:
        """One VAE step, then what the loss returned for the training state (reconstruction
        scale, codes to remember) goes to ``state``, then ``disc_steps`` discriminator steps on
        the loss's detached discriminator inputs; with ``adversary_order: before`` the
        discriminator steps come first, on the inputs of a fresh forward pass without gradients
        (scglue's order), and the VAE step plays against the discriminators so updated."""
        before = self.params["adversary_order"] == "before"
        d_loss = None
        if before and "disc" in optimizers and kl_weight >= 1.0 and self.has_adversaries:
            with torch.no_grad(), ctx.autocast():
                qz = self.encode(batch)
                _, _, inputs = self._generator_terms(batch, qz, None, self.burnin_noise(state))
            d_loss = self._discriminator_steps(inputs, optimizers["disc"], ctx)
        out = self.main_step(batch, kl_weight, optimizers, ctx, state)
        terms = out.detached_terms()
        inputs = out.updates.get("disc_inputs") or {}
        if not before and inputs and "disc" in optimizers:
            d_loss = self._discriminator_steps(inputs, optimizers["disc"], ctx)
        if d_loss is not None:
            terms["disc_loss"] = d_loss.detach()
        return terms

    def _discriminator_steps(self, inputs, dopt, ctx) -> Tensor | None:
        """``disc_steps`` updates of the discriminators on ``inputs``; the last loss."""
        d_loss = None
        for _ in range(int(self.params["disc_steps"])):
            dopt.zero_grad(set_to_none=True)
            with ctx.autocast():
                d_loss = self.discriminator_loss(inputs)
            if d_loss is None:
                return None
            ctx.step(d_loss, dopt)
        return d_loss

    # ------------------------------------------------------------------ prediction
    def prediction_info(self) -> dict[str, Any]:
        report = dict(self.anchor_report)
        for key, n in self.refreshed.items():
            report[key] = f"{report.get(key, '')}; latest refresh added {n} latent mutual pairs"
        return {"anchors": report}


__all__ = ["DMMVAE", "ExpertDecoder", "ExpertEncoder", "LSIInput", "PCAInput", "generated_view"]

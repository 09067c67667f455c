"""Model variants on the shared core: mmvae_plus (MMVAE++), dmmvae (D-MMVAE), mmaavi, scmodal.

Forward/backward over likelihoods and 2/3 modalities, training on synthetic data (loss falls,
FOSCTTM far below random), the diagonal scenario (no train cell paired), the MMVAE++
stop-gradient, and D-MMVAE with zero adversarial weights == MMVAE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic import (
    built_module,
    fit_predict_diagonal,
    fit_predict_paired,
    gene_split,
    hidden_atac_batch,
    labels_of_test_cells,
    scenario,
    train_batch,
)

from dmmvae.constants import SPLIT, TEST, TRAIN, visible_key
from dmmvae.data.scenarios import make_scenario
from dmmvae.methods import MODELS, build_model
from dmmvae.methods.modules.likelihoods import LIKELIHOODS
from dmmvae.methods.modules.mmaavi import MMAAVI
from dmmvae.methods.modules.objectives import mutual_nearest_neighbours
from dmmvae.methods.training.batches import build_spec
from dmmvae.methods.training.model import discriminator_groups
from dmmvae.metrics import foscttm, label_transfer

VARIANTS = ["mmvae_plus", "dmmvae", "mmaavi", "scmodal"]
FAST = {"n_hidden": 32, "n_latent": 8}
#: D-MMVAE with every component of the seed's design on (the defaults switch the shared core and
#: the output discriminators off: docs/diagonal.md "Choosing D-MMVAE's settings")
SEED_DESIGN = {"shared_core": True, "output_adversarial_weight": 0.05, "cycle_weight": 1.0}


def variant_params(variant: str) -> dict:
    return {**FAST, **(SEED_DESIGN if variant == "dmmvae" else {})}
TRAIN_CFG = {"max_epochs": 30, "batch_size": 128, "kl_warmup_epochs": 5, "lr": 3e-3, "progress_bar": False}


_gene_split = gene_split


def test_variants_are_registered():
    assert set(VARIANTS) <= set(MODELS)


# --------------------------------------------------------------------------------------
# forward / backward
# --------------------------------------------------------------------------------------
def _check_forward_backward(model, sc, likelihoods, kl_weight: float = 0.5):
    spec = build_spec(sc, likelihoods)
    if isinstance(model, MMAAVI):  # discriminator groups (mosaic patterns), as MMAAVIModel.fit
        model.set_groups(*discriminator_groups(sc, model.params["discriminate"]))
    model.build(spec)
    model.train()
    batch = train_batch(sc, spec)
    out = model.training_loss(batch, kl_weight=kl_weight)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v) for v in out.terms.values())
    out.loss.backward()
    for m in spec.modalities:
        for part in (model.encoders[m], model.decoders[m]):
            grads = [p.grad for p in part.parameters() if p.requires_grad and p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), m
            assert any(g.abs().sum() > 0 for g in grads), m
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
def test_forward_backward_every_likelihood(variant, lik):
    sc = scenario(kind="mosaic")
    _check_forward_backward(build_model(variant, variant_params(variant)).module, sc, {"rna": lik})


@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
def test_mmaavi_hybrid_decoders_forward_backward_every_likelihood(lik):
    sc = scenario(kind="mosaic")
    module = build_model("mmaavi", {**FAST, "guidance_graph": True}).module
    _check_forward_backward(module, sc, {"rna": lik})
    assert module.graph.nodes.grad is not None and module.graph.nodes.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_backward_three_modalities(variant):
    sc = scenario(("rna", "atac", "adt"), kind="mosaic")
    model = build_model(variant, variant_params(variant)).module
    # kl_weight 1: past the warm-up, so dmmvae's adversaries are on
    out = _check_forward_backward(model, sc, {"adt": "nbmix"}, kl_weight=1.0)
    if variant == "dmmvae":  # both adversaries are in the loss and receive gradients
        assert {"adv_latent", "adv_output"} <= set(out.terms)
        assert model.latent_disc is not None and all(p.grad is not None for p in model.latent_disc.parameters())
    if variant == "mmaavi":
        assert model.disc is not None and "disc" in out.terms  # pattern groups of mosaic data


@pytest.mark.parametrize("variant", VARIANTS)
def test_hidden_modality_does_not_affect_the_loss(variant):
    """Masking, not imputation: the data of a hidden modality gets no gradient."""
    model, batch, x, hidden = hidden_atac_batch(variant, variant_params(variant))
    model.training_loss(batch, 1.0).loss.backward()
    assert x.grad[hidden].abs().max() == 0
    assert x.grad[batch["mask"]["atac"]].abs().max() > 0


def test_unknown_options_fail_clearly():
    with pytest.raises(ValueError, match="valid"):
        build_model("mmvae_plus", {"cross_private": "mean"})
    with pytest.raises(ValueError, match="valid"):
        build_model("scmodal", {"anchors": "cca"})
    with pytest.raises(ValueError, match="valid"):
        build_model("mmaavi", {"discriminate": "donor"})
    with pytest.raises(ValueError, match=">= 0"):
        build_model("dmmvae", {"latent_adversarial_weight": -1})


# --------------------------------------------------------------------------------------
# MMVAE++: the stop-gradient
# --------------------------------------------------------------------------------------
def test_mmvae_plus_self_reconstruction_sends_no_gradient_to_the_shared_encoder():
    model, spec, batch = built_module("mmvae_plus", FAST)
    model.train()
    torch.manual_seed(0)
    _, terms, _ = model.loss_terms(batch, 1.0)
    for m in spec.modalities:
        model.zero_grad(set_to_none=True)
        (-terms[f"recon_{m}"].sum()).backward(retain_graph=True)
        shared = [p.grad for p in model.encoders[m].parameters()]
        # exactly zero: no path (grad None) or an all-zero gradient
        assert all(g is None or g.abs().max() == 0 for g in shared), m
        # ...while the private encoder and the decoder of m do learn from it
        assert any(g is not None and g.abs().sum() > 0 for g in (p.grad for p in model.private_encoders[m].parameters()))
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoders[m].parameters())
    # cross-modal terms DO reach the shared encoder of their source
    model.zero_grad(set_to_none=True)
    (-terms["cross_rna_to_atac"].sum()).backward(retain_graph=True)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders["rna"].parameters())
    # and without the stop-gradient (ablation) the self term reaches it
    plain = build_model("mmvae_plus", {**FAST, "detach_self_shared": False}).module
    plain.build(spec)
    plain.train()
    _, t2, _ = plain.loss_terms(batch, 1.0)
    (-t2["recon_rna"].sum()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in plain.encoders["rna"].parameters())


# --------------------------------------------------------------------------------------
# D-MMVAE: zero weights == MMVAE
# --------------------------------------------------------------------------------------
#: D-MMVAE without its additions: separate encoders/decoders, no adversary, cycle or anchor
MMVAE_EQUIVALENT = {"shared_core": False, "latent_adversarial_weight": 0,
                    "output_adversarial_weight": 0, "cycle_weight": 0, "anchor_weight": 0}


def test_dmmvae_with_zero_weights_is_mmvae_exactly():
    sc = scenario()
    cfg = {**TRAIN_CFG, "max_epochs": 4}
    ref = build_model("mmvae", FAST)
    h_ref = ref.fit(sc, seed=3, training=cfg)
    zero = build_model("dmmvae", {**FAST, **MMVAE_EQUIVALENT})
    h_zero = zero.fit(sc, seed=3, training=cfg)
    cols = [c for c in h_ref.columns if c != "seconds"]
    assert cols == [c for c in h_zero.columns if c != "seconds"]
    # same code path, same random draws; only float summation order in multi-threaded CPU
    # kernels may differ between two runs (~1e-7 relative), so compare at 1e-5
    np.testing.assert_allclose(h_ref[cols].to_numpy(), h_zero[cols].to_numpy(), rtol=1e-5, atol=1e-5)
    p_ref, p_zero = ref.predict(sc), zero.predict(sc)
    for k in p_ref.embeddings:
        np.testing.assert_allclose(p_ref.embeddings[k], p_zero.embeddings[k], rtol=1e-4, atol=1e-5)
    # the seed's design (shared core, adversaries once the KL warm-up is over) changes training and
    # log the adversarial terms from the first epoch at full KL weight on; on diagonal data
    # (the output discriminators need cells that lack a modality)
    diag = scenario(kind="diagonal")
    # the synthetic modalities share no linked feature: the linked anchors off on purpose
    # (otherwise the run stops with MissingLinksError, tested in test_diagonal_controls.py)
    h_adv = build_model("dmmvae", {**FAST, **SEED_DESIGN, "anchor_weight": 0}).fit(
        diag, seed=3, training={**cfg, "kl_warmup_epochs": 2}
    )
    h_mm = build_model("mmvae", FAST).fit(diag, seed=3, training={**cfg, "kl_warmup_epochs": 2})
    assert {"train_adv_latent", "train_adv_output", "train_disc_loss"} <= set(h_adv.columns)
    assert h_adv["train_adv_latent"].iloc[:2].isna().all()  # off during the warm-up
    assert h_adv["train_adv_latent"].iloc[2:].notna().all()
    assert not np.allclose(h_adv["train_loss"], h_mm["train_loss"], rtol=1e-3)


def test_dmmvae_shared_core_is_one_module_for_every_modality():
    sc = scenario(("rna", "atac", "adt"), kind="mosaic")
    model = build_model("dmmvae", {**FAST, **SEED_DESIGN}).module
    model.build(build_spec(sc))
    cores = {id(model.encoders[m].core) for m in model.modalities}
    assert cores == {id(model.core_encoder)}
    assert {id(model.decoders[m].core) for m in model.modalities} == {id(model.core_decoder)}
    experts = {id(model.encoders[m].expert) for m in model.modalities}
    assert len(experts) == 3  # one expert encoder per modality


def test_dmmvae_output_discriminators_see_virtual_cells_from_the_other_modality():
    """On diagonal data the fakes of modality d are cross-generated from the cells that do
    NOT show d (seed step 4), sampled from the likelihood: real-valued log-normalised views
    of integer count draws, with the gradient of the decoded mean (straight-through)."""
    sc = scenario(kind="diagonal")
    spec = build_spec(sc)
    model = build_model("dmmvae", {**FAST, **SEED_DESIGN}).module
    model.build(spec)
    model.train()
    batch = train_batch(sc, spec)
    masks = batch["mask"]
    assert not (masks["rna"] & masks["atac"]).any()
    assert "disc_inputs" not in model.training_loss(batch, 0.5).updates  # still warming up
    real, fake = model.training_loss(batch, 1.0).updates["disc_inputs"]["output"]
    assert len(fake["rna"]) == int(masks["atac"].sum())  # RNA fakes come from ATAC cells
    assert len(fake["atac"]) == int(masks["rna"].sum())
    assert len(real["rna"]) == int(masks["rna"].sum())
    # the RNA fakes are draws: back on the count scale they are (near) integers, unlike means
    counts = torch.expm1(fake["rna"])  # view = log1p(1e4 x / sum x)
    assert (counts > 0).float().mean() < 0.99  # zeros occur in draws, never in NB means


def test_dmmvae_loss_is_pure_and_its_state_lives_in_the_training_layer():
    """``loss`` writes nothing: called twice on one batch with one training state it gives the
    same value and leaves the module's parameters and the state as they were; the training step
    hands what the loss returned (the reconstruction scale, the codes the global anchors
    remember) to the training layer's state and feeds the discriminators the loss's detached
    inputs. A fit leaves no cross-step state on the module."""
    from dmmvae.methods.training.loop import StepContext
    from dmmvae.methods.training.state import TrainingState

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    m = build_model("dmmvae", {**FAST, **SEED_DESIGN, "anchor_space": "cca",
                               "anchor_scope": "global"})
    m.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    module = m.module
    assert not any(isinstance(v, TrainingState) for v in vars(module).values())
    module.train()
    spec = build_spec(sc)
    batch = train_batch(sc, spec)
    optimizers = module.configure_optimizers({**TRAIN_CFG, "lr": 1e-3, "weight_decay": 0.0})
    state = TrainingState(sc.n_obs)
    module.train_step(batch, 1.0, optimizers, StepContext(torch.device("cpu")), state)
    rows = batch["index"][batch["mask"]["genes_a"]]
    assert state.recon_scale is not None and state.filled["genes_a"][rows].all()
    assert not state.filled["genes_a"][~torch.isin(torch.arange(sc.n_obs), batch["index"])].any()

    def snapshot():
        codes = {k: v.clone() for k, v in state.codes.items()}
        return state.recon_scale, codes, {k: v.clone() for k, v in module.state_dict().items()}

    torch.manual_seed(0)
    before = snapshot()
    first = module.training_loss(batch, 1.0, state)
    torch.manual_seed(0)
    second = module.training_loss(batch, 1.0, state)
    after = snapshot()
    assert first.loss.item() == second.loss.item()
    assert "anchors" in first.terms  # the global anchors read the remembered codes
    assert before[0] == after[0]
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])
    assert set(first.updates) == {"recon_scale", "codes", "disc_inputs"}

    terms = module.train_step(batch, 1.0, optimizers, StepContext(torch.device("cpu")), state)
    assert "disc_loss" in terms
    assert state.recon_scale != before[0]


def test_dmmvae_latent_adversary_makes_modalities_harder_to_tell_apart():
    """With a strong latent adversary the discriminator's cross-entropy is pushed towards
    log 2 (it cannot tell RNA codes from ATAC codes); with a negligible weight the same
    discriminator tells them apart much better (lower cross-entropy)."""
    sc = scenario(kind="diagonal", n_cells=400)
    cfg = {**TRAIN_CFG, "max_epochs": 15, "early_stopping_patience": 0}
    losses = {}
    for w in (1e-4, 2.0):
        m = build_model("dmmvae", {**FAST, "shared_core": False, "latent_adversarial_weight": w,
                                   "output_adversarial_weight": 0, "disc_steps": 1,
                                   "anchor_weight": 0})  # no linked feature: no anchors
        h = m.fit(sc, seed=0, training=cfg)
        losses[w] = h["train_disc_loss"].iloc[-5:].mean()
    assert losses[2.0] > losses[1e-4] + 0.04, losses
    assert losses[2.0] > 0.5  # log 2 = 0.69 at perfect confusion


def test_dmmvae_adversary_order_before_updates_the_discriminator_first_and_still_confuses_it():
    """``adversary_order: before`` (scglue's order): the discriminator steps on a fresh forward
    pass of the batch before the VAE step, so the VAE step plays against the discriminator
    already updated (``after``: against the one of the previous step, updated after it); a
    strong adversary still drives the discriminator towards confusion, a weak one does not."""
    from dmmvae.methods.training.loop import StepContext
    from dmmvae.methods.training.state import TrainingState

    seen = {}
    for order in ("after", "before"):
        module, _, batch = built_module("dmmvae", {**FAST, "anchor_weight": 0, "disc_steps": 1,
                                                   "latent_adversarial_weight": 0.01,
                                                   "adversary_order": order}, kind="diagonal")
        module.train()
        start = {k: v.clone() for k, v in module.latent_disc.state_dict().items()}
        main_step = module.main_step

        def spy(*args, _m=module, _start=start, _order=order, _main=main_step, **kw):
            now = _m.latent_disc.state_dict()
            seen[_order] = any(not torch.equal(now[k], _start[k]) for k in _start)
            return _main(*args, **kw)

        module.main_step = spy
        optimizers = module.configure_optimizers({**TRAIN_CFG, "lr": 1e-2, "weight_decay": 0.0})
        terms = module.train_step(batch, 1.0, optimizers, StepContext(torch.device("cpu")),
                                  TrainingState(10_000))
        assert "disc_loss" in terms
        after = module.latent_disc.state_dict()
        assert any(not torch.equal(after[k], start[k]) for k in start)  # updated either way
    assert seen == {"after": False, "before": True}
    with pytest.raises(ValueError, match="adversary_order"):
        build_model("dmmvae", {"adversary_order": "first"})

    sc = scenario(kind="diagonal", n_cells=400)
    cfg = {**TRAIN_CFG, "max_epochs": 15, "early_stopping_patience": 0}
    losses = {}
    for w in (1e-4, 2.0):
        m = build_model("dmmvae", {**FAST, "latent_adversarial_weight": w, "disc_steps": 1,
                                   "anchor_weight": 0, "adversary_order": "before"})
        h = m.fit(sc, seed=0, training=cfg)
        assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
        losses[w] = h["train_disc_loss"].iloc[-5:].mean()
    assert losses[2.0] > losses[1e-4] + 0.04, losses


def test_dmmvae_align_burnin_noises_the_latent_discriminator_and_delays_kept_weights():
    """GLUE's burn-in (``align_burnin``): the latent discriminator's input carries noise 1.5 at
    the first adversarial epoch, fading linearly to 0; while it does, the discriminator tells
    the modalities apart worse, and the loop keeps no weights and counts no patience."""
    from dmmvae.methods.training.state import TrainingState

    module, _, _ = built_module("dmmvae", {**FAST, "align_burnin": 4, "anchor_weight": 0})
    noise = [module.burnin_noise(TrainingState(10, warmup_epochs=5, epoch=e)) for e in (5, 7, 9, 20)]
    assert noise == [1.5, 0.75, 0.0, 0.0]
    assert module.burnin_epochs == 4
    off, _, _ = built_module("dmmvae", {**FAST, "align_burnin": 4, "latent_adversarial_weight": 0})
    assert off.burnin_epochs == 0  # no latent adversary, nothing to burn in
    with pytest.raises(ValueError, match="align_burnin"):
        build_model("dmmvae", {"align_burnin": -1})

    sc = scenario(kind="diagonal", n_cells=400)
    cfg = {**TRAIN_CFG, "max_epochs": 14, "early_stopping_patience": 1}
    runs = {}
    for burnin in (0, 8):
        m = build_model("dmmvae", {**FAST, "latent_adversarial_weight": 1e-4, "disc_steps": 1,
                                   "anchor_weight": 0, "align_burnin": burnin})
        runs[burnin] = (m.fit(sc, seed=0, training=cfg), m.train_info)
    hist, info = runs[8]
    assert info["best_epoch"] >= 5 + 8 and info["epochs_run"] >= 14  # no stop within the burn-in
    burning = hist["epoch"].between(5, 10)  # adversarial epochs, noise 1.5 -> 0.56 with the burn-in
    noisy = hist.loc[burning, "train_disc_loss"].mean()
    clean = runs[0][0].loc[burning, "train_disc_loss"].mean()
    assert noisy > clean + 0.04, (noisy, clean)  # cross-entropy: log 2 = 0.69 at confusion


def test_dmmvae_burnin_noise_scale_batch_std_scales_the_noise_to_each_code_dimension():
    """``burnin_noise_scale: batch_std`` (GLUE's: N(0, the batch's sd of each code dimension)):
    a dimension the codes do not spread gets no noise and a wide one proportionally more,
    where ``unit`` (N(0, 1)) noises every dimension alike; an unknown value is refused."""
    from dmmvae.constants import BATCH_KEYS
    from dmmvae.methods.modules.objectives import Gaussian

    spread = torch.tensor([0.0, 0.1, 10.0, 3.0, 1.0, 1.0, 1.0, 1.0])  # FAST: 8 dimensions
    got = {}
    for how in ("unit", "batch_std"):
        module, _, batch = built_module("dmmvae", {**FAST, "anchor_weight": 0,
                                                   "burnin_noise_scale": how}, kind="diagonal")
        torch.manual_seed(0)
        n = len(batch[BATCH_KEYS.INDEX])
        d = module.latent_dim
        qz = {m: Gaussian(torch.randn(n, d) * spread, torch.zeros(n, d)) for m in module.modalities}
        z0 = torch.cat([qz[m].mu[batch[BATCH_KEYS.MASK][m]] for m in module.modalities])
        _, _, inputs = module._generator_terms(batch, qz, 1.0, noise=1.5)
        z, _ = inputs["latent"]
        got[how] = (z - z0).std(0) / 1.5
    np.testing.assert_allclose(got["unit"], 1.0, atol=0.25)
    assert got["batch_std"][0] == 0 and got["batch_std"][1] < 0.2
    np.testing.assert_allclose(got["batch_std"][2:], spread[2:], rtol=0.35)
    with pytest.raises(ValueError, match="burnin_noise_scale"):
        build_model("dmmvae", {"burnin_noise_scale": "huge"})


def test_dmmvae_aligns_unpaired_modalities_through_anchors_and_beats_no_anchors():
    """Issue 12's setting on the synthetic gene split: no train cell paired, 100 genes linked
    by name. The anchor term (linked features) aligns the modalities; without it D-MMVAE
    falls back to the adversaries alone and is far worse."""
    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    labels = labels_of_test_cells(sc)
    scores = {}
    for w in (1.0, 0.0):
        model = build_model("dmmvae", {"n_hidden": 64, "anchor_weight": w})
        hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
        assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
        p = model.predict(sc)
        scores[w] = foscttm(p.embeddings["genes_a"], p.embeddings["genes_b"])
        if w > 0:
            assert "100 linked features" in p.info["anchors"]["genes_a+genes_b"]
            assert "validation_anchors" in hist  # model selection sees alignment
            lt = label_transfer(p.embeddings["genes_a"], p.embeddings["genes_b"], labels)
            assert lt["acc_mean"] > 0.45, lt  # random control: 0.24
    assert scores[1.0] < 0.15, scores
    assert scores[1.0] < scores[0.0] - 0.2, scores


# --------------------------------------------------------------------------------------
# training on synthetic data
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_training_on_paired_synthetic_data(variant):
    sc, hist, p, s = fit_predict_paired(variant, TRAIN_CFG)
    first, last = hist["train_loss"].iloc[0], hist["train_loss"].iloc[-1]
    assert last < first - 0.2 * abs(first), (first, last)
    n_test = int((sc.obs[SPLIT] == TEST).sum())
    assert p.embeddings["rna"].shape[0] == n_test
    fos, rnd = s["foscttm"], s["random_foscttm"]
    assert 0.4 < rnd < 0.6
    assert fos < 0.3, f"{variant}: FOSCTTM {fos:.3f} (random {rnd:.3f})"
    assert s["label_transfer"] > 0.4
    pred = p.imputations[("atac", "rna")]
    assert np.isfinite(pred).all() and pred.min() >= 0
    assert s["rna_pearson"] > 0.3
    gen = p.generated["atac"]
    assert gen.shape == (n_test, sc.mod["atac"].n_vars) and np.isfinite(gen).all()
    if variant == "mmvae_plus":
        assert p.info["shared_dims"] == list(range(p.embeddings["rna"].shape[1]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_diagonal_scenario_trains_and_predicts(variant):
    # the synthetic modalities share no linked feature: D-MMVAE's and scMODAL's linked anchors
    # off on purpose (on by default they stop with MissingLinksError, tested below)
    params = {**FAST, **{"dmmvae": {"anchor_weight": 0}, "scmodal": {"anchors": "none"}}.get(variant, {})}
    p = fit_predict_diagonal(variant, params, {**TRAIN_CFG, "max_epochs": 10})
    if variant == "mmvae_plus":
        # documented limitation: without paired cells the shared latent gets only its KL
        # gradient and collapses towards the prior (tiny spread of the embeddings)
        assert p.embeddings["rna"].std(0).max() < 0.2


def test_scmodal_aligns_unpaired_modalities_through_linked_features():
    """The natural diagonal baseline: no train cell paired; 100 genes measured in both
    'modalities' are linked by name and anchor the alignment (mutual nearest neighbours)."""
    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    train = sc.obs[SPLIT].to_numpy() == TRAIN
    assert not (sc.obs[visible_key("genes_a")] & sc.obs[visible_key("genes_b")]).to_numpy()[train].any()
    labels = labels_of_test_cells(sc)
    scores = {}
    for anchors in ("features", "none"):
        model = build_model("scmodal", {"n_hidden": 64, "anchors": anchors})
        model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
        p = model.predict(sc)
        scores[anchors] = foscttm(p.embeddings["genes_a"], p.embeddings["genes_b"])
        if anchors == "features":
            assert "100 linked features" in p.info["anchors"]["genes_a+genes_b"]
            lt = label_transfer(p.embeddings["genes_a"], p.embeddings["genes_b"], labels)
            assert lt["acc_mean"] > 0.6
    assert scores["features"] < 0.1, scores
    assert scores["features"] < scores["none"] - 0.2, scores


def test_mutual_nearest_neighbours_are_mutual():
    torch.manual_seed(0)
    a = torch.randn(20, 5)
    b = a[torch.randperm(20)] + 0.01 * torch.randn(20, 5)
    s = mutual_nearest_neighbours(a, b, 1)
    # with k = 1 on a noisy permutation, the MNN pairs recover the permutation
    assert s.sum() == 20 and (s.sum(0) == 1).all() and (s.sum(1) == 1).all()
    for i, j in s.nonzero().tolist():
        assert torch.allclose(a[i], b[j], atol=0.1)


def test_mmaavi_mosaic_uses_pattern_discriminator_and_checkpoint_roundtrip(tmp_path):
    sc = scenario(("rna", "atac", "adt"), kind="mosaic")
    model = build_model("mmaavi", FAST)
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 5})
    assert "train_disc" in hist.columns
    assert set(model.train_info["discriminator_groups"]) == {"rna", "atac", "adt", "rna+atac+adt"}
    p = model.predict(sc)
    assert len(p.imputations) == 6
    path = tmp_path / "model.pt"
    model.save(path)
    again = type(model).load(path)
    q = again.predict(sc)
    np.testing.assert_allclose(q.embeddings["rna"], p.embeddings["rna"], rtol=1e-5, atol=1e-5)


def test_mmaavi_guidance_graph_aligns_unpaired_modalities_and_beats_no_graph(tmp_path):
    """mmAAVI's guidance graph and hybrid decoders on the diagonal gene split (100 genes
    linked by name, no train cell paired): linked features share their embeddings, so the two
    modalities must take the same codes; without the graph mmAAVI stays near chance."""
    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    labels = labels_of_test_cells(sc)
    scores, accs = {}, {}
    for graph in (True, False):
        model = build_model("mmaavi", {"n_hidden": 64, "guidance_graph": graph})
        hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
        assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
        p = model.predict(sc)
        scores[graph] = foscttm(p.embeddings["genes_a"], p.embeddings["genes_b"])
        accs[graph] = label_transfer(p.embeddings["genes_a"], p.embeddings["genes_b"],
                                     labels)["acc_mean"]
        if graph:
            g = model.module.graph
            assert g.n_links == 100 and "train_graph" in hist.columns
            model.save(tmp_path / "model.pt")   # the graph is rebuilt from the saved links
            q = type(model).load(tmp_path / "model.pt").predict(sc)
            np.testing.assert_allclose(q.imputations[("genes_a", "genes_b")],
                                       p.imputations[("genes_a", "genes_b")], rtol=1e-4)
    assert scores[True] < 0.3, scores          # measured 0.21 (no graph 0.59)
    assert scores[True] < scores[False] - 0.2, scores
    assert accs[True] > accs[False] + 0.1, accs


def test_feature_graph_shares_embeddings_of_linked_features_only():
    sc = _gene_split()
    spec = build_spec(sc, {})
    from dmmvae.methods.modules.graph import FeatureGraph

    torch.manual_seed(0)
    g = FeatureGraph(spec, 8)
    v = g.embeddings().detach()
    la, lb, _ = spec.link("genes_a", "genes_b")
    a, b = g.of("genes_a", v), g.of("genes_b", v)
    linked = torch.nn.functional.cosine_similarity(a[la], b[lb]).mean()
    other = torch.nn.functional.cosine_similarity(a[la], b[np.roll(lb, 7)]).mean()
    assert linked > 0.6 and abs(other) < 0.2, (linked, other)
    assert g.loss(1).item() > 0


def test_feature_graph_glue_sampling_draws_scglues_pairs_and_pulls_links_together():
    """``graph_sampling: glue`` (scglue's graph loader): positives are every link both ways and
    every self-loop; each positive's negatives keep its source and draw the target by link
    degree (unlinked features never, linked pairs never); ``uniform`` keeps the links once with
    uniform node pairs. Minimising the term pulls linked embeddings together far more than
    unlinked ones."""
    from dmmvae.methods.modules.graph import FeatureGraph

    sc = _gene_split()
    spec = build_spec(sc, {})
    torch.manual_seed(0)
    g = FeatureGraph(spec, 8)
    (i, j), (ni, nj) = g.pairs(10, "glue")
    n, links = g.n_nodes, g.n_links
    assert i.numel() == 2 * links + n and int((i == j).sum()) == n
    pos = set(zip(g.pos[0].tolist(), g.pos[1].tolist(), strict=True))
    pos |= {(b, a) for a, b in pos}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == pos | {(k, k) for k in range(n)}
    degree = np.bincount(g.pos.flatten().numpy(), minlength=n)
    assert (degree[nj.numpy()] > 0).all()  # only linked features are drawn as targets
    assert not (set(zip(ni.tolist(), nj.tolist(), strict=True)) & pos)
    assert ni.numel() > 0.8 * 10 * i.numel()  # rejections are few
    assert set(ni.unique().tolist()) <= set(i.unique().tolist())
    (_, _), (ui, uj) = g.pairs(1, "uniform")
    assert ui.numel() == links
    with pytest.raises(ValueError, match="graph_sampling"):
        build_model("dmmvae", {"graph_sampling": "degree"})

    opt = torch.optim.Adam(g.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        g.loss(10, "glue").backward()
        opt.step()
    v = g.embeddings().detach()
    la, lb, _ = spec.link("genes_a", "genes_b")
    a, b = g.of("genes_a", v), g.of("genes_b", v)
    linked = (a[la] * b[lb]).sum(-1).mean()
    other = (a[la] * b[np.roll(lb, 7)]).sum(-1).mean()
    assert linked > other + 1.0, (linked, other)


def test_feature_graph_batches_give_each_step_a_share_of_the_pairs_with_the_same_expected_loss():
    """``graph_batches: b`` (scglue's ``GRAPH_BATCHES``): a step's graph term sees ``ceil(P/b)``
    of the ``P`` positive pairs, drawn from them with replacement, each with its negatives as
    before; averaged over steps it is the term over every pair (an unbiased share), one step at
    a time it varies. A value below 1 or not an integer is refused, naming scglue's."""
    from dmmvae.methods.modules.graph import FeatureGraph

    spec = build_spec(_gene_split(), {})
    torch.manual_seed(0)
    g = FeatureGraph(spec, 8)
    full_pos = g.pairs(10, "glue")[0]
    pos = set(zip(full_pos[0].tolist(), full_pos[1].tolist(), strict=True))
    for sampling, k in (("glue", 10), ("uniform", 3)):
        (i, j), (ni, nj) = g.pairs(k, sampling, 32)
        every = g.pairs(k, sampling)[0].shape[1]
        assert i.numel() == -(-every // 32) and every >= 32
        assert set(zip(i.tolist(), j.tolist(), strict=True)) <= pos
        assert ni.numel() > 0.8 * k * i.numel() and ni.numel() <= k * i.numel()
        with torch.no_grad():
            whole = torch.stack([g.loss(k, sampling) for _ in range(100)])
            share = torch.stack([g.loss(k, sampling, 32) for _ in range(1000)])
        se = (share.std() / 1000 ** 0.5 + whole.std() / 100 ** 0.5).item()
        assert abs(share.mean() - whole.mean()).item() < 4 * se + 1e-4, (sampling, share.mean(),
                                                                         whole.mean(), se)
        assert share.std() > 3 * whole.std(), sampling  # a share is a noisier estimate
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="graph_batches must be an integer >= 1.*32"):
            build_model("dmmvae", {"guidance_graph": True, "graph_batches": bad})


def test_a_training_step_decodes_every_modality_and_scores_the_graph_from_one_draw_of_v():
    """``graph_decoder: glue``: one training loss draws the variational feature embeddings once
    (scglue's ``vsamp``), shared by every decoder call and the graph term; outside a step each
    use draws afresh, and in evaluation the shared ``V`` is the posterior mean."""
    from dmmvae.methods.modules.graph import FeatureGraph

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    module = build_model("dmmvae", {**FAST, "guidance_graph": True, "graph_decoder": "glue",
                                    "graph_sampling": "glue", "anchor_weight": 0.0}).module
    spec = build_spec(sc)
    module.build(spec)
    module.train()
    graph = module.graph
    draws, uses = [], []
    posterior, of = graph.posterior, graph.of

    def counted_posterior():
        draws.append(1)
        return posterior()

    def recorded_of(m, v=None):
        out = of(m, v)
        uses.append((m, out))
        return out

    graph.posterior, graph.of = counted_posterior, recorded_of
    out = module.training_loss(train_batch(sc, spec), 1.0)
    assert len(draws) == 1 and "graph" in out.terms
    assert {m for m, _ in uses} == set(spec.modalities)  # both decoders ran, from the one draw
    for m, v in uses:  # every decoder saw the same V: the slice of the one draw
        same = [w for n, w in uses if n == m]
        assert all(torch.equal(v, w) for w in same)
    out.loss.backward()
    assert graph.nodes.grad is not None and graph.nodes.grad.abs().sum() > 0
    draws.clear()
    assert not torch.equal(graph.embeddings(), graph.embeddings()) and len(draws) == 2
    module.eval()
    with graph.shared():
        torch.testing.assert_close(graph.embeddings(), posterior()[0])
    assert graph._shared is None and isinstance(graph, FeatureGraph)


def test_feature_graph_scglue_normalisation_and_zero_start_still_align_the_gene_split():
    """``graph_norm: target`` weighs an edge by 1 / sqrt of its target's degree only (scglue's
    ``keepvar``: the squared weights into each node sum to 1, where ``symmetric``'s do not on
    nodes with neighbours of another degree); ``graph_init: zero`` starts every node vector at
    zero, so the embeddings are learnt from the decoders alone at first. Built that way, the
    guidance graph still aligns the never-paired gene split (mmAAVI, as the test above)."""
    from dmmvae.methods.modules.graph import FeatureGraph

    spec = build_spec(_gene_split(), {})
    sums = {}
    for norm in ("symmetric", "target"):
        g = FeatureGraph(spec, 8, norm=norm, init="zero")
        assert not g.nodes.detach().any() and not g.embeddings().detach().any()
        sums[norm] = torch.zeros(g.n_nodes).index_add_(0, g.rows, g.w.pow(2))
    torch.testing.assert_close(sums["target"], torch.ones_like(sums["target"]))
    assert (sums["symmetric"] - 1).abs().max() > 0.05
    with pytest.raises(ValueError, match="graph_norm"):
        build_model("mmaavi", {"guidance_graph": True, "graph_norm": "in"})

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    model = build_model("mmaavi", {"n_hidden": 64, "guidance_graph": True,
                                   "graph_norm": "target", "graph_init": "zero"})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert model.module.graph.nodes.detach().abs().sum() > 0  # learnt from zero
    p = model.predict(sc)
    score = foscttm(p.embeddings["genes_a"], p.embeddings["genes_b"])
    assert score < 0.3, score


def test_dmmvae_global_anchors_are_train_only_mutual_pairs_and_align_the_gene_split():
    """``anchor_scope: global``: Seurat's anchors among ALL train cells in the linked-gene CCA
    space (found once), the partners' codes from a memory of the latest codes. The pairs join
    a train cell that shows only ``a`` to one that shows only ``b``, each among the other's
    ``n_knn`` nearest neighbours; the term aligns the never-paired gene split."""
    from sklearn.neighbors import NearestNeighbors

    from dmmvae.constants import visible_key
    from dmmvae.methods.anchors import cca_anchor_space, global_anchor_pairs

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    spaces, _ = cca_anchor_space(sc)
    assert next(iter(spaces.values()))[0].shape[1] == 20  # Seurat's dims 1:20 by default
    assert next(iter(cca_anchor_space(sc, n_components=5)[0].values()))[1].shape[1] == 5
    pairs, scores = global_anchor_pairs(sc, spaces, 5)
    assert scores == {}  # scores only with k_score
    (a, b), ij = next(iter(pairs.items()))
    assert len(ij) > 100
    train = (sc.obs[SPLIT] == "train").to_numpy()
    va, vb = (sc.obs[visible_key(m)].to_numpy(bool) for m in (a, b))
    assert train[ij[:, 0]].all() and train[ij[:, 1]].all()
    assert (va[ij[:, 0]] & ~vb[ij[:, 0]]).all() and (vb[ij[:, 1]] & ~va[ij[:, 1]]).all()
    # mutual: j among i's 5 nearest b-only cells (cosine) and i among j's
    ra, rb = np.flatnonzero(train & va & ~vb), np.flatnonzero(train & vb & ~va)
    ua, ub = (c[r] / np.linalg.norm(c[r], axis=1, keepdims=True)
              for c, r in zip(spaces[(a, b)], (ra, rb), strict=True))
    nab = NearestNeighbors(n_neighbors=5).fit(ub).kneighbors(ua)[1]
    i, j = ij[7]
    assert np.flatnonzero(rb == j)[0] in nab[np.flatnonzero(ra == i)[0]]

    labels = labels_of_test_cells(sc)
    model = build_model("dmmvae", {"n_hidden": 64, "anchor_space": "cca", "anchor_scope": "global"})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
    assert hist["train_anchors"].iloc[-1] < hist["train_anchors"].iloc[1]  # the term is optimised
    p = model.predict(sc)
    assert "global anchors" in p.info["anchors"][f"{a}+{b}"]
    score = foscttm(p.embeddings[a], p.embeddings[b])
    print(f"global anchors on the gene split: FOSCTTM {score:.3f}")
    assert score < 0.1, score  # random control ~0.5; measured 0.023
    assert label_transfer(p.embeddings[a], p.embeddings[b], labels)["acc_mean"] > 0.45  # random 0.24


def test_seurat_anchor_scores_rank_consistent_anchors_above_wrong_ones():
    """Seurat's score: an anchor whose two cells share neighbourhoods (same cluster, in both
    data sets) scores high; one joining two clusters scores low; scores lie in [0, 1]."""
    from dmmvae.methods.anchors import seurat_anchor_scores

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5, size=(4, 5))
    lab_a, lab_b = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    ua = centres[lab_a] + rng.normal(size=(300, 5))
    ub = centres[lab_b] + rng.normal(size=(300, 5))
    good = np.array([(i, rng.choice(np.flatnonzero(lab_b == lab_a[i]))) for i in range(100)])
    bad = np.array([(i, rng.choice(np.flatnonzero(lab_b != lab_a[i]))) for i in range(100, 200)])
    scores = seurat_anchor_scores(ua, ub, np.vstack([good, bad]), k_score=30)
    assert scores.min() >= 0 and scores.max() <= 1
    assert scores[:100].mean() > 0.5 > 0.1 > scores[100:].mean(), (scores[:100].mean(), scores[100:].mean())


def test_dmmvae_scored_global_anchors_weight_the_term():
    """``anchor_scoring``: the pairs come with Seurat's scores, which the model stores per
    partner as the weight of its distance in the anchor term."""
    from dmmvae.methods.anchors import cca_anchor_space, global_anchor_pairs

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    spaces, _ = cca_anchor_space(sc)
    pairs, scores = global_anchor_pairs(sc, spaces, 5, k_score=30)
    assert pairs.keys() == scores.keys()
    (a, b), w = next(iter(scores.items()))
    assert len(w) == len(pairs[(a, b)]) and 0 <= w.min() and w.max() == 1 and (w < 1).any()
    model = build_model("dmmvae", {"n_hidden": 64, "anchor_space": "cca", "anchor_scope": "global",
                                   "anchor_scoring": True})
    model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 2})
    table, wtable = model.module._partners[(a, b)], model.module._partner_weights[(a, b)]
    i, j = pairs[(a, b)][int(np.argmin(w))]
    slot = int(np.flatnonzero(table[i].cpu().numpy() == j)[0])
    assert float(wtable[i, slot]) == pytest.approx(float(w.min()))
    assert "Seurat-scored" in model.predict(sc).info["anchors"][f"{a}+{b}"]


def test_dmmvae_anchor_refresh_adds_latent_mutual_neighbours_to_the_global_anchors():
    """``anchor_refresh``: after the warm-up the anchors become those found before training
    plus mutual nearest neighbours of the remembered codes; every added pair joins a train cell
    showing only ``a`` to one showing only ``b``, the original pairs all stay, and the added
    pairs join cells of the same type far more often than chance."""
    from dmmvae.constants import LABEL

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    model = build_model("dmmvae", {"n_hidden": 64, "anchor_space": "cca", "anchor_scope": "global",
                                   "anchor_refresh": 5})
    model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 12, "kl_warmup_epochs": 5,
                                    "early_stopping_patience": 0})
    module = model.module
    (a, b), (ij0, _) = next(iter(module._initial_pairs.items()))
    assert module.refreshed[f"{a}+{b}"] > 50
    table = module._partners[(a, b)].cpu().numpy()
    pairs = {(i, int(j)) for i, row in enumerate(table) for j in row if j >= 0}
    initial = {(int(i), int(j)) for i, j in ij0}
    assert initial <= pairs  # mutual n_knn pairs: at most n_knn per cell, kept in the first slots
    added = np.array(sorted(pairs - initial))
    assert len(added) > 50
    train = (sc.obs[SPLIT] == "train").to_numpy()
    va, vb = (sc.obs[visible_key(m)].to_numpy(bool) for m in (a, b))
    assert train[added[:, 0]].all() and train[added[:, 1]].all()
    assert (va[added[:, 0]] & ~vb[added[:, 0]]).all() and (vb[added[:, 1]] & ~va[added[:, 1]]).all()
    lab = sc.obs[LABEL].astype(str).to_numpy()
    same = float((lab[added[:, 0]] == lab[added[:, 1]]).mean())
    freq = sc.obs[LABEL][train].value_counts(normalize=True)
    chance = float((freq**2).sum())
    print(f"refreshed anchors: {len(added)} added, same type {same:.2f} (chance {chance:.2f})")
    assert same > chance + 0.3, (same, chance)
    with pytest.raises(ValueError, match="anchor_refresh"):
        build_model("dmmvae", {"anchor_refresh": 5})


def test_dmmvae_global_anchors_need_the_cca_space():
    with pytest.raises(ValueError, match="anchor_space: cca"):
        build_model("dmmvae", {"anchor_scope": "global", "anchor_space": "features"})
    with pytest.raises(ValueError, match="unknown anchor_scope"):
        build_model("dmmvae", {"anchor_scope": "everywhere"})
    with pytest.raises(ValueError, match="set anchor_scope: global"):
        build_model("dmmvae", {"anchor_space": "gw"})
    with pytest.raises(ValueError, match="anchor_scoring"):
        build_model("dmmvae", {"anchor_scoring": True})


def _paired_atac_beats_random(model, sc, what: str):
    """The fitted model's test-cell predictions on the paired scenario ``sc``, after checking
    that its ATAC embedding places test cells nearer their own RNA cell than ``random`` does."""
    pred = model.predict(sc)
    test = (sc.obs[SPLIT] == TEST).to_numpy()
    rand = build_model("random")
    rand.fit(sc, seed=0)
    f_model = foscttm(pred.embeddings["rna"], pred.embeddings["atac"])
    f_rand = foscttm(rand.predict(sc).embeddings["rna"], rand.predict(sc).embeddings["atac"])
    print(f"{what} input: FOSCTTM {f_model:.3f} vs random {f_rand:.3f} on {test.sum()} test cells")
    assert f_model < f_rand - 0.1
    return pred


def _trains_aligns_and_reloads(model, hist, sc, what: str, path) -> None:
    """The fit's loss fell, its embeddings beat ``random`` on the paired scenario ``sc``, and
    a checkpoint saved to ``path`` predicts the same embeddings."""
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    pred = _paired_atac_beats_random(model, sc, what)
    model.save(str(path))
    again = type(model).load(str(path)).predict(sc)
    for m in ("rna", "atac"):
        np.testing.assert_array_equal(again.embeddings[m], pred.embeddings[m])


def test_dmmvae_atac_lsi_input_is_the_preprocessing_lsi_and_survives_a_checkpoint(tmp_path):
    """``atac_input: lsi``: the ATAC encoder reads the LSI of preprocessing, computed from the
    batch's peaks with the train IDF and loadings; on every cell (test cells too, which the
    fit never read) it equals ``obsm["X_lsi"]``; the model trains (loss falls), its ATAC
    embedding (paired scenario) places test cells nearer their own RNA cell than the random
    control does, and a
    checkpoint predicts the same. ``lsi+peaks`` reads both; a file without an LSI, or whose
    LSI is not that projection, stops with the fix."""
    from dmmvae.constants import LSI
    from dmmvae.io import InputError
    from dmmvae.methods.modules.dmmvae import LSIInput

    sc = scenario(kind="paired", n_cells=600)
    model = build_model("dmmvae", {**FAST, "atac_input": "lsi"})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 20})
    enc = model.module.encoders["atac"]
    assert isinstance(enc, LSIInput)
    atac = sc.mod["atac"]
    x = torch.as_tensor(atac.layers["counts"].toarray() > 0, dtype=torch.float32)
    np.testing.assert_allclose(enc.lsi(x).numpy(), np.asarray(atac.obsm[LSI]), rtol=1e-3, atol=1e-3)
    _trains_aligns_and_reloads(model, hist, sc, "lsi", tmp_path / "lsi.pt")

    both = build_model("dmmvae", {**FAST, "atac_input": "lsi+peaks"})
    both.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    first = both.module.encoders["atac"].encoder.net.body[0]
    assert first.in_features == atac.obsm[LSI].shape[1] + atac.n_vars

    no_lsi = sc.copy()
    del no_lsi.mod["atac"].obsm[LSI]
    with pytest.raises(InputError, match="atac_input: peaks"):
        build_model("dmmvae", {**FAST, "atac_input": "lsi"}).fit(no_lsi, seed=0, training=TRAIN_CFG)
    wrong = sc.copy()
    wrong.mod["atac"].uns["lsi"] = {**wrong.mod["atac"].uns["lsi"], "tfidf_scale": 10.0}
    with pytest.raises(InputError, match="not the projection"):
        build_model("dmmvae", {**FAST, "atac_input": "lsi"}).fit(wrong, seed=0, training=TRAIN_CFG)
    with pytest.raises(ValueError, match="unknown atac_input"):
        build_model("dmmvae", {"atac_input": "tfidf"})


def test_dmmvae_rna_pca_input_is_glues_scanpy_recipe_and_survives_a_checkpoint(tmp_path):
    """``rna_input: pca`` (GLUE's RNA encoder input): the RNA encoder reads, computed from the
    batch's counts, the PCA of scanpy's ``normalize_total`` 1e4 / ``log1p`` / ``scale(max_value
    =10)`` of the RNA train cells (the same coordinates as scanpy + scikit-learn, up to each
    component's sign); the model trains (loss falls), its embeddings (paired scenario) place
    test cells nearer their own partner than the random control does, and a checkpoint
    predicts the same. ``pca+counts`` appends the log counts; a bad value is refused."""
    import anndata
    import scanpy as sc_
    from sklearn.decomposition import PCA

    from dmmvae.methods.modules.dmmvae import PCAInput

    sc = scenario(kind="paired", n_cells=600)
    model = build_model("dmmvae", {**FAST, "rna_input": "pca", "rna_pcs": 20})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 20})
    enc = model.module.encoders["rna"]
    assert isinstance(enc, PCAInput)
    rna = sc.mod["rna"]
    train = (sc.obs[SPLIT] == TRAIN).to_numpy()
    ref = anndata.AnnData(rna.layers["counts"][train].astype(np.float64))
    sc_.pp.normalize_total(ref, target_sum=1e4)
    sc_.pp.log1p(ref)
    sc_.pp.scale(ref, max_value=10)
    want = PCA(n_components=20, random_state=0).fit_transform(np.asarray(ref.X))
    x = torch.as_tensor(np.asarray(rna.layers["counts"][train].todense()), dtype=torch.float32)
    got = enc.pca(x).numpy()
    got *= np.sign((got * want).sum(0))  # a component's sign is arbitrary
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3 * np.abs(want).max())
    _trains_aligns_and_reloads(model, hist, sc, "rna pca", tmp_path / "pca.pt")

    both = build_model("dmmvae", {**FAST, "rna_input": "pca+counts", "rna_pcs": 20})
    both.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert both.module.encoders["rna"].encoder.net.body[0].in_features == 20 + rna.n_vars
    with pytest.raises(ValueError, match="unknown rna_input"):
        build_model("dmmvae", {"rna_input": "hvg"})
    with pytest.raises(ValueError, match="shared_core: false"):
        build_model("dmmvae", {"rna_input": "pca", "shared_core": True})


def test_dmmvae_atac_lsi_all_input_reads_each_cells_stored_lsi_over_all_peaks(tmp_path):
    """``atac_input: lsi_all`` (GLUE's encoder input): the ATAC encoder reads the cell's row of
    ``obsm["X_lsi_all"]`` (the LSI over ALL peaks that preprocessing fitted on train cells), so
    its first layer is as wide as that LSI; the model trains (loss falls) and its ATAC embedding
    (paired scenario) places test cells nearer their own RNA cell than the random control. The
    rows are looked up in the data given to predict: the same cells in another order get the
    same embeddings, and a checkpoint predicts the same. ``lsi_all+peaks`` appends the peaks;
    a file without the LSI stops with the fix; the cycle term (which re-encodes generated
    cells, which have no stored LSI) is refused."""
    from dmmvae.constants import LSI_ALL
    from dmmvae.io import InputError

    sc = scenario(kind="paired", n_cells=600)
    atac = sc.mod["atac"]
    n_lsi = atac.obsm[LSI_ALL].shape[1]
    model = build_model("dmmvae", {**FAST, "atac_input": "lsi_all"})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 20})
    assert model.module.encoders["atac"].net.body[0].in_features == n_lsi
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    pred = _paired_atac_beats_random(model, sc, "lsi_all")

    order = np.random.default_rng(1).permutation(sc.n_obs)
    shuffled = sc[order].copy()
    again = model.predict(shuffled)
    where = {c: i for i, c in enumerate(again.obs_names)}
    back = [where[c] for c in pred.obs_names]
    np.testing.assert_allclose(again.embeddings["atac"][back], pred.embeddings["atac"], atol=1e-5)
    path = tmp_path / "lsi_all.pt"
    model.save(str(path))
    loaded = type(model).load(str(path)).predict(sc)
    np.testing.assert_array_equal(loaded.embeddings["atac"], pred.embeddings["atac"])

    both = build_model("dmmvae", {**FAST, "atac_input": "lsi_all+peaks"})
    both.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert both.module.encoders["atac"].net.body[0].in_features == n_lsi + atac.n_vars

    no_lsi = sc.copy()
    del no_lsi.mod["atac"].obsm[LSI_ALL]
    with pytest.raises(InputError, match="n_lsi_all"):
        build_model("dmmvae", {**FAST, "atac_input": "lsi_all"}).fit(no_lsi, seed=0, training=TRAIN_CFG)
    with pytest.raises(ValueError, match="cycle_weight: 0"):
        build_model("dmmvae", {"atac_input": "lsi_all", "cycle_weight": 1.0})


@pytest.mark.parametrize("atac_input", ["lsi+peaks", "lsi_all", "lsi_all+peaks"])
def test_dmmvae_lsi_encoders_read_negative_coordinates_when_the_peaks_are_counts(atac_input):
    """With ATAC peak counts (``likelihoods: {atac: nb}``) the LSI encoders still read the LSI
    coordinates as they are: a coordinate's sign reaches the network (a ``log1p`` of counts
    would clip every negative coordinate to 0), while the appended peaks are read as counts
    are (``log1p``); the model trains (loss falls)."""
    sc = scenario(kind="paired", n_cells=300)
    model = build_model("dmmvae", {**FAST, "atac_input": atac_input, "likelihoods": {"atac": "nb"}})
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 8})
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    enc = model.module.encoders["atac"]
    inner = getattr(enc, "encoder", enc)
    assert inner.log1p_input is False
    inner.eval()
    width = inner.net.body[0].in_features
    u = torch.zeros(4, width)
    u[:, 0] = torch.tensor([-2.0, -1.0, 1.0, 2.0])  # one coordinate, of either sign
    mu = inner(u)[0].detach()
    assert not torch.allclose(mu[0], mu[1]) and not torch.allclose(mu[2], mu[3])
    if atac_input == "lsi+peaks":
        assert enc.log1p_peaks is True
        x = torch.zeros(2, sc.mod["atac"].n_vars)
        x[1, 0] = np.e - 1.0  # a peak count of e - 1 reaches the network as 1
        seen = []
        hook = inner.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
        enc(x)
        hook.remove()
        n_lsi = width - sc.mod["atac"].n_vars
        np.testing.assert_allclose(seen[0][1, n_lsi].item(), 1.0, rtol=1e-5)


def _aligns_gene_split(model, sc, labels, what: str) -> None:
    """The fitted ``model`` aligns the diagonal gene split ``sc``: its test cells' FOSCTTM is
    far below the random control's (label transfer printed beside it)."""
    p = model.predict(sc)
    rand = build_model("random")
    rand.fit(sc, seed=0)
    r = rand.predict(sc)
    score = foscttm(p.embeddings["genes_a"], p.embeddings["genes_b"])
    control = foscttm(r.embeddings["genes_a"], r.embeddings["genes_b"])
    acc = label_transfer(p.embeddings["genes_a"], p.embeddings["genes_b"], labels)["acc_mean"]
    print(f"{what} on the gene split: FOSCTTM {score:.3f} (random {control:.3f}), "
          f"label transfer {acc:.3f}")
    assert score < control - 0.2, (score, control)


def test_dmmvae_per_feature_likelihood_is_glues_normalisation_and_aligns_the_gene_split():
    """``likelihood_scale: per_feature`` (GLUE's): with the same weights and draws, each
    diagonal cell's bound is the summed one divided by its modality's feature count (a
    log-likelihood per feature, and a KL per feature); the aligning and graph weights are then
    absolute, not in reconstruction units. With GLUE's weights carried over
    (``GLUE_PER_FEATURE``), GLUE's decoders and its adversary, the model trains (loss falls) and
    aligns the never-paired gene split through its 100 linked genes far better than the random
    control. Other estimators are refused."""
    from dmmvae.methods.modules.dmmvae import GLUE_PER_FEATURE
    from dmmvae.methods.modules.objectives import moe_stratified_elbo

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    spec = build_spec(sc)
    params = {**FAST, "anchor_weight": 0.0, "guidance_graph": True, "graph_decoder": "embedding"}
    mods = {}
    for scale in ("sum", "per_feature"):
        torch.manual_seed(0)
        mods[scale] = build_model("dmmvae", {**params, "likelihood_scale": scale}).module
        mods[scale].build(spec)
        mods[scale].eval()
    mods["per_feature"].load_state_dict(mods["sum"].state_dict())
    batch = train_batch(sc, spec)
    masks = batch["mask"]
    per_cell = {}
    for scale, module in mods.items():
        torch.manual_seed(1)
        qz = module.encode(batch)
        per_cell[scale], _ = moe_stratified_elbo(qz, masks, module.make_decode(batch),
                                                 module.cell_kl_scale(1.0, masks))
    n_features = sum(masks[m].float() * spec.modalities[m].n_features for m in masks)
    assert set(torch.unique(n_features).tolist()) == {float(spec.modalities[m].n_features)
                                                      for m in masks}  # one modality per cell
    torch.testing.assert_close(per_cell["per_feature"] * n_features, per_cell["sum"])
    pf, su = mods["per_feature"], mods["sum"]
    assert pf.w("latent_adversarial_weight", 1234.0) == float(pf.params["latent_adversarial_weight"])
    assert su.w("latent_adversarial_weight", 1234.0) == pytest.approx(0.01 * 1234.0)
    assert pf.graph_term_scale() == 1.0 and su.graph_term_scale() == su.graph.n_nodes

    labels = labels_of_test_cells(sc)
    glue = {**params, **GLUE_PER_FEATURE, "n_hidden": 64, "disc_hidden": 64, "disc_steps": 1,
            "align_burnin": 5}
    model = build_model("dmmvae", glue)
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert hist["train_adv_latent"].notna().any()
    _aligns_gene_split(model, sc, labels, "per-feature likelihood")
    with pytest.raises(ValueError, match="estimator: elbo"):
        build_model("dmmvae", {"likelihood_scale": "per_feature", "estimator": "iwae"})
    with pytest.raises(ValueError, match="unknown likelihood_scale"):
        build_model("dmmvae", {"likelihood_scale": "mean"})


def test_dmmvae_glue_graph_decoder_is_variational_and_aligns_the_gene_split():
    """``graph_decoder: glue`` (scglue's GraphEncoder and NBDataDecoder): the feature
    embeddings are a draw from N(loc(H), softplus(std(H))) in training and its mean in
    evaluation, the graph term adds GLUE's KL of that posterior to N(0, I) (per node, over the
    node count), and every feature has its own scale ``softplus(s_f)``. The anchor-free model
    with it, and with GLUE's minimax adversary (the encoders maximise the discriminator's
    cross-entropy), trains (loss falls) and aligns the never-paired gene split through its 100
    linked genes far better than the random control. Unknown values are refused."""
    import torch.nn.functional as F

    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    spec = build_spec(sc)
    params = {**FAST, "anchor_weight": 0.0, "guidance_graph": True, "graph_decoder": "glue"}
    module = build_model("dmmvae", params).module
    module.build(spec)
    g = module.graph
    module.train()
    torch.manual_seed(0)
    assert not torch.allclose(g.embeddings(), g.embeddings())  # a draw per call
    module.eval()
    loc, std = g.posterior()
    torch.testing.assert_close(g.embeddings(), loc)
    assert bool((std > 0).all())
    dec = module.decoders["genes_a"]
    assert dec.log_scale.shape == (spec.modalities["genes_a"].n_features,)
    z = torch.randn(3, module.latent_dim)
    with torch.no_grad():
        loc_a = F.softplus(dec.log_scale) * (z @ g.of("genes_a").T) + dec.bias
        raw = dec.net(z)
        n = dec.likelihood.n_features
        raw = loc_a if raw.shape[-1] == n else torch.cat([loc_a, raw[..., n:]], -1)
        want = dec.likelihood.params(dec.likelihood.split_heads(raw), None)
        got = dec(z)
    for key in want:
        torch.testing.assert_close(got[key], want[key])
    # the graph term: GLUE's g_nll + g_kl (the KL of V's posterior to N(0, I) over the nodes)
    with torch.no_grad():
        loc_h, std_h = g.posterior()
        kl = 0.5 * (loc_h.pow(2) + std_h.pow(2) - 1.0 - 2.0 * std_h.log()).sum(-1).mean() / g.n_nodes
        assert float(g.loss(1)) > float(kl) > 0

    labels = labels_of_test_cells(sc)
    model = build_model("dmmvae", {**params, "n_hidden": 64, "disc_hidden": 64, "disc_steps": 1,
                                   "align_burnin": 5, "latent_adversary_loss": "minimax"})
    # the noisy embeddings learn slower than the plain ones (30 epochs: near chance)
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 80,
                                           "early_stopping_patience": 80})
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert (hist["train_adv_latent"].dropna() < 0).all()  # minus a cross-entropy
    _aligns_gene_split(model, sc, labels, "GLUE's graph decoder")
    with pytest.raises(ValueError, match="unknown graph_decoder"):
        build_model("dmmvae", {"guidance_graph": True, "graph_decoder": "gcn"})
    with pytest.raises(ValueError, match="unknown latent_adversary_loss"):
        build_model("dmmvae", {"latent_adversary_loss": "wasserstein"})


def test_dmmvae_glue_stages_pretrain_with_the_noise_on_then_fine_tune_from_those_weights():
    """``glue_stages`` (scglue fit_SCGLUE): the pretraining stage keeps the burn-in noise at
    1.5 on every epoch and keeps weights from the end of the KL warm-up; the fine-tuning stage
    starts from the pretraining's best weights (its first epoch's loss is near the pretraining's
    last, far below the pretraining's first), with the module's own burn-in, on the same
    validation cells; the anchor-free model with GLUE's parts aligns the gene split."""
    sc = make_scenario(_gene_split(), "diagonal", seed=0)
    labels = labels_of_test_cells(sc)
    params = {**FAST, "n_hidden": 64, "anchor_weight": 0.0, "guidance_graph": True,
              "graph_decoder": "embedding", "disc_hidden": 64, "disc_steps": 1,
              "align_burnin": 5, "glue_stages": True}
    model = build_model("dmmvae", params)
    noise = []
    burnin = model.module.burnin_noise
    model.module.burnin_noise = lambda state: noise.append(  # type: ignore[method-assign]
        (model.module.pretraining, int(state.epoch), burnin(state))) or noise[-1][2]
    hist = model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 30})
    info = model.train_info
    n1, n2 = info["epochs_per_stage"]["pretrain"], info["epochs_per_stage"]["finetune"]
    assert list(hist["stage"]) == ["pretrain"] * n1 + ["finetune"] * n2
    assert list(hist["epoch"]) == list(range(n1 + n2)) and info["epochs_run"] == n1 + n2
    assert n1 <= info["best_epoch"] < n1 + n2
    assert {v for pre, _, v in noise if pre} == {1.5}
    fine = [(e, v) for pre, e, v in noise if not pre]
    assert fine[0][1] == 1.5 and fine[-1][1] < 1.5  # the module's burn-in fades in stage 2
    assert info["n_validation_cells"] > 0
    loss = hist["train_loss"].to_numpy()
    assert abs(loss[n1] - loss[n1 - 1]) < 0.25 * abs(loss[0] - loss[n1 - 1]), loss
    _aligns_gene_split(model, sc, labels, "GLUE's two stages")
    with pytest.raises(ValueError, match="glue_stages"):
        build_model("dmmvae", {"glue_stages": True, "latent_adversarial_weight": 0.0})


# --------------------------------------------------------------------------------------
# no silent unaligned run: a part that needs linked features stops when there are none
# --------------------------------------------------------------------------------------
def _no_link_split():
    """The gene split with no gene in common: no linked feature between the two halves."""
    sc = make_scenario(_gene_split(overlap=0), "diagonal", seed=0)
    assert not any(len(e["i"]) for e in (sc.uns.get("links") or {}).values())
    return sc


@pytest.mark.parametrize("params", [
    {"anchor_space": "cca"},
    {"anchor_space": "cca", "anchor_scope": "global", "anchor_scoring": True},
])
def test_dmmvae_cca_anchors_without_links_stop_with_missing_links(params):
    """``anchor_weight`` > 0 with ``anchor_space: cca`` and no CCA anchor space (no linked
    gene): a MissingLinksError naming the parameter and the fix, never a run without anchors."""
    from dmmvae.methods import MissingLinksError

    with pytest.raises(MissingLinksError, match="anchor_space 'cca'") as err:
        build_model("dmmvae", {**FAST, **params}).fit(_no_link_split(), seed=0,
                                                       training={**TRAIN_CFG, "max_epochs": 1})
    assert err.value.reason == "missing_links"
    assert "anchor_space: gw" in str(err.value) and "anchor_weight: 0" in str(err.value)


@pytest.mark.parametrize("variant", ["dmmvae", "mmaavi"])
def test_guidance_graph_without_links_stops_with_missing_links(variant):
    """``guidance_graph: true`` and a modality with no linked feature (its graph nodes would
    have self-loops only): GLUE's wording, with the fix."""
    from dmmvae.methods import MissingLinksError

    with pytest.raises(MissingLinksError, match="have no linked feature") as err:
        build_model(variant, {**FAST, "guidance_graph": True}).fit(
            _no_link_split(), seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert err.value.reason == "missing_links" and "anchor_space: gw" in str(err.value)
    assert "genes_a" in str(err.value) and "genes_b" in str(err.value)


def test_scmodal_without_links_stops_in_the_diagonal_scenario_unless_told_to_run_unanchored():
    """scMODAL's anchors (mutual neighbours on linked features) are what ties its modalities'
    cells together: with no link and no paired cell it stops like GLUE and MaxFuse, naming the
    setting that runs it without anchors on purpose; that setting trains."""
    from dmmvae.methods import MissingLinksError

    sc = _no_link_split()
    with pytest.raises(MissingLinksError, match="have no linked feature") as err:
        build_model("scmodal", FAST).fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert err.value.reason == "missing_links"
    assert "anchors 'auto'" in str(err.value) and "anchors: none" in str(err.value)
    off = build_model("scmodal", {**FAST, "anchors": "none"})
    off.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert off.predict(sc).info["anchors"]["genes_a+genes_b"] == "feature anchors off"
    build_model("scmodal", FAST).fit(make_scenario(_gene_split(overlap=0), "paired", seed=0),
                                     seed=0, training={**TRAIN_CFG, "max_epochs": 1})


def test_linked_parts_are_optional_where_pairs_align_and_beside_gw_anchors():
    """No link, but train cells that show both halves (paired): the pairs align, the graph and
    the anchors are optional and the run goes on; likewise the structure-only GW anchors with
    the graph on (dmmvae_gw) in the diagonal scenario."""
    paired = make_scenario(_gene_split(overlap=0), "paired", seed=0)
    for variant in ("dmmvae", "mmaavi"):
        build_model(variant, {**FAST, "guidance_graph": True}).fit(
            paired, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    build_model("dmmvae", {**FAST, "anchor_space": "cca"}).fit(
        paired, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    gw = build_model("dmmvae", {**FAST, "guidance_graph": True, "anchor_space": "gw",
                                "anchor_scope": "global", "anchor_components": [10]})
    gw.fit(_no_link_split(), seed=0, training={**TRAIN_CFG, "max_epochs": 1})


def test_feature_anchors_without_links_stop_in_the_diagonal_scenario():
    from dmmvae.methods import MissingLinksError

    with pytest.raises(MissingLinksError, match="anchor_space 'features'"):
        build_model("dmmvae", {**FAST}).fit(_no_link_split(), seed=0,
                                            training={**TRAIN_CFG, "max_epochs": 1})


def test_without_links_gw_anchors_and_anchor_weight_zero_still_train():
    sc = _no_link_split()
    gw = build_model("dmmvae", {**FAST, "anchor_space": "gw", "anchor_scope": "global",
                                "anchor_components": [10]})
    gw.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 2})
    assert "structure-only GW anchors" in gw.predict(sc).info["anchors"]["genes_a+genes_b"]
    off = build_model("dmmvae", {**FAST, "anchor_space": "cca", "anchor_weight": 0.0})
    off.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 1})
    assert off.predict(sc).embeddings["genes_a"].shape[1] == FAST["n_latent"]


def test_run_training_records_missing_links_as_a_failure_not_a_crash(tmp_path):
    import yaml

    from dmmvae.io import Predictions
    from dmmvae.train import run_training

    path = tmp_path / "scenario.h5mu"
    _no_link_split().write(path)
    out = {k: str(tmp_path / k) for k in ("p.h5", "m.pt", "h.csv", "info.yaml")}
    run_training(str(path), model_name="dmmvae",
                 params={**FAST, "anchor_space": "cca", "guidance_graph": True},
                 training={**TRAIN_CFG, "max_epochs": 1}, seed=0, device="cpu",
                 out_predictions=out["p.h5"], out_checkpoint=out["m.pt"],
                 out_history=out["h.csv"], out_run_info=out["info.yaml"])
    info = yaml.safe_load(open(out["info.yaml"]))
    assert info["status"] == "failed" and info["failure"]["reason"] == "missing_links"
    assert Predictions.read(out["p.h5"]).failure["reason"] == "missing_links"


def test_the_weights_kept_are_trained_on_the_full_objective_not_the_warm_up(monkeypatch):
    """Early stopping keeps the best validation epoch among those after the KL warm-up (KL
    weight 1, D-MMVAE's adversaries on): a validation loss that is lowest during the warm-up
    (as when an adversary, once on, costs reconstruction) must not bring a warm-up model back."""
    sc = scenario(kind="paired", n_cells=200)
    m = build_model("mvae", FAST)
    epoch = {"now": 0}
    losses = [1.0, 0.5, 0.1, 0.6, 0.7, 0.9, 0.8, 0.85, 0.95, 0.99]  # lowest at 2 (warm-up), then 6
    monkeypatch.setattr(m.module, "validation_step",
                        lambda batch, kl_weight=1.0, state=None: {"loss": torch.tensor(losses[epoch["now"]])})
    monkeypatch.setattr(m.module, "on_epoch_end",
                        lambda e, warm, state: epoch.__setitem__("now", e + 1), raising=False)
    hist = m.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 10, "kl_warmup_epochs": 5,
                                       "early_stopping_patience": 0})
    assert list(hist["validation_loss"].round(2)) == losses
    assert m.train_info["best_epoch"] == 6


def test_dmmvae_atac_features_linked_decodes_only_the_peaks_with_a_link():
    """``atac_features: linked`` (GLUE's decoded peaks): the model trains on the peaks that a
    stored link ties to a gene, with the links re-indexed to them (the same gene-peak pairs),
    its loss falls, and its predictions keep the data's width: finite on the linked peaks, NaN
    on the others; an LSI input that projects every kept peak is refused with the fix."""
    from dmmvae.data.links import link_matrix, linked_features, linked_view
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.synthetic import simulate_shared_private

    mods = {"rna": {"kind": "rna", "n_features": 120, "n_private": 2},
            "atac": {"kind": "atac", "n_features": 200, "n_private": 2}}
    raw = simulate_shared_private(n_cells=400, modalities=mods, n_linked=20, seed=3)
    sc = make_scenario(preprocess(raw, seed=3), "diagonal", seed=3)
    linked = linked_features(sc, ["rna", "atac"])["atac"]
    assert 0 < linked.sum() < sc.mod["atac"].n_vars
    view, cols = linked_view(sc, "atac")
    np.testing.assert_array_equal(cols["atac"], np.flatnonzero(linked))
    assert view.mod["rna"].n_vars == sc.mod["rna"].n_vars
    full = link_matrix(sc, "rna", "atac")[:, cols["atac"]].toarray()
    np.testing.assert_array_equal(link_matrix(view, "rna", "atac").toarray(), full)
    assert (view.obs[visible_key("atac")] == sc.obs[visible_key("atac")]).all()

    params = {**FAST, "anchor_weight": 0, "guidance_graph": True, "graph_decoder": "embedding",
              "atac_input": "lsi_all+peaks", "atac_features": "linked"}
    m = build_model("dmmvae", params)
    hist = m.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 8})
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert m.spec.modalities["atac"].n_features == int(linked.sum())
    p = m.predict(sc)
    assert p.info["decoded_features"] == {"atac": int(linked.sum())}
    for arr in (p.imputations[("rna", "atac")], p.generated["atac"],
                p.cross_generated[("rna", "atac")]):
        assert arr.shape[1] == sc.mod["atac"].n_vars
        assert np.isfinite(arr[:, linked]).all() and np.isnan(arr[:, ~linked]).all()
    assert np.isfinite(p.imputations[("atac", "rna")]).all()
    # the selection signals read the module through the same view (the peaks it was built on)
    from dmmvae.selection import train_label_transfer, train_only, validation_anchor_foscttm

    train = train_only(sc)
    fos = validation_anchor_foscttm(m, train, {**TRAIN_CFG, "max_epochs": 8}, seed=0)
    assert 0 <= fos <= 1 and 0 <= train_label_transfer(m, train) <= 1
    with pytest.raises(ValueError, match="atac_input: lsi_all"):
        build_model("dmmvae", {"atac_input": "lsi+peaks", "atac_features": "linked"})
    with pytest.raises(ValueError, match="atac_features"):
        build_model("dmmvae", {"atac_features": "some"})

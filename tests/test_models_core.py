"""Core of the VAE zoo: likelihoods, fusion rules, masking, and the mvae / mmvae / mopoe /
mlp_fusion variants trained on synthetic shared/private data (paired and diagonal)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _synthetic import (
    built_module,
    fit_predict_diagonal,
    fit_predict_paired,
    hidden_atac_batch,
    preprocessed,
    scenario,
    train_batch,
)

from dmmvae.constants import SPLIT, TEST, TRAIN, visible_key
from dmmvae.data.scenarios import make_scenario, protocol_split
from dmmvae.methods import MODELS, build_model
from dmmvae.methods.modules.likelihoods import LIKELIHOODS, clr, get_likelihood, to_scoring
from dmmvae.methods.modules.objectives import (
    Gaussian,
    mixture_log_prob,
    mixture_moments,
    product_of_experts,
)
from dmmvae.methods.training.batches import MultimodalData, build_spec
from dmmvae.metrics import foscttm, imputation_scores

VARIANTS = ["mvae", "mmvae", "mopoe", "mlp_fusion"]
FAST = {"n_hidden": 64, "n_latent": 8}



# --------------------------------------------------------------------------------------
# likelihoods
# --------------------------------------------------------------------------------------
def test_nb_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    lik = get_likelihood("nb")(7)
    lib = torch.tensor([[500.0], [2000.0]])
    p = lik.params({"logits": torch.randn(2, 7)}, lib)
    x = torch.poisson(lik.mean(p))
    theta = p["log_theta"].exp()
    mu = p["log_mu"].exp()
    ref = torch.distributions.NegativeBinomial(total_count=theta, probs=mu / (mu + theta))
    torch.testing.assert_close(lik.log_prob(x, p), ref.log_prob(x).sum(-1), rtol=1e-4, atol=1e-3)
    # library handling: mean = library * softmax(logits)
    torch.testing.assert_close(lik.mean(p).sum(-1), lib.squeeze(1))


def test_zinb_and_nbmix_reduce_to_nb_in_their_limits():
    torch.manual_seed(0)
    h = torch.randn(3, 5)
    lib = torch.full((3, 1), 300.0)
    nb = get_likelihood("nb")(5)
    zinb = get_likelihood("zinb")(5)
    mix = get_likelihood("nbmix")(5)
    x = torch.poisson(nb.mean(nb.params({"logits": h}, lib)))
    ref = nb.log_prob(x, nb.params({"logits": h}, lib))
    never_zero = zinb.params({"logits": h, "dropout": torch.full((3, 5), -30.0)}, lib)
    torch.testing.assert_close(zinb.log_prob(x, never_zero), ref, rtol=1e-4, atol=1e-4)
    all_back = mix.params(
        {"back": h, "fore": torch.randn(3, 5), "mix": torch.full((3, 5), 30.0)}, lib
    )
    torch.testing.assert_close(mix.log_prob(x, all_back), ref, rtol=1e-4, atol=1e-4)
    # a certain zero: log p(0) -> 0 when the dropout logit is large
    certain = zinb.params({"logits": h, "dropout": torch.full((3, 5), 30.0)}, lib)
    assert zinb.log_prob(torch.zeros(3, 5), certain).abs().max() < 1e-6


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood_sample_mean_and_prob_nonzero_agree(name):
    torch.manual_seed(1)
    lik = get_likelihood(name)(4)
    heads = {h: torch.randn(1, 4).expand(4000, 4) for h in lik.heads}
    p = lik.params(heads, torch.full((4000, 1), 50.0))
    s = lik.sample(p)
    torch.testing.assert_close(s.mean(0), lik.mean(p)[0], rtol=0.1, atol=0.05)
    if name != "gaussian":
        torch.testing.assert_close(
            (s > 0).float().mean(0), lik.prob_nonzero(p)[0], rtol=0.1, atol=0.03
        )
    assert torch.isfinite(lik.log_prob(s, p)).all()


def test_bernoulli_and_gaussian_log_prob_match_torch():
    torch.manual_seed(0)
    b = get_likelihood("bernoulli")(6)
    pb = b.params({"logits": torch.randn(3, 6)})
    x = torch.bernoulli(torch.full((3, 6), 0.3))
    ref = torch.distributions.Bernoulli(logits=pb["logits"]).log_prob(x).sum(-1)
    torch.testing.assert_close(b.log_prob(x, pb), ref)
    g = get_likelihood("gaussian")(6)
    with torch.no_grad():
        g.log_var.copy_(torch.linspace(-1, 1, 6))
    pg = g.params({"loc": torch.randn(3, 6)})
    y = torch.randn(3, 6)
    ref = torch.distributions.Normal(pg["loc"], (0.5 * pg["log_var"]).exp()).log_prob(y).sum(-1)
    torch.testing.assert_close(g.log_prob(y, pg), ref)


def test_unknown_likelihood_lists_valid_names():
    with pytest.raises(ValueError, match="valid likelihoods are"):
        get_likelihood("poisson")


def test_likelihoods_are_set_per_modality_or_per_kind():
    """``params.likelihoods`` keys: a modality name, or a modality kind (every modality of it;
    unused where the data has none, so one config serves RNA+ADT and RNA+ATAC datasets); any
    other key stops with the data's modalities named."""
    atac = scenario(("rna", "atac"), n_cells=120)
    adt = scenario(("rna", "adt"), n_cells=120)
    liks = lambda sc, arg: {m: ms.likelihood for m, ms in build_spec(sc, arg).modalities.items()}  # noqa: E731
    assert liks(atac, {"atac": "nb"}) == {"rna": "nb", "atac": "nb"}
    assert liks(atac, None) == {"rna": "nb", "atac": "bernoulli"}
    assert liks(adt, {"atac": "nb", "rna": "zinb"}) == {"rna": "zinb", "adt": "nb"}
    renamed = atac.copy()
    renamed.mod["peaks"] = renamed.mod.pop("atac")
    renamed.mod["peaks"].uns["modality_kind"] = "atac"
    renamed.update()
    assert liks(renamed, {"atac": "nb"})["peaks"] == "nb"
    with pytest.raises(ValueError, match="names modalities"):
        build_spec(adt, {"protein": "nb"})


def test_rna_scoring_conversion_reproduces_protocol_normalization():
    """A decoded mean equal to the observed kept-gene counts, with f = that cell's kept
    fraction, gives exactly the PROTOCOL RNA normalization (.X) of the cell."""
    pre = preprocessed(("rna", "atac"), 300)
    rna = pre.mod["rna"]
    counts = rna.layers["counts"][:5].toarray()
    lib_all = rna.obs["library_size"].to_numpy()[:5]
    lik = get_likelihood("nb")(rna.n_vars)
    for i in range(5):
        f = counts[i].sum() / lib_all[i]
        out = to_scoring("rna", lik, torch.as_tensor(counts[i : i + 1]), kept_fraction=float(f))
        np.testing.assert_allclose(out.numpy()[0], rna.X[i].toarray()[0], rtol=1e-4, atol=1e-4)
    x = torch.tensor([[0.0, 3.0, 10.0]])
    torch.testing.assert_close(clr(x), torch.log1p(x) - torch.log1p(x).mean())


def test_count_imputation_is_the_expected_scoring_view_not_the_view_of_the_mean():
    """A count target's imputation (``scoring_mean``) is the mean scoring view of cells drawn
    from the decoder's likelihood: it agrees with a 1,000-draw reference, where the view of the
    decoded mean overstates rarely seen genes (log1p is concave); ATAC stays the exact
    probability of a nonzero."""
    module, spec, batch = built_module("mmvae", FAST)
    module.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        qz = module.encode(batch)
        px = module.impute_params(qz, batch["mask"], "atac", ["rna"])["rna"]
        got = module.scoring_mean("rna", px)
        ref = torch.stack([module.scoring_sample("rna", px).float() for _ in range(1000)]).mean(0)
        lik = module.decoders["rna"].likelihood
        of_mean = to_scoring("rna", lik, lik.mean(px), kept_fraction=spec.modalities["rna"].kept_fraction)
        pa = module.impute_params(qz, batch["mask"], "rna", ["atac"])["atac"]
        atac = module.scoring_mean("atac", pa)
        p_open = module.decoders["atac"].likelihood.prob_nonzero(pa)
    # per entry the two differ by Monte Carlo noise only (no bias), the view of the mean by
    # a bias that lifts every rarely seen gene (Jensen)
    noise, bias = (got - ref).mean(), (of_mean - ref).mean()
    assert abs(noise) < 0.1 * bias, f"expected view biased by {noise:.4f}, view of the mean by {bias:.4f}"
    assert ((of_mean - ref) > 0).float().mean() > 0.9
    torch.testing.assert_close(atac, p_open)


# --------------------------------------------------------------------------------------
# fusion rules
# --------------------------------------------------------------------------------------
def test_product_of_experts_is_the_precision_weighted_product_and_respects_masks():
    a = Gaussian(torch.tensor([[1.0], [1.0]]), torch.log(torch.tensor([[0.5], [0.5]])))
    b = Gaussian(torch.tensor([[-2.0], [-2.0]]), torch.log(torch.tensor([[2.0], [2.0]])))
    masks = {"a": torch.tensor([True, True]), "b": torch.tensor([True, False])}
    q = product_of_experts({"a": a, "b": b}, masks)
    # cell 0: precisions 1 (prior) + 2 + 0.5 = 3.5; mean = (2*1 + 0.5*-2) / 3.5
    torch.testing.assert_close(q.var[0], torch.tensor([1 / 3.5]))
    torch.testing.assert_close(q.mu[0], torch.tensor([1.0 / 3.5]))
    # cell 1: b hidden -> prior and a only
    torch.testing.assert_close(q.var[1], torch.tensor([1 / 3.0]))
    torch.testing.assert_close(q.mu[1], torch.tensor([2.0 / 3.0]))


def test_mixture_helpers_use_only_visible_experts():
    a = Gaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    b = Gaussian(torch.full((2, 3), 4.0), torch.zeros(2, 3))
    masks = {"a": torch.tensor([True, True]), "b": torch.tensor([True, False])}
    mm = mixture_moments({"a": a, "b": b}, masks)
    torch.testing.assert_close(mm.mu, torch.tensor([[2.0] * 3, [0.0] * 3]))
    torch.testing.assert_close(mm.var, torch.tensor([[5.0] * 3, [1.0] * 3]))
    z = torch.zeros(2, 3)
    lp = mixture_log_prob(z, {"a": a, "b": b}, masks)
    expect0 = torch.logaddexp(a.log_prob(z)[0], b.log_prob(z)[0]) - math.log(2)
    torch.testing.assert_close(lp, torch.stack([expect0, a.log_prob(z)[1]]))
    # with a leading sample axis (K=3 != M=2 experts): each sample as if evaluated alone
    zs = torch.randn(3, 2, 3)
    lps = mixture_log_prob(zs, {"a": a, "b": b}, masks)
    assert lps.shape == (3, 2)
    for k in range(3):
        torch.testing.assert_close(lps[k], mixture_log_prob(zs[k], {"a": a, "b": b}, masks))


# --------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------
def test_batches_densify_rows_of_the_sparse_target_and_hide_masked_modalities():
    sc = scenario(kind="mosaic")
    spec = build_spec(sc)
    data = MultimodalData(sc, spec)
    rows = np.flatnonzero(sc.obs[SPLIT].to_numpy() == TRAIN)[:50]
    batch = data.batch(torch.as_tensor(rows))
    counts = sc.mod["rna"].layers["counts"]
    vis = sc.obs[visible_key("rna")].to_numpy()[rows]
    expect = counts[rows].toarray() * vis[:, None]
    np.testing.assert_array_equal(batch["x"]["rna"].numpy(), expect)
    np.testing.assert_array_equal(batch["mask"]["rna"].numpy(), vis)
    np.testing.assert_allclose(batch["library"]["rna"].numpy()[:, 0], expect.sum(1), rtol=1e-6)
    # ATAC (Bernoulli) target: binarised counts
    atac = sc.mod["atac"].layers["counts"][rows].toarray() > 0
    avis = sc.obs[visible_key("atac")].to_numpy()[rows]
    np.testing.assert_array_equal(batch["x"]["atac"].numpy(), atac * avis[:, None])
    assert 0 < vis.sum() < len(rows) and 0 < avis.sum() < len(rows)
    # shuffled epoch covers every cell exactly once
    seen = np.concatenate([b["index"].numpy() for b in data.batches(rows, 16, shuffle=True)])
    assert sorted(seen) == sorted(rows)


def test_count_likelihood_without_counts_is_a_clear_input_error():
    from dmmvae.io import InputError

    sc = scenario()
    del sc.mod["rna"].layers["counts"]
    with pytest.raises(InputError, match="gaussian"):
        build_spec(sc, {"rna": "nb"})


# --------------------------------------------------------------------------------------
# forward / backward over variants x likelihoods x modality counts
# --------------------------------------------------------------------------------------
def _check_forward_backward(model, sc, likelihoods):
    spec = build_spec(sc, likelihoods)
    model.build(spec)
    batch = train_batch(sc, spec)
    out = model.training_loss(batch, kl_weight=0.5)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v) for v in out.terms.values())
    out.loss.backward()
    for m in spec.modalities:
        for part in (model.encoders[m], model.decoders[m]):
            grads = [p.grad for p in part.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), m
            assert any(g.abs().sum() > 0 for g in grads), m


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
def test_forward_backward_every_likelihood(variant, lik):
    sc = scenario(kind="mosaic")
    _check_forward_backward(build_model(variant, FAST).module, sc, {"rna": lik})


@pytest.mark.parametrize("variant", [*VARIANTS, "mmvae-iwae", "mmvae-dreg", "mopoe-select"])
def test_forward_backward_three_modalities(variant):
    name, _, opt = variant.partition("-")
    params = dict(FAST)
    if name == "mmvae" and opt:
        params.update(estimator=opt, k=2)  # k != number of modalities: catches axis mix-ups
    if name == "mopoe" and opt:
        params["sampling"] = opt
    sc = scenario(("rna", "atac", "adt"), kind="mosaic")
    _check_forward_backward(build_model(name, params).module, sc, {"adt": "nbmix"})


@pytest.mark.parametrize("variant", [*VARIANTS, "mmvae-dreg"])
def test_hidden_modality_does_not_affect_the_loss(variant):
    """Masking, not imputation: changing the data of a hidden modality changes nothing,
    and the loss has zero gradient with respect to it."""
    name, _, opt = variant.partition("-")
    params = dict(FAST, **({"estimator": opt, "k": 3} if opt else {}))
    model, batch, x, hidden = hidden_atac_batch(name, params)
    torch.manual_seed(0)
    loss = model.training_loss(batch, 1.0).loss
    loss.backward()
    assert x.grad[hidden].abs().max() == 0
    assert x.grad[batch["mask"]["atac"]].abs().max() > 0
    noisy = batch["x"]["atac"].detach().clone()
    noisy[hidden] = torch.bernoulli(torch.full_like(noisy[hidden], 0.5))
    batch["x"]["atac"] = noisy
    torch.manual_seed(0)
    torch.testing.assert_close(model.training_loss(batch, 1.0).loss, loss.detach())


def test_unknown_parameter_and_estimator_fail_clearly():
    with pytest.raises(ValueError, match="valid parameters"):
        build_model("mvae", {"n_latnet": 3})
    with pytest.raises(ValueError, match="valid"):
        build_model("mmvae", {"estimator": "vimco"})


# --------------------------------------------------------------------------------------
# training on synthetic data
# --------------------------------------------------------------------------------------
TRAIN_CFG = {"max_epochs": 40, "batch_size": 128, "kl_warmup_epochs": 5, "progress_bar": False}


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_on_paired_synthetic_data(variant):
    sc, hist, p, s = fit_predict_paired(variant, TRAIN_CFG)
    assert hist["train_loss"].iloc[-1] < 0.8 * hist["train_loss"].iloc[0]
    assert {"validation_loss", "train_kl", "seconds", "kl_weight"} <= set(hist.columns)
    n_test = int((sc.obs[SPLIT] == TEST).sum())
    assert p.embeddings["rna"].shape == (n_test, 16) and p.embeddings["joint"].shape == (n_test, 16)
    fos, rnd = s["foscttm"], s["random_foscttm"]
    assert 0.4 < rnd < 0.6
    assert fos < 0.25, f"{variant}: FOSCTTM {fos:.3f} (random {rnd:.3f})"
    assert s["label_transfer"] > 0.5
    # imputation in the scoring normalization beats chance
    test = sc.obs[SPLIT].to_numpy() == TEST
    pred = p.imputations[("atac", "rna")]
    assert np.isfinite(pred).all() and pred.min() >= 0
    assert s["rna_pearson"] > 0.3
    atac_truth = sc.mod["atac"].X[test].toarray()
    assert imputation_scores(atac_truth, p.imputations[("rna", "atac")], "atac")["auroc"] > 0.6
    gen = p.generated["atac"]
    assert gen.shape == (n_test, sc.mod["atac"].n_vars) and set(np.unique(gen)) <= {0.0, 1.0}


@pytest.mark.parametrize("variant", VARIANTS)
def test_diagonal_scenario_trains_and_predicts(variant):
    fit_predict_diagonal(variant, FAST, {**TRAIN_CFG, "max_epochs": 15})


def test_three_modalities_train_and_predict_every_pair():
    sc = scenario(("rna", "atac", "adt"), kind="mosaic")
    model = build_model("mopoe", {**FAST, "likelihoods": {"adt": "nbmix"}})
    model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 8})
    p = model.predict(sc)
    assert len(p.imputations) == 6
    adt = p.imputations[("rna", "adt")]
    np.testing.assert_allclose(adt.mean(1), 0.0, atol=1e-4)  # CLR rows are centred


def test_gaussian_gene_split_demo_trains():
    """The pbmc68k gene-split demo (gaussian modalities, no counts) runs through the core."""
    pytest.importorskip("scanpy")
    from dmmvae.data.demo import pbmc68k_gene_split

    md_ = pbmc68k_gene_split()
    md_.obs[SPLIT] = protocol_split(md_.n_obs, 0)
    sc = make_scenario(md_, "paired")
    model = build_model("mvae", FAST)
    model.fit(sc, seed=0, training={**TRAIN_CFG, "max_epochs": 40})
    p = model.predict(sc)
    names = list(sc.mod)
    assert foscttm(p.embeddings[names[0]], p.embeddings[names[1]]) < 0.3
    assert p.imputations[(names[0], names[1])].shape[1] == sc.mod[names[1]].n_vars


def test_semi_supervised_head_and_checkpoint_roundtrip(tmp_path):
    sc = scenario()
    model = build_model("mvae", FAST)
    hist = model.fit(
        sc, seed=0, training={**TRAIN_CFG, "max_epochs": 3, "semi_supervised_fraction": 0.5}
    )
    assert "train_classifier" in hist.columns and model.module.classifier is not None
    p1 = model.predict(sc)
    path = tmp_path / "model.pt"
    model.save(str(path))
    again = MODELS["mvae"].load(str(path))
    p2 = again.predict(sc)
    np.testing.assert_allclose(p1.embeddings["joint"], p2.embeddings["joint"], rtol=1e-5, atol=1e-6)


def test_sparse_data_never_densified_whole():
    sc = scenario()
    data = MultimodalData(sc, build_spec(sc))
    assert data.rows["rna"].sparse and data.rows["atac"].sparse
    assert data.rows["atac"].data is None  # binary: no values array stored
    X = sc.mod["atac"].layers["counts"]
    assert data.rows["atac"].nbytes < 0.5 * X.shape[0] * X.shape[1] * 4
    # the loader holds the CSR triplets of the counts (one entry per stored value), no dense copy
    Xr = sc.mod["rna"].layers["counts"]
    assert data.rows["rna"].indices.numel() == Xr.nnz and data.rows["rna"].data.numel() == Xr.nnz

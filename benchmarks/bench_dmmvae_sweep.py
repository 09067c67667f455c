"""Choose D-MMVAE's settings by a rule that never sees a test cell (PROTOCOL "Choosing
settings (blind)").

Each stand-in's scenario (diagonal; paired for the paired grids) passes through :func:`dmmvae.selection.train_only` before
anything else: the test cells are dropped, so this script cannot compute a test-cell number.
Every configuration of a grid is fitted on the train cells and scored by the signals of
:mod:`dmmvae.selection` (anchor FOSCTTM among held-back train cells; label transfer among
train cells; for the paired grids, imputation of held-back paired train cells); the rule of
the grid ranks them (lowest mean over the stand-ins, each dataset's
seeds averaged first). The chosen values are written into the shipped configs by hand. A
run resumes: a (configuration, stand-in, seed) already in ``--out`` is skipped.

Usage::

    python benchmarks/bench_dmmvae_sweep.py --grid graph          # one grid, seed 0
    python benchmarks/bench_dmmvae_sweep.py --grid atac --seed 1 --out more.csv
    python benchmarks/bench_dmmvae_sweep.py --report-only --grid knn --out ...knn.csv
    python benchmarks/bench_dmmvae_sweep.py --grid knn --fix anchor_components=3 --out ...
    python benchmarks/bench_dmmvae_sweep.py --reask-report     # each grid asked again: its choice
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
from _common import ROOT, configurations, diagonal_scenario
from _common import SELECTION_DATASETS as DATASETS

from dmmvae.config import load_config
from dmmvae.io import atomic_path, write_text
from dmmvae.methods.modules.dmmvae import GLUE_PER_FEATURE
from dmmvae.selection import (
    collapsed,
    common_cells,
    heldback_code_spread,
    incomplete,
    rank,
    train_label_transfer,
    train_only,
    validation_anchor_foscttm,
    validation_imputation,
)

OUT = Path(__file__).parent / "results" / "dmmvae_sweep.csv"
CONFIG = ROOT / "config" / "diagonal.yaml"
TRAINING = "training."  # a grid key with this prefix sets the training loop, not the model


GRID = {
    "shared_core": [True, False],
    "latent_adversarial_weight": [0.01, 0.1],
    "output_adversarial_weight": [0.0, 0.05],
    "anchor_space": ["features", "cca"],
}
#: fixed in this grid: cycle_weight 0 (a first grid, shared_core x latent 0/0.01/0.1 x cycle 0/1,
#: ranked every cycle_weight-1 configuration below its cycle-0 twin, on the rule and on test cells)
#: a second question for the same rule, asked after the first grid froze the settings above:
#: do mmAAVI's guidance-graph decoders (methods/_graph.py) help the frozen configuration?
FROZEN = {"shared_core": False, "latent_adversarial_weight": 0.01,
          "output_adversarial_weight": 0.0, "anchor_space": "features"}
#: the frozen configuration with the graph the second grid chose, anchor space left open
WITH_GRAPH = {**{k: [v] for k, v in FROZEN.items() if k != "anchor_space"}, "guidance_graph": [True]}
#: the global anchors (CCA space), then with the components (5) and the mutual neighbour count
#: (20) the rule chose when first asked (asked again with the fixed signals: 3 and 5, and the
#: chain's later questions from there, :data:`GLOBAL_CHAIN`)
GLOBAL = {**WITH_GRAPH, "anchor_space": ["cca"], "anchor_scope": ["global"]}
GLOBAL5 = {**GLOBAL, "anchor_components": [5]}
GLOBAL5_K20 = {**GLOBAL5, "n_knn": [20]}
GRIDS = {"adversaries": GRID,
         "graph": {**{k: [v] for k, v in FROZEN.items()}, "guidance_graph": [False, True]},
         # a third: Seurat's anchors among all train cells (anchor_scope global, CCA space) against
         # the frozen minibatch anchors; run with --patience 30 (the global variant's best epochs
         # came late: 30 and 74 of 40 / 100 on SNARE)
         "scope": {**WITH_GRAPH,
                   "anchor_space,anchor_scope": [("features", "batch"), ("cca", "global")]},
         # a fourth, for the global anchors: how many canonical components the anchors are found
         # in (Seurat: 20); run with --patience 30
         "components": {**GLOBAL, "anchor_components": [3, 5, 10, 20]},
         # a fifth, for the global anchors with the chosen 5 components: weight each anchor by
         # Seurat's score (shared neighbours) or not; run with --patience 30
         "scoring": {**GLOBAL5, "anchor_scoring": [False, True]},
         # a sixth, for the global anchors with 5 components: how many mutual nearest neighbours
         # make an anchor (Seurat's k.anchor: 5); run with --patience 30
         "knn": {**GLOBAL5, "n_knn": [5, 10, 20]},
         # a seventh, for the global anchors with the chosen 5 components and n_knn 20: what the
         # ATAC encoder reads (the peaks, the LSI of preprocessing as GLUE does, or both); only
         # the SNARE-seq stand-in has ATAC, the other three run the same model for every value;
         # run with --patience 30
         "atac_input": {**GLOBAL5_K20, "atac_input": ["peaks", "lsi", "lsi+peaks"]},
         # an eighth, for the same global anchors: latent width (GLUE: 50) and the ATAC
         # likelihood (Bernoulli on the binary peaks, or GLUE's negative binomial on counts;
         # on stand-ins without ATAC the two are the same model); run with --patience 30
         "capacity": {**GLOBAL5_K20, "n_latent": [16, 32], "likelihoods": [{}, {"atac": "nb"}]},
         # a ninth, asked with the second rule (RULES: the anchor rule could not tell the ATAC
         # settings apart, SNARE-seq within 0.004): ATAC encoder input x ATAC likelihood
         "atac": {**GLOBAL5_K20, "atac_input": ["peaks", "lsi+peaks"],
                  "likelihoods": [{}, {"atac": "nb"}]},
         # a tenth, by the second rule, on the ATAC settings it chose: the latent width (the
         # first rule kept 16 over 32 in the capacity grid; GLUE uses 50)
         "latent": {**GLOBAL5_K20, "atac_input": ["lsi+peaks"], "likelihoods": [{"atac": "nb"}],
                    "n_latent": [16, 32]},
         # an eleventh: the ninth grid over seeds 0-2 (its one-seed margins, 0.001-0.003, were
         # within seed noise) chose LSI + peaks with the Bernoulli likelihood; the latent width
         # asked again on those settings, by the same rule over seeds 0-2
         "latent_lsipeaks": {**GLOBAL5_K20, "atac_input": ["lsi+peaks"], "n_latent": [16, 32]},
         # a twelfth, for the anchor-free D-MMVAE (no anchor term): what aligns without anchors,
         # GLUE's ingredients (latent adversary, graph decoders) or the seed's (shared core,
         # output adversary); the latent adversary's weight up to the size of the reconstruction
         # (1.0; GLUE's lambda_align 0.05 on a per-feature likelihood is ~0.1-1 in these units);
         # run with --patience 30
         "noanchor": {"anchor_weight": [0.0], "atac_input": ["lsi+peaks"], "n_latent": [32],
                      "guidance_graph,shared_core": [(True, False), (False, True)],
                      "latent_adversarial_weight": [0.01, 0.1, 1.0],
                      "output_adversarial_weight": [0.0, 0.05]},
         # a thirteenth, the same question with GLUE's decoders (graph_decoder embedding: a
         # feature's expression decoded from its graph embedding alone, so linked features
         # share what the code means) and GLUE's ingredient, the latent adversary
         "noanchor_glue": {"anchor_weight": [0.0], "atac_input": ["lsi+peaks"], "n_latent": [32],
                           "guidance_graph": [True], "graph_decoder": ["embedding"],
                           "latent_adversarial_weight": [0.01, 0.1, 1.0],
                           "output_adversarial_weight": [0.0]}}
# a fourteenth, for the default `dmmvae` in the paired scenario (issue 27: its ATAC->RNA
# imputation on SNARE-seq fell below knn_regression's): what its ATAC encoder reads, the peaks
# or GLUE's LSI beside them, by the imputation of held-back paired train cells, on the two
# RNA+ATAC stand-ins
GRIDS["default_atac_input"] = {"guidance_graph": [True], "atac_input": ["peaks", "lsi+peaks"]}
# a fifteenth, the same question for the default's guidance-graph decoders (chosen by the
# anchor rule on the diagonal scenario): do they cost paired imputation?
GRIDS["default_graph_imputation"] = {"guidance_graph": [True, False]}
# a sixteenth, for the anchor-free D-MMVAE as the noanchor_glue grid chose it: its training
# budget. GLUE trains on thousands of epochs with a patience of hundreds (scglue's rule: 48 and 4
# units of learning rate x steps); this model stopped within 100 epochs (SNARE-seq by patience
# 30 after 59-86). Keys "training.<key>" set the training loop, not the model
NOANCHOR = {"anchor_weight": [0.0], "atac_input": ["lsi+peaks"], "n_latent": [32],
            "guidance_graph": [True], "graph_decoder": ["embedding"],
            "latent_adversarial_weight": [0.01], "output_adversarial_weight": [0.0]}
GRIDS["noanchor_budget"] = {**NOANCHOR, "training.max_epochs,training.early_stopping_patience":
                            [(100, 30), (400, 100)]}
# a seventeenth, for the anchor-free D-MMVAE at that budget: GLUE's adversary against this one.
# GLUE's discriminator has 2 hidden layers of 256 with dropout 0.2 and takes one step per VAE
# step (scglue sc.Discriminator, SCGLUETrainer.dsc_steps); its input carries prior noise x1.5
# fading over the burn-in, in which no weights are kept and no patience counted
# (ALIGN_BURNIN_PRG / MAX_EPOCHS_PRG = 8 / 48 of its budget: 67 of 400 epochs here)
GRIDS["noanchor_adversary"] = {
    **NOANCHOR, "training.max_epochs,training.early_stopping_patience": [(400, 100)],
    "disc_hidden,disc_depth,disc_dropout,disc_steps": [(64, 1, 0.0, 3), (256, 2, 0.2, 1)],
    "align_burnin": [0, 67]}
# an eighteenth, the same question for the anchored dmmvae_global (its settings as the latent_lsipeaks
# grid left them, its budget of 100 epochs with patience 30): GLUE's adversary and a burn-in at
# GLUE's share of that budget (8 / 48 of 100 epochs = 17)
GRIDS["global_adversary"] = {
    **GLOBAL5_K20, "atac_input": ["lsi+peaks"], "n_latent": [32],
    "training.max_epochs,training.early_stopping_patience": [(100, 30)],
    "disc_hidden,disc_depth,disc_dropout,disc_steps": [(64, 1, 0.0, 3), (256, 2, 0.2, 1)],
    "align_burnin": [0, 17]}
# a nineteenth: the anchor-free model as noanchor_adversary chose it (GLUE's decoders, adversary,
# burn-in and budget), with dmmvae_global's anchors added back (Seurat's anchors in the CCA space
# of the linked genes, 5 components, 20 mutual neighbours) or not
NOANCHOR_ADVERSARY = {
    **{k: v for k, v in NOANCHOR.items() if k != "anchor_weight"},
    "training.max_epochs,training.early_stopping_patience": [(400, 100)],
    "disc_hidden,disc_depth,disc_dropout,disc_steps": [(256, 2, 0.2, 1)], "align_burnin": [67]}
GRIDS["noanchor_plus_anchors"] = {
    **NOANCHOR_ADVERSARY,
    "anchor_weight,anchor_space,anchor_scope,anchor_components,n_knn": [
        (1.0, "cca", "global", 5, 20), (0.0, "features", "batch", 20, 5)]}
# a twentieth, the same model at GLUE's network and step size (scglue 0.4.1 defaults: encoders
# of 2 hidden layers of 256 with dropout 0.2, a 50-dimensional latent, learning rate 2e-3)
GRIDS["noanchor_capacity"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3),
                                                       (128, 1, 0.1, 32, 1e-3)]}
# a twenty-first, the chosen anchor-free model's ATAC encoder input: GLUE's (the LSI over ALL
# peaks, 100 components, obsm["X_lsi_all"]) alone or with the kept peaks, against the LSI of the
# kept peaks with the peaks; asked of the RNA+ATAC stand-ins (elsewhere the option does nothing)
GRIDS["noanchor_atac_input"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "atac_input": ["lsi_all", "lsi_all+peaks", "lsi+peaks"]}
# a twenty-second, the chosen anchor-free model's loss as GLUE weighs it: per-feature
# log-likelihoods and KL (likelihood_scale per_feature) with GLUE's lam_align 0.05 and lam_graph
# 0.02 in those units (dmmvae.methods.modules.dmmvae.GLUE_PER_FEATURE: 0.025 and 0.01), against
# the summed likelihood with this model's weights in reconstruction units
GRIDS["noanchor_per_feature"] = {
    **{k: v for k, v in NOANCHOR_ADVERSARY.items() if k != "latent_adversarial_weight"},
    "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "likelihood_scale,latent_adversarial_weight,graph_weight": [("per_feature", 0.025, 0.01),
                                                                ("sum", 0.01, 0.1)]}
# a twenty-third, the chosen anchor-free model's RNA encoder input: GLUE's (PCA 100 of the
# scaled log-normalised genes, fitted on the RNA train cells; scglue's preprocessing tutorial),
# alone or with the log counts, against the log counts this model reads
GRIDS["noanchor_rna_input"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "rna_input": ["counts", "pca", "pca+counts"]}
# a twenty-fourth, the chosen anchor-free model's ATAC likelihood: GLUE's (NB on the peak
# counts, mean = library x softmax, so that a cell's depth is the observed library, not a
# direction of the code), with this model's ATAC input or GLUE's (the LSI over all peaks),
# against the Bernoulli on binarised peaks; asked of the RNA+ATAC stand-ins
GRIDS["noanchor_atac_likelihood"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "likelihoods,atac_input": [({}, "lsi+peaks"), ({"atac": "nb"}, "lsi+peaks"),
                               ({"atac": "nb"}, "lsi_all")]}
# a twenty-fifth, the chosen anchor-free model's decoder and adversary as GLUE has them: its
# variational feature embeddings with a scale per feature (graph_decoder glue), and its minimax
# adversary (the encoders maximise the discriminator's cross-entropy), against the plain
# embeddings and the confusion loss
GRIDS["noanchor_glue_parts"] = {
    **{k: v for k, v in NOANCHOR_ADVERSARY.items() if k != "graph_decoder"}, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "graph_decoder,latent_adversary_loss": [("embedding", "confusion"), ("glue", "confusion"),
                                            ("embedding", "minimax"), ("glue", "minimax")]}
# a twenty-sixth: GLUE's variational decoder kept its best weights within a few epochs of the
# 400-epoch cap on every stand-in (it learns slower than the plain embeddings), so its budget is
# asked as noanchor_budget asked the plain one's
GRIDS["noanchor_glue_budget"] = {
    **{k: v for k, v in GRIDS["noanchor_glue_parts"].items()
       if k not in ("graph_decoder,latent_adversary_loss", "training.max_epochs,training.early_stopping_patience")},
    "graph_decoder": ["glue"], "latent_adversary_loss": ["confusion"],
    "training.max_epochs,training.early_stopping_patience": [(400, 100), (1000, 200)]}
# a twenty-seventh: the chosen anchor-free model trained in GLUE's two stages (glue_stages:
# pretraining with the burn-in noise always on, then fine-tuning from its best weights) or in one
GRIDS["noanchor_stages"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "glue_stages": [False, True]}
# a twenty-eighth: GLUE's parts all at once (each of them was asked alone from the chosen
# anchor-free model, grids noanchor_atac_input to noanchor_stages; together they were not): its
# encoder inputs (PCA of the scaled genes, the LSI over all peaks), NB on peak counts, per-feature
# likelihood with its weights, variational feature embeddings, minimax adversary, two stages and
# batch-normalised encoders, at this model's budget, against the chosen model
GLUE_ALL_KEY = ("rna_input,atac_input,likelihoods,likelihood_scale,latent_adversarial_weight,"
                "graph_weight,graph_decoder,latent_adversary_loss,glue_stages,norm")
GLUE_ALL_PARTS = ("pca", "lsi_all", {"atac": "nb"}, "per_feature", 0.025, 0.01, "glue", "minimax",
                  True, "batch")
#: the chosen anchor-free model's values of GLUE_ALL_KEY when these grids were asked (one stage:
#: ``glue_stages`` was chosen after them, by noanchor_stages, and ships since 2026-11-26)
CHOSEN_PARTS = ("counts", "lsi+peaks", {}, "sum", 0.01, 0.1, "embedding", "confusion", False,
                "layer")
GRIDS["noanchor_glue_all"] = {
    **{k: v for k, v in NOANCHOR_ADVERSARY.items()
       if k not in ("atac_input", "graph_decoder", "latent_adversarial_weight")},
    "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    GLUE_ALL_KEY: [GLUE_ALL_PARTS, CHOSEN_PARTS]}
# a twenty-ninth, GLUE's training dynamics on the chosen anchor-free model (each was left untried
# by the grids above): RMSprop for every player, its learning-rate schedule (divided by 10 on a
# plateau of half the patience, weights kept from the first reduction on: 2 / lr / batches vs
# 4 / lr / batches in scglue) and its burn-in noise scaled to each code dimension's spread
GRIDS["noanchor_glue_dynamics"] = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "training.optimizer,training.lr_plateau_patience,burnin_noise_scale": [
        ("adamw", 0, "unit"), ("rmsprop", 50, "batch_std")]}
# a thirtieth: everything of GLUE's this package has built at once: noanchor_glue_all's parts
# (its ATAC input read right since 2026-11-26: the LSI coordinates were log1p'd with NB peaks),
# noanchor_glue_dynamics's optimiser, schedule and noise, and scglue's graph pairs (both ways,
# self-loops, 10 degree-drawn negatives per positive)
GRIDS["noanchor_glue_everything"] = {
    **{k: v for k, v in GRIDS["noanchor_glue_all"].items() if k != GLUE_ALL_KEY},
    GLUE_ALL_KEY + ",training.optimizer,training.lr_plateau_patience,burnin_noise_scale,"
    "graph_sampling,graph_negatives": [
        (*GLUE_ALL_PARTS, "rmsprop", 50, "batch_std", "glue", 10),
        (*CHOSEN_PARTS, "adamw", 0, "unit", "uniform", 1)]}
# a thirty-first, after a reading of scglue beside this model: GLUE decodes only the peaks its
# guidance graph links to a gene (on SNARE-seq 2,262 of the 2,397 kept peaks), where the shipped
# anchor-free model decodes every kept peak, the unlinked ones through free feature embeddings;
# from the shipped model (two stages), GLUE's ATAC recipe (LSI over all peaks in, linked peaks
# out) and the same with the linked peaks beside the LSI, on the RNA+ATAC stand-ins
GRIDS["noanchor_linked_peaks"] = {
    **{k: v for k, v in NOANCHOR_ADVERSARY.items() if k != "atac_input"},
    "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "glue_stages": [True],
    "atac_input,atac_features": [("lsi+peaks", "all"), ("lsi_all", "linked"),
                                 ("lsi_all+peaks", "linked")]}
# a thirty-second, the same reading's second difference: scglue's graph convolution weighs an edge
# by 1 / sqrt of its target's degree only ("keepvar") and starts the node vectors at zero, where
# the shipped model uses both ends' degrees and random starts; from the shipped model (two stages)
#: the shipped anchor-free model (two stages), the base of the grids that ask scglue's differences
SHIPPED_NOANCHOR = {
    **NOANCHOR_ADVERSARY, "anchor_weight": [0.0],
    "n_hidden,n_layers,dropout,n_latent,training.lr": [(256, 2, 0.2, 50, 2e-3)],
    "glue_stages": [True]}
GRIDS["noanchor_glue_graph"] = {
    **SHIPPED_NOANCHOR,
    "graph_norm,graph_init": [("symmetric", "random"), ("target", "zero")]}
# a thirty-third, the reading's third difference: scglue counts its budget in optimiser steps
# (48 / 4 / 8 over the learning rate for the epochs, the patience and the burn-in; on SNARE-seq's
# 3,767 train cells 1,632 / 136 / 272 of this model's epochs, where the shipped 400 / 100 / 67 give
# its burn-in a quarter of scglue's steps); from the shipped model (two stages)
GRIDS["noanchor_glue_steps"] = {**SHIPPED_NOANCHOR, "training.budget": ["epochs", "glue"]}
# a thirty-fourth, the reading's fourth difference: scglue steps the discriminator first, on a
# fresh forward pass, then the encoders against it; the shipped model the reverse on one pass
GRIDS["noanchor_glue_order"] = {**SHIPPED_NOANCHOR, "adversary_order": ["after", "before"]}
# a thirty-fifth: the graph-tied VAE alone (no adversary, one stage: abl_noanchor_graph's settings),
# where GLUE's VAE sets up a better correspondence on SNARE-seq's test cells (ablation ladders,
# 2026-11-27): GLUE's VAE parts one at a time, then all at once, asked of the train cells only:
# its ATAC input (LSI over all peaks), with its decoded peaks (the linked ones), its RNA input
# (PCA), its variational feature embeddings, its batch-normalised encoders, all of those with its
# NB on peak counts and its per-feature likelihood, then those two alone
VAE_PARTS_KEY = ("rna_input,atac_input,atac_features,likelihoods,likelihood_scale,graph_weight,"
                 "graph_decoder,norm")
#: this model's values of VAE_PARTS_KEY, and what each of GLUE's VAE parts sets instead
VAE_BASE_PARTS = {"rna_input": "counts", "atac_input": "lsi+peaks", "atac_features": "all",
                  "likelihoods": {}, "likelihood_scale": "sum", "graph_weight": 0.1,
                  "graph_decoder": "embedding", "norm": "layer"}
GLUE_VAE_PARTS = [{"atac_input": "lsi_all"}, {"atac_input": "lsi_all", "atac_features": "linked"},
                  {"rna_input": "pca"}, {"graph_decoder": "glue"}, {"norm": "batch"},
                  {"likelihoods": {"atac": "nb"}},
                  {k: GLUE_PER_FEATURE[k] for k in ("likelihood_scale", "graph_weight")}]


def vae_parts(*parts: dict) -> tuple:
    """VAE_PARTS_KEY's values with ``parts`` of GLUE's VAE put into this model's."""
    values = {k: v for part in (VAE_BASE_PARTS, *parts) for k, v in part.items()}
    return tuple(values[k] for k in VAE_PARTS_KEY.split(","))


GRIDS["noanchor_vae_parts"] = {
    **{k: v for k, v in SHIPPED_NOANCHOR.items()
       if k not in ("atac_input", "graph_decoder", "glue_stages", "disc_hidden,disc_depth,"
                    "disc_dropout,disc_steps", "align_burnin")},
    "latent_adversarial_weight": [0.0], "glue_stages": [False],
    # this model's VAE, the first five parts one at a time, all at once, then the last two alone
    VAE_PARTS_KEY: [vae_parts(), *[vae_parts(p) for p in GLUE_VAE_PARTS[:5]],
                    vae_parts(*GLUE_VAE_PARTS), *[vae_parts(p) for p in GLUE_VAE_PARTS[5:]]]}
# a thirty-sixth: which of GLUE's VAE parts carry the all-at-once configuration above (the one
# the rule ranked first on SNARE-seq over seeds 0-1): that configuration, then each part left out
# in turn (its ATAC input with its decoded peaks, the decoded peaks only, its RNA input, its
# feature embeddings, batch norm, NB peaks, the per-feature likelihood)
VAE_PARTS_LEFT_OUT = [(), (0, 1), (1,), (2,), (3,), (4,), (5,), (6,)]
GRIDS["noanchor_vae_parts_loo"] = {
    **GRIDS["noanchor_vae_parts"],
    VAE_PARTS_KEY: [vae_parts(*[p for j, p in enumerate(GLUE_VAE_PARTS) if j not in out])
                    for out in VAE_PARTS_LEFT_OUT]}
# a thirty-seventh: the three parts whose removal cost the all-at-once configuration most on
# SNARE-seq's train cells (the per-feature likelihood, NB peaks, the feature embeddings), put
# into this model's VAE without the other four, against all seven
GRIDS["noanchor_vae_parts_core"] = {
    **GRIDS["noanchor_vae_parts"],
    VAE_PARTS_KEY: [vae_parts(*GLUE_VAE_PARTS), vae_parts(*[GLUE_VAE_PARTS[j] for j in (3, 5, 6)])]}
# a thirty-eighth: all seven of GLUE's VAE parts (the configuration the rule ranked first among
# the graph-tied VAEs without an adversary) put into the shipped anchor-free model, adversary and
# two stages kept, against the shipped model; with the per-feature likelihood the adversary's
# weight is GLUE's in those units (GLUE_PER_FEATURE, as in noanchor_per_feature), on all four
# stand-ins
GRIDS["noanchor_vae_parts_adv"] = {
    **{k: v for k, v in SHIPPED_NOANCHOR.items()
       if k not in ("atac_input", "graph_decoder", "latent_adversarial_weight")},
    VAE_PARTS_KEY + ",latent_adversarial_weight": [
        (*vae_parts(), *SHIPPED_NOANCHOR["latent_adversarial_weight"]),
        (*vae_parts(*GLUE_VAE_PARTS), GLUE_PER_FEATURE["latent_adversarial_weight"])]}
# a thirty-ninth: GLUE rebuilt in this model, every difference the grids above asked one or a few
# at a time put in at once (noanchor_glue_everything's parts, optimiser, schedule, noise and
# graph pairs; then scglue's decoded peaks (the linked ones), graph convolution, budget in
# optimiser steps and update order, found after that grid was asked), against the shipped model:
# whether this model can align SNARE-seq as GLUE's first stage does, before asking which part
GLUE_READINGS_KEY = ("training.optimizer,training.lr_plateau_patience,burnin_noise_scale,"
                     "graph_sampling,graph_negatives,atac_features,graph_norm,graph_init,"
                     "training.budget,adversary_order")
GLUE_READINGS = ("rmsprop", 50, "batch_std", "glue", 10, "linked", "target", "zero", "glue",
                 "before")
#: this model's values of GLUE_READINGS_KEY (its defaults)
CHOSEN_READINGS = ("adamw", 0, "unit", "uniform", 1, "all", "symmetric", "random", "epochs",
                   "after")
GRIDS["noanchor_glue_rebuilt"] = {
    **{k: v for k, v in SHIPPED_NOANCHOR.items()
       if k not in ("atac_input", "graph_decoder", "latent_adversarial_weight", "glue_stages")},
    f"{GLUE_ALL_KEY},{GLUE_READINGS_KEY}": [
        (*CHOSEN_PARTS[:8], True, *CHOSEN_PARTS[9:], *CHOSEN_READINGS),
        (*GLUE_ALL_PARTS, *GLUE_READINGS)]}
# a fortieth: the rebuilt configuration without the two of GLUE's parts that anti-align RNA+ADT
# when put into this model alone (its variational feature embeddings and its per-feature
# likelihood, with the weights in this model's summed units): whether the SNARE-seq gain of the
# rebuilt configuration survives without them, and whether CITE-seq stops anti-aligning
#: the two parts and the GLUE_ALL_KEY values this model has in their place
RNA_ADT_BREAKERS = {"likelihood_scale": "sum", "latent_adversarial_weight": 0.01,
                    "graph_weight": 0.1, "graph_decoder": "embedding"}


def rebuilt_with(this_model: dict) -> dict:
    """The rebuilt grid with one more configuration: the rebuilt one with these GLUE_ALL_KEY
    keys at this model's values."""
    parts = tuple(this_model.get(k, v)
                  for k, v in zip(GLUE_ALL_KEY.split(","), GLUE_ALL_PARTS, strict=True))
    key = f"{GLUE_ALL_KEY},{GLUE_READINGS_KEY}"
    return {**GRIDS["noanchor_glue_rebuilt"],
            key: [*GRIDS["noanchor_glue_rebuilt"][key], (*parts, *GLUE_READINGS)]}


GRIDS["noanchor_glue_rebuilt_lean"] = rebuilt_with(RNA_ADT_BREAKERS)
# a forty-first: the rebuilt configuration with only GLUE's variational feature embeddings put
# back to this model's plain ones (its per-feature likelihood and weights kept), the part that
# anti-aligns CITE-seq in it; asked on the RNA+ATAC stand-ins, as the candidate of a recipe for
# that modality pair, against the shipped and the rebuilt models
GRIDS["noanchor_glue_rebuilt_atac"] = rebuilt_with({"graph_decoder": "embedding"})
# a forty-second: the RNA+ATAC recipe as it ships since 2026-11-28, the rebuilt configuration
# with scglue's graph batches (graph_batches 32; and one draw of GLUE's feature embeddings per
# step, which the code does since then), against the shipped model, on the RNA+ATAC stand-ins:
# whether the rule still ranks GLUE's parts first once they are built as scglue runs them
_REBUILT_KEY = f"{GLUE_ALL_KEY},{GLUE_READINGS_KEY}"
GRIDS["noanchor_glue_batches_atac"] = {
    **{k: v for k, v in GRIDS["noanchor_glue_rebuilt"].items() if k != _REBUILT_KEY},
    f"{_REBUILT_KEY},graph_batches": [
        (*config, batches)
        for config, batches in zip(GRIDS["noanchor_glue_rebuilt"][_REBUILT_KEY], (1, 32),
                                   strict=True)]}
# a forty-third, the full model on RNA+ADT: the shipped anchor-free model with dmmvae_gw's
# structure-only anchors added (the GW coupling over the views of 20 / 30 / 50 components, weight
# 1), against the shipped model, on the RNA+ADT stand-ins (whose linked genes are few): whether
# the coupling and the graph-tied adversary add up, as a candidate of an rna_adt recipe
GRIDS["noanchor_plus_gw"] = {
    **{k: v for k, v in SHIPPED_NOANCHOR.items() if k != "anchor_weight"},
    "anchor_weight,anchor_space,anchor_scope,anchor_components": [
        (0.0, "features", "batch", 20), (1.0, "gw", "global", (20, 30, 50))]}
# the forty-fourth and forty-fifth, the full model: the shipped anchor-free model with
# dmmvae_global's anchors added (Seurat's global anchors in the CCA space of the linked genes, 3
# components, 5 mutual neighbours, weight 1 as every anchored variant has it; against per-feature
# likelihoods at the RNA+ATAC recipe) or not: whether the anchors and the anchor-free model's
# parts add up, per modality pair
#: the anchors off (the defaults), then dmmvae_global's
PLUS_CCA_ANCHORS = {"anchor_weight,anchor_space,anchor_scope,anchor_components,n_knn": [
    (0.0, "features", "batch", 20, 5), (1.0, "cca", "global", 3, 5)]}
# on RNA+ATAC at its recipe (noanchor_glue_batches_atac's second configuration)
GRIDS["noanchor_recipe_plus_anchors"] = {
    **{k: v for k, v in GRIDS["noanchor_glue_batches_atac"].items()
       if k not in (f"{_REBUILT_KEY},graph_batches", "anchor_weight")},
    f"{_REBUILT_KEY},graph_batches": GRIDS["noanchor_glue_batches_atac"][
        f"{_REBUILT_KEY},graph_batches"][1:],
    **PLUS_CCA_ANCHORS}
# on RNA+ADT, where it has no recipe
GRIDS["noanchor_shipped_plus_anchors"] = {
    **{k: v for k, v in SHIPPED_NOANCHOR.items() if k != "anchor_weight"}, **PLUS_CCA_ANCHORS}
# a forty-sixth, the full model on RNA+ADT: dmmvae_gw (its settings in config/diagonal.yaml) with
# its global anchors refreshed from the latent space every 10 epochs after the warm-up
# (``anchor_refresh``: MaxFuse's and scMODAL's refinement of their matches), or not
GRIDS["gw_refresh"] = {
    "guidance_graph": [True], "anchor_space": ["gw"], "anchor_scope": ["global"],
    "anchor_components": [(20, 30, 50)], "training.early_stopping_patience": [30],
    "anchor_refresh": [0, 10]}
# a forty-seventh, its training budget on RNA+ADT: in gw_refresh most fits ran to the cap
# (best epoch 44-99 of 100, patience 30), so whether a longer budget helps
GRIDS["gw_budget"] = {
    **{k: v for k, v in GRIDS["gw_refresh"].items()
       if k not in ("anchor_refresh", "training.early_stopping_patience")},
    "anchor_refresh": [10],
    "training.max_epochs,training.early_stopping_patience": [(100, 30), (200, 30), (400, 30)]}
RULE_OF_GRID = {"noanchor_vae_parts": "anchors+labels", "noanchor_vae_parts_loo": "anchors+labels",
                "noanchor_vae_parts_core": "anchors+labels", "noanchor_vae_parts_adv": "anchors+labels",
                "noanchor_glue_rebuilt": "anchors+labels",
                "noanchor_glue_rebuilt_lean": "anchors+labels",
                "noanchor_glue_rebuilt_atac": "anchors+labels",
                "noanchor_glue_batches_atac": "anchors+labels",
                "noanchor_glue_order": "anchors+labels", "noanchor_glue_steps": "anchors+labels",
                "noanchor_glue_graph": "anchors+labels", "noanchor_linked_peaks": "anchors+labels",
                "noanchor_stages": "anchors+labels", "noanchor_glue_dynamics": "anchors+labels",
                "noanchor_glue_everything": "anchors+labels", "noanchor_glue_all": "anchors+labels",
                "noanchor_capacity": "anchors+labels", "noanchor_rna_input": "anchors+labels",
                "noanchor_glue_parts": "anchors+labels", "noanchor_glue_budget": "anchors+labels",
                "noanchor_atac_likelihood": "anchors+labels", "noanchor_atac_input": "anchors+labels",
                "noanchor_per_feature": "anchors+labels",
                "noanchor_plus_anchors": "anchors+labels", "noanchor_plus_gw": "anchors+labels",
                "noanchor_recipe_plus_anchors": "anchors+labels",
                "noanchor_shipped_plus_anchors": "anchors+labels", "gw_refresh": "anchors+labels",
                "gw_budget": "anchors+labels",
                "global_adversary": "anchors+labels", "noanchor_adversary": "anchors+labels",
                "atac": "anchors+labels", "latent": "anchors+labels",
                "latent_lsipeaks": "anchors+labels", "noanchor": "anchors+labels",
                "noanchor_glue": "anchors+labels", "noanchor_budget": "anchors+labels",
                "default_atac_input": "imputation",
                "default_graph_imputation": "imputation"}
#: grids asked of another scenario than the diagonal one, and on other stand-ins
SCENARIO_OF_GRID = {"default_atac_input": "paired", "default_graph_imputation": "paired"}
DATASETS_OF_GRID = {g: ["snare_mop5232", "bmmc_multiome500"]
                    for g in [*SCENARIO_OF_GRID, "noanchor_atac_input", "noanchor_atac_likelihood",
                              "noanchor_linked_peaks", "noanchor_vae_parts",
                              "noanchor_vae_parts_loo", "noanchor_vae_parts_core",
                              "noanchor_glue_rebuilt_atac", "noanchor_glue_batches_atac",
                              "noanchor_recipe_plus_anchors"]}
DATASETS_OF_GRID["noanchor_plus_gw"] = ["cite_bmmc600", "teaseq_pbmc1262"]
DATASETS_OF_GRID["noanchor_shipped_plus_anchors"] = ["cite_bmmc600", "teaseq_pbmc1262"]
DATASETS_OF_GRID["gw_refresh"] = ["cite_bmmc600", "teaseq_pbmc1262"]
DATASETS_OF_GRID["gw_budget"] = ["cite_bmmc600", "teaseq_pbmc1262"]



#: D-MMVAE's grids asked again with the signals that read only the modality each train cell
#: shows (before 2026-11-26 ``selection._codes`` also encoded each diagonal train cell from its
#: hidden modality): ``--reask-report`` sets each grid's choice on its first rows
#: (``dmmvae_sweep_<grid>.csv``) beside its choice on the rows asked again
#: (``dmmvae_reask_<grid>.csv``), over the configurations asked again on all their stand-ins
#: and seeds, so a grid still running is compared on what it has
REASK_KEYS = ["config", "dataset", "seed"]


def old_rows(grid: str) -> pd.DataFrame:
    """The grid's rows as first asked (the first grid's file has no seed column: seed 0)."""
    name = "dmmvae_sweep.csv" if grid == "adversaries" else f"dmmvae_sweep_{grid}.csv"
    rows = pd.read_csv(OUT.parent / name)
    return rows.assign(seed=rows["seed"] if "seed" in rows else 0)


def compare_reask(grid: str, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """The rule's choice on ``old`` and on ``new`` over the configurations ``new`` holds on every
    (stand-in, seed) ``old`` asked them on."""
    rule = RULE_OF_GRID.get(grid, "anchors")
    both = old[REASK_KEYS].merge(new[REASK_KEYS], on=REASK_KEYS)
    asked = old.groupby("config").size()
    done = both.groupby("config").size().reindex(asked.index, fill_value=0)
    n_cells = len(old[["dataset", "seed"]].drop_duplicates())
    complete = both[both["config"].isin(done.index[done == asked])]
    if complete["config"].nunique() < 2 and both["config"].nunique() > 1:
        # fewer than two configurations asked again everywhere: compare on the (stand-in,
        # seed) cells every configuration asked again holds (e.g. all but the slowest
        # stand-in), old and new alike
        complete = common_cells(both)
    both = complete
    n_cfg = old["config"].nunique()
    if both.empty:
        return {}
    a = rank(old.merge(both, on=REASK_KEYS), rule)
    b = rank(new.merge(both, on=REASK_KEYS), rule)
    margin = b["rule"].iloc[1] - b["rule"].iloc[0] if len(b) > 1 else float("nan")
    n_compared = len(both[["dataset", "seed"]].drop_duplicates())
    return {"grid": grid, "rule": rule, "rows_compared": len(both), "rows_asked_first": len(old),
            "cells_compared": f"{n_compared} of {n_cells}",
            "configurations_compared": both["config"].nunique(), "configurations": n_cfg,
            "choice_before": a.index[0], "choice_now": b.index[0],
            "same_choice": a.index[0] == b.index[0],
            "rule_before": a["rule"].iloc[0], "rule_now": b["rule"].iloc[0],
            "margin_now": margin,
            "rank_now_of_choice_before": int(list(b.index).index(a.index[0])) + 1,
            "rank_correlation": a["rule"].corr(b["rule"].reindex(a.index), method="spearman"),
            **more_seeds(rule, old, new[new["config"].isin(both["config"])])}


NO_MORE_SEEDS = {"seeds_now": "", "choice_all_seeds": "", "margin_all_seeds": float("nan")}


def more_seeds(rule: str, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """Where the grid was asked again on more seeds than at first (a near tie asked again over
    seeds): the rule's choice over every seed, once every configuration of ``new`` (those
    compared) has all of them."""
    seeds = sorted(new["seed"].unique())
    if set(seeds) <= set(old["seed"].unique()):
        return NO_MORE_SEEDS
    cells = new.groupby("config")[["dataset", "seed"]].apply(lambda g: len(g.drop_duplicates()))
    full = cells.index[cells == len(seeds) * new["dataset"].nunique()]
    if len(full) < new["config"].nunique():  # still running: no choice over the seeds yet
        return NO_MORE_SEEDS
    t = rank(new[new["config"].isin(full)], rule)
    return {"seeds_now": " ".join(map(str, seeds)), "choice_all_seeds": t.index[0],
            "margin_all_seeds": t["rule"].iloc[1] - t["rule"].iloc[0] if len(t) > 1
            else float("nan")}


#: ``dmmvae_global``'s chain asked again from the first question whose choice changed
#: (``components``: 3, not 5): each later question asked from the re-asked choices before it
#: (``--fix``), on the (stand-in, seed) cells it was first asked on; (grid, held at, tag): its
#: rows are every ``dmmvae_reask_<grid><tag>*.csv`` (one file per process that asked it)
C3 = {"anchor_components": 3}
C3K5 = {**C3, "n_knn": 5}
GLOBAL_CHAIN = [("components", {}, ""), ("scoring", C3, "_c3"), ("knn", C3, "_c3"),
                ("atac", C3K5, "_c3k5"), ("latent_lsipeaks", C3K5, "_c3k5"),
                ("global_adversary", C3K5, "_c3k5")]


def varied(configs: pd.Series) -> list[str]:
    """The keys whose value differs between the configurations (JSON) of a grid."""
    parsed = [json.loads(c) for c in configs.unique()]
    keys = sorted(set().union(*parsed))
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in parsed}) > 1]


def chain_step(grid: str, held: dict, rows: pd.DataFrame) -> dict:
    """One question of the chain asked again: its choice over the rows it has, and whether
    every configuration has every (stand-in, seed) cell the question was first asked on (or,
    where asked again on more seeds, every cell of those)."""
    old = old_rows(grid)
    cells = set(zip(old["dataset"], old["seed"], strict=True)) | set(
        zip(rows["dataset"], rows["seed"], strict=True))
    n_cfg = len(configurations({**GRIDS[grid], **{k: [v] for k, v in held.items()}}))
    have = rows.groupby("config")[["dataset", "seed"]].apply(
        lambda g: len(set(zip(g["dataset"], g["seed"], strict=True)) & cells))
    complete = len(have) == n_cfg and bool((have == len(cells)).all())
    rule = RULE_OF_GRID.get(grid, "anchors")
    table = rank(rows, rule)
    keys = varied(rows["config"])
    best = json.loads(table.index[0])
    return {"grid": grid, "held_at": json.dumps(held, sort_keys=True) if held else "",
            "rule": rule, "configurations": f"{len(have)} / {n_cfg}", "rows": len(rows),
            "cells_per_configuration": len(cells), "complete": complete,
            "choice": ", ".join(f"{k} {json.dumps(best.get(k))}" for k in keys),
            "margin": table["rule"].iloc[1] - table["rule"].iloc[0] if len(table) > 1
            else float("nan")}


def chain_report() -> list[str]:
    """``dmmvae_global``'s chain asked again (:data:`GLOBAL_CHAIN`), as markdown lines."""
    steps = []
    for grid, held, tag in GLOBAL_CHAIN:
        paths = sorted(OUT.parent.glob(f"dmmvae_reask_{grid}{tag}*.csv"))
        if paths:
            steps.append(chain_step(grid, held, pd.concat([pd.read_csv(p) for p in paths])))
    if not steps:
        return []
    table = pd.DataFrame(steps).round(4)
    return ["", "## `dmmvae_global`'s chain asked again from its first changed choice", "",
            "Each question asked from the re-asked choices before it (held at); `complete`: "
            "every configuration on every (stand-in, seed) cell the question was asked on.", "",
            table.to_markdown(index=False)]


def reask_report() -> None:
    """Each grid asked again: its choices before and now, to results/dmmvae_reask.{csv,md}."""
    out = []
    for grid in GRIDS:
        path = OUT.parent / f"dmmvae_reask_{grid}.csv"
        if path.exists():
            row = compare_reask(grid, old_rows(grid), pd.read_csv(path))
            if row:
                out.append(row)
    table = pd.DataFrame(out)
    with atomic_path(OUT.parent / "dmmvae_reask.csv") as tmp:
        table.to_csv(tmp, index=False)
    show = table.drop(columns=["choice_before", "choice_now", "choice_all_seeds"]).round(4)
    lines = ["# D-MMVAE's grids asked again with signals that read only shown modalities", "",
             show.to_markdown(index=False), "", "Choices (configuration JSON):", ""]
    for r in table.itertuples():
        lines.append(f"- `{r.grid}`: before {r.choice_before}; now {r.choice_now}"
                     + (f"; over seeds {r.seeds_now}: {r.choice_all_seeds}" if r.seeds_now else ""))
    text = "\n".join([*lines, *chain_report()]) + "\n"
    write_text(OUT.parent / "dmmvae_reask.md", text)
    print(text)


def fixed(pairs: list[str]) -> dict[str, list]:
    """``--fix KEY=JSON`` pairs as grid entries of one value each."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--fix {pair!r}: expected KEY=JSON, e.g. anchor_components=3")
        out[key] = [json.loads(value)]
    return out


def split_params(params: dict) -> tuple[dict, dict]:
    """A configuration's model parameters and its training-loop settings (``training.`` keys,
    prefix dropped)."""
    model = {k: v for k, v in params.items() if not k.startswith(TRAINING)}
    training = {k[len(TRAINING):]: v for k, v in params.items() if k.startswith(TRAINING)}
    return model, training


def same_model(a: str, b: str) -> bool:
    """Whether two configurations (JSON) fit the same model: the model's parameters with its
    defaults filled in, and the same ``training.`` keys with the training defaults filled in."""
    from dmmvae.methods import MODELS
    from dmmvae.schema import schema_defaults

    defaults, loop = MODELS["dmmvae"].DEFAULTS, schema_defaults("training")
    (model_a, train_a), (model_b, train_b) = split_params(json.loads(a)), split_params(json.loads(b))
    return ({**loop, **train_a} == {**loop, **train_b}
            and {**defaults, **model_a} == {**defaults, **model_b})


def copied_rows(paths: list[Path], todo: list[dict], datasets, seed: int, done: set) -> list[dict]:
    """Rows of other grids' files (``--copy-from``) whose configuration fits the same model as
    one of ``todo``'s, on these stand-ins and seed: renamed to this grid's configuration and
    marked in ``source``, so that a question's unchanged configuration is not fitted twice."""
    keys = [json.dumps(params, sort_keys=True) for params in todo]
    out = []
    for path in paths:
        rows = pd.read_csv(path)
        missing = {"config", "dataset", "seed"} - set(rows.columns)
        if missing:
            raise SystemExit(f"--copy-from {path}: no {', '.join(sorted(missing))} column (a sweep "
                             "file written before rows carried their seed); leave it out of "
                             "--copy-from")
        for r in rows.to_dict("records"):
            for key in keys:
                cell = (key, r["dataset"], int(r["seed"]))
                if (r["dataset"] in datasets and int(r["seed"]) == seed and cell not in done
                        and same_model(key, r["config"])):
                    done.add(cell)
                    out.append({**r, "config": key, "source": f"copied from {path.name} (the "
                                "same model, defaults filled in), not re-run"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=None,
                    help=f"default: {DATASETS} (the grid's own where DATASETS_OF_GRID names them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="adversaries",
                    help="adversaries: the 16-config grid; graph: frozen config x guidance_graph; "
                         "scope: minibatch vs global anchors; components: the global anchors' CCA width; "
                         "scoring: global anchors weighted by Seurat's score or not; "
                         "knn: the global anchors' mutual neighbour count; "
                         "atac_input: what the ATAC encoder reads; "
                         "capacity: latent width and ATAC likelihood; "
                         "atac: ATAC input x likelihood, by the anchors+labels rule; "
                         "latent: the latent width with those ATAC settings, by the same rule; "
                         "latent_lsipeaks: the latent width with LSI + peaks and Bernoulli (the "
                         "atac grid's choice over seeds 0-2); noanchor, noanchor_glue: the "
                         "anchor-free model; noanchor_budget: its training budget; noanchor_adversary: GLUE's "
                         "discriminator and burn-in for it; noanchor_atac_input: its ATAC encoder "
                         "input (GLUE's LSI over all peaks); noanchor_per_feature: its loss as GLUE "
                         "weighs it (per-feature likelihood, GLUE's weights); noanchor_rna_input: its RNA "
                         "encoder input (GLUE's PCA); noanchor_atac_likelihood: its ATAC likelihood "
                         "(GLUE's NB on peak counts); noanchor_glue_parts: GLUE's variational feature "
                         "embeddings and minimax adversary; noanchor_stages: GLUE's two training "
                         "stages; noanchor_glue_all: all of GLUE's parts at once; "
                         "noanchor_glue_dynamics: GLUE's optimiser, learning-rate schedule and "
                         "burn-in noise; noanchor_glue_everything: all of those at once with "
                         "scglue's graph pairs; noanchor_glue_graph: scglue's graph "
                         "convolution (target-degree weights, zero start); noanchor_glue_steps: "
                         "scglue's budget in optimiser steps; noanchor_glue_order: scglue's "
                         "update order (discriminator first); "
                         "noanchor_linked_peaks: GLUE's decoded peaks "
                         "(linked only) with its ATAC input; noanchor_vae_parts: the graph-tied "
                         "VAE alone (no adversary) with GLUE's VAE parts one at a time and all "
                         "at once; noanchor_vae_parts_loo: all at once, then each part left out; "
                         "noanchor_vae_parts_core: the three parts that leaving out cost most; "
                         "noanchor_vae_parts_adv: all seven in the shipped model, adversary kept; "
                         "noanchor_glue_rebuilt: every difference from scglue asked so far, at "
                         "once, against the shipped model; "
                         "noanchor_glue_rebuilt_lean: that without GLUE's feature embeddings "
                         "and per-feature likelihood; noanchor_glue_rebuilt_atac: that "
                         "without its feature embeddings only, on the RNA+ATAC stand-ins; "
                         "noanchor_glue_batches_atac: the shipped RNA+ATAC recipe (rebuilt, "
                         "with scglue's graph batches) against the shipped model; "
                         "noanchor_plus_gw: dmmvae_gw's GW anchors added to the anchor-free "
                         "model (RNA+ADT stand-ins); noanchor_recipe_plus_anchors: dmmvae_global's "
                         "CCA anchors added to it at its RNA+ATAC recipe (RNA+ATAC stand-ins); "
                         "noanchor_shipped_plus_anchors: the same anchors added to the "
                         "shipped anchor-free model (RNA+ADT stand-ins); "
                         "default_atac_input, default_graph_imputation: the "
                         "default dmmvae's ATAC input / guidance graph by paired held-back "
                         "imputation")
    ap.add_argument("--only", type=int, default=None,
                    help="run only the grid's configuration of this number (0-based), e.g. one "
                         "process per configuration; the report still ranks every row of --out")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default) or cuda; compare configurations fitted on one device only")
    ap.add_argument("--patience", type=int, default=None,
                    help="training early_stopping_patience (default: the loop's, 10)")
    ap.add_argument("--fix", nargs="+", default=[], metavar="KEY=JSON",
                    help="hold a key of the grid at another value, e.g. anchor_components=3: "
                         "a later question of a chain asked again from another earlier choice")
    ap.add_argument("--copy-from", nargs="+", type=Path, default=[], metavar="CSV",
                    help="rows of these sweep files whose configuration fits the same model as "
                         "one of the grid's (defaults filled in) are copied, marked in 'source', "
                         "not fitted again")
    ap.add_argument("--reask-report", action="store_true",
                    help="only the table of every grid asked again (results/dmmvae_reask.md)")
    args = ap.parse_args()
    if args.reask_report:
        return reask_report()
    grid = {**GRIDS[args.grid], **fixed(args.fix)}
    datasets = args.datasets or DATASETS_OF_GRID.get(args.grid, DATASETS)
    kind = SCENARIO_OF_GRID.get(args.grid, "diagonal")
    if not args.report_only:
        import torch

        from dmmvae.methods import build_model

        torch.set_num_threads(1)
        os.chdir(ROOT)
        config = load_config(CONFIG)
        training = {**config["training"], "max_epochs": args.max_epochs}
        if args.patience is not None:
            training["early_stopping_patience"] = args.patience
        # resumes: a (configuration, stand-in, seed) already in --out is not trained again
        rows = pd.read_csv(args.out).to_dict("records") if args.out.exists() else []
        done = {(r["config"], r["dataset"], int(r["seed"])) for r in rows}
        # the one door: train cells only, the test cells are not in memory from here on
        data = {name: train_only(diagonal_scenario(config, name, args.seed, kind=kind))
                for name in datasets}
        todo = configurations(grid)
        if args.only is not None:
            todo = [todo[args.only]]

        def save() -> None:
            with atomic_path(args.out) as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False)

        copied = copied_rows(args.copy_from, todo, data, args.seed, done)
        if copied:
            rows += copied
            save()
        for params in todo:
            model_params, run_training = split_params(params)
            run_training = {**training, **run_training}
            for name, sc in data.items():
                if (json.dumps(params, sort_keys=True), name, args.seed) in done:
                    print(f"{name}: {params} already in {args.out}, skipped", flush=True)
                    continue
                m = build_model("dmmvae", model_params)
                t0 = time.perf_counter()
                hist = m.fit(sc, training=run_training, seed=args.seed, device=args.device)
                secs = time.perf_counter() - t0
                best = int(m.train_info["best_epoch"])
                at_best = hist.set_index("epoch").loc[best]
                rows.append({"config": json.dumps(params, sort_keys=True), "dataset": name,
                             "seed": args.seed,
                             "validation_anchors": float(at_best.get("validation_anchors", float("nan"))),
                             "validation_loss": float(at_best["validation_loss"]),
                             "validation_anchor_foscttm": validation_anchor_foscttm(
                                 m, sc, run_training, args.seed),
                             "train_label_transfer": train_label_transfer(m, sc),
                             "heldback_code_spread": heldback_code_spread(
                                 m, sc, run_training, args.seed),
                             "best_epoch": best, "train_seconds": secs, "device": args.device})
                imputation = validation_imputation(m, sc, run_training, args.seed)
                if imputation:  # scenarios whose held-back cells show two modalities
                    rows[-1]["validation_imputation"] = sum(imputation.values()) / len(imputation)
                    rows[-1].update({f"validation_imputation/{k}": v for k, v in imputation.items()})
                print(rows[-1], flush=True)
                save()
    rows = pd.read_csv(args.out)
    rows = rows.assign(seed=rows["seed"] if "seed" in rows else 0)  # the first grid's: seed 0
    rule = RULE_OF_GRID.get(args.grid, "anchors")
    common = common_cells(rows)
    table = rank(common, rule)
    print(table.round(4).to_string())
    print(collapsed(rows))
    if note := incomplete(rows, common):
        print(f"\n{note}")
    print(f"\nchosen by the rule '{rule}' (lowest mean): {table.index[0]}")


if __name__ == "__main__":
    main()

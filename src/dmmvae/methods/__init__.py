"""Model registry: a plain dict from config name to class (see ``_base.Method``)."""

from __future__ import annotations

from ._base import (
    PAIR_RECIPES,
    Method,
    MissingDependencyError,
    MissingLinksError,
    MissingPairsError,
    NotApplicableError,
    apply_recipe,
    modality_kinds,
    pair_recipe,
    with_recipe,
)
from .baselines.controls import KnnRegression, PcaCca, RandomEmbedding
from .baselines.gw_anchors import GWAnchors
from .baselines.gw_ot import GromovWassersteinOT
from .baselines.linked_cca import LinkedCCA
from .baselines.seurat_v3 import SeuratV3
from .external.glue import GLUE
from .external.maxfuse import MaxFuse
from .external.scvi_refs import MultiVI, TotalVI
from .modules.mlp_fusion import MLPFusion
from .modules.mmvae import MMVAE
from .modules.mmvae_plus import MMVAEPlus
from .modules.mopoe import MoPoE
from .modules.mvae import MVAE
from .training.loop import TrainingFailure
from .training.model import DMMVAEModel, MMAAVIModel, ScMODALModel, VAEModel, vae_model

MODELS: dict[str, type[Method]] = {
    "pca_cca": PcaCca,
    "knn_regression": KnnRegression,
    "random": RandomEmbedding,
    "linked_cca": LinkedCCA,
    "seurat_v3": SeuratV3,
    "gw_ot": GromovWassersteinOT,
    "gw_anchors": GWAnchors,
    "glue": GLUE,
    "maxfuse": MaxFuse,
    "mvae": vae_model(MVAE),
    "mmvae": vae_model(MMVAE),
    "mopoe": vae_model(MoPoE),
    "mlp_fusion": vae_model(MLPFusion),
    "mmvae_plus": vae_model(MMVAEPlus),
    "dmmvae": DMMVAEModel,
    "scmodal": ScMODALModel,
    "mmaavi": MMAAVIModel,
    "totalvi": TotalVI,
    "multivi": MultiVI,
}


def get_model_class(name: str) -> type[Method]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; valid models are {sorted(MODELS)}") from None


def build_model(name: str, params: dict | None = None) -> Method:
    return get_model_class(name)(**(params or {}))


__all__ = [
    "MODELS",
    "PAIR_RECIPES",
    "apply_recipe",
    "with_recipe",
    "modality_kinds",
    "pair_recipe",
    "VAEModel",
    "Method",
    "MissingDependencyError",
    "MissingLinksError",
    "MissingPairsError",
    "NotApplicableError",
    "TrainingFailure",
    "build_model",
    "vae_model",
    "get_model_class",
]

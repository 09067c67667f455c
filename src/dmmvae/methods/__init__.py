"""Model registry: a plain dict from config name to class (see ``_base.Method``)."""

from __future__ import annotations

from ._base import (
    Method,
    MissingDependencyError,
    MissingLinksError,
    MissingPairsError,
    NotApplicableError,
)
from ._loop import TrainingFailure
from ._model import DMMVAEModel, MMAAVIModel, VAEModel, vae_model
from .controls import KnnRegression, PcaCca, RandomEmbedding
from .glue import GLUE
from .gw_anchors import GWAnchors
from .gw_ot import GromovWassersteinOT
from .linked_cca import LinkedCCA
from .maxfuse import MaxFuse
from .mlp_fusion import MLPFusion
from .mmvae import MMVAE
from .mmvae_plus import MMVAEPlus
from .mopoe import MoPoE
from .mvae import MVAE
from .scmodal import ScMODAL
from .scvi_refs import MultiVI, TotalVI
from .seurat_v3 import SeuratV3

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
    "scmodal": vae_model(ScMODAL),
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

"""The contract every method of the benchmark follows (VAE variants, controls, reference tools)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import mudata as md
import pandas as pd

from ..constants import MODALITY_KIND
from ..io import Predictions

#: Modality pairs that have a recipe name (by the kinds of their two modalities, in any order):
#: the keys of a model entry's ``recipes`` and of MaxFuse's authors' recipes.
PAIR_RECIPES: dict[frozenset[str], str] = {
    frozenset({"rna", "atac"}): "rna_atac",
    frozenset({"rna", "adt"}): "cite",
}


def modality_kinds(mdata: md.MuData) -> tuple[str, ...]:
    """The kind of each modality of ``mdata`` (``uns["modality_kind"]``, else its name)."""
    return tuple(str(mdata.mod[m].uns.get(MODALITY_KIND, m)) for m in mdata.mod)


def pair_recipe(kinds: tuple[str, ...]) -> str | None:
    """The recipe name of data whose modalities are of these kinds (None: no recipe names it)."""
    return PAIR_RECIPES.get(frozenset(kinds)) if len(kinds) == 2 else None


def apply_recipe(
    params: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None,
    recipes: Mapping[str, Mapping[str, Any]] | None,
    kinds: tuple[str, ...],
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """A model entry's parameters and training settings for data whose modalities are of these
    kinds: the entry's own, with its recipe for that pair on top (``recipes[name]`` holds
    ``params`` and ``training``, each overriding key by key). Returns (params, training, the
    recipe applied or None)."""
    name = pair_recipe(kinds)
    recipe = (recipes or {}).get(name) if name else None
    if recipe is None:
        return dict(params or {}), dict(training or {}), None
    return (with_recipe(params, recipe, "params"), with_recipe(training, recipe, "training"),
            name)


def with_recipe(
    settings: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None, part: str
) -> dict[str, Any]:
    """An entry's ``part`` (``"params"`` or ``"training"``) with the recipe's on top, key by key."""
    return {**(settings or {}), **((recipe or {}).get(part) or {})}


class MissingDependencyError(ModuleNotFoundError):
    """An optional dependency of a method (e.g. scvi-tools) is not installed.

    ``run_training`` records it as a failure with reason ``not_installed``, so the rest of the
    grid runs and the tables show why that model has no numbers.
    """


class NotApplicableError(RuntimeError):
    """The method does not apply to this scenario or dataset (``reason`` names why);
    ``run_training`` records a failure with that reason instead of stopping the grid."""

    reason = "not_applicable"


class MissingPairsError(NotApplicableError):
    """The method needs train cells that show two modalities, and the scenario has none."""

    reason = "missing_pairs"


class MissingLinksError(NotApplicableError):
    """The method needs linked features (PROTOCOL "Linked features"), and the data have none."""

    reason = "missing_links"


class Method(ABC):
    """A method: ``fit`` on the train cells of a scenario, ``predict`` on its test cells.

    - ``DEFAULTS`` lists every parameter the method accepts, with its default; a config that
      names another parameter fails with a message listing the valid ones.
    - ``fit`` sees only train cells and, for each, only the modalities its
      ``obs["visible_<mod>"]`` column allows (the scenario mask).
    - ``predict`` encodes every test cell from ONE modality at a time, and returns the
      embeddings, the joint embedding when the method has one, the cross-modal imputations
      for every ordered modality pair in the scoring normalization, and optionally cells
      generated from the prior.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: True when the method needs train cells that show two modalities (e.g. CCA).
    needs_pairs: ClassVar[bool] = False
    #: True for the diagonal controls (PROTOCOL: "diagonal and mosaic"): they ignore any pairing
    #: and apply only where some train cells show one modality, so paired scenarios skip them.
    needs_unpaired: ClassVar[bool] = False
    #: False for a method that reads no linked feature (``uns["links"]``): its fit depends on
    #: the modalities' matrices, the split and the masks alone (SCOT, the random control).
    reads_links: ClassVar[bool] = True
    #: True for torch models (they write a checkpoint of their weights).
    is_neural: ClassVar[bool] = False
    #: True when the method runs on the job's device (CUDA when present); False: CPU only.
    uses_device: ClassVar[bool] = False
    #: The keys of the ``training`` config the method applies ("all" = every key). Whatever
    #: else ``training`` holds is recorded as ignored in ``run_info.yaml``.
    TRAINING_KEYS: ClassVar[frozenset[str] | str] = frozenset()

    def __init__(self, **params: Any) -> None:
        self.validate_params(params)
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> None:
        """Fail with a message naming the valid parameters when ``params`` has an unknown key."""
        unknown = sorted(set(params) - set(cls.DEFAULTS))
        if unknown:
            raise ValueError(
                f"model '{cls.__name__}': unknown parameter(s) {unknown}; "
                f"valid parameters are {sorted(cls.DEFAULTS)}"
            )

    @classmethod
    def applied_training(cls, training: Mapping[str, Any]) -> dict[str, Any]:
        """The part of the resolved ``training`` config this method applies."""
        if cls.TRAINING_KEYS == "all":
            return dict(training)
        return {k: v for k, v in training.items() if k in cls.TRAINING_KEYS}

    @abstractmethod
    def fit(
        self,
        mdata: md.MuData,
        *,
        training: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> pd.DataFrame:
        """Train on the train cells; return the per-epoch history (may be empty).

        ``training`` is the training config (None: the schema defaults; resolved by
        :func:`dmmvae.methods.training.loop.resolve_training`); the method applies the keys named by
        ``TRAINING_KEYS`` and ignores the others.
        """

    @abstractmethod
    def predict(self, mdata: md.MuData) -> Predictions:
        """Embeddings / imputations / generated cells for the test cells of ``mdata``."""

    def save(self, path: str) -> None:  # noqa: B027 - optional hook
        """Write a checkpoint (torch models); controls write nothing but a marker."""
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps({"method": type(self).__name__, "params": self.params}))

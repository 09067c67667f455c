"""The contract every method of the benchmark follows (VAE variants, controls, reference tools)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import mudata as md
import pandas as pd

from ..io import Predictions


class MissingDependencyError(ModuleNotFoundError):
    """An optional dependency of a method (e.g. scvi-tools) is not installed.

    ``run_training`` records it as a failure with reason ``not_installed``, so the rest of the
    grid runs and the tables show why that model has no numbers.
    """


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
    #: True for torch models (they get a device and write a checkpoint).
    is_neural: ClassVar[bool] = False

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

    @abstractmethod
    def fit(
        self,
        mdata: md.MuData,
        *,
        seed: int = 0,
        device: str = "cpu",
        time_limit_s: float | None = None,
    ) -> pd.DataFrame:
        """Train on the train cells; return the per-epoch history (may be empty)."""

    @abstractmethod
    def predict(self, mdata: md.MuData) -> Predictions:
        """Embeddings / imputations / generated cells for the test cells of ``mdata``."""

    def save(self, path: str) -> None:  # noqa: B027 - optional hook
        """Write a checkpoint (torch models); controls write nothing but a marker."""
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps({"method": type(self).__name__, "params": self.params}))

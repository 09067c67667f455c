"""What a model needs to know about the data to build itself: plain dataclasses (no data
files, no MuData), made by :func:`.data.build_spec` and saved in checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class ModalitySpec:
    """What a model needs to know about one modality."""

    name: str
    kind: str
    likelihood: str
    target: str
    n_features: int
    #: RNA: median over train cells of (counts in kept genes) / obs["library_size"]; else 1.
    kept_fraction: float = 1.0
    #: median over train cells of the observed target total (decode library at prediction).
    median_library: float = 1.0
    feature_names: list[str] = field(default_factory=list)


@dataclass
class DataSpec:
    modalities: dict[str, ModalitySpec]
    labels: list[str]
    #: linked features between modality pairs, from the preprocessed file (the data contract of
    #: :mod:`dmmvae.data.links`): ``{(a, b): (i, j, w)}``, features i of a link to j of b
    links: dict[tuple[str, str], tuple[list[int], list[int], list[float]]] = field(
        default_factory=dict
    )

    @property
    def names(self) -> list[str]:
        return list(self.modalities)

    def link(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, w)`` of the links between ``a`` and ``b``, oriented a -> b (empty if none)."""
        if (a, b) in self.links:
            i, j, w = self.links[(a, b)]
        elif (b, a) in self.links:
            j, i, w = self.links[(b, a)]
        else:
            i, j, w = [], [], []
        return np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(w, np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": {k: asdict(v) for k, v in self.modalities.items()},
            "labels": self.labels,
            "links": [[a, b, *map(list, v)] for (a, b), v in self.links.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataSpec:
        links = {(a, b): (i, j, w) for a, b, i, j, w in d.get("links", [])}
        return cls({k: ModalitySpec(**v) for k, v in d["modalities"].items()}, list(d["labels"]),
                   links)


__all__ = ["DataSpec", "ModalitySpec"]

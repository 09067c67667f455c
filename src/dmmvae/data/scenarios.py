"""The PROTOCOL split and the pairing scenarios (paired / diagonal / mosaic).

A scenario is a list of *patterns*: (set of modalities a train cell shows, fraction of train
cells). ``paired``, ``diagonal`` and ``mosaic`` are presets; a config may name its own
patterns for three-modality data. Scenarios only mask what training may see: every cell keeps
all its data, so the true pairing of test cells stays available for scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import mudata as md
import numpy as np

from ..constants import RNA, SPLIT, TEST, TRAIN, visible_key

Pattern = tuple[tuple[str, ...], float]


def protocol_split(n_cells: int, seed: int = 0, train_fraction: float = 0.8) -> np.ndarray:
    """PROTOCOL split: ``perm = default_rng(seed).permutation(n)``; first ``int(0.8 n)`` train."""
    perm = np.random.default_rng(seed).permutation(n_cells)
    n_train = int(train_fraction * n_cells)
    split = np.full(n_cells, TEST, dtype=object)
    split[perm[:n_train]] = TRAIN
    return split


def _paired(mods: Sequence[str], **_) -> list[Pattern]:
    return [(tuple(mods), 1.0)]


def _diagonal(mods: Sequence[str], **_) -> list[Pattern]:
    return [((m,), 1.0 / len(mods)) for m in mods]


def _mosaic(mods: Sequence[str], paired_fraction: float = 0.2, **_) -> list[Pattern]:
    rest = (1.0 - paired_fraction) / len(mods)
    return [(tuple(mods), paired_fraction)] + [((m,), rest) for m in mods]


SCENARIO_KINDS = {"paired": _paired, "diagonal": _diagonal, "mosaic": _mosaic}


def scenario_patterns(
    kind: str,
    modalities: Sequence[str],
    *,
    paired_fraction: float = 0.2,
    patterns: Sequence[dict] | None = None,
) -> list[Pattern]:
    """Resolve a scenario config into patterns. ``patterns`` (custom) overrides ``kind``.

    ``patterns`` items are ``{"modalities": [...], "fraction": f}``; fractions must sum to 1.
    """
    if patterns:
        out = []
        for p in patterns:
            missing = sorted(set(p["modalities"]) - set(modalities))
            if missing:
                raise ValueError(
                    f"scenario pattern names modalities {missing} that the dataset lacks; "
                    f"it has {list(modalities)}"
                )
            out.append((tuple(p["modalities"]), float(p["fraction"])))
    else:
        if kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario kind '{kind}'; valid kinds are {sorted(SCENARIO_KINDS)}")
        out = SCENARIO_KINDS[kind](list(modalities), paired_fraction=paired_fraction)
    total = sum(f for _, f in out)
    if not np.isclose(total, 1.0):
        raise ValueError(f"scenario pattern fractions sum to {total:.3f}; they must sum to 1")
    return out


def assign_patterns(n_train: int, patterns: Sequence[Pattern], seed: int = 0) -> np.ndarray:
    """Give each train cell a pattern index; group sizes follow the fractions (largest remainder)."""
    fr = np.array([f for _, f in patterns], dtype=float)
    raw = fr * n_train
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes))[: n_train - sizes.sum()]:
        sizes[i] += 1
    labels = np.repeat(np.arange(len(patterns)), sizes)
    return np.random.default_rng(seed).permutation(labels)


def make_scenario(
    mdata: md.MuData,
    kind: str = "paired",
    *,
    seed: int = 0,
    paired_fraction: float = 0.2,
    patterns: Sequence[dict] | None = None,
    extra_genes: int = 0,
) -> md.MuData:
    """Return a copy of a preprocessed MuData with ``obs['visible_<mod>']`` training masks.

    ``extra_genes=K`` keeps, in the RNA modality, the kept genes plus the first K unrelated
    (least variable) genes flagged by preprocessing (``var['extra_gene_rank']``); K=0 drops them.
    """
    mods = list(mdata.mod)
    pats = scenario_patterns(kind, mods, paired_fraction=paired_fraction, patterns=patterns)
    split = mdata.obs[SPLIT].to_numpy()
    train_idx = np.flatnonzero(split == TRAIN)
    which = assign_patterns(len(train_idx), pats, seed=seed)
    mod_data = {}
    for m in mods:
        ad = mdata.mod[m]
        if m == RNA and "extra_gene_rank" in ad.var:
            rank = ad.var["extra_gene_rank"].to_numpy()
            is_extra = ad.var.get("extra_gene", rank >= 0).to_numpy(bool)
            available = int(is_extra.sum())
            if extra_genes > available:
                raise ValueError(
                    f"scenario asks for extra_genes={extra_genes} but preprocessing kept only "
                    f"{available}; raise preprocessing.extra_genes to at least {extra_genes}"
                )
            keep = ~is_extra | (rank < extra_genes)
            ad = ad[:, keep]
        elif extra_genes and m == RNA:
            raise ValueError(
                "scenario asks for extra_genes but the preprocessed RNA has no 'extra_gene_rank'; "
                "set preprocessing.extra_genes in the config"
            )
        mod_data[m] = ad.copy()
    out = md.MuData(mod_data)
    out.obs = mdata.obs.copy()
    for k, v in mdata.obsm.items():
        out.obsm[k] = v
    out.uns.update(dict(mdata.uns))
    for m in mods:
        vis = np.zeros(out.n_obs, dtype=bool)
        shown = np.array([m in pats[w][0] for w in which], dtype=bool)
        vis[train_idx] = shown
        out.obs[visible_key(m)] = vis
    out.uns["scenario"] = {
        "kind": kind,
        "seed": seed,
        # {"rna+atac": 0.2, "rna": 0.4, ...}: h5-serialisable
        "patterns": {"+".join(p): float(f) for p, f in pats},
        "extra_genes": int(extra_genes),
    }
    return out


def scenario_summary(mdata: md.MuData) -> dict[str, int]:
    """Counts of train cells per visibility pattern, e.g. {'rna+adt': 120, 'rna': 240}."""
    cols = [visible_key(m) for m in mdata.mod]
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    vis = mdata.obs.loc[train, cols].to_numpy(bool)
    names = ["+".join(m for m, v in zip(mdata.mod, row, strict=True) if v) or "none" for row in vis]
    vals, counts = np.unique(names, return_counts=True)
    return dict(zip(vals.tolist(), counts.tolist(), strict=True))


__all__ = [
    "SCENARIO_KINDS",
    "assign_patterns",
    "make_scenario",
    "protocol_split",
    "scenario_patterns",
    "scenario_summary",
]

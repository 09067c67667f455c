"""The metric registry: ONE table that drives evaluation, ranking, tables, plots and the report.

Each :class:`Metric` names a metric (the stem of its rows in ``metrics.csv``: ``foscttm`` owns
``foscttm/rna-adt`` and ``foscttm/mean``), the function that computes it from the test cells of
one run (:class:`EvalInputs` -> rows), its ranking family and direction, the row that stands for
it in rankings and headline tables, whether it is ranked, and where it applies (which parts of
the predictions and data it needs, which scenario kinds).

Adding a metric = one function ``f(inputs: EvalInputs) -> list[Score]`` plus one entry in
:data:`METRICS`; evaluation computes it, and aggregation ranks it, tabulates it, plots it and
puts it in the report with no other edit. Several entries may share one function (the
function then returns the rows of all of them and is called once per run): label transfer
computes accuracy and balanced accuracy from one k-NN fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal, NamedTuple

import numpy as np

from ..constants import JOINT
from ._foscttm import foscttm_per_cell
from ._imputation import imputation_scores
from ._label_transfer import label_transfer
from ._mixing import modality_mixing
from ._realism import c2st_auroc
from ._recovery import r2_linear, recovery_by_modality
from ._scib import scib_scores

Direction = Literal["min", "max", "half"] | None

#: What a metric may need, checked before its function is called (see :meth:`EvalInputs.has`).
REQUIREMENTS = ("embeddings", "joint", "imputations", "generated", "labels", "ground_truth",
                "two_embeddings")


class Score(NamedTuple):
    """One row of a run's metrics table."""

    metric: str
    value: float
    reason: str = ""
    note: str = ""


@dataclass
class EvalInputs:
    """The test cells of one run, as every metric function sees them.

    - ``mods``: the scenario's modalities in ``mdata.mod`` order; ``kinds[mod]`` their kind.
    - ``embeddings[mod]`` / ``embeddings[JOINT]``, ``imputations[(src, tgt)]`` (means),
      ``generated[mod]`` (prior samples), ``cross_generated[(src, tgt)]`` (samples of tgt's
      likelihood given src alone): the predictions (absent parts are absent keys).
    - :meth:`observed`: a modality's scoring-normalized test cells (read once, then cached;
      the same object on every call, so caches keyed on it work).
    - ``labels``: labels of the labelled test cells (None when fewer than 10 cells or 2 types
      are labelled), ``label_mask`` which test cells those are, ``label_note`` the note to
      write beside label-based scores; ``batch``: batches of the labelled cells (None unless
      every one is known and there are at least 2).
    - ``true_shared`` / ``true_private[mod]``: ground-truth factors (synthetic data), else None.
    - ``scenario``: the scenario kind (``paired``, ``diagonal``, ``mosaic``) when recorded.
    - ``info``: ``Predictions.info`` (e.g. ``shared_dims``); ``params``: the resolved
      ``evaluation`` parameters.
    """

    mods: list[str]
    kinds: dict[str, str]
    embeddings: dict[str, np.ndarray]
    imputations: dict[tuple[str, str], np.ndarray]
    generated: dict[str, np.ndarray]
    read_observed: Callable[[str], Any]
    cross_generated: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    label_mask: np.ndarray | None = None
    label_note: str = ""
    batch: np.ndarray | None = None
    true_shared: np.ndarray | None = None
    true_private: dict[str, np.ndarray] = field(default_factory=dict)
    scenario: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    _observed: dict[str, Any] = field(default_factory=dict, repr=False)

    def observed(self, mod: str):
        if mod not in self._observed:
            self._observed[mod] = self.read_observed(mod)
        return self._observed[mod]

    def has(self, requirement: str) -> bool:
        """Whether the predictions / data provide ``requirement`` (one of REQUIREMENTS)."""
        checks = {
            "embeddings": lambda: any(m in self.embeddings for m in self.mods),
            "joint": lambda: JOINT in self.embeddings,
            "imputations": lambda: bool(self.imputations),
            "generated": lambda: bool(self.generated),
            "labels": lambda: self.labels is not None,
            "ground_truth": lambda: self.true_shared is not None,
            "two_embeddings": lambda: sum(m in self.embeddings for m in self.mods) >= 2,
        }
        if requirement not in checks:
            raise ValueError(f"unknown metric requirement '{requirement}'; valid requirements "
                             f"are {list(REQUIREMENTS)}")
        return checks[requirement]()


Compute = Callable[[EvalInputs], Iterable[Score]]


@dataclass(frozen=True)
class Metric:
    """A registry entry (see the module docstring).

    - ``name``: stem of the metric's rows (``name`` itself or ``name/<anything>``).
    - ``family``: ranking family (the key of ``aggregation.weights`` and of
      ``evaluation.families``).
    - ``direction``: ``"min"`` (lower is better), ``"max"``, ``"half"`` (best at 0.5) or None
      (not ordered; never ranked).
    - ``compute``: the function that makes the rows from one run's :class:`EvalInputs`; None
      when the rows come from elsewhere (cost rows from Snakemake benchmark files).
    - ``summary``: the row that stands for the metric (default ``name/mean``).
    - ``ranked``: whether the summary row enters the ranking.
    - ``headline``: the rows shown in headline tables and overview plots (default: the
      summary row; ``()`` for none).
    - ``requires``: what the run must provide (:data:`REQUIREMENTS`); e.g. realism is only
      scored for methods that generate cells.
    - ``scenarios``: scenario kinds where the metric applies (None: all).
    - ``description``: one line for the report.
    - ``per_pair_figure``: the report draws its per-pair rows (``name/<a>-><b>`` etc., all but
      ``name/mean``) as grouped bars per model.
    """

    name: str
    family: str
    direction: Direction
    compute: Compute | None = None
    summary: str | None = None
    ranked: bool = True
    headline: tuple[str, ...] | None = None
    requires: frozenset[str] = frozenset()
    scenarios: frozenset[str] | None = None
    description: str = ""
    per_pair_figure: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max", "half", None):
            raise ValueError(f"metric '{self.name}': direction must be 'min', 'max', 'half' or "
                             f"None, got {self.direction!r}")
        bad = sorted(set(self.requires) - set(REQUIREMENTS))
        if bad:
            raise ValueError(f"metric '{self.name}': unknown requirement(s) {bad}; valid "
                             f"requirements are {list(REQUIREMENTS)}")
        if self.ranked and self.direction is None:
            raise ValueError(f"metric '{self.name}': a ranked metric needs a direction")

    @property
    def summary_row(self) -> str:
        return self.summary or f"{self.name}/mean"

    @property
    def headline_rows(self) -> tuple[str, ...]:
        return (self.summary_row,) if self.headline is None else tuple(self.headline)

    def applies(self, inputs: EvalInputs) -> bool:
        """Whether this metric is computed for a run with these inputs."""
        if self.scenarios is not None and inputs.scenario not in self.scenarios:
            return False
        return all(inputs.has(r) for r in self.requires)


# --------------------------------------------------------------------------------------------
# Metric functions: EvalInputs -> rows (the pure array functions live in the _<family> modules)
# --------------------------------------------------------------------------------------------
def mean_row(prefix: str, values: Iterable[float], note: str = "") -> list[Score]:
    """``[Score(f"{prefix}/mean", mean of the finite values)]``, or ``[]`` when none is finite."""
    vals = [v for v in values if np.isfinite(v)]
    return [Score(f"{prefix}/mean", float(np.mean(vals)), "", note)] if vals else []


def _finite(a: np.ndarray) -> bool:
    return bool(np.isfinite(a).all())


def _embedded_pairs(inp: EvalInputs) -> list[tuple[str, str]]:
    return list(combinations([m for m in inp.mods if m in inp.embeddings], 2))


def score_foscttm(inp: EvalInputs) -> list[Score]:
    """FOSCTTM of every pair of single-modality embeddings (``a-b``: both directions, the
    PROTOCOL value; ``a->b``: a's cells searching among b's, one direction), and the mean of
    the pair values. ``evaluation.foscttm_distance`` picks the distance (note column)."""
    distance = str(inp.params.get("foscttm_distance", "euclidean"))
    note = "" if distance == "euclidean" else f"{distance} distance"
    rows, vals = [], []
    for a, b in _embedded_pairs(inp):
        ea, eb = np.asarray(inp.embeddings[a]), np.asarray(inp.embeddings[b])
        name = f"foscttm/{a}-{b}"
        if not (_finite(ea) and _finite(eb)):
            rows.append(Score(name, np.nan, "non-finite embedding"))
        elif ea.shape != eb.shape:
            rows.append(Score(name, np.nan, f"embedding shapes differ {ea.shape} {eb.shape}"))
        else:
            fa, fb = foscttm_per_cell(ea, eb, device=inp.params.get("foscttm_device"),
                                      distance=distance)
            v = float((fa.sum() + fb.sum()) / (2 * len(fa)))
            vals.append(v)
            rows += [Score(name, v, "", note), Score(f"foscttm/{a}->{b}", float(fa.mean()), "", note),
                     Score(f"foscttm/{b}->{a}", float(fb.mean()), "", note)]
    return rows + mean_row("foscttm", vals, note)


def score_label_transfer(inp: EvalInputs) -> list[Score]:
    """k-NN label transfer both ways between every pair of single-modality embeddings."""
    k = int(inp.params.get("knn_k", 5))
    note = f"k={k}{inp.label_note}"
    mask = inp.label_mask
    rows: list[Score] = []
    accs: list[float] = []
    baccs: list[float] = []
    for a, b in _embedded_pairs(inp):
        ea, eb = np.asarray(inp.embeddings[a]), np.asarray(inp.embeddings[b])
        if not (_finite(ea) and _finite(eb)) or ea.shape != eb.shape:
            rows.append(Score(f"label_transfer_acc/{a}-{b}", np.nan, "non-finite embedding", note))
            continue
        r = label_transfer(ea[mask], eb[mask], inp.labels, k=k)
        for kind in ("acc", "bacc"):
            rows.append(Score(f"label_transfer_{kind}/{a}->{b}", r[f"{kind}_ab"], "", note))
            rows.append(Score(f"label_transfer_{kind}/{b}->{a}", r[f"{kind}_ba"], "", note))
            rows.append(Score(f"label_transfer_{kind}/{a}-{b}", r[f"{kind}_mean"], "", note))
        accs += [r["acc_ab"], r["acc_ba"]]
        baccs += [r["bacc_ab"], r["bacc_ba"]]
    return rows + mean_row("label_transfer_acc", accs, note) + mean_row(
        "label_transfer_bacc", baccs, note)


def score_imputation(inp: EvalInputs) -> list[Score]:
    """Every imputation pair scored against the observed target (scores by target kind)."""
    rows: list[Score] = []
    per_score: dict[str, list[float]] = {}
    for (src, tgt), pred in sorted(inp.imputations.items()):
        if tgt not in inp.mods:
            continue
        scores = imputation_scores(inp.observed(tgt), pred, inp.kinds[tgt],
                                   variants=bool(inp.params.get("imputation_variants", False)))
        for s, v in scores.items():
            rows.append(Score(f"imputation_{s}/{src}->{tgt}", v))
            per_score.setdefault(s, []).append(v)
    for s, vals in per_score.items():
        rows += mean_row(f"imputation_{s}", vals)
    return rows


def score_scib(inp: EvalInputs) -> list[Score]:
    """scib-metrics on the joint embedding of the labelled test cells."""
    z = np.asarray(inp.embeddings[JOINT])[inp.label_mask]
    if not _finite(z):
        return [Score("scib/total", np.nan, "non-finite joint embedding")]
    res = scib_scores(z, inp.labels, inp.batch)
    note = f"scib-metrics {res['version']}{inp.label_note}"
    return [Score(f"scib/{s}", v, res["errors"].get(s, ""), note)
            for s, v in res["scores"].items()]


def shared_latent(inp: EvalInputs) -> np.ndarray | None:
    """The learned shared latent: ``info["shared_dims"]`` columns of the joint (else first
    modality) embedding when given, else the whole joint (else first modality) embedding."""
    base = None
    if JOINT in inp.embeddings:
        base = np.asarray(inp.embeddings[JOINT])
    else:
        for m in inp.mods:
            if m in inp.embeddings:
                base = np.asarray(inp.embeddings[m])
                break
    if base is None:
        return None
    dims = inp.info.get("shared_dims")
    if dims:
        base = base[:, np.asarray(dims, dtype=int)]
    return base


def score_recovery(inp: EvalInputs) -> list[Score]:
    """Held-out R^2 to the true shared / private factors from EACH single-modality embedding
    (``/<mod>``), across modalities (``/<a>-><b>``: fitted on a, applied to b), and from the
    joint embedding (``/joint``, not in the mean); ``shared_dims`` columns when given."""
    note = "fitted on half of the test cells, scored on the other half"
    seed = int(inp.params.get("recovery_seed", 0))
    dims = inp.info.get("shared_dims")
    emb = {}
    for m in [*inp.mods, JOINT]:
        if m in inp.embeddings:
            z = np.asarray(inp.embeddings[m])
            emb[m] = z[:, np.asarray(dims, dtype=int)] if dims else z
    if not emb:
        return []
    n = len(next(iter(emb.values())))
    if n < 4:
        return [Score("recovery_shared_r2/mean", np.nan, f"only {n} test cells", note)]
    bad = [m for m, z in emb.items() if not _finite(z)]
    if bad:
        return [Score("recovery_shared_r2/mean", np.nan, f"non-finite embedding {bad}", note)]
    single = {m: z for m, z in emb.items() if m != JOINT}
    res = recovery_by_modality(single, inp.true_shared, inp.true_private, seed=seed)
    rows = [Score(f"recovery_{k}", v, "", note) for k, v in res.items()]
    if JOINT in emb:
        rows.append(Score("recovery_shared_r2/joint", r2_linear(emb[JOINT], inp.true_shared, seed),
                          "", note))
    shared = [v for k, v in res.items() if k.startswith("shared_r2/")]
    private = [v for k, v in res.items() if k.startswith("private_r2/")]
    return rows + mean_row("recovery_shared_r2", shared, note) + mean_row(
        "recovery_private_r2", private, note)


def score_mixing(inp: EvalInputs) -> list[Score]:
    """Modality mixing: scib-metrics on the stacked single-modality embeddings of the labelled
    test cells (batch = modality of origin)."""
    mask = inp.label_mask
    emb = {m: np.asarray(inp.embeddings[m])[mask] for m in inp.mods if m in inp.embeddings}
    if not all(_finite(z) for z in emb.values()):
        return [Score("mixing/total", np.nan, "non-finite embedding")]
    kbet = bool(inp.params.get("mixing_kbet", True))
    res = modality_mixing(emb, inp.labels, kbet=kbet)
    note = (f"scib-metrics {res['version']}, batch = modality"
            f"{'' if kbet else ', kbet off'}{inp.label_note}")
    return [Score(f"mixing/{s}", v, res["errors"].get(s, ""), note)
            for s, v in res["scores"].items()]


def score_realism(inp: EvalInputs) -> list[Score]:
    """Classifier two-sample test of cells SAMPLED from the likelihood (from the prior, and
    given the other modality alone) vs observed cells."""
    p = inp.params
    kw = {"n_pcs": int(p.get("realism_n_pcs", 50)), "folds": int(p.get("realism_folds", 5)),
          "max_cells": p.get("realism_max_cells", 5000)}
    note = f"pca={kw['n_pcs']} folds={kw['folds']}"
    sources = [(f"prior/{m}", m, g) for m, g in sorted(inp.generated.items())]
    sources += [(f"{s}->{t}", t, g) for (s, t), g in sorted(inp.cross_generated.items())]
    rows: list[Score] = []
    vals: list[float] = []
    cache: dict = {}  # one PCA per modality, shared by its generated sets
    for name, mod, gen in sources:
        if mod not in inp.mods:
            continue
        try:
            v = c2st_auroc(inp.observed(mod), gen, cache=cache, **kw)
        except ValueError as err:  # e.g. too few cells for 5-fold CV: say so, go on
            rows.append(Score(f"realism_c2st_auroc/{name}", np.nan, str(err), note))
            continue
        vals.append(v)
        rows.append(Score(f"realism_c2st_auroc/{name}", v, "", note))
    return rows + mean_row("realism_c2st_auroc", vals, note)


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------
_EMB = frozenset({"embeddings"})
_EMB_LAB = frozenset({"embeddings", "labels"})
_IMP = frozenset({"imputations"})
_REC = frozenset({"ground_truth"})

#: metric name -> entry, in the order metrics are computed and shown.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("foscttm", "foscttm", "min", score_foscttm, requires=_EMB, per_pair_figure=True,
               description="FOSCTTM of each modality pair (GLUE), mean over pairs"),
        Metric("label_transfer_acc", "label_transfer", "max", score_label_transfer,
               requires=_EMB_LAB, description="k-NN label transfer accuracy, both directions"),
        Metric("label_transfer_bacc", "label_transfer", "max", score_label_transfer,
               requires=_EMB_LAB, description="same, balanced accuracy"),
        Metric("imputation_pearson_cell", "imputation", "max", score_imputation,
               requires=_IMP, description="per-cell Pearson of imputed vs observed target"),
        Metric("imputation_pearson_feature", "imputation", "max", score_imputation,
               requires=_IMP, description="per-feature Pearson (RNA/ADT/gaussian targets)"),
        Metric("imputation_cosine_cell", "imputation", "max", score_imputation,
               requires=_IMP,
               description="per-cell cosine similarity (RNA/ADT/gaussian; ATAC too with "
                           "evaluation.imputation_variants)"),
        Metric("imputation_auroc", "imputation", "max", score_imputation, requires=_IMP,
               description="AUROC of imputed accessibility (ATAC targets)"),
        Metric("imputation_pearson_flat", "imputation", "max", score_imputation, ranked=False,
               headline=(), requires=_IMP,
               description="Pearson over the flattened cells x features matrix (reported "
                           "with evaluation.imputation_variants; not ranked)"),
        Metric("imputation_cosine_flat", "imputation", "max", score_imputation, ranked=False,
               headline=(), requires=_IMP,
               description="cosine of the flattened matrices (imputation_variants; not ranked)"),
        Metric("scib", "scib", "max", score_scib, summary="scib/total",
               headline=("scib/bio_conservation", "scib/batch_correction", "scib/total"),
               requires=frozenset({"joint", "labels"}),
               description="scib-metrics on the joint embedding, 0.6 bio + 0.4 batch"),
        Metric("mixing", "mixing", "max", score_mixing, summary="mixing/total",
               headline=("mixing/batch_correction", "mixing/total"),
               requires=frozenset({"two_embeddings", "labels"}),
               scenarios=frozenset({"diagonal", "mosaic"}),
               description="modality mixing: scib-metrics on the stacked single-modality "
                           "embeddings, batch = modality (diagonal and mosaic)"),
        Metric("recovery_shared_r2", "recovery", "max", score_recovery, requires=_REC,
               description="held-out R² from each single-modality embedding (and across "
                           "modalities) to the true shared factors (synthetic)"),
        Metric("recovery_private_r2", "recovery", "min", score_recovery, requires=_REC,
               description="held-out R² from each modality's embedding to its true private "
                           "factors (leakage)"),
        Metric("realism_c2st_auroc", "realism", "half", score_realism,
               requires=frozenset({"generated"}),
               description="classifier two-sample AUROC, generated vs observed (0.5 best); "
                           "only for methods that generate cells"),
        Metric("epochs", "cost", None, summary="epochs", ranked=False,
               description="epochs run (history.csv)"),
        Metric("train_seconds", "cost", "min", summary="train_seconds",
               description="training wall seconds (Snakemake benchmark)"),
        Metric("train_max_rss_mb", "cost", "min", summary="train_max_rss_mb",
               description="training peak memory, MB"),
        Metric("eval_seconds", "cost", "min", summary="eval_seconds", ranked=False,
               headline=(), description="evaluation wall seconds"),
        Metric("eval_max_rss_mb", "cost", "min", summary="eval_max_rss_mb", ranked=False,
               headline=(), description="evaluation peak memory, MB"),
    )
}


def metric_of(row: str) -> Metric | None:
    """The registry entry owning metrics-table row ``row`` (None for ``failed`` and strays)."""
    return METRICS.get(str(row).split("/", 1)[0])


def family_of(row: str) -> str:
    """Ranking family of a row (its stem for rows no metric owns)."""
    m = metric_of(row)
    return m.family if m is not None else str(row).split("/", 1)[0]


def direction_of(row: str) -> Direction:
    m = metric_of(row)
    return m.direction if m is not None else None


def families() -> list[str]:
    """Every ranking family of the registry, in registry order."""
    return list(dict.fromkeys(m.family for m in METRICS.values()))


def computed_families() -> list[str]:
    """Families whose metrics evaluation computes (those with a ``compute`` function)."""
    return list(dict.fromkeys(m.family for m in METRICS.values() if m.compute is not None))


def ranked_metrics() -> list[Metric]:
    return [m for m in METRICS.values() if m.ranked]


def headline_rows() -> list[str]:
    """Rows of the headline tables and overview plots, in registry order."""
    return [r for m in METRICS.values() for r in m.headline_rows]


def compute_rows(inputs: EvalInputs, selected: Iterable[str] | None = None) -> list[Score]:
    """Rows of every registered metric whose family is in ``selected`` (None: all) and that
    applies to ``inputs``; a function shared by several entries runs once."""
    chosen = None if selected is None else set(selected)
    rows: list[Score] = []
    done: set[Compute] = set()
    for m in METRICS.values():
        if m.compute is None or m.compute in done:
            continue
        if chosen is not None and m.family not in chosen:
            continue
        if not m.applies(inputs):
            continue
        done.add(m.compute)
        rows += list(m.compute(inputs))
    return rows

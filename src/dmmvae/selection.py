"""Blind choice of settings (PROTOCOL "Choosing settings (blind)"): selection sees train cells
only, by construction.

:func:`train_only` is the one door through which a selection tool gets its data: it returns the
train cells of a scenario as a new MuData, with no test cell, no test label and no test count
left in it, so no code downstream can compute a test-cell number. The signals then read held-back
train cells:

- :func:`validation_anchor_foscttm`: in the diagonal scenario no train cell shows two
  modalities, so there is no true pair to score. Mutual nearest neighbours on the linked
  features (gene vs protein, gene vs gene activity) between the held-back validation cells of
  each modality (the training loop's own validation cells) stand in for the pairs; the score is
  the FOSCTTM of those anchors in the latent space (lower is better).
- :func:`train_label_transfer`: label transfer needs no true pair, so it is measured among the
  train cells: PROTOCOL's 5-NN from the cells that show ``a`` to those that show ``b`` and back
  (labels never given to the model).
- :func:`validation_imputation` (scenarios whose train cells show two modalities, e.g. paired):
  cross-modal imputation of the held-back validation cells, scored by the evaluation's own
  per-cell Pearson (``imputation_pearson_cell``), each direction.

- :func:`heldback_code_spread`: not a signal a rule ranks by but a check beside them: how far
  the held-back cells' codes spread, 0 when an encoder has collapsed (every code the same).
- :func:`heldback_signals`: the first two and the spread for any method of the registry (the
  reference tools have no training loop that holds cells back), through its public ``fit`` /
  ``predict``.

:func:`rank` orders configurations by a rule over these signals, each dataset weighing the same
however many seeds it ran; :func:`expected_best` reads a ranked grid at a smaller budget.
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import mudata as md
import numpy as np
import pandas as pd

from .constants import LABEL, SPLIT, TEST, TRAIN, visible_key

#: the rules (lower is better): "anchors" = validation_anchor_foscttm; "anchors+labels" = that
#: plus the label-transfer error among the train cells (1 - train_label_transfer)
RULES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "anchors": lambda t: t["validation_anchor_foscttm"],
    "anchors+labels": lambda t: t["validation_anchor_foscttm"] + 1 - t["train_label_transfer"],
    # the imputation error on the held-back cells, each direction weighing the same
    "imputation": lambda t: 1 - t["validation_imputation"],
}
#: "imputation" = the mean over directions of validation_imputation's per-cell Pearson
SIGNALS = ("validation_anchor_foscttm", "train_label_transfer", "validation_imputation")
#: a held-back code spread (:func:`heldback_code_spread`) below this is a collapsed encoder
COLLAPSED_SPREAD = 1e-3


class TestCellsError(ValueError):
    """A selection step was handed data that holds test cells."""


def train_only(mdata: md.MuData) -> md.MuData:
    """The train cells of ``mdata`` as a new MuData (every modality, the scenario masks, the
    links); ``uns["selection"]`` records how many test cells were dropped."""
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out = mdata[train].copy()
    out.uns["selection"] = {"train_only": True, "n_test_dropped": int((~train).sum())}
    return out


def assert_train_only(mdata: md.MuData) -> None:
    """Stop when ``mdata`` holds a cell that is not a train cell (the guard of every signal)."""
    split = mdata.obs[SPLIT].to_numpy()
    if (split != TRAIN).any():
        raise TestCellsError(
            f"selection data hold {(split != TRAIN).sum()} non-train cells; fix: pass the "
            "scenario through dmmvae.selection.train_only before fitting or scoring")


def _gather(data, cells, encode, targets: bool = True):
    """Per modality, the cells of ``cells`` that show it (the scenario's masks): their codes,
    likelihood targets (None with ``targets=False``) and row numbers. ``encode(batch)`` gives
    ``pick(m, rows)``, the codes of the batch's ``rows`` encoded from ``m`` alone."""
    import torch

    out = {m: ([], [], []) for m in data.spec.modalities}
    for batch in data.batches(cells, 1024):
        pick = encode(batch)
        for m, (codes, targets_m, index) in out.items():
            rows = batch["mask"][m]
            if rows.any():
                codes.append(pick(m, rows))
                if targets:
                    targets_m.append(batch["x"][m][rows])
                index.append(batch["index"][rows])
    return {m: tuple(torch.cat(v) if v else None for v in vs) for m, vs in out.items() if vs[0]}


def _codes(model, mdata, cells, targets: bool = True):
    """Each cell of ``cells`` encoded by ``model`` from the one modality it shows (the scenario's
    masks, :func:`_gather`): a diagonal train cell's hidden modality is never read."""
    import torch

    from .methods.training.batches import MultimodalData

    module = model.module

    def encode(batch):
        qz = module.encode(batch)
        return lambda m, rows: module.embed({m: qz[m]}, {m: rows})[rows]

    module.eval()
    with torch.no_grad():
        return _gather(MultimodalData(model.module_data(mdata), module.spec, module.device),
                       cells, encode, targets=targets)


def _anchor_foscttm(spec, codes, k: int) -> float:
    """FOSCTTM of linked-feature anchors: ``codes[m] = (z, x, rows)`` of the cells that show
    ``m`` (latent codes, likelihood targets); per linked modality pair, the mutual ``k``-nearest
    neighbours of the two sides' linked-feature views stand in for true pairs. Mean over the
    pairs with >= 3 linked features; NaN when there is none."""
    import torch

    from .methods.modules.objectives import mutual_nearest_neighbours
    from .methods.modules.views import LinkedFeatures

    mods = [m for m in spec.modalities if m in codes]
    out = []
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            lf = LinkedFeatures.from_spec(spec, a, b)
            if lf.n_features < 3:
                continue
            (za, xa, _), (zb, xb, _) = codes[a], codes[b]
            ta, tb = spec.modalities[a].target, spec.modalities[b].target
            fa, fb = lf.views(xa, ta, xb, tb)
            pairs = mutual_nearest_neighbours(fa, fb, k).nonzero()
            if len(pairs) == 0:
                continue
            out.append(_pairs_foscttm(torch.cdist(za, zb), pairs))
    return float(np.mean(out)) if out else float("nan")


def _pairs_foscttm(d, pairs) -> float:
    """FOSCTTM of the ``pairs`` (rows ``(i, j)``) in the latent distances ``d`` (A, B), a tie
    counted as half a closer cell: a collapsed encoder, whose codes are all equal, scores 0.5
    (chance) here, where PROTOCOL's strict count (the test metric) would give it 0, the best."""
    true = d[pairs[:, 0], pairs[:, 1]]

    def fraction(rows):  # rows (P, n): the distances from each pair's cell to the other side
        closer = (rows < true[:, None]).sum(1)
        ties = (rows == true[:, None]).sum(1) - 1  # the true match itself is not a tie
        return (closer + 0.5 * ties) / rows.shape[1]

    fx, fy = fraction(d[pairs[:, 0]]), fraction(d[:, pairs[:, 1]].T)
    return float(((fx + fy) / 2).mean())


def _code_spread(codes: dict) -> float:
    """The least, over the modalities of ``codes`` (``{m: (z, ...)}``), of the codes' spread
    among their cells: sqrt(total variance / mean squared norm), scale-free in [0, 1]; 0 when
    every code is the same point, 1 when the codes are centred on the origin."""
    out = []
    for z, *_ in codes.values():
        z = np.asarray(z.cpu() if hasattr(z, "cpu") else z, dtype=np.float64)
        if len(z) < 2:
            continue
        power = float((z ** 2).sum(1).mean())
        out.append(np.sqrt(z.var(0).sum() / power) if power > 0 else 0.0)
    return float(min(out)) if out else float("nan")


def _label_transfer(emb: dict[str, tuple[np.ndarray, np.ndarray]], k: int) -> float:
    """PROTOCOL's ``k``-NN label transfer between every two modalities of ``emb`` (``{m:
    (codes, labels)}`` of the cells that show ``m``), both directions; the mean."""
    from .metrics import knn_transfer

    mods = list(emb)
    out = []
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            (za, la), (zb, lb) = emb[a], emb[b]
            ab = knn_transfer(za, zb, la, k, query_labels=lb)[0]
            ba = knn_transfer(zb, za, lb, k, query_labels=la)[0]
            out.append((ab + ba) / 2)
    return float(np.mean(out)) if out else float("nan")


def _validation_cells(mdata, training: dict, seed: int) -> np.ndarray:
    """The training loop's held-back cells of ``mdata`` (``training``'s validation fraction)."""
    from .methods.training.loop import resolve_training, train_and_validation_cells

    frac = float(resolve_training(training)["validation_fraction"])
    return train_and_validation_cells(mdata, frac, seed)[1]


def validation_anchor_foscttm(model, mdata, training: dict, seed: int, k: int = 5) -> float:
    """FOSCTTM of linked-feature anchors among the held-back train cells of the training loop
    (``training``'s validation fraction, the fit's ``seed``). Mean over linked modality pairs;
    NaN when no pair has >= 3 linked features."""
    assert_train_only(mdata)
    val = _validation_cells(mdata, training, seed)
    return _anchor_foscttm(model.module.spec, _codes(model, mdata, val), k)


def heldback_code_spread(model, mdata, training: dict, seed: int) -> float:
    """How far the codes of the training loop's held-back train cells spread, each encoded from
    the one modality it shows (:func:`_code_spread`: the least over modalities, 0 for a collapsed
    encoder; below :data:`COLLAPSED_SPREAD` a sweep flags the row)."""
    assert_train_only(mdata)
    val = _validation_cells(mdata, training, seed)
    return _code_spread(_codes(model, mdata, val, targets=False))


def train_label_transfer(model, mdata, k: int = 5) -> float:
    """Label transfer among the train cells, each encoded from the one modality it shows:
    ``k``-NN (PROTOCOL's, Euclidean) from the cells that show ``a`` to those that show ``b``
    and back; mean accuracy over directions and modality pairs."""
    assert_train_only(mdata)
    cells = np.arange(mdata.n_obs)
    codes = _codes(model, mdata, cells, targets=False)
    labels = mdata.obs[LABEL].astype(str).to_numpy()
    return _label_transfer({m: (z.cpu().numpy(), labels[rows.cpu().numpy()])
                            for m, (z, _, rows) in codes.items()}, k)


def _as_test(mdata: md.MuData, cells: np.ndarray) -> md.MuData:
    """A copy of train-only ``mdata`` in which ``cells`` are the test cells."""
    inner = mdata.copy()
    split = np.full(inner.n_obs, TRAIN, dtype=object)
    split[cells] = TEST
    inner.obs[SPLIT] = pd.Categorical(split, categories=[TRAIN, TEST])
    return inner


def heldback_signals(method, mdata, training: dict, seed: int, k: int = 5,
                     device: str = "cpu") -> dict[str, float]:
    """The two signals of :func:`validation_anchor_foscttm` and :func:`train_label_transfer`, and
    the check :func:`heldback_code_spread`, for any method of the registry, through its public
    ``fit`` / ``predict`` only (the reference tools have no training loop of their own to hold
    cells back).

    The training loop's held-back cells (``training``'s validation fraction, ``seed``) are held
    back here: ``method`` is fitted on the other train cells, then every train cell is
    predicted (the held-back ones, then the rest, each as the test cells of a copy), encoded
    from the one modality it shows. Anchor FOSCTTM is scored among the held-back cells on the
    same linked-feature anchors as :func:`validation_anchor_foscttm` (the data's default
    likelihood targets), label transfer among all train cells, as for ``dmmvae``. ``device``
    reaches ``fit`` of a method that trains on one (``uses_device``), as in the workflow's
    ``train_model``; the others fit on the CPU."""
    import torch

    from .methods.training.batches import MultimodalData, build_spec

    assert_train_only(mdata)
    val = _validation_cells(mdata, training, seed)
    rest = np.setdiff1d(np.arange(mdata.n_obs), val)
    fit = {"device": device} if method.uses_device else {}
    method.fit(_as_test(mdata, val), training=training, seed=seed, **fit)
    pos = {name: i for i, name in enumerate(mdata.obs_names)}
    shown = {m: mdata.obs[visible_key(m)].to_numpy(bool) for m in mdata.mod}
    z: dict[str, np.ndarray] = {}
    for cells in (val, rest):
        pred = method.predict(_as_test(mdata, cells))
        rows = np.array([pos[n] for n in pred.obs_names])
        for m in mdata.mod:
            e = pred.embeddings[m]
            z.setdefault(m, np.full((mdata.n_obs, e.shape[1]), np.nan, np.float32))[rows] = e
    labels = mdata.obs[LABEL].astype(str).to_numpy()
    lt = _label_transfer({m: (z[m][shown[m]], labels[shown[m]]) for m in mdata.mod}, k)
    spec = build_spec(mdata)

    def encode(batch):  # the codes predicted above, looked up by row
        return lambda m, rows: torch.as_tensor(z[m][batch["index"][rows].cpu().numpy()])

    codes = _gather(MultimodalData(mdata, spec, "cpu"), val, encode)
    return {"validation_anchor_foscttm": _anchor_foscttm(spec, codes, k),
            "train_label_transfer": lt, "heldback_code_spread": _code_spread(codes)}


def validation_imputation(model, mdata, training: dict, seed: int) -> dict[str, float]:
    """Cross-modal imputation of the training loop's held-back train cells (``training``'s
    validation fraction, the fit's ``seed``): those cells become the test cells of a copy of
    the train-only data, the model predicts them and the evaluation scores them as it scores
    test cells. ``{"a->b": per-cell Pearson}`` (``imputation_pearson_cell``); empty when no
    held-back cell shows two modalities (the diagonal scenario)."""
    from .evaluate import evaluate_predictions

    assert_train_only(mdata)
    val = _validation_cells(mdata, training, seed)
    shown = np.column_stack([mdata.obs[visible_key(m)].to_numpy(bool) for m in mdata.mod])
    val = val[shown[val].sum(1) >= 2]  # a diagonal scenario's cells show one modality
    if len(val) == 0:
        return {}
    inner = _as_test(mdata, val)
    rows = evaluate_predictions(inner, model.predict(inner), {"families": ["imputation"]})
    name = "imputation_pearson_cell/"
    return {m[len(name):]: float(v) for m, v in zip(rows["metric"], rows["value"], strict=True)
            if m.startswith(name) and m != name + "mean"}


def rank(rows: pd.DataFrame, rule: str) -> pd.DataFrame:
    """One row per config, best first by ``RULES[rule]`` (column ``rule``): the mean over the
    seeds each dataset ran, then over the datasets, so each dataset weighs the same."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule '{rule}'; valid: {sorted(RULES)}")
    cols = [c for c in (*SIGNALS, "validation_anchors") if c in rows]
    table = rows.groupby(["config", "dataset"])[cols].mean().groupby("config").mean()
    table.insert(0, "rule", RULES[rule](table))
    return table.sort_values("rule")


def common_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` on the (stand-in, seed) cells every configuration holds: a sweep still running
    (or one whose slowest stand-in was not run for every configuration) is ranked there, not on
    means over different stand-ins."""
    cells = rows.groupby("config")[["dataset", "seed"]].apply(
        lambda g: set(zip(g["dataset"], g["seed"], strict=True)))
    common = set.intersection(*cells) if len(cells) else set()
    return rows[[cell in common for cell in zip(rows["dataset"], rows["seed"], strict=True)]]


def incomplete(rows: pd.DataFrame, common: pd.DataFrame) -> str:
    """A line for a sweep's report when ``common`` (:func:`common_cells` of ``rows``) holds
    fewer (stand-in, seed) cells than ``rows``; empty when every configuration holds them all."""
    n_cells, n_common = (len(r[["dataset", "seed"]].drop_duplicates()) for r in (rows, common))
    if n_common == n_cells:
        return ""
    return (f"incomplete: ranked on the {n_common} of {n_cells} (stand-in, seed) cells every "
            "configuration holds")


def expected_best(scores, k: int) -> float:
    """The expected best (lowest) of ``k`` configurations drawn at random, without replacement,
    from those whose rule scores are ``scores``: Dodge et al. 2019's expected validation
    performance (EMNLP, "Show your work"), read at equal ``k`` to compare methods whose grids
    differ in size. The i-th lowest of N is the best of a draw with probability
    C(N - i, k - 1) / C(N, k); ``k = 1`` gives the mean, ``k = N`` the minimum."""
    s = np.sort(np.asarray(scores, dtype=float))
    n = len(s)
    if not 1 <= k <= n:
        raise ValueError(f"expected_best: k must lie in 1..{n} (the configurations scored), got {k}")
    weights = np.array([comb(n - i, k - 1) for i in range(1, n + 1)], dtype=float) / comb(n, k)
    return float(weights @ s)


def collapsed(rows: pd.DataFrame) -> str:
    """A line for a sweep's report naming the rows (configuration, stand-in, seed) whose
    held-back codes collapsed (``heldback_code_spread`` below :data:`COLLAPSED_SPREAD`); rows
    written before the check have no spread and are not judged."""
    if "heldback_code_spread" not in rows:
        return "collapsed encoders: not checked (no heldback_code_spread column)"
    known = rows["heldback_code_spread"].notna()
    bad = rows[known & (rows["heldback_code_spread"] < COLLAPSED_SPREAD)]
    head = (f"collapsed encoders (held-back code spread < {COLLAPSED_SPREAD}): {len(bad)} of "
            f"{int(known.sum())} rows checked")
    return "\n".join([head, *(f"  {r.config} on {r.dataset}, seed {r.seed}: spread "
                               f"{r.heldback_code_spread:.2g}" for r in bad.itertuples())])


__all__ = ["RULES", "SIGNALS", "COLLAPSED_SPREAD", "TestCellsError", "train_only", "assert_train_only",
           "validation_anchor_foscttm", "train_label_transfer", "validation_imputation",
           "heldback_code_spread", "heldback_signals", "collapsed", "common_cells",
           "incomplete", "rank", "expected_best"]

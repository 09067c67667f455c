"""D-MMVAE's sweep grids asked again with the signals that read only the modality each train
cell shows (before 2026-11-26 ``selection._codes`` also encoded each diagonal train cell from its
hidden modality). Per grid: the rule's choice on the old rows (``dmmvae_sweep_<grid>.csv``) and
on the rows asked again (``dmmvae_reask_<grid>.csv``), over the configurations asked again on
all their stand-ins and seeds, so a grid still running is compared on what it has. Train cells only, like the
sweeps: no test-cell number is read or written here.

Usage::

    python benchmarks/report_reask.py        # writes results/dmmvae_reask.{csv,md}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from bench_dmmvae_sweep import GRIDS, RULE_OF_GRID

from dmmvae.selection import rank

RESULTS = Path(__file__).parent / "results"
KEYS = ["config", "dataset", "seed"]


def old_rows(grid: str) -> pd.DataFrame:
    """The grid's rows as first asked (the first grid's file has no seed column: seed 0)."""
    name = "dmmvae_sweep.csv" if grid == "adversaries" else f"dmmvae_sweep_{grid}.csv"
    rows = pd.read_csv(RESULTS / name)
    return rows.assign(seed=rows["seed"] if "seed" in rows else 0)


def compare(grid: str, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """The rule's choice on ``old`` and on ``new`` over the configurations ``new`` holds on every
    (stand-in, seed) ``old`` asked them on."""
    rule = RULE_OF_GRID.get(grid, "anchors")
    both = old[KEYS].merge(new[KEYS], on=KEYS)
    asked = old.groupby("config").size()
    done = both.groupby("config").size().reindex(asked.index, fill_value=0)
    both = both[both["config"].isin(done.index[done == asked])]
    n_cfg = old["config"].nunique()
    if both.empty:
        return {}
    a = rank(old.merge(both, on=KEYS), rule)
    b = rank(new.merge(both, on=KEYS), rule)
    margin = b["rule"].iloc[1] - b["rule"].iloc[0] if len(b) > 1 else float("nan")
    return {"grid": grid, "rule": rule, "rows_compared": len(both), "rows_asked_first": len(old),
            "configurations_compared": both["config"].nunique(), "configurations": n_cfg,
            "choice_before": a.index[0], "choice_now": b.index[0],
            "same_choice": a.index[0] == b.index[0],
            "rule_before": a["rule"].iloc[0], "rule_now": b["rule"].iloc[0],
            "margin_now": margin,
            "rank_now_of_choice_before": int(list(b.index).index(a.index[0])) + 1,
            "rank_correlation": a["rule"].corr(b["rule"].reindex(a.index), method="spearman"),
            **more_seeds(rule, old, new[new["config"].isin(both["config"])])}


def more_seeds(rule: str, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """Where the grid was asked again on more seeds than at first (a near tie asked again over
    seeds): the rule's choice over every seed, once every configuration of ``new`` (those
    compared) has all of them."""
    seeds = sorted(new["seed"].unique())
    if set(seeds) <= set(old["seed"].unique()):
        return {"seeds_now": "", "choice_all_seeds": "", "margin_all_seeds": float("nan")}
    cells = new.groupby("config")[["dataset", "seed"]].apply(lambda g: len(g.drop_duplicates()))
    full = cells.index[cells == len(seeds) * new["dataset"].nunique()]
    if len(full) < new["config"].nunique():  # still running: no choice over the seeds yet
        return {"seeds_now": "", "choice_all_seeds": "", "margin_all_seeds": float("nan")}
    t = rank(new[new["config"].isin(full)], rule)
    return {"seeds_now": " ".join(map(str, seeds)), "choice_all_seeds": t.index[0],
            "margin_all_seeds": t["rule"].iloc[1] - t["rule"].iloc[0] if len(t) > 1
            else float("nan")}


def main() -> None:
    out = []
    for grid in GRIDS:
        path = RESULTS / f"dmmvae_reask_{grid}.csv"
        if path.exists():
            row = compare(grid, old_rows(grid), pd.read_csv(path))
            if row:
                out.append(row)
    table = pd.DataFrame(out)
    tmp = RESULTS / "dmmvae_reask.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(RESULTS / "dmmvae_reask.csv")
    show = table.drop(columns=["choice_before", "choice_now", "choice_all_seeds"]).round(4)
    lines = ["# D-MMVAE's grids asked again with signals that read only shown modalities", "",
             show.to_markdown(index=False), "", "Choices (configuration JSON):", ""]
    for r in table.itertuples():
        lines.append(f"- `{r.grid}`: before {r.choice_before}; now {r.choice_now}"
                     + (f"; over seeds {r.seeds_now}: {r.choice_all_seeds}" if r.seeds_now else ""))
    text = "\n".join(lines) + "\n"
    tmp = RESULTS / "dmmvae_reask.md.tmp"
    tmp.write_text(text)
    tmp.replace(RESULTS / "dmmvae_reask.md")
    print(text)


if __name__ == "__main__":
    main()

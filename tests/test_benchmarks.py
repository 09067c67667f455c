"""The benchmark scripts still run and print their tables (tiny sizes; figures not judged).

The scripts print figures for the README (see benchmarks/README.md); a figure is never asserted
against a time limit here. What is asserted: each script runs end to end on a small synthetic
input and prints a row per case with values in their ranges, so the benchmarks cannot rot
silently between the sessions that quote them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[list[str]]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # rows of the table: the lines after the dashed rule under the header
    rule = next(i for i, ln in enumerate(lines) if ln.startswith("---"))
    return [ln.split() for ln in lines[rule + 1 :] if ln.strip()]


def test_bench_training_prints_throughput_and_foscttm(tmp_path):
    # the scvi-tools reference row runs where scvi-tools is installed (`make test` installs it)
    have_scvi = importlib.util.find_spec("scvi") is not None
    rows = _run(
        "bench_training.py",
        "--cells", "400", "--epochs", "3", "--data", "adt", "--models", "mvae",
        "--amp", "none", "--cache", str(tmp_path),
    )  # fmt: skip
    expected = [["adt", "totalvi", "none"]] * have_scvi + [["adt", "mvae", "none"]]
    assert [r[:3] for r in rows] == expected
    ours = rows[-1]
    cells_per_s, foscttm_pair = float(ours[3]), float(ours[-2])
    assert cells_per_s > 0 and 0.0 <= foscttm_pair <= 1.0
    if have_scvi:
        assert float(ours[4]) > 0  # speed-up against the reference of the same run


def test_bench_step_profile_splits_the_step(tmp_path):
    rows = _run(
        "bench_step_profile.py",
        "--cells", "400", "--steps", "2", "--data", "adt", "--models", "mvae,mmvae",
        "--amp", "none", "--cache", str(tmp_path),
    )  # fmt: skip
    assert [r[:2] for r in rows] == [["adt", "mvae"], ["adt", "mmvae"]]
    for r in rows:
        step_ms, matmul_ms, share = float(r[3]), float(r[5]), float(r[6])
        assert 0 < matmul_ms < step_ms and 0 < share < 1


def test_bench_scale_times_each_epoch_on_the_device_asked(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_scale.py"), "--cells", "1500", "--genes", "300",
         "--adt", "20", "--rna-nnz", "60", "--epochs", "2", "--device", "cpu",
         "--cache", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "device cpu: status ok" in out, out
    epochs = [ln for ln in out.splitlines() if ln.strip().startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1", "2"], out
    assert all(float(ln.split("=")[1].split()[0]) > 0 for ln in epochs), out
    assert (tmp_path / "train_1500x300genes+20adt_r60_mvae_none_cpu" / "run_info.yaml").exists()


def test_bench_input_layer_times_every_form():
    rows = _run("bench_input_layer.py", "--repeats", "1")
    assert [int(r[0]) for r in rows] == [2000, 8000, 108000]
    for r in rows:
        assert all(float(v) > 0 for v in r[2:6])


def test_bench_diagonal_runs_splits_and_resumes(tmp_path):
    """The diagonal benchmark reads its datasets and models from a config, runs every split with
    its own preprocessing, writes a split column and intervals, and skips what is written."""
    import pandas as pd
    import yaml

    cfg = yaml.safe_load((BENCH.parent / "config" / "diagonal.yaml").read_text())
    cfg["datasets"] = {"genesplit_link0.1": cfg["datasets"]["genesplit_link0.1"]}
    cfg["models"] = {m: cfg["models"][m] for m in ("random", "linked_cca")}
    path = tmp_path / "diag.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "diag.csv"
    args = [sys.executable, str(BENCH / "bench_diagonal.py"), "--config", str(path),
            "--splits", "0", "1", "--out", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(out)
    assert set(rows["split"]) == {0, 1} and set(rows["model"]) == {"random", "linked_cca"}
    fos = rows[rows["metric"] == "foscttm/mean"].set_index(["model", "split"])["value"]
    # each split has its own partition: the test cells (and so random's score) differ
    assert fos[("random", 0)] != fos[("random", 1)]
    assert fos[("linked_cca", 0)] < 0.1 < 0.4 < fos[("random", 0)]  # 10 % shared genes: aligned
    summary = (tmp_path / "diag_summary.md").read_text()  # named after the CSV
    assert "linked_cca" in summary and "[" in summary  # mean [interval]
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0 and len(pd.read_csv(out)) == len(rows)  # resumed: nothing re-run
    assert " split " not in again.stdout.split("dataset")[0]  # no run printed before the table
    # a variant whose config entry changed: its old rows are left out of the tables, and the
    # runs asked for are fitted again, their rows replaced (split 1 is not asked: left out)
    cfg["models"]["linked_cca"] = {"model": "linked_cca", "params": {"n_components": 5}}
    path.write_text(yaml.safe_dump(cfg))
    changed = subprocess.run(args[:-4] + ["0", "--out", str(out)], capture_output=True,
                             text=True, timeout=600, check=False)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "linked_cca on genesplit_link0.1 split 0 was written by other settings" in changed.stdout
    new = pd.read_csv(out)
    assert len(new) == len(rows) and new["settings"].notna().all()
    digest = new.groupby(["model", "split"])["settings"].nunique()
    assert (digest == 1).all()  # one settings digest per run: the old rows were replaced
    runs = new.groupby(["model", "split"])["settings"].first()
    assert runs[("linked_cca", 0)] != runs[("linked_cca", 1)]  # split 1: the old settings
    assert runs[("random", 0)] == runs[("random", 1)]
    left_out = (tmp_path / "diag_summary.md").read_text().split("## Runs left out")[1]
    assert "| genesplit_link0.1 | linked_cca |       1 |" in left_out
    assert "linked_cca |       0" not in left_out


def _load_bench(name: str = "bench_diagonal"):
    """``benchmarks/<name>.py`` as a module (the scripts import their helpers from benchmarks/,
    and bench_diagonal.py pins the thread counts of the process it runs in, NUMBA_NUM_THREADS
    included: both are put back, numba refuses a changed value)."""
    threads = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in threads}
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH))
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return bench


def test_bench_diagonal_link_fraction_curve(tmp_path):
    """Datasets that differ only in their link fraction (three or more fractions) make a curve:
    per family, model and fraction the mean and interval over splits, in a CSV and a figure
    beside the bench CSV."""
    import pandas as pd

    bench = _load_bench()
    assert bench.curve_family("snare_links0.05") == "snare"
    assert bench.curve_family("genesplit_link0.1") == "genesplit"
    assert bench.link_fraction({"preprocessing": {"links": {"keep_fraction": 0.05}}}) == 0.05
    assert bench.link_fraction({"params": {"link_fraction": 0.1}}) == 0.1
    rows = []
    for frac, base in ((0.0, 0.5), (0.05, 0.4), (0.1, 0.2)):
        for split in (0, 1, 2):
            for model, v in (("random", 0.5), ("ours", base + 0.01 * split)):
                rows.append({"dataset": f"toy_link{frac}", "link_fraction": frac, "model": model,
                             "split": split, "seed": split, "metric": "foscttm/mean",
                             "value": v, "note": ""})
    rows = pd.DataFrame(rows)
    curve = bench.link_fraction_curve(rows, metrics=("foscttm/mean",))
    ours = curve[curve["model"] == "ours"].set_index("link_fraction")
    assert set(curve["family"]) == {"toy"} and list(ours.index) == [0.0, 0.05, 0.1]
    assert ours.loc[0.1, "mean"] == pytest.approx(0.21) and ours.loc[0.1, "n_splits"] == 3
    assert ours.loc[0.1, "low"] < 0.21 < ours.loc[0.1, "high"]
    bench.report(rows, tmp_path / "lf.csv")
    assert (tmp_path / "lf_curve.csv").exists() and (tmp_path / "lf_curve.png").stat().st_size > 0
    assert "FOSCTTM against the link fraction" in (tmp_path / "lf_summary.md").read_text()


def test_bench_diagonal_fits_a_model_with_its_recipe_for_the_pair():
    """A shipped model entry's recipe for RNA+ATAC reaches the diagonal benchmark's fit (the
    note names it; the embedding has the recipe's width), its RNA+ADT recipe does not."""
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario
    from dmmvae.data.synthetic import simulate_shared_private
    from dmmvae.methods import apply_recipe, build_model

    bench = _load_bench()
    cfg = {"training": {"max_epochs": 3}, "models": {"rnd": {
        "model": "random", "params": {"n_dims": 5},
        "recipes": {"rna_atac": {"params": {"n_dims": 3}}, "cite": {"params": {"n_dims": 9}}}}}}
    variant = bench.variants(cfg)["rnd"]
    assert variant["recipes"]["rna_atac"] == {"params": {"n_dims": 3}}
    mods = {"rna": {"kind": "rna", "n_features": 60, "n_private": 1},
            "atac": {"kind": "atac", "n_features": 80, "n_private": 1}}
    sc = make_scenario(preprocess(simulate_shared_private(n_cells=120, modalities=mods, seed=1),
                                  seed=0), "diagonal")
    values, note = bench.run_one(sc, variant, 0, {"families": ["foscttm"]})
    assert note.startswith("recipe rna_atac") and 0 <= values["foscttm/mean"] <= 1
    # the recipe's width, not the entry's own (5) nor the RNA+ADT recipe's (9)
    params, _, _ = apply_recipe(variant["params"], {}, variant["recipes"], ("rna", "atac"))
    method = build_model("random", params)
    method.fit(sc, seed=0)
    assert method.predict(sc).embeddings["rna"].shape[1] == 3


def test_bench_diagonal_judges_rows_by_the_settings_digest_they_record(tmp_path):
    """A run is stale when its rows record a digest other than its variant's on that dataset's
    pair (a recipe for another pair changes nothing); rows with no digest, and models or
    datasets the config does not know, are not judged. An old CSV gains the column with its
    rows' text unchanged."""
    import pandas as pd

    bench = _load_bench()
    cfg = {"training": {"max_epochs": 3}, "models": {
        "a": {"model": "random", "params": {"n_dims": 5},
              "recipes": {"rna_atac": {"params": {"n_dims": 3}}}}}}
    models = bench.variants(cfg)
    adt, atac = bench.settings_id(models["a"], ("rna", "adt")), bench.settings_id(models["a"], ("rna", "atac"))
    assert adt != atac and len(adt) == 12
    def row(dataset, model, split, settings):
        return {"dataset": dataset, "model": model, "split": split, "metric": "foscttm/mean",
                "value": 0.5, "settings": settings}
    rows = pd.DataFrame([row("cite", "a", 0, adt), row("cite", "a", 1, atac),
                         row("snare", "a", 0, atac), row("snare", "a", 1, None),
                         row("snare", "gone", 0, "x"), row("elsewhere", "a", 0, "x")])
    kinds = {"cite": ("rna", "adt"), "snare": ("rna", "atac")}
    stale = bench.stale_runs(rows, cfg, models, kinds)
    assert stale == {("cite", "a", 1)}
    assert len(bench.drop_runs(rows, stale)) == len(rows) - 1
    old = tmp_path / "old.csv"
    text = "dataset,model,split,value,note\ncite,a,0,0.35862067341804504,\"a, b\"\n"
    old.write_text(text)
    bench.rewrite_csv(old, lambda r: True)
    assert old.read_text() == ("dataset,model,split,value,note,link_fraction,seed,metric,settings\n"
                               "cite,a,0,0.35862067341804504,\"a, b\",,,,\n")


def test_bench_diagonal_reuses_the_scores_of_a_variant_with_the_same_settings_on_the_pair():
    """A variant and the same without its RNA+ATAC recipe fit the same model on RNA+ADT: the
    bench copies the first one's scores (the note names it) instead of fitting again; on
    RNA+ATAC they differ, and on another split or with no such row nothing is copied."""
    import pandas as pd

    bench = _load_bench()
    cfg = {"training": {"max_epochs": 3}, "models": {
        "with": {"model": "random", "params": {"n_dims": 5},
                 "recipes": {"rna_atac": {"params": {"n_dims": 3}}}},
        "without": {"model": "random", "params": {"n_dims": 5}},
        "other": {"model": "random", "params": {"n_dims": 4}}}}
    models = bench.variants(cfg)
    rows = pd.DataFrame([{"dataset": "cite", "link_fraction": None, "model": "with", "split": 0,
                          "seed": 0, "metric": m, "value": v, "note": None}
                         for m, v in (("foscttm/mean", 0.5), ("label_transfer_acc/mean", 0.2))])
    def keys(kinds):
        return {m: bench.settings_key(v, kinds) for m, v in models.items()}

    values, note = bench.same_settings_rows(rows, keys(("rna", "adt")), "without", "cite", 0)
    assert values == {"foscttm/mean": 0.5, "label_transfer_acc/mean": 0.2}
    assert note.startswith("same settings as with on this modality pair")
    assert bench.same_settings_rows(rows, keys(("rna", "atac")), "without", "cite", 0) is None
    assert bench.same_settings_rows(rows, keys(("rna", "adt")), "without", "cite", 1) is None
    assert bench.same_settings_rows(rows, keys(("rna", "adt")), "other", "cite", 0) is None


def test_bench_diagonal_says_which_methods_align_against_the_random_control():
    """Each method's FOSCTTM minus random's on the same splits: below chance is aligned, above
    it anti-aligned (matched cells pushed apart), an interval across zero chance; a method with
    no row on a dataset shows a dash."""
    import pandas as pd

    bench = _load_bench()
    values = {"random": [0.50, 0.49, 0.51, 0.50], "good": [0.20, 0.22, 0.19, 0.21],
              "apart": [0.60, 0.58, 0.62, 0.61], "noise": [0.45, 0.55, 0.40, 0.60]}
    rows = pd.DataFrame([{"dataset": "toy", "link_fraction": None, "model": m, "split": k,
                          "seed": k, "metric": "foscttm/mean", "value": v, "note": ""}
                         for m, vs in values.items() for k, v in enumerate(vs)])
    table = bench.chance_markdown(rows, ("good", "apart", "noise", "absent"))
    cells = {ln.split("|")[1].strip(): ln.split("|")[2].strip()
             for ln in table.splitlines()[2:]}
    assert cells["`good`"].startswith("aligned -0.295")
    assert cells["`apart`"].startswith("**anti-aligned** +0.10")
    assert cells["`noise`"].startswith("chance") and cells["`absent`"] == "—"


def test_bench_diagonal_ablation_tables_keep_ladders_that_share_step_labels_apart():
    """Two ladders (a model at new and at old settings) name their steps alike: each keeps its
    own table, so neither's numbers stand in the other's rows."""
    import pandas as pd

    bench = _load_bench()
    abl = pd.DataFrame([{"ablation": ab, "dataset": "toy", "metric": "foscttm/mean",
                         "step": "VAE + CCA anchors", "model": m, "n_splits": 5, "mean": v,
                         "added": float("nan"), "low": float("nan"), "high": float("nan"),
                         "verdict": ""}
                        for ab, m, v in (("new", "abl_vae_anchors", 0.293),
                                         ("old", "abl_vae_anchors_c5k20", 0.228))])
    text = bench.ablation_markdown(abl)
    new, old = text.split("### `old`")
    assert "### `new`" in new and "0.293 n=5" in new and "0.228" not in new
    assert "0.228 n=5" in old and "0.293" not in old


def _table_cells(text: str) -> list[str]:
    return [" | ".join(c.strip() for c in ln.split("|")) for ln in text.splitlines()
            if ln.startswith("|") and not ln.startswith("|:")]


def _assert_doc_holds(table: str, doc: str = "README.md") -> None:
    """``doc`` (a path from the project root) holds ``table`` row for row (cells compared
    without their padding)."""
    text = _table_cells((BENCH.parent / doc).read_text())
    rows = _table_cells(table)
    assert rows[0] in text  # the header
    start = text.index(rows[0])
    assert text[start:start + len(rows)] == rows


def test_readme_what_aligns_table_is_the_committed_ablation():
    """README's "What aligns" table is ``ablation_steps_markdown`` of the committed
    ``ablation.csv`` (what ``--report-only`` writes to ``ablation_steps.md``), so the README
    cannot keep numbers the ablation rows no longer hold; a step held by fewer than 5 splits
    says how many."""
    import pandas as pd

    bench = _load_bench()
    abl = pd.read_csv(BENCH / "results" / "ablation.csv")
    table = bench.ablation_steps_markdown(abl)
    _assert_doc_holds(table)
    few = abl.assign(n_splits=abl["n_splits"].where(abl["model"] != "abl_cycle", 3))
    cycle = next(ln for ln in bench.ablation_steps_markdown(few).splitlines() if "+ cycle" in ln)
    assert cycle.count("(n=3)") == cycle.count("[") >= 4


def test_docs_mixing_table_is_the_committed_ablation():
    """docs/diagonal.md's modality-mixing table of the anchor-free ladder and GLUE's is
    ``mixing_steps_markdown`` of the committed ``ablation.csv``, which holds that metric for
    every step of both ladders."""
    import pandas as pd

    bench = _load_bench()
    abl = pd.read_csv(BENCH / "results" / "ablation.csv")
    mixing = abl[abl["metric"] == "mixing/batch_correction"]
    for ladder in bench.MIXING_LADDERS:
        held = set(mixing.loc[mixing["ablation"] == ladder, "model"])
        assert held == {m for _, m in bench.ABLATIONS[ladder][1]}, ladder
    _assert_doc_holds(bench.mixing_steps_markdown(abl), "docs/diagonal.md")


def test_readme_results_table_is_the_committed_diagonal_verdicts():
    """README's results table (between its ``results`` markers) is ``verdicts_markdown`` of the
    committed ``diagonal.csv`` (what ``--report-only`` writes to ``diagonal_verdicts.md``), so
    the README cannot keep a verdict the benchmark rows no longer give."""
    import pandas as pd

    bench = _load_bench()
    rows = pd.read_csv(BENCH / "results" / "diagonal.csv")
    table = bench.verdicts_markdown(bench.headline_claims(rows)).strip()
    readme = (BENCH.parent / "README.md").read_text()
    block = readme.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0].strip()
    assert block == table
    assert (BENCH / "results" / "diagonal_verdicts.md").read_text().strip() == table


def test_docs_diagonal_tables_are_the_committed_benchmark():
    """The current tables at the top of docs/diagonal.md (headline and verdicts) are what
    ``--report-only`` writes from the committed ``diagonal.csv``, so that page cannot keep a
    mean or a verdict the benchmark rows no longer give."""
    import pandas as pd

    bench = _load_bench()
    rows = pd.read_csv(BENCH / "results" / "diagonal.csv")
    _assert_doc_holds(bench.headline_markdown(rows), "docs/diagonal.md")
    _assert_doc_holds(bench.verdicts_markdown(bench.headline_claims(rows)), "docs/diagonal.md")
    stale = rows[~((rows["model"] == "dmmvae_noanchor") & (rows["dataset"] == "teaseq_pbmc1262")
                   & (rows["metric"] == "foscttm/mean") & (rows["split"] == 0))]
    with pytest.raises(AssertionError):
        _assert_doc_holds(bench.headline_markdown(stale), "docs/diagonal.md")


@pytest.mark.parametrize("config, stem", [("diagonal.yaml", "diagonal"),
                                          ("link_fraction.yaml", "link_fraction")])
def test_committed_diagonal_pages_are_written_from_the_committed_rows(tmp_path, config, stem):
    """Every page and table ``bench_diagonal.py --report-only`` writes beside a committed
    benchmark CSV (headline, verdicts, claims, ablation pages, the link-fraction curve's table)
    is the committed one, so no page keeps a step label or a number the rows and the code no
    longer give. The figure is left out: its bytes follow matplotlib's build."""
    results = BENCH / "results"
    out = tmp_path / f"{stem}.csv"
    out.write_bytes((results / out.name).read_bytes())
    run = subprocess.run([sys.executable, str(BENCH / "bench_diagonal.py"), "--config",
                          str(BENCH.parent / "config" / config), "--out", str(out),
                          "--report-only"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".md", ".csv"})
    assert len(written) >= 6, written
    stale = [name for name in written
             if (results / name).read_text() != (tmp_path / name).read_text()]
    assert not stale, (f"{stale} differ from what the committed {out.name} gives: run "
                       f"bench_diagonal.py --config config/{config} --out "
                       f"benchmarks/results/{out.name} --report-only and commit the pages")


def test_readme_glue_tuning_count_is_the_committed_sweep():
    """README's count of GLUE's tuning rows ("GLUE N asked, R of their T rows done") is that of
    the committed ``reference_sweep_glue.csv`` and of the grid in ``bench_reference_sweep.py``
    on the selection stand-ins and seeds 0-2, so it cannot go stale as rows land."""
    import re

    import pandas as pd

    sweep = _load_bench("bench_reference_sweep")
    rows = pd.read_csv(BENCH / "results" / "reference_sweep_glue.csv")
    readme = " ".join((BENCH.parent / "README.md").read_text().split())
    found = re.search(r"GLUE (\d+) asked, (\d+) of their (\d+) rows", readme)
    assert found, "README no longer states GLUE's tuning rows"
    asked, done, total = map(int, found.groups())
    assert asked == len(sweep.GRIDS["glue"])
    assert total == asked * len(sweep.SELECTION_DATASETS) * len(sweep.SEEDS)
    asked_rows = rows[rows["seed"].isin(sweep.SEEDS) & rows["dataset"].isin(sweep.SELECTION_DATASETS)]
    assert done == len(asked_rows.drop_duplicates(["config", "dataset", "seed"]))


@pytest.mark.parametrize("method", ["seurat_v3", "maxfuse", "glue"])
def test_committed_sweep_pages_are_written_from_the_committed_rows(method):
    """``reference_sweep_<method>.md`` is what ``--report-only`` writes from the committed CSV
    (so it cannot keep an old ranking after rows land), and it lists every missing row."""
    import pandas as pd

    sweep = _load_bench("bench_reference_sweep")
    rows = pd.read_csv(sweep.out_path(method))
    page = sweep.out_path(method).with_suffix(".md").read_text()
    assert page == sweep.sweep_markdown(method, rows), (
        f"run bench_reference_sweep.py --method {method} --report-only and commit the page")
    missing = sweep.missing_rows(method, rows)
    total = len(sweep.planned_cells(method))
    assert f"{total - len(missing)} of {total} planned rows done" in page
    assert ("## Rows still to run" in page) == bool(missing)


def test_committed_tuning_compute_page_is_written_from_the_committed_sweeps():
    sweep = _load_bench("bench_reference_sweep")
    results = BENCH / "results"
    assert (results / "tuning_compute.md").read_text() == sweep.tuning_compute_markdown(
        results), "run bench_reference_sweep.py --method glue --report-only and commit the page"


def test_tuning_compute_counts_each_fit_once_and_its_gpu_hours(tmp_path):
    import pandas as pd

    sweep = _load_bench("bench_reference_sweep")
    pd.DataFrame({"config": ["a", "b", "c"], "train_seconds": [3600.0, 1800.0, 7200.0],
                  "source": [None, None, "copied from x.csv"]}).to_csv(
        tmp_path / "dmmvae_sweep_x.csv", index=False)
    pd.DataFrame({"config": ["a"], "train_seconds": [1800.0], "device": ["cuda"]}).to_csv(
        tmp_path / "dmmvae_reask_x.csv", index=False)
    pd.DataFrame({"grid": ["x"], "choice": ["a"]}).to_csv(tmp_path / "dmmvae_reask.csv",
                                                          index=False)  # a summary: no fits
    pd.DataFrame({"config": ["{}"] * 2, "train_seconds": [600.0, 1200.0],
                  "device": ["cpu", "cuda"]}).to_csv(tmp_path / "reference_sweep_glue.csv",
                                                     index=False)
    table = sweep.tuning_compute(tmp_path)
    assert table.loc["dmmvae", "fits"] == 3 and table.loc["glue", "fits"] == 2
    assert table.loc["dmmvae", "hours"] == pytest.approx(2.0)  # the copied row is not a fit
    assert table.loc["dmmvae", "gpu_hours"] == pytest.approx(0.5)
    assert table.loc["glue", "hours"] == pytest.approx(0.5)
    assert table.loc["glue", "gpu_hours"] == pytest.approx(1 / 3)
    assert list(table.index) == ["dmmvae", "glue"]  # most hours first


def test_sweep_page_ranks_common_cells_and_lists_the_rows_to_run():
    import pandas as pd

    sweep = _load_bench("bench_reference_sweep")
    grid = sweep.GRIDS["glue"]
    key = [__import__("json").dumps(c, sort_keys=True) for c in grid]
    rows = pd.DataFrame(
        [{"config": key[i], "dataset": d, "seed": 0, "validation_anchor_foscttm": 0.1 * (i + 1),
          "train_label_transfer": 0.5} for i in range(len(grid)) for d in sweep.SELECTION_DATASETS]
        + [{"config": key[3], "dataset": "cite_bmmc600", "seed": 1,
            "validation_anchor_foscttm": 0.9, "train_label_transfer": 0.0}])
    page = sweep.sweep_markdown("glue", rows)
    assert f"Chosen: `{key[0]}`" in page  # seed 1 is held by one configuration: not ranked
    assert "ranked on the 4 of 5" in page and "| 1.900 " in page  # 0.9 + 1 - 0: its own cell
    last = len(grid) - 1
    assert (f"| cite_bmmc600 | 1 | 0-2, 4-{last} |" in page
            and f"| snare_mop5232 | 2 | 0-{last} |" in page)
    assert sweep.spans([5, 0, 1, 2, 7, 8]) == "0-2, 5, 7-8"


def test_a_configuration_enters_the_ranking_once_its_planned_rows_are_all_in():
    """A configuration added to a finished grid cannot move the choice on the few cells it
    holds while it runs: it is listed as waiting and ranked once every planned row is in; the
    configurations planned on seed 0 only (MaxFuse's second stage) are complete without seeds
    1-2."""
    import json

    import pandas as pd

    sweep = _load_bench("bench_reference_sweep")
    key = [json.dumps(c, sort_keys=True) for c in sweep.GRIDS["glue"]]
    cells = [(d, s) for s in sweep.SEEDS for d in sweep.SELECTION_DATASETS]

    def rows(config, value, where):
        return [{"config": config, "dataset": d, "seed": s, "validation_anchor_foscttm": value,
                 "train_label_transfer": 0.5} for d, s in where]

    finished = [r for i in range(4) for r in rows(key[i], 0.3 + 0.01 * i, cells)]
    running = pd.DataFrame(finished + rows(key[4], 0.0, cells[:2]))  # best, on 2 cells
    table, note = sweep.ranking("glue", running)
    assert table.index[0] == key[0] and key[4] not in table.index
    assert "not ranked until their planned rows are all in: 1" in note and key[4] in note
    done = pd.DataFrame(finished + rows(key[4], 0.0, cells) + rows(key[5], 0.0, cells[:1]))
    table, note = sweep.ranking("glue", done)
    assert table.index[0] == key[4] and len(table) == 5 and key[5] in note
    mf = [json.dumps(c, sort_keys=True) for c in sweep.GRIDS["maxfuse"]]
    seed0 = [(d, 0) for d in sweep.SELECTION_DATASETS]
    maxfuse = pd.DataFrame(rows(mf[0], 0.4, cells) + rows(mf[10], 0.1, seed0))
    assert (mf[10], "cite_bmmc600", 1) not in {
        (mf[i], d, s) for i, d, s in sweep.missing_rows("maxfuse", maxfuse)}
    assert sweep.ranking("maxfuse", maxfuse)[0].index[0] == mf[10]  # ranked on seed 0's cells


@pytest.mark.parametrize("method", ["seurat_v3", "maxfuse", "glue"])
def test_tuned_references_run_the_rules_choice_from_the_committed_sweep(method):
    """``<method>_tuned`` in config/diagonal.yaml runs the configuration the blind rule ranks
    first over the committed ``reference_sweep_<method>.csv`` (``ranked_rows``: the
    configurations whose planned rows are all in, on the cells every one of them holds), so a
    tuned reference cannot go stale when grid rows land."""
    import json

    import pandas as pd

    from dmmvae.config import load_config
    from dmmvae.selection import rank

    sweep = _load_bench("bench_reference_sweep")
    rows = pd.read_csv(sweep.out_path(method))
    chosen = json.loads(rank(sweep.ranked_rows(method, rows), sweep.RULE).index[0])
    assert chosen in sweep.GRIDS[method]
    variant = load_config(sweep.CONFIG)["models"][f"{method}_tuned"]
    assert variant["model"] == method
    assert variant.get("params", {}) == chosen, (
        f"{method}_tuned runs {variant.get('params')}, the rule now chooses {chosen}: update "
        f"config/diagonal.yaml and re-run its rows of diagonal.csv")


@pytest.mark.parametrize("csv,config", [("diagonal.csv", "diagonal.yaml"),
                                        ("link_fraction.csv", "link_fraction.yaml")])
def test_committed_diagonal_rows_were_written_by_the_shipped_config(shared_data, csv, config,
                                                                   monkeypatch):
    """Every committed row records the settings digest of its model's entry in the shipped
    config, so the README's tables (written from these rows) describe the models the config
    runs: a changed entry fails here until its rows are run again."""
    import pandas as pd

    from dmmvae.config import load_config

    bench = _load_bench()
    monkeypatch.chdir(BENCH.parent)  # the config's paths are relative to the project
    cfg = load_config(BENCH.parent / "config" / config)
    rows = pd.read_csv(BENCH / "results" / csv)
    assert rows["settings"].notna().all()
    kinds = {d: bench.dataset_kinds(cfg, d) for d in set(rows["dataset"])}
    stale = bench.stale_runs(rows, cfg, bench.variants(cfg), kinds)
    assert not stale, (f"{len(stale)} run(s) of {csv} written by other settings than "
                       f"config/{config}'s, e.g. {sorted(stale)[:3]}: run bench_diagonal.py again")


def test_bench_diagonal_fits_a_method_that_reads_no_link_once_per_input():
    """SCOT reads no link: two datasets that differ only in their links give it the same inputs
    (one fingerprint), so the bench fits it once; any other change of the inputs is seen."""
    import numpy as np
    from _synthetic import scenario

    from dmmvae.methods import MODELS

    bench = _load_bench()
    sc = scenario(kind="diagonal", n_cells=200)
    other = sc.copy()
    other.uns["links"] = {"rna-atac": {"i": [0], "j": [1], "w": [1.0]}}
    assert bench.inputs_without_links(other) == bench.inputs_without_links(sc)
    changed = sc.copy()
    x = changed.mod["atac"].X.copy()
    x[0, 0] = 1 - x[0, 0]
    changed.mod["atac"].X = x
    masks = sc.copy()
    col = next(c for c in masks.obs if c.startswith("visible_"))
    masks.obs[col] = np.roll(masks.obs[col].to_numpy(), 1)
    digests = {bench.inputs_without_links(m) for m in (sc, changed, masks)}
    assert len(digests) == 3
    assert not MODELS["gw_ot"].reads_links and MODELS["seurat_v3"].reads_links
    assert MODELS["glue"].reads_links and MODELS["dmmvae"].reads_links


def _benchmark_imports(path: Path) -> list[tuple[int, str]]:
    """Every module a benchmark script imports (any depth), with its line."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, "." * node.level + (node.module or "")))
    return out


def _rules_broken(path: Path) -> list[str]:
    bad = []
    scripts = {p.stem for p in path.parent.glob("bench_*.py")}
    for line, mod in _benchmark_imports(path):
        parts = mod.split(".")
        if parts[0] == "dmmvae" and any(p.startswith("_") for p in parts[1:]):
            bad.append(f"{path.name}:{line} imports the private module {mod}")
        if parts[0] in scripts:
            bad.append(f"{path.name}:{line} imports another benchmark ({mod})")
    if "sys.path.insert" in path.read_text():
        bad.append(f"{path.name}: edits sys.path (benchmarks/ is on it when a script runs)")
    return bad


def test_benchmarks_use_the_public_api_and_import_no_other_benchmark():
    """Benchmarks call the package's public modules only, share their helpers through
    ``_common.py`` (and other ``_*.py`` helpers), import no other benchmark script and leave
    ``sys.path`` alone."""
    bad = [b for p in sorted(BENCH.glob("*.py")) for b in _rules_broken(p)]
    assert not bad, "\n".join(bad)


def test_the_benchmark_import_rule_catches_a_private_import(tmp_path):
    (tmp_path / "bench_a.py").write_text("x = 1\n")
    (tmp_path / "bench_b.py").write_text(
        "import sys\nsys.path.insert(0, '.')\nfrom dmmvae.methods._loop import fit\n"
        "def f():\n    import bench_a\n")
    assert len(_rules_broken(tmp_path / "bench_b.py")) == 3


#: the parameters of each part an ablation step may add (the shared core replaces the graph
#: decoders: they wrap a modality's own decoder, so that step turns them off)
ABLATION_PARTS = {
    "anchors": {"anchor_weight", "anchor_space", "anchor_scope", "anchor_components", "n_knn"},
    "graph decoders": {"guidance_graph"},
    "latent adversary": {"latent_adversarial_weight", "disc_hidden", "disc_depth",
                         "disc_dropout", "disc_steps", "align_burnin"},
    "output adversary": {"output_adversarial_weight"},
    "shared core": {"shared_core", "guidance_graph"},
    "cycle": {"cycle_weight"},
    "GLUE's two stages": {"glue_stages"},
    "GLUE's adversary (first stage, on noised codes)": {"lam_align"},
    "GLUE's second stage (balanced, noise fading)": {"finetune"},
    "GLUE's ATAC encoder input": {"atac_input"},
}


def test_every_ablation_step_adds_one_part_to_the_step_before():
    """Each step of an ablation ladder, as the shipped config defines it, differs from the step
    before in the parameters of exactly one part (with the model's defaults filled in) and in
    nothing else, training budget included, or only in one recipe for a modality pair added
    (the settings chosen for that pair): so a step's difference is that part's contribution."""
    from dmmvae.config import expand_models, load_config
    from dmmvae.methods import MODELS

    bench = _load_bench()
    variants = expand_models(load_config(bench.CONFIG)["models"])

    def effective(model):
        v = variants[model]
        return v["model"], {**MODELS[v["model"]].DEFAULTS, **v["params"]}, v["training"]

    checked = 0
    for ablated, (n_baselines, ladder) in bench.ABLATIONS.items():
        steps = [model for _, model in ladder]
        assert ablated in steps, f"{ablated}'s ladder does not contain {ablated} itself"
        for before, after in zip(steps[n_baselines - 1:], steps[n_baselines:], strict=False):
            kind_b, params_b, training_b = effective(before)
            kind_a, params_a, training_a = effective(after)
            if kind_b != kind_a:   # the VAE added over a method without one (dmmvae_gw's
                assert kind_a == "dmmvae", (before, after)   # coupling alone): one part
                checked += 1
                continue
            recipes_b, recipes_a = variants[before]["recipes"], variants[after]["recipes"]
            if recipes_a != recipes_b:   # a recipe for one pair added, nothing else
                added = set(recipes_a) - set(recipes_b)
                assert len(added) == 1 and recipes_b == {k: recipes_a[k] for k in recipes_b}, (
                    before, after)
                assert (params_a, training_a) == (params_b, training_b), (before, after)
                checked += 1
                continue
            changed = {k for k in params_a if params_a[k] != params_b.get(k)}
            parts = [p for p, keys in ABLATION_PARTS.items() if changed <= keys]
            assert changed and parts, f"{before} -> {after} changes {sorted(changed)}: not one part"
            assert training_a == training_b, f"{before} -> {after} changes the training budget"
            checked += 1
    assert checked >= 20

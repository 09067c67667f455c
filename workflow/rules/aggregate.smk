# Writes the whole results/summary folder and swaps it in (dmmvae.report.write_summary): files
# of an earlier config (other datasets' figures) never survive beside the new ones.
rule aggregate_results:
    input:
        metrics=run_paths(f"results/metrics/{RUN_DIR}/metrics.csv"),
        train_benchmarks=run_paths(f"results/benchmarks/train_model/{RUN_DIR}.tsv"),
        eval_benchmarks=run_paths(f"results/benchmarks/evaluate_model/{RUN_DIR}.tsv"),
        histories=run_paths(f"results/models/{RUN_DIR}/history.csv"),
        predictions=run_paths(f"results/models/{RUN_DIR}/predictions.h5"),
        scenarios=[f"results/data/{d}/{s}/scenario.h5mu" for d, s in SCENARIOS],
    output:
        metrics=report("results/summary/metrics.csv", category="Tables"),
        summary=report("results/summary/summary.md", category="Tables"),
        rankings=report("results/summary/rankings.csv", category="Tables"),
        ranking_plot=report("results/summary/ranking.png", category="Figures"),
        reproduction=report("results/summary/reproduction.md", category="Tables"),
        report=report("results/summary/report.html", category="Report"),
    params:
        runs=aggregation_runs,
        scenarios=aggregation_scenarios,
        config=config,
    log:
        "results/logs/aggregate_results.log",
    # the report's dataset / scenario sections are drawn in this many processes (at most one
    # per section; Snakemake caps it at --cores)
    threads: 4
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/aggregate_results.py"

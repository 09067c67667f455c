rule evaluate_model:
    input:
        mdata="results/data/{dataset}/{scenario}/scenario.h5mu",
        predictions=f"results/models/{RUN_DIR}/predictions.h5",
        history=f"results/models/{RUN_DIR}/history.csv",
    output:
        f"results/metrics/{RUN_DIR}/metrics.csv",
    params:
        evaluation=config["evaluation"],
    log:
        f"results/logs/evaluate_model/{RUN_DIR}.log",
    benchmark:
        f"results/benchmarks/evaluate_model/{RUN_DIR}.tsv"
    threads: 2
    resources:
        mem_mb=get_eval_mem_mb,
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/evaluate_model.py"

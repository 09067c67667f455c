rule train_model:
    input:
        mdata="results/data/{dataset}/{scenario}/scenario.h5mu",
    output:
        predictions=f"results/models/{RUN_DIR}/predictions.h5",
        model=f"results/models/{RUN_DIR}/model.pt",
        history=f"results/models/{RUN_DIR}/history.csv",
        run_info=f"results/models/{RUN_DIR}/run_info.yaml",
    params:
        model_spec=get_model_spec,
        training=get_training,
        device=config["device"],
    log:
        f"results/logs/train_model/{RUN_DIR}.log",
    benchmark:
        f"results/benchmarks/train_model/{RUN_DIR}.tsv"
    threads: 2
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime,
    conda:
        get_torch_env
    script:
        "../scripts/train_model.py"

rule download_dataset:
    output:
        f"{config['download_dir']}/{{dataset}}/{{filename}}",
    params:
        spec=dataset_spec,
        mirror=config["data_mirror"],
    log:
        "results/logs/download_dataset/{dataset}/{filename}.log",
    resources:
        runtime=120,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download_dataset.py"


rule prepare_dataset:
    input:
        get_prepare_inputs,
    output:
        "results/data/{dataset}/raw.h5mu",
    params:
        spec=dataset_spec,
        download_dir=config["download_dir"],
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    resources:
        mem_mb=get_eval_mem_mb,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_dataset.py"


rule preprocess_dataset:
    input:
        get_preprocess_inputs,
    output:
        "results/data/{dataset}/preprocessed.h5mu",
    params:
        preprocessing=get_preprocessing,
        split=config["split"],
    log:
        "results/logs/preprocess_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess_dataset/{dataset}.tsv"
    resources:
        mem_mb=get_eval_mem_mb,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/preprocess_dataset.py"


rule make_scenario:
    input:
        "results/data/{dataset}/preprocessed.h5mu",
    output:
        "results/data/{dataset}/{scenario}/scenario.h5mu",
    params:
        scenario=get_scenario,
        seed=config["split"]["seed"],
    log:
        "results/logs/make_scenario/{dataset}/{scenario}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/make_scenario.py"

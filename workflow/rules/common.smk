# Helper functions for the rules (no lambdas inside rules). All logic lives in src/dmmvae.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# envs/*.post-deploy.sh install this checkout's package into each conda env
os.environ.setdefault("DMMVAE_ROOT", str(Path(workflow.basedir)))
# scib-metrics (jax) compiles the same kernels in every evaluation job: share a compile cache
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path("results/.jax_cache").absolute()))
# and the numba functions of pynndescent (kBET's diffusion neighbours): ~40 % of their compile
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path("results/.numba_cache").absolute()))

from dmmvae.data.prepare import download_filenames, local_input_paths  # noqa: E402
from dmmvae.reproduce import ClaimsError, apply_standins, check_workflow_claims  # noqa: E402
from dmmvae.config import (  # noqa: E402
    ConfigError,
    annotation_paths,
    check_local_paths,
    check_scenarios,
    data_job_mem_mb,
    dataset_cells,
    expand_models,
    merged,
    preprocessing_params,
    resolve_runs,
    train_resources,
)

try:
    apply_standins(config)
    check_workflow_claims(config)
    RUNS = resolve_runs(config)
    check_scenarios(config, RUNS)
    check_local_paths(config, RUNS)
except (ConfigError, ClaimsError) as err:
    raise WorkflowError(f"Invalid configuration: {err}") from None

MODELS = expand_models(config["models"])
SCENARIOS = sorted({(r.dataset, r.scenario) for r in RUNS})
RUN_DIR = "{dataset}/{scenario}/{model}/seed{seed}"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.\-]+",
    scenario=r"[A-Za-z0-9_.\-]+",
    model=r"[A-Za-z0-9_.\-]+",
    seed=r"\d+",


def run_paths(pattern):
    """Expand a path pattern over every selected run."""
    return [
        pattern.format(dataset=r.dataset, scenario=r.scenario, model=r.model, seed=r.seed)
        for r in RUNS
    ]


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def get_prepare_inputs(wildcards):
    """Download cache for 'download' datasets, the user's files for 'local' ones."""
    spec = config["datasets"][wildcards.dataset]
    cached = [
        f"{config['download_dir']}/{wildcards.dataset}/{name}"
        for name in download_filenames(spec)
    ]
    return cached + local_input_paths(spec)


def get_preprocessing(wildcards):
    return preprocessing_params(config, wildcards.dataset)


def get_preprocess_inputs(wildcards):
    """The raw MuData, and the dataset's gene annotation when it names one."""
    return ["results/data/{dataset}/raw.h5mu", *annotation_paths(dataset_spec(wildcards))]


def get_scenario(wildcards):
    return config["scenarios"][wildcards.scenario]


def get_model_spec(wildcards):
    return MODELS[wildcards.model]


def get_training(wildcards):
    return merged(config["training"], MODELS[wildcards.model]["training"])


def _dataset_cells(wildcards):
    return dataset_cells(config["datasets"][wildcards.dataset])


def get_train_mem_mb(wildcards, attempt):
    """Memory for a training job: a base (the model's own or the default) plus the dataset's
    share (dmmvae.config.train_resources); x2 per retry."""
    return train_resources(MODELS[wildcards.model], _dataset_cells(wildcards), attempt)["mem_mb"]


def get_train_runtime(wildcards, attempt):
    """Minutes for a training job (SLURM time limit): a base (the model's own or the default)
    plus the dataset's share (dmmvae.config.train_resources); x attempt."""
    return train_resources(MODELS[wildcards.model], _dataset_cells(wildcards), attempt)["runtime"]


def get_eval_mem_mb(wildcards, attempt):
    """Memory for a job that reads, preprocesses or scores one dataset
    (dmmvae.config.data_job_mem_mb); x attempt per retry."""
    return data_job_mem_mb(_dataset_cells(wildcards), attempt)


def get_torch_env(wildcards):
    """train_model's conda env: CUDA torch (runs on CPU too) unless torch_build is cpu."""
    if config["torch_build"] == "cpu":
        return "../../envs/torch.yaml"
    return "../../envs/torch-gpu.yaml"


def aggregation_runs(wildcards):
    """Every selected run with its wildcards and file paths (dmmvae.aggregate.RunFiles)."""
    runs = []
    for r in RUNS:
        run_dir = RUN_DIR.format(dataset=r.dataset, scenario=r.scenario, model=r.model, seed=r.seed)
        runs.append(
            {
                "dataset": r.dataset,
                "scenario": r.scenario,
                "model": r.model,
                "seed": r.seed,
                "metrics": f"results/metrics/{run_dir}/metrics.csv",
                "train_benchmark": f"results/benchmarks/train_model/{run_dir}.tsv",
                "eval_benchmark": f"results/benchmarks/evaluate_model/{run_dir}.tsv",
                "history": f"results/models/{run_dir}/history.csv",
                "predictions": f"results/models/{run_dir}/predictions.h5",
            }
        )
    return runs


def aggregation_scenarios(wildcards):
    return [
        {"dataset": d, "scenario": s, "path": f"results/data/{d}/{s}/scenario.h5mu"}
        for d, s in SCENARIOS
    ]

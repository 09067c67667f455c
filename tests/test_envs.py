"""envs/*.yaml (conda envs for `--software-deployment-method conda`) agree with pyproject.toml.

Checks, without building any env (no conda needed):
- every env file parses, and every package it pins has exactly pyproject's version;
- every rule's `conda:` env exists and holds the third-party packages its script imports
  (found by walking the imports of the script and of the dmmvae modules it reaches);
- the GPU env pins a CUDA build of torch, the CPU envs do not;
- each env has a post-deploy script that installs the dmmvae package without dependencies.
- envs/constraints.txt (the versions `make setup` installs) agrees with pyproject's pins,
  and both installs of `make test` pass it to pip.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
ENV_FILES = sorted(ENVS.glob("*.yaml"))
GPU_ENV = ENVS / "torch-gpu.yaml"
# CUDA runtime pins of the torch 2.13.0 PyPI wheel (its Requires-Dist); the GPU env repeats them.
CUDA_PINS = {"cuda-toolkit": "13.0.3", "nvidia-cudnn-cu13": "9.20.0.48"}


def pyproject_pins(extras: bool = False) -> dict[str, str]:
    """{canonical name: version} of pyproject.toml [project.dependencies] (all `==` pins), and
    of every optional dependency with ``extras``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    if extras:
        deps = deps + sum(project["optional-dependencies"].values(), [])
    pins = {}
    for dep in deps:
        req = Requirement(dep)
        (spec,) = req.specifier
        assert spec.operator == "==", f"pyproject.toml: {dep!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def env_requirements(env: dict) -> tuple[list[str], list[Requirement], list[str]]:
    """Split an env file's dependencies into conda specs, pip requirements and pip options."""
    conda, pip, options = [], [], []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            for line in dep.get("pip") or []:
                (options if line.startswith("-") else pip).append(line)
                if not line.startswith("-"):
                    pip[-1] = Requirement(line)
        else:
            conda.append(str(dep))
    return conda, pip, options


def pin_mismatches(env: dict, pins: dict[str, str]) -> list[str]:
    """Problems with an env's pins: a pip package that is not pinned exactly, or whose version
    differs from pyproject's pin, or a conda package that shadows a pinned one."""
    problems = []
    conda, pip, _ = env_requirements(env)
    for spec in conda:
        name = canonicalize_name(re.split(r"[=<>!~ ]", spec, maxsplit=1)[0])
        if name in pins:
            problems.append(f"{spec}: install {name} through pip with pyproject's pin")
    for req in pip:
        if (problem := requirement_problem(req, pins, ("==", "==="))) is not None:
            problems.append(problem)
    return problems


def requirement_problem(req: Requirement, pins: dict[str, str], operators: tuple[str, ...]
                        ) -> str | None:
    """What is wrong with one pinned requirement: not pinned to one exact version (one of
    ``operators``), or a version other than pyproject's pin."""
    name, specs = canonicalize_name(req.name), list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in operators:
        return f"{req}: not pinned to one exact version"
    if name in pins and specs[0].version != pins[name]:
        return f"{req}: pyproject.toml pins {name}=={pins[name]}"
    return None


def load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("dependencies"), f"{path}: no dependencies"
    return env


def rule_envs() -> dict[str, tuple[Path, Path | None]]:
    """{rule: (env file, script)} from workflow/rules/*.smk (paths as the rules give them)."""
    found = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            conda = re.search(r"^\s+conda:\s*\n?\s*\"([^\"]+)\"", block, flags=re.M)
            script = re.search(r"^\s+script:\s*\n?\s*\"([^\"]+)\"", block, flags=re.M)
            if conda:
                found[name] = (
                    (smk.parent / conda.group(1)).resolve(),
                    (smk.parent / script.group(1)).resolve() if script else None,
                )
    return found


def imported_distributions(script: Path) -> set[str]:
    """Canonical names of the installed distributions that `script` imports, following its
    imports through the dmmvae package (function-level imports included)."""
    providers = importlib.metadata.packages_distributions()
    src = ROOT / "src"
    seen: set[Path] = set()
    todo = [script]
    dists: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative import inside dmmvae: make it absolute
                    package = path.relative_to(src).parent.parts
                    package = package[: len(package) - (node.level - 1)]
                    module = ".".join([*package, *([module] if module else [])])
                modules = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "dmmvae":
                    base = src.joinpath(*module.split("."))
                    for cand in (base.with_suffix(".py"), base / "__init__.py"):
                        if cand.exists():
                            todo.append(cand)
                else:
                    dists.update(canonicalize_name(d) for d in providers.get(top, []))
    return dists


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return pyproject_pins()


def test_env_files_exist():
    names = {p.stem for p in ENV_FILES}
    assert {"data", "torch", "torch-gpu", "eval"} <= names, names


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path, pins):
    env = load_env(path)
    assert "conda-forge" in env.get("channels", []), f"{path.name}: use the conda-forge channel"
    conda, pip, _ = env_requirements(env)
    assert "python=3.11" in conda, f"{path.name}: pin python=3.11 (pyproject requires >=3.11)"
    assert pip, f"{path.name}: no pip section"
    assert pin_mismatches(env, pins) == [], pin_mismatches(env, pins)
    # the env carries pyproject's pins, not just any exact versions
    assert sum(canonicalize_name(r.name) in pins for r in pip) >= 5, path.name


def test_pin_check_catches_drift(pins):
    """The check above fails when a pin drifts, when a pin is loosened, or when a pinned
    package sneaks in through conda."""
    env = load_env(ENVS / "torch.yaml")
    drifted = yaml.safe_load(yaml.safe_dump(env))
    for dep in drifted["dependencies"]:
        if isinstance(dep, dict):
            dep["pip"] = [re.sub(r"^numpy==.*", "numpy==2.3.0", x) for x in dep["pip"]]
            dep["pip"] = [re.sub(r"^scipy==.*", "scipy>=1.17", x) for x in dep["pip"]]
    drifted["dependencies"].append("pandas=2.2")
    problems = pin_mismatches(drifted, pins)
    assert any("numpy==2.3.0" in p and f"numpy=={pins['numpy']}" in p for p in problems)
    assert any("scipy>=1.17" in p and "not pinned" in p for p in problems)
    assert any(p.startswith("pandas=2.2") for p in problems)
    assert len(problems) == 3, problems


def test_every_rule_env_exists_and_covers_its_imports(pins):
    rules = rule_envs()
    assert len(rules) >= 6, f"rules with a conda env: {sorted(rules)}"  # every job rule has one
    for rule, (env_path, script) in rules.items():
        assert env_path.exists(), f"rule {rule}: conda env {env_path} does not exist"
        assert env_path.parent == ENVS, f"rule {rule}: env {env_path} is not in envs/"
        if script is None or not script.exists():
            continue
        _, pip, _ = env_requirements(load_env(env_path))
        have = {canonicalize_name(r.name) for r in pip}
        # only the project's direct dependencies are required to be listed; their own
        # dependencies come with them
        needed = (imported_distributions(script) & set(pins)) - {"snakemake"}
        missing = sorted(needed - have)
        assert not missing, f"rule {rule} ({script.name}) imports {missing}, not in {env_path.name}"


def test_gpu_env_pins_a_cuda_torch_build(pins):
    _, pip, options = env_requirements(load_env(GPU_ENV))
    by_name = {canonicalize_name(r.name): r for r in pip}
    (torch_spec,) = by_name["torch"].specifier
    # '===' is string equality: "2.13.0" matches the PyPI wheel (the CUDA build on Linux) and
    # never a local "2.13.0+cpu" build from a CPU index or a find-links folder.
    assert torch_spec.operator == "===" and torch_spec.version == pins["torch"]
    assert not torch_spec.contains(f"{pins['torch']}+cpu")
    assert torch_spec.contains(pins["torch"])
    assert not any("cpu" in o for o in options), f"GPU env must not use a CPU index: {options}"
    for name, version in CUDA_PINS.items():
        assert name in by_name, f"torch-gpu.yaml must pin the CUDA runtime {name}"
        assert list(by_name[name].specifier)[0].version == version


@pytest.mark.parametrize("name", ["torch.yaml", "eval.yaml"])
def test_cpu_envs_take_the_cpu_torch_build(name, pins):
    _, pip, options = env_requirements(load_env(ENVS / name))
    torch_req = next(r for r in pip if canonicalize_name(r.name) == "torch")
    # '==2.13.0' admits 2.13.0+cpu, which pip prefers when the CPU index is listed
    assert torch_req.specifier.contains(f"{pins['torch']}+cpu")
    assert any(
        o.startswith("--extra-index-url") and o.rstrip("/").endswith("/cpu") for o in options
    )
    assert not any(canonicalize_name(r.name).startswith("nvidia-") for r in pip)


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_post_deploy_installs_the_package_without_deps(path):
    script = path.with_name(f"{path.stem}.post-deploy.sh")
    assert script.exists(), f"{script.name} missing: the env would not contain dmmvae"
    text = script.read_text()
    assert text.startswith("#!"), script.name
    assert "envs/install-dmmvae.sh" in text, script.name
    installer = (path.parent / "install-dmmvae.sh").read_text()
    assert re.search(r"pip install --no-deps .*--editable", installer)
    conda, _, _ = env_requirements(load_env(path))
    assert any(c.startswith("setuptools") for c in conda), f"{path.name}: build needs setuptools"


CONSTRAINTS = ENVS / "constraints.txt"


def constraint_problems(lines: list[str], pins: dict[str, str]) -> list[str]:
    """Problems with pip constraint lines: one not pinned to one exact version, one that differs
    from a pyproject pin, a torch pin (its local build tag differs between CPU and CUDA hosts),
    a package listed twice."""
    problems, seen = [], set()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if (problem := requirement_problem(req, pins, ("==",))) is not None:
            problems.append(problem)
        elif "+" in next(iter(req.specifier)).version:
            problems.append(f"{line}: a local build tag, not a public version")
        if name == "torch":
            problems.append(f"{line}: leave torch to pyproject's pin")
        if name in seen:
            problems.append(f"{line}: listed twice")
        seen.add(name)
    return problems


@pytest.fixture(scope="module")
def all_pins() -> dict[str, str]:
    """pyproject's pins of the dependencies and of every extra."""
    return pyproject_pins(extras=True)


def test_constraints_agree_with_pyproject(all_pins):
    lines = CONSTRAINTS.read_text().splitlines()
    assert constraint_problems(lines, all_pins) == []
    names = {canonicalize_name(Requirement(x).name) for x in lines if x and not x.startswith("#")}
    # every pinned package but torch is constrained, and so are the packages they pull in
    assert set(all_pins) - {"torch"} <= names, sorted(set(all_pins) - {"torch"} - names)
    assert {"numba", "pynndescent", "llvmlite"} <= names
    # the check fails on drift, a loose pin, a local build tag and torch
    bad = ["numpy==2.3.0", "scipy>=1.17", "llvmlite==0.45.0+local", "torch==2.13.0"]
    assert len(constraint_problems(bad, all_pins)) == 4, constraint_problems(bad, all_pins)


def test_make_setup_installs_with_the_constraints(tmp_path):
    """Both installs `make test` runs on a fresh machine pass the constraints file to pip."""
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", f"VENV={venv}", f"{venv}/.installed-test-stamp"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    installs = [x for x in out.splitlines() if "pip install" in x and " -e " in x]
    assert len(installs) == 2, out
    assert all(f"-c {CONSTRAINTS.relative_to(ROOT)}" in x for x in installs), installs

# Two commands do all the set-up on a fresh machine (python3 >= 3.11 and pip access only):
#   make demo   -> builds .venv, runs the offline demo benchmark end to end
#   make test   -> builds .venv, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# the tests also exercise the optional reference methods (scvi-tools, scglue, maxfuse), so they
# install that extra
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: setup demo test lint dryrun benchmarks constraints

# pip byte-compiles what it installs on one core (~70 s of the set-up); installing with
# --no-compile and compiling the installed packages on every core afterwards takes half of it
# (the same .pyc files; the few that pip also fails on, torch's Python-3.12-only test helpers,
# are skipped quietly, as pip does)
COMPILE := $(BIN)/python -c "import compileall, sysconfig; \
	compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"

# every package besides torch and dmmvae at the version of envs/constraints.txt
CONSTRAINTS := envs/constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install --no-compile -c $(CONSTRAINTS) -e ".[dev]"
	$(COMPILE)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --no-compile -c $(CONSTRAINTS) -e ".[dev,refs]"
	$(COMPILE)
	touch $(TEST_STAMP)

setup: $(STAMP)

# rewrites envs/constraints.txt from .venv, its comment header kept, torch left to pyproject's pin.
# To change a pin: the same version in pyproject.toml and here (pip refuses a conflict), `make
# test`, then `make constraints` for the packages it pulls in
constraints: $(TEST_STAMP)
	{ grep '^#' $(CONSTRAINTS); $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } \
	  > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

# one thread per job: training already runs torch on cores - 1 = 1 thread on 2 cores, so two
# jobs side by side use the machine; with 2 threads each the demo ran its 74 jobs one at a time
demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --set-threads train_model=1 evaluate_model=1

# the suite in TEST_WORKERS processes (pytest-xdist; an idle worker takes tests queued for a busy
# one): most tests run one torch thread, and the SLURM and workflow tests spend much of their
# time waiting on subprocesses. `pytest` alone runs it in one process.
TEST_WORKERS ?= $(CORES)
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: setup
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/snakemake --lint

dryrun: setup
	$(BIN)/snakemake -n --cores $(CORES)

# scripts that print figures (see benchmarks/README.md); about 30 min on 2 cores
benchmarks: $(TEST_STAMP)
	for b in preprocess foscttm evaluate training step_profile input_layer memory scale mmvae_plus_claim; do \
	  $(BIN)/python benchmarks/bench_$$b.py || exit 1; done

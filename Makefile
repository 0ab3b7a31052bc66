# One command to set up and test on a fresh machine: `make test`.
# The virtual environment is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# checkov (tests/chart/test_checkov.py) pins many packages of its own: it gets a venv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: test lint crd check-crd chart images demo cluster checkov clean help

help:
	@echo "make test   set up .venv (CPU torch first) and .venv-checkov, and run the whole test suite"
	@echo "make checkov set up .venv-checkov (checkov, for tests/chart/test_checkov.py)"
	@echo "make demo   validate the example Societies, then run examples/tiny.yaml locally"
	@echo "make crd    regenerate crds/society.yaml and docs/api.md from the API models"
	@echo "make lint   ruff"
	@echo "make chart  copy the CRD into the Helm chart (charts/society-operator/crds/)"
	@echo "make images build the operator, trainer and vLLM images (needs a Docker engine)"
	@echo "make cluster start the tests' Kubernetes control plane by hand (fake GPU nodes) until Ctrl-C"

# Python compiles each module the first time it is imported and keeps the .pyc, so the venv is
# installed without compiling: pip would compile every module of every package, one after
# another (the thousands of transformers, sympy and the Kubernetes client: 1m40s of a 3m50s
# install on 2 cores), of which a run imports a fraction. PYTHONDONTWRITEBYTECODE, set on some
# machines, would make every process compile its imports again: make's commands run without it.
unexport PYTHONDONTWRITEBYTECODE
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --no-compile

# torch goes in first, and the project with a constraint that keeps it, so that no install pulls
# several GB of CUDA builds.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -c constraints.txt -e '.[trainer,dev]'
	touch $@

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(CHECKOV_STAMP)

test: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check operator trainer tests bench
	$(BIN)/ruff format --check operator trainer tests bench

crd: $(STAMP)
	$(BIN)/society crd > crds/society.yaml
	$(BIN)/society api-reference > docs/api.md
	@$(MAKE) --no-print-directory chart

# Helm installs CRDs from the chart's crds/; a test fails when that copy differs from crds/.
chart:
	cp crds/society.yaml charts/society-operator/crds/society.yaml

# Images are tagged with the project's version, which the chart's appVersion follows.
DOCKER ?= docker
IMAGE_REGISTRY ?= ghcr.io/society-operator
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

images:
	$(DOCKER) build -f images/operator/Dockerfile -t $(IMAGE_REGISTRY)/operator:$(VERSION) .
	$(DOCKER) build -f images/trainer/Dockerfile -t $(IMAGE_REGISTRY)/trainer:$(VERSION) .
	$(DOCKER) build -f images/vllm/Dockerfile -t $(IMAGE_REGISTRY)/vllm:$(VERSION) images/vllm

# The whole method on this machine, on the shipped builtin:tiny-equations: 3 agents debate in 2
# rounds with a summariser, both roles are finetuned, and the finetuned society debates again
# (one iteration of examples/tiny.yaml's two); then the round-1 vote against the debate per
# iteration, and a plot of accuracy, consensus and diversity (runs/tiny/tiny.png). Artifacts in
# runs/tiny/. Rerunning resumes (or reprints a finished run); `society run examples/tiny.yaml`
# then goes on to the second iteration. One torch thread per
# step unless OMP_NUM_THREADS says otherwise: the tiny model gains nothing from a second one, and
# on a busy machine two OpenMP threads waiting on each other made a debate 8x slower.
demo: $(STAMP)
	$(BIN)/society validate examples/*.yaml
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/society run examples/tiny.yaml --iterations 1 --plot runs/tiny/tiny.png

# The control plane the cluster tests use (tests/cluster/, tests/README.md), with the Society CRD:
# it prints the kubeconfig to export and runs until Ctrl-C.
cluster: $(STAMP)
	$(BIN)/python -m tests.cluster

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache

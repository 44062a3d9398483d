# Developer entry points. The test control plane is built once per machine (cached under
# ~/.cache/kubenas/); `cluster-up` starts one on 127.0.0.1 and writes its kubeconfig to
# $(CLUSTER_DIR)/kubeconfig.

PYTHON ?= python3
KUBENAS ?= $(PYTHON) -m kubenas.cli
CLUSTER_DIR ?= .cache/cluster
PYTEST_ARGS ?=

.PHONY: deps test run crds lint cluster-build cluster-up cluster-down cluster-status e2e

## cluster-build: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, helm and Kueue (once)
cluster-build:
	$(KUBENAS) cluster build

## cluster-up: start a cluster on loopback; prints the kubeconfig path
cluster-up: cluster-build
	$(KUBENAS) cluster up --dir $(CLUSTER_DIR)

## cluster-down: stop it and remove $(CLUSTER_DIR)
cluster-down:
	$(KUBENAS) cluster down --dir $(CLUSTER_DIR)

cluster-status:
	$(KUBENAS) cluster status --dir $(CLUSTER_DIR)

## e2e: the tests against the real cluster, alone (the cluster starts and stops with the run)
e2e: cluster-build
	$(PYTHON) -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

## deps: what the tests need on a fresh machine: the package with its extras, the development tools
## (devtools/: the test control plane, fixtures, `kubenas cluster`, `kubenas bench operator`), Debian's prometheus
deps:
	$(PYTHON) -m pip install -q -e '.[all]' -e ./devtools
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

## test: the README's test command: install, build the control plane once per machine, run every test
test: deps
	$(MAKE) cluster-build
	$(PYTHON) -m pytest $(PYTEST_ARGS)

## run: the README's main job: a cell search on digits in local mode
run:
	$(KUBENAS) run examples/digits-cell-search.yaml

## crds: regenerate crds/ from the pydantic models, then the chart's copy and the kubectl bundle
crds:
	$(KUBENAS) crds generate
	$(KUBENAS) chart generate

## lint: ruff over the whole tree
lint:
	$(PYTHON) -m ruff check operator trainer_image devtools tests benchmarks

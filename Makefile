# regcred — see README.md. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X regcred.dev/regcred/internal/version.version=$(VERSION)
# Integration tests fail instead of skipping when `make tools` has run.
TEST_ENV := REGCRED_REQUIRE_TESTENV=1
GOTEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/regcred
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/regcred ./cmd/regcred

.PHONY: tools
tools: ## install etcd/skopeo (apt), build the cached kube-apiserver and Helm 3/4 clients for tests
	bash hack/tools.sh

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## gofmt check and go vet
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: unit
unit: ## fast tests only: no control plane, no registry
	$(GO) test -short -count=1 ./...

.PHONY: test
test: tools vet parity ## vet + unit + integration tests (real kube-apiserver, etcd, registry), race detector on
	$(TEST_ENV) $(GO) test $(GOTEST_FLAGS) ./...

.PHONY: restore-host
restore-host: ## (root) restore the host after a test cluster whose harness was killed
	$(GO) run ./hack/restorehost

.PHONY: stress
stress: tools ## integration and end-to-end packages COUNT times (default 5), GOMAXPROCS 1 and 2, under CPU load (LOAD busy loops)
	bash hack/stress.sh $(STRESS_PACKAGES)

# The kubelet's own credential code, in a module of its own (hack/kubelet-parity).
PARITY_FUZZTIME ?= 20s
.PHONY: parity
parity: ## differential test and fuzz of regcred's matching against the kubelet's pkg/credentialprovider
	cd hack/kubelet-parity && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd hack/kubelet-parity && $(GO) test -run '^$$' -fuzz FuzzParity -fuzztime $(PARITY_FUZZTIME) .

.PHONY: demo
demo: ## (root) a real cluster with a kubelet node, a private registry and regcred: watch a pull fail, then work; Ctrl-C stops it
	bash hack/tools.sh --no-helm
	$(GO) run ./hack/demo

.PHONY: bench
bench: ## Go benchmarks (figures go in docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: clean
clean: ## remove build output (the kube-apiserver cache stays)
	rm -rf $(BIN)

.PHONY: generate
generate: ## regenerate deepcopy code, CRDs and RBAC with the pinned controller-gen
	cd hack/tools && $(GO) tool controller-gen object paths=../../api/... \
		crd paths=../../api/... output:crd:artifacts:config=../../config/crd/bases
	cd hack/tools && $(GO) tool controller-gen rbac:roleName=regcred-manager paths=../../internal/... \
		output:rbac:artifacts:config=../../config/rbac

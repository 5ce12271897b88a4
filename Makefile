# t9k build, tools, code generation and tests.
# Every tool is built from the Go module proxy at a pinned version into bin/, and rebuilt only when
# its pin (or go.mod, for the tools that come from our own module graph) changes.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
BIN       := $(CURDIR)/bin
# -buildvcs=false: CI and tarball checkouts may lack git metadata.
GOBUILD   := $(GO) build -buildvcs=false
export GOFLAGS ?= -buildvcs=false

KWOK_VERSION           := v0.8.0
CONTROLLER_GEN_VERSION := v0.19.0

# Binaries of this repository.
BINARIES := t9k-scheduler t9k-controllers device-agent t9k-local

# Tools from our go.mod `tool` block (versions pinned there: k8s v1.34.7, etcd v3.6.4).
MODULE_TOOLS := kube-apiserver kubectl kube-scheduler etcd
kube-apiserver_PKG := k8s.io/kubernetes/cmd/kube-apiserver
kubectl_PKG        := k8s.io/kubernetes/cmd/kubectl
kube-scheduler_PKG := k8s.io/kubernetes/cmd/kube-scheduler
etcd_PKG           := go.etcd.io/etcd/server/v3

.PHONY: all
all: build tools

## build: the four binaries of this repository into bin/
.PHONY: build
build: $(addprefix $(BIN)/,$(BINARIES))

# Go's own cache decides what actually needs recompiling; make just always asks it.
.PHONY: FORCE
FORCE:
$(addprefix $(BIN)/,$(BINARIES)): $(BIN)/%: FORCE
	@mkdir -p $(BIN)
	$(GOBUILD) -o $@ ./cmd/$*

## cross: every binary for linux/amd64 and linux/arm64 into _output/bin/<os>_<arch>/ (no engine needed)
# t9k-scheduler and t9k-controllers are static (CGO_ENABLED=0). The device-agent (and t9k-local,
# which embeds its machine fixtures) need cgo (go-nvml dlopens libnvidia-ml): the other
# architecture is built with Debian's cross gcc
# (gcc-aarch64-linux-gnu or gcc-x86-64-linux-gnu), installed with apt-get when run as root.
CROSS_PLATFORMS ?= linux/amd64 linux/arm64
HOST_ARCH := $(shell $(GO) env GOARCH)
CROSS_CC_amd64 := $(if $(filter amd64,$(HOST_ARCH)),gcc,x86_64-linux-gnu-gcc)
CROSS_CC_arm64 := $(if $(filter arm64,$(HOST_ARCH)),gcc,aarch64-linux-gnu-gcc)
CROSS_PKG_amd64 := gcc-x86-64-linux-gnu libc6-dev-amd64-cross
CROSS_PKG_arm64 := gcc-aarch64-linux-gnu libc6-dev-arm64-cross
.PHONY: cross
cross:
	@for p in $(CROSS_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=$(CURDIR)/_output/bin/$${os}_$${arch}; mkdir -p $$out; \
	  for b in t9k-scheduler t9k-controllers; do \
	    echo ">> $$b $$os/$$arch (static)"; \
	    CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GOBUILD) -trimpath -o $$out/$$b ./cmd/$$b || exit 1; \
	  done; \
	  case $$arch in amd64) cc="$(CROSS_CC_amd64)"; pkgs="$(CROSS_PKG_amd64)";; arm64) cc="$(CROSS_CC_arm64)"; pkgs="$(CROSS_PKG_arm64)";; \
	    *) echo "cross: no C compiler known for $$arch" >&2; exit 1;; esac; \
	  if ! command -v $$cc >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo ">> installing $$pkgs (the device-agent's cgo for $$arch)"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs || exit 1; \
	    else \
	      echo "cross: $$cc not found: the device-agent needs cgo for $$arch; install it: apt-get install $$pkgs" >&2; exit 1; \
	    fi; \
	  fi; \
	  for b in device-agent t9k-local; do \
	    echo ">> $$b $$os/$$arch (cgo, CC=$$cc)"; \
	    CGO_ENABLED=1 CC=$$cc GOOS=$$os GOARCH=$$arch $(GOBUILD) -trimpath -o $$out/$$b ./cmd/$$b || exit 1; \
	  done; \
	done
	@file $(CURDIR)/_output/bin/*/* 2>/dev/null || ls -l $(CURDIR)/_output/bin/*/

## images: container images of the three binaries (build/Dockerfile) with docker, podman, nerdctl
## or buildah, whichever is installed; REGISTRY, VERSION, PLATFORMS, PUSH=1 (see hack/images.sh)
VERSION  ?= $(shell cat $(CURDIR)/VERSION)
REGISTRY ?= docker.io/t9kpublic
.PHONY: images
images:
	REGISTRY=$(REGISTRY) VERSION=$(VERSION) hack/images.sh

## release-manifests: manifests/default as one YAML with the images at REGISTRY and VERSION
## (_output/t9k-<VERSION>.yaml), for air-gapped installs: `kubectl apply --server-side -f` it
.PHONY: release-manifests
release-manifests: $(BIN)/kubectl
	@rm -rf _output/release && mkdir -p _output/release
	@{ echo "apiVersion: kustomize.config.k8s.io/v1beta1"; echo "kind: Kustomization"; \
	  echo "resources: [../../manifests/default]"; echo "images:"; \
	  for i in t9k-scheduler t9k-controllers t9k-device-agent; do \
	    echo "  - {name: docker.io/t9kpublic/$$i, newName: $(REGISTRY)/$$i, newTag: $(VERSION)}"; done; } \
	  > _output/release/kustomization.yaml
	$(BIN)/kubectl kustomize _output/release > _output/t9k-$(VERSION).yaml
	@echo ">> _output/t9k-$(VERSION).yaml: $$(grep -c '^kind:' _output/t9k-$(VERSION).yaml) objects, images:"; \
	  grep -E '^ +image: ' _output/t9k-$(VERSION).yaml | sort -u

## tools: control plane, kubectl, stock scheduler, kwok, controller-gen (pinned, skipped when up to date)
.PHONY: tools
tools: $(addprefix $(BIN)/,$(MODULE_TOOLS)) $(BIN)/kwok $(BIN)/controller-gen

$(addprefix $(BIN)/,$(MODULE_TOOLS)): $(BIN)/%: go.mod go.sum
	@mkdir -p $(BIN)
	@echo ">> building $* from the module proxy"
	$(GOBUILD) -o $@ $($*_PKG)

# kwok and controller-gen are their own modules; a stamp file records the version built.
$(BIN)/kwok: $(BIN)/.kwok-$(KWOK_VERSION)
$(BIN)/.kwok-$(KWOK_VERSION):
	@mkdir -p $(BIN)
	@echo ">> building kwok $(KWOK_VERSION)"
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	@rm -f $(BIN)/.kwok-* && touch $@

$(BIN)/controller-gen: $(BIN)/.controller-gen-$(CONTROLLER_GEN_VERSION)
$(BIN)/.controller-gen-$(CONTROLLER_GEN_VERSION):
	@mkdir -p $(BIN)
	@echo ">> building controller-gen $(CONTROLLER_GEN_VERSION)"
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	@rm -f $(BIN)/.controller-gen-* && touch $@

## generate: deepcopy, CRDs and RBAC from the markers in pkg/
.PHONY: generate
generate: $(BIN)/controller-gen
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/...
	$(BIN)/controller-gen crd:allowDangerousTypes=false paths=./pkg/apis/... output:crd:artifacts:config=manifests/crd
	$(BIN)/controller-gen rbac:roleName=t9k-controllers paths=./pkg/... output:rbac:artifacts:config=manifests/rbac/controllers
	$(BIN)/controller-gen crd:maxDescLen=0 paths=./pkg/admission/templateschema output:crd:artifacts:config=pkg/admission/templateschema

## verify-generate: fail when generated files are stale
.PHONY: verify-generate
verify-generate: generate
	@git diff --exit-code -- pkg/apis pkg/admission/templateschema manifests/crd manifests/rbac || \
	  { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/apis pkg/admission/templateschema manifests/crd manifests/rbac)" || \
	  { git status --porcelain -- pkg/apis pkg/admission/templateschema manifests/crd manifests/rbac; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

## lint: gofmt + go vet
.PHONY: lint
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: unit + integration tests (real kube-apiserver + etcd from bin/)
.PHONY: test
# The packages under test/ each run a real control plane and schedulers; one at a time, so on two
# cores one does not starve the other's timing-sensitive steps (gang timeouts, backoffs).
# T9K_EXAMPLES (from the environment or make's command line; a relative path is taken from the
# module root) names the public manifest corpus; the compatibility tests over it are skipped
# without it: T9K_EXAMPLES=../shared/t9k-examples make test.
test: build tools verify-generate lint $(BIN)/.openmpi
	T9K_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/)
	T9K_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 40m -p 1 ./test/...

# OpenMPI's mpirun, which TestJobMPIRunsWithOpenMPI runs the MPIJob launcher's command with: Debian's
# openmpi-bin when missing (the test installs it itself, or skips, where this could not).
$(BIN)/.openmpi:
	@mkdir -p $(BIN)
	@command -v mpirun >/dev/null || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends openmpi-bin || \
	  echo "openmpi-bin could not be installed: TestJobMPIRunsWithOpenMPI will try again or skip"; }
	@if command -v mpirun >/dev/null; then touch $@; fi

## fuzz: the manifest fuzz test at length (FUZZ_CASES, FUZZ_SEED); `make test` runs 240 cases
FUZZ_CASES ?= 2000
FUZZ_SEED ?= 1
.PHONY: fuzz
fuzz: build tools
	T9K_BIN_DIR=$(BIN) T9K_FUZZ_CASES=$(FUZZ_CASES) T9K_FUZZ_SEED=$(FUZZ_SEED) $(GO) test -count=1 -timeout 90m -run "TestExamplesAndFuzz" -v ./test/fuzz/

## bench: Go benchmarks, then the schedulers side by side (BENCH_NODES=5000 for the big run)
BENCH_NODES ?= 500
BENCH_OUT ?= docs/bench/$(BENCH_NODES)-nodes
.PHONY: bench bench-go bench-schedulers
bench: bench-go bench-schedulers
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
bench-schedulers: build tools
	T9K_BIN_DIR=$(BIN) $(GO) run ./test/bench --nodes $(BENCH_NODES) --out $(BENCH_OUT)

## demo: the local simulated GPU cluster with all three binaries (Ctrl-C to stop)
.PHONY: demo
demo: build tools
	$(BIN)/t9k-local --bin-dir $(BIN)

.PHONY: clean
clean:
	rm -rf $(BIN)

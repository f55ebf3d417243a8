# k1s build, test and benchmark entry points. `make run` and `make test` are all a fresh
# machine needs (after .ci/run's package installs).

GO          ?= go
BIN         := bin
K1S         := $(BIN)/k1s
DATA_DIR    ?= /var/lib/k1s
# Names the binary answers to (multicall links beside bin/k1s).
LINKS       := kubectl

VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
K8S_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
K8S_MAJOR   := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR   := $(word 2,$(subst ., ,$(K8S_VERSION)))
BUILD_DATE  := $(shell date -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s) +%Y-%m-%dT%H:%M:%SZ)
GIT_COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)

# Without these the node and /version report v0.0.0-master (field notes §3).
VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
LDFLAGS := -s -w -X github.com/k1s-io/k1s/internal/version.Version=$(VERSION) \
	$(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(K8S_MAJOR) \
	-X $(p).gitMinor=$(K8S_MINOR) -X $(p).gitCommit=$(GIT_COMMIT) -X $(p).gitTreeState=clean \
	-X $(p).buildDate=$(BUILD_DATE))
TAGS    := providerless k1s_payload
# Unit and e2e test binaries do not embed the payload: `go test ./...` works on a fresh clone.
TEST_TAGS := providerless
# One build cache for vet, tests and binaries: the same flags compile each package once.
# No DWARF from the compiler: the binaries are stripped (-s -w) and nothing debugs the test
# binaries, and without it every package compiles about a fifth faster.
# `go test` runs with -vet=off: `go vet` (with the e2e tag, so it sees the e2e tests too) has
# just vetted every package, and go test's own vet, with other analyzer flags, would analyse
# every dependency a second time (minutes on a cold cache).
export GOFLAGS := -trimpath -gcflags=all=-dwarf=false
export CGO_ENABLED ?= 0

HOST_ARCH   := $(shell $(GO) env GOARCH)
# Release architectures; "arm" is armv7 (GOARM=7: Raspberry Pi 2 and newer, install.sh
# refuses armv6).
DIST_ARCHS  := amd64 arm64 arm
export GOARM := 7
DIST        := dist
payload_of   = internal/payload/assets/$(1)/payload.tar.zst
PAYLOAD     := $(call payload_of,$(HOST_ARCH))
PAYLOAD_SOURCES := scripts/build-payload.sh $(filter-out scripts/payload/netbench/%,$(wildcard scripts/payload/go.* scripts/payload/*/*.go)) go.mod
GO_BUILD     = $(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)'
# A second host binary that differs only in its version: the e2e upgrade test installs it over
# dist/k1s-$(HOST_ARCH).
UPGRADE_DIR := $(BIN)/upgrade

.PHONY: all build payload dist upgrade-build run test unit e2e e2e-run test-e2e test-cross test-release bench clean FORCE
.DELETE_ON_ERROR:
# Built by a pattern rule but kept: each binary embeds its arch's payload.
.SECONDARY: $(foreach a,$(DIST_ARCHS),$(call payload_of,$(a)))

all: build

# The helper programs and system images embedded in k1s (see internal/payload), per arch.
payload: $(PAYLOAD)
internal/payload/assets/%/payload.tar.zst: $(PAYLOAD_SOURCES)
	GOARCH=$* scripts/build-payload.sh $@

build: $(PAYLOAD)
	@mkdir -p $(BIN)
	$(GO_BUILD) -o $(K1S) .
	@for l in $(LINKS); do ln -sf k1s $(BIN)/$$l; done
	@ls -lh $(K1S)

# Release artifacts: a stripped binary per arch with its payload, checksums, the installer.
dist: $(foreach a,$(DIST_ARCHS),$(DIST)/k1s-$(a) $(DIST)/sha256sum-$(a).txt) $(DIST)/install.sh

# The host's release binary is bin/k1s itself (same flags), not a second build.
$(DIST)/k1s-$(HOST_ARCH): build
	@mkdir -p $(DIST)
	cp $(K1S) $@

# FORCE: go build knows best whether the binary is up to date.
$(DIST)/k1s-%: $(call payload_of,%) FORCE
	@mkdir -p $(DIST)
	GOARCH=$* $(GO_BUILD) -o $@ .
	@ls -lh $@

$(DIST)/sha256sum-%.txt: $(DIST)/k1s-%
	cd $(DIST) && sha256sum k1s-$* > sha256sum-$*.txt

$(DIST)/install.sh: install.sh
	@mkdir -p $(DIST)
	cp $< $@

upgrade-build: build
	@mkdir -p $(UPGRADE_DIR)
	$(GO) build -tags '$(TAGS)' -ldflags '$(subst Version=$(VERSION),Version=$(VERSION)-upgrade,$(LDFLAGS))' \
		-o $(UPGRADE_DIR)/k1s-$(HOST_ARCH) .
	cd $(UPGRADE_DIR) && sha256sum k1s-$(HOST_ARCH) > sha256sum-$(HOST_ARCH).txt

FORCE:

# Build, then run a one-node cluster in the foreground on the default data directory.
run: build
	$(K1S) server --data-dir $(DATA_DIR)

# Everything that proves k1s works: vet, unit tests, then end-to-end tests against bin/k1s.
# Each phase prints how long it took ("phase NAME: N s").
TIMED := scripts/timed.sh
SUBMAKE = $(MAKE) --no-print-directory
# make test builds the host binary and one cross-built release in full: arm64, whose binary
# runs a control plane under qemu. The other, armv7, is type-checked from source for its
# 32-bit target instead: each release compiles all of Kubernetes once more, about 15 min on a
# cold 2-core machine. `make dist` builds every release and `make test-release` tests them.
# The cross work runs beside the e2e tests, which mostly wait on their clusters, at the lowest
# CPU priority so that the tests keep their pace; the tests of the cross-built binary come
# last.
TEST_RELEASE := arm64
TYPECHECK_ARCHS := $(filter-out $(HOST_ARCH) $(TEST_RELEASE),$(DIST_ARCHS))
DIST_HOST   := $(DIST)/k1s-$(HOST_ARCH) $(DIST)/sha256sum-$(HOST_ARCH).txt $(DIST)/install.sh
ARM_TESTS   := TestArmBinaries
test:
	@$(TIMED) unit $(SUBMAKE) unit
	@$(TIMED) build $(SUBMAKE) build upgrade-build $(DIST_HOST)
	@$(TIMED) e2e+cross $(SUBMAKE) -j2 test-e2e test-cross
	@$(TIMED) e2e-arm $(SUBMAKE) e2e-run E2E_RUN='$(ARM_TESTS)' E2E_ARM_RELEASES=$(TEST_RELEASE)

test-e2e:
	@+$(TIMED) e2e $(SUBMAKE) e2e-run E2E_SKIP='$(ARM_TESTS)'
test-cross:
	@+$(TIMED) cross nice -n 19 $(SUBMAKE) $(DIST)/k1s-$(TEST_RELEASE) $(DIST)/sha256sum-$(TEST_RELEASE).txt \
		$(foreach a,$(TYPECHECK_ARCHS),typecheck-$(a))

# Type-checks every package and dependency for an architecture, from source (scripts/typecheck).
typecheck-%:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/typecheck ./scripts/typecheck
	@$(TIMED) typecheck-$* env GOARCH=$* $(BIN)/typecheck -tags '$(TEST_TAGS)' ./...

# Every release built, and the arm ones run under qemu (each a control plane to /readyz).
test-release: dist upgrade-build
	@$(SUBMAKE) e2e-run E2E_RUN='$(ARM_TESTS)'

unit:
	shellcheck -s sh install.sh
	@$(TIMED) vet $(GO) vet -tags 'e2e $(TEST_TAGS)' ./...
	@$(TIMED) unit-tests $(GO) test -vet=off -tags '$(TEST_TAGS)' ./...

E2E_ARM_RELEASES := arm64,arm
E2E_FLAGS = -k1s $(CURDIR)/$(K1S) -dist $(CURDIR)/$(DIST) -upgrade $(CURDIR)/$(UPGRADE_DIR) \
	-arm-releases $(E2E_ARM_RELEASES)

e2e: build dist upgrade-build
	@$(SUBMAKE) e2e-run

# The e2e tests alone, against binaries already built.
# E2E_RUN and E2E_SKIP select tests as go test's -run and -skip do.
e2e-run:
	$(GO) test -vet=off -tags 'e2e $(TEST_TAGS)' -count=1 -timeout 40m -v \
		$(if $(E2E_RUN),-run '$(E2E_RUN)') $(if $(E2E_SKIP),-skip '$(E2E_SKIP)') ./internal/e2e/ $(E2E_FLAGS)

# Figures only: start-up time, memory, binary and download sizes.
bench: build dist upgrade-build
	$(GO) test -vet=off -tags 'e2e $(TEST_TAGS)' -count=1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./internal/e2e/ $(E2E_FLAGS)

clean:
	rm -rf $(BIN) $(DIST) internal/payload/assets

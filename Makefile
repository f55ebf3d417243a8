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
PAYLOAD := internal/payload/assets/payload.tar.zst
PAYLOAD_SOURCES := scripts/build-payload.sh $(filter-out scripts/payload/netbench/%,$(wildcard scripts/payload/go.* scripts/payload/*/*.go)) go.mod

export CGO_ENABLED ?= 0

.PHONY: all build payload run test unit e2e bench clean
.DELETE_ON_ERROR:

all: build

# The helper programs and system images embedded in bin/k1s (see internal/payload).
payload: $(PAYLOAD)
$(PAYLOAD): $(PAYLOAD_SOURCES)
	scripts/build-payload.sh $@

build: $(PAYLOAD)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(K1S) .
	@for l in $(LINKS); do ln -sf k1s $(BIN)/$$l; done
	@ls -lh $(K1S)

# Build, then run a one-node cluster in the foreground on the default data directory.
run: build
	$(K1S) server --data-dir $(DATA_DIR)

# Everything that proves k1s works: vet, unit tests, then end-to-end tests against bin/k1s.
test: unit e2e

unit:
	$(GO) vet -tags '$(TEST_TAGS)' ./...
	$(GO) test -tags '$(TEST_TAGS)' ./...

e2e: build
	$(GO) test -tags 'e2e $(TEST_TAGS)' -count=1 -timeout 30m -v ./internal/e2e/ -k1s $(CURDIR)/$(K1S)

# Figures only: start-up time, memory, binary size.
bench: build
	$(GO) test -tags 'e2e $(TEST_TAGS)' -count=1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./internal/e2e/ -k1s $(CURDIR)/$(K1S)

clean:
	rm -rf $(BIN) $(PAYLOAD) $(PAYLOAD).sha256

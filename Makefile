# Thin wrapper around CMake. `make demo` and `make test` work on a fresh Debian machine.
BUILD      ?= build
SAN_BUILD  ?= build-san
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

# Debian packages the project needs; `make deps` installs only the missing ones.
DEPS := cmake g++ make libuv1-dev libmsgpack-cxx-dev libxxhash-dev libsodium-dev libgtest-dev libgmock-dev \
        clang libclang-rt-14-dev iproute2 python3 fortunes \
        libcpp-httplib-dev nlohmann-json3-dev nodejs npm chromium chromium-driver python3-selenium curl jq

.PHONY: all deps build test test-unit test-san demo bench fuzz fuzz-smoke clean

all: build

deps:
	@./scripts/install-deps.sh $(DEPS)
	@./scripts/install-npm-deps.sh $(BUILD)/node

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@ln -sf $(BUILD)/engine engine

test: deps build test-unit test-san fuzz-smoke

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off to keep it quick).
test-san:
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGINE_SANITIZE=ON -DENGINE_CUDA=OFF >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS) --target engine_tests engine
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) --timeout 900 -L unit

demo: deps build
	@./scripts/demo.sh

bench: deps build
	@./bench/run.sh

# libFuzzer targets (clang). `make fuzz` runs each for FUZZ_SECONDS (default 60).
FUZZ_SECONDS ?= 60
fuzz: deps
	@./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# CI: every fuzz target briefly, under ASan.
fuzz-smoke: deps
	@./scripts/fuzz.sh $(FUZZ_BUILD) 20

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD) engine

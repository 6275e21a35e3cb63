#!/usr/bin/env bash
# Installs what the tests (and CI) need on Debian/Ubuntu, and says by name what it cannot get.
# Called by scripts/run-tests.mjs before every run (a no-op once everything is there) and by .ci/run.
#
#   scripts/setup-test-deps.sh           as root: apt-get install what is missing; otherwise report it
#   scripts/setup-test-deps.sh --check   only report what is missing (exit 1 if anything is)
#
# To add a need: one line in APT_PACKAGES (package, then what needs it), or, for something apt cannot
# give (a Go toolchain, cargo crates, pip packages), a function in the "Other installers" section that
# installs it or prints what is missing, called from the end of this script.
set -euo pipefail

APT_PACKAGES=(
  # package              what needs it
  "make                  npm ci: node-gyp builds the native addon"
  "g++                   npm ci: node-gyp builds the native addon; test/unit/nsm (cc builds a shim)"
  "python3               npm ci: node-gyp; test/e2e/egress (urllib clients)"
  "curl                  test/unit/api, test/e2e/ingress, test/e2e/egress: the curl client"
  "openssl               test/unit/kms/cms (openssl cms), test/e2e/ingress (certificates)"
  "awscli                test/e2e/kms: the aws CLI v2 through the KMS proxy"
  "python3-boto3         test/e2e/kms: boto3 apps through the KMS proxy"
  "iproute2              test/e2e: network namespaces (ip)"
  "util-linux            test/e2e: unshare -n, unshare -p"
  "binutils              test/package: the single executable is built with strip"
  "gcc-aarch64-linux-gnu test/package: the arm64 single executable is cross-built"
  "qemu-user             test/package: the arm64 single executable runs under qemu-aarch64"
  "tinyproxy             bench/egress.ts: the one-hop CONNECT proxy it compares with"
  "wrk                   bench/attestation.ts, bench/ingress.ts: HTTP load"
  "libssl-dev            test/interop: the Rust program links OpenSSL (aws-nitro-enclaves-cose)"
  "pkg-config            test/interop: the Rust program finds OpenSSL"
  "qemu-system-x86       test/lab: the kernel lab's VM (software emulation; the kernel itself is apt-get download-ed)"
  "iptables              test/e2e/egress/transparent: iptables-legacy-save inspects the rules (cloister itself needs no binary)"
)

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

missing=()
for line in "${APT_PACKAGES[@]}"; do
  pkg=${line%% *}
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

why() { # the "what needs it" of one package
  for line in "${APT_PACKAGES[@]}"; do
    [ "${line%% *}" = "$1" ] && echo "${line#* }" | sed 's/^ *//'
  done
}

report_missing() {
  echo "setup-test-deps: missing Debian packages (tests that need them fail naming the tool):" >&2
  for pkg in "$@"; do printf '  %-22s %s\n' "$pkg" "$(why "$pkg")" >&2; done
  echo "  install them as root: apt-get install -y $*" >&2
}

if [ ${#missing[@]} -gt 0 ]; then
  if $check_only || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    report_missing "${missing[@]}"
    exit 1
  fi
  echo "setup-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # One package at a time after a failed batch, so one unavailable package does not block the others.
  if ! apt-get install -y -qq "${missing[@]}" >/dev/null; then
    for pkg in "${missing[@]}"; do apt-get install -y -qq "$pkg" >/dev/null || true; done
  fi
  still=()
  for pkg in "${missing[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || still+=("$pkg"); done
  if [ ${#still[@]} -gt 0 ]; then
    report_missing "${still[@]}"
    exit 1
  fi
fi

# ---- Other installers (Go, cargo, pip, QEMU images...): add a function here and call it below.

# test/interop builds Go, Rust and PyPI programs (test/interop/prepare.ts fetches the pinned modules, crates
# and packages itself). The toolchains come with the machine image; without one, say so here, and those
# tests fail naming it.
interop_toolchains() {
  local gaps=()
  command -v go >/dev/null || gaps+=("go (Go >= 1.24)")
  command -v cargo >/dev/null || gaps+=("cargo (Rust >= 1.94.1, from rustup)")
  python3 -c 'import venv, ensurepip' 2>/dev/null || gaps+=("python3 with venv and ensurepip")
  if [ ${#gaps[@]} -gt 0 ]; then
    echo "setup-test-deps: test/interop needs $(IFS=,; echo "${gaps[*]}"): those tests will fail naming it" >&2
  fi
}
interop_toolchains

exit 0

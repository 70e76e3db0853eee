#!/usr/bin/env bash
# The GPU check, run on the CUDA machine (no .NET there). Prepare here:
#   dotnet pwsh ./build.ps1 publish-device      # -> .publish/device/sktune (self-contained, ~50 MiB)
# then run this script there with .publish/device/sktune carried along. Every line is printed (and appended to
# $OUT/device-check.txt) as it is produced, so a run cut short keeps what it measured. Extra arguments go to
# `sktune device-check` (e.g. --simulate). SKTUNE overrides the binary (CI: "dotnet path/to/sktune.dll").
# Environment: DEVICE_CHECK_TIMEOUT (seconds, default 170), ITERATIONS (default 20), SKTUNE_ILGPU_O1=1 (O1 instead of O2).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
mkdir -p "$out"
log="$out/device-check.txt"
: > "$log"
say() { echo "$@" | tee -a "$log"; }

sktune="${SKTUNE:-.publish/device/sktune}"
if [ -z "${SKTUNE:-}" ]; then
    chmod +x "$sktune" 2>/dev/null || true   # the execute bit may not survive the copy
    # Natives unpack inside the work tree: /tmp may be noexec.
    export DOTNET_BUNDLE_EXTRACT_BASE_DIR="$PWD/.publish/device/extract"
    mkdir -p "$DOTNET_BUNDLE_EXTRACT_BASE_DIR"
fi
export SKTUNE_DEBUG=1

say "== device-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "== nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -3)"
say "== libcuda in the loader cache: $( (ldconfig -p 2>/dev/null | grep -o 'libcuda\.so[.0-9]*' | sort -u | tr '\n' ' ') || true)"
say "== ILGPU optimization: ${SKTUNE_ILGPU_O1:+O1 (SKTUNE_ILGPU_O1=1)}${SKTUNE_ILGPU_O1:-O2}"

# shellcheck disable=SC2086  # SKTUNE may be a command with arguments
timeout --kill-after=10 "${DEVICE_CHECK_TIMEOUT:-170}" $sktune device-check --iterations "${ITERATIONS:-20}" --out "$log" "$@" 2> >(tee -a "$log" >&2)
rc=$?
case $rc in
    0) say "== device-check passed" ;;
    124|137) say "== device-check TIMED OUT after ${DEVICE_CHECK_TIMEOUT:-170} s (lines above were measured)" ;;
    *) say "== device-check exit code $rc" ;;
esac
exit $rc

#!/usr/bin/env bash
# The GPU check, run on the CUDA machine (no .NET there). Prepare here:
#   dotnet pwsh ./build.ps1 publish-device      # -> .publish/device/sktune (self-contained, ~50 MiB)
# then run this script there with .publish/device/sktune carried along. It prints the parity/timing table last.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_BUNDLE_EXTRACT_BASE_DIR="${TMPDIR:-/tmp}/sktune-bundle"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
.publish/device/sktune device-check --iterations "${ITERATIONS:-20}"

#!/usr/bin/env bash
# Entry points of the gpucnn image:
#   gpu-tests [pytest args]   the GPU tests (pytest -m gpu; an error, not skips, without a GPU,
#                             e.g. when the container was started without --gpus)
#   tests [pytest args]       the whole suite
#   bench [runner args]       python -m benchmarks (results under benchmarks/results)
#   gpu-check OUT [steps]     tests, compute-sanitizer and benchmarks (benchmarks/gpu_check.sh)
#   anything else             run as a command
set -euo pipefail
command=${1:-gpu-tests}
shift || true
case $command in
    gpu-tests) GPUCNN_REQUIRE_GPU=1 exec python -m pytest -m gpu "$@" tests ;;
    tests) exec python -m pytest "$@" ;;
    bench) exec python -m benchmarks "$@" ;;
    gpu-check) exec benchmarks/gpu_check.sh "$@" ;;
    *) exec "$command" "$@" ;;
esac

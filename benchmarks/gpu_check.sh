#!/usr/bin/env bash
# Everything that needs a real GPU, from the source tree (no install, no network):
#   benchmarks/gpu_check.sh OUT [steps...]     steps: info tests memcheck racecheck bench
#                                               bench-quick compare resources host host-graph
#                                               ncu cpu cpu-contention device (default:
#                                               all but bench, ncu, cpu, cpu-contention
#                                               and device)
# compare sets the newest benchmark run in OUT against the committed results for the same
# GPU (benchmarks/compare.py): which rows a change made faster or slower, beyond the noise.
# host profiles the training steps' host time (benchmarks/host_profile.py); host-graph the
# same steps recorded as CUDA graphs. cpu times the NumPy path against PyTorch's CPU ops on
# the machine's host (benchmarks/cpu_ops.py), each side with its default threads: the other
# CPU tables come from 2-vCPU VMs. On the H100 host (16 cores, session 29) one pass ran past
# 190 s (the convolutions alone, --only conv, 110 s), so give it STEP_TIMEOUT=300 or more;
# the pass on two threads it used to add as well never finished inside a device call.
# cpu-contention (benchmarks/cpu_contention.py, well under a minute) tells apart what stops
# the NumPy path's workers scaling past 4 on such a host: the GIL or the memory system.
# Each step writes its log under OUT and says how long it took; every step runs even if an
# earlier one failed, and the script exits non-zero if any did. Uses $PYTHON (default
# python3). STEP_TIMEOUT (seconds) stops a step that runs longer, so one slow step cannot
# take the other steps' logs with it. NCU_KERNELS (space-separated names from the list below)
# limits the ncu step to those kernels. On an H100 (2026-11-24, session 20): info 2 s, tests
# 118 s, memcheck 111 s and racecheck 222 s (beside the tests), bench 128 s; session 10:
# bench-quick 55 s, resources 40 s; ncu 42-51 s a kernel. Session 29: tests 130 s, memcheck
# 127 s, racecheck stopped at 240 s with 746 of 748 tests done (the last file, 8 tests,
# takes 60 s under it alone), device 344 s in all. On this project's device machines
# (10 minutes per command, 8 files back) the step "device" does the lot in one command:
# the sanitizers beside the tests (each step stopped after STEP_TIMEOUT, default 330 s
# there: about 440 s in all), then the quick benchmarks, compare, resources and the host
# profiles, every log packed into OUT/gpu-check.tgz beside OUT/summary.txt:
#   benchmarks/gpu_check.sh $OUT device
set -u
out=${1:?usage: gpu_check.sh OUT [steps...]}
shift
steps=${*:-info tests memcheck racecheck bench-quick compare resources host host-graph}
python=${PYTHON:-python3}
# GPUCNN_REQUIRE_GPU: the GPU tests fail, rather than skip, where CuPy finds no usable GPU.
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 GPUCNN_REQUIRE_GPU=1
mkdir -p "$out"
failed=()
run() {  # run NAME COMMAND...: log to OUT/NAME.log, remember failures
    local name=$1
    shift
    echo "== $name: $*"
    local started=$SECONDS
    if timeout "${STEP_TIMEOUT:-0}" "$@" >"$out/$name.log" 2>&1; then
        echo "   ok in $((SECONDS - started)) s ($(tail -n 1 "$out/$name.log"))"
    else
        echo "   FAILED after $((SECONDS - started)) s, last lines of $out/$name.log:"
        tail -n 15 "$out/$name.log" | sed 's/^/   /'
        failed+=("$name")
    fi
}
# The kernel tests at edge shapes: not the realistic sizes nor the digits model trained to
# accuracy (slow under the tools: with it, memcheck ran past 4 minutes), nor the test that the
# host never waits for the GPU (a sanitizer may serialise launches), nor the CUDA graph tests
# (their kernels are the ones tested here; a graph's own failure should not stop, under -x,
# the kernel tests after it).
sanitized=(-m pytest -m gpu -q -x
    -k "not realistic and not waits_for_the_gpu and not reaches_the_cpu_accuracy and not graph"
    tests/cuda)
# ncu: the hardware counters of one launch (the fourth, after warm-up) of each kernel that
# benchmarks/NOTES.md leaves as an open question, inside the quick run of its family. A
# third word "per-config" profiles the fourth launch of each grid and block size instead
# (ncu's --filter-mode per-launch-config, not yet run on the device machines): every size
# the quick run times.
profiled=(
    "pool2d avgpool2d_forward_tiled"    # 2x2/2 at 64x256x56x56: 86-87% of copy, session
                                        # 22's launch bounds did not move it (session 29)
    "hopfield hopfield_product_gemm"    # n = 4096, batch 256: the tile at ~71% of cuBLAS
                                        # where its grid is full; issue #6 wants 70% with
                                        # a margin (ncu in session 29: 0.76 issued warps a
                                        # scheduler, 128 registers, 2 blocks an SM)
    "hopfield hopfield_product_skinny per-config"  # batch 8, 32 and 64 at n = 4096 and
                                        # 16384; batch 64 ran at 41% of the FMA ceiling,
                                        # and session 29's two halves are unmeasured
    "conv2d conv2d_direct"              # LeNet conv2 / ResNet-20: never profiled
    "conv2d conv2d_forward"             # LeNet conv2 implicit GEMM: 3% of the FP32 ceiling
)
ncu_sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy
    --section LaunchStats --section WarpStateStats --section SchedulerStats)
for step in $steps; do
    case $step in
        info) run info "$python" -m gpucnn info ;;
        tests) run tests "$python" -m pytest -m gpu -q -rfE --durations=15 tests ;;
        memcheck) run memcheck compute-sanitizer --tool memcheck --error-exitcode 1 \
            "$python" "${sanitized[@]}" ;;
        racecheck) run racecheck compute-sanitizer --tool racecheck --error-exitcode 1 \
            "$python" "${sanitized[@]}" ;;
        bench) run bench "$python" -m benchmarks --out "$out" ;;
        bench-quick) run bench-quick "$python" -m benchmarks --quick --out "$out" ;;
        compare) run compare "$python" -m benchmarks.compare --latest "$out" ;;
        resources) run resources "$python" benchmarks/kernel_resources.py --out "$out" ;;
        host) run host "$python" benchmarks/host_profile.py ;;
        host-graph) run host-graph "$python" benchmarks/host_profile.py --cuda-graph ;;
        cpu) run cpu-ops "$python" benchmarks/cpu_ops.py --out "$out" ;;
        cpu-contention) run cpu-contention "$python" benchmarks/cpu_contention.py ;;
        ncu) for target in "${profiled[@]}"; do
                read -r family kernel mode <<<"$target"
                # NCU_KERNELS (names, space-separated) profiles only those.
                [[ -z ${NCU_KERNELS:-} || " $NCU_KERNELS " == *" $kernel "* ]] || continue
                filter=()
                [[ ${mode:-} == per-config ]] && filter=(--filter-mode per-launch-config)
                run "ncu-$kernel" ncu --clock-control none --kernel-name "regex:^$kernel" \
                    "${filter[@]}" --launch-skip 3 --launch-count 1 "${ncu_sections[@]}" \
                    "$python" -m benchmarks --quick --only "$family" --out "$out/ncu-runs"
            done ;;
        device) work=$(mktemp -d)
            (
                export STEP_TIMEOUT=${STEP_TIMEOUT:-330}
                pids=()
                for sanitizer in memcheck racecheck; do
                    "$0" "$work/$sanitizer" $sanitizer >"$work/$sanitizer.txt" 2>&1 &
                    pids+=($!)
                done
                status=0
                "$0" "$work/tests" info tests || status=1
                for pid in "${pids[@]}"; do wait "$pid" || status=1; done
                cat "$work/memcheck.txt" "$work/racecheck.txt"
                "$0" "$work/bench" bench-quick compare resources host host-graph || status=1
                exit $status
            ) 2>&1 | tee "$out/summary.txt"
            [[ ${PIPESTATUS[0]} == 0 ]] || failed+=(device)
            tar czf "$out/gpu-check.tgz" -C "$work" . && rm -rf "$work" ;;
        *) echo "unknown step $step"; failed+=("$step") ;;
    esac
done
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all steps passed"

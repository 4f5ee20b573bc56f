#!/usr/bin/env bash
# The GPU checks that wait for a lent H100 (issues 3, 5, 7), as two prepared calls of the device
# tool, each well inside its 10-minute limit; results and logs land in $OUT (at most 8 files).
#
#   part a: tests/test_cuda.py (CPU = CUDA bits: emulator, float paths, BPTT adjoint and autodiff),
#           gpu.py throughput (BPTT adjoint / autodiff ratio), memory, fixed (emulator / float)
#   part b: gpu.py fig2 (the float protocol of `reproduce fig2`, timed per task), large.py
#           (online e-prop against the H100's bandwidth floor at 1000-10000 neurons)
#
#   run(command="bash benchmarks/device_session.sh a", carry=[".whl"], timeout_s=560)
#
# The device machine lacks tomli_w (run directories write config.toml); fetch its wheel here once
# into the git-ignored .whl/ as the device README says (pure Python: any platform):
#   echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps -d .whl tomli_w==1.2.0
# Each step has its own time limit, so one slow step cannot eat the others' time.
set -uo pipefail
part=${1:?usage: device_session.sh a|b}
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=.
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:.
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

step() {   # step NAME SECONDS COMMAND...: the command's log in $out/NAME.log, its exit status here
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "$name: rc=$? after $((SECONDS - t0)) s (limit $limit s)"
    tail -n 5 "$out/$name.log"
}

case $part in
    a)
        step cuda_tests 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
        step gpu_a 360 python3 benchmarks/gpu.py throughput memory fixed --out "$out"
        ;;
    b)
        step gpu_fig2 400 python3 benchmarks/gpu.py fig2 --out "$out"
        step large 120 python3 benchmarks/large.py --device cuda --cases online_sparse,factorised,fixed_sparse \
            --batch 8 --out "$out"
        ;;
    *)
        echo "part must be a or b" >&2
        exit 2
        ;;
esac

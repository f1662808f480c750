#!/usr/bin/env bash
# Checks and times everything the GPU performance targets name, in one run on one GPU.
#
#   bench/gpu_suite.sh OUT_DIR [PEER_SCRIPT] [WHEEL_DIR]
#
# OUT_DIR      receives gpu.txt, tests.txt, jax.jsonl (tgo_train.bench records), noise_cost.jsonl
#              (bench/noise_cost.py: Noisy-LIF against LIF forward, input gradient and PGD-10 with EoT 4, and
#              the noise draws alone), peers.jsonl, log.txt.
# PEER_SCRIPT  the PyTorch peer benchmark, default bench/peer_torch.py; skipped when absent.
# WHEEL_DIR    wheels to install first on a machine without internet (bench/fetch_wheels.sh makes them:
#              ml_collections for tgo_train.bench; spikingjelly, loguru, scienceplots for the peer).
# SECTIONS     environment variable, default "tests,jax,noise,multi,peers": which parts to run. "multi": train
#              step, eval and PGD-10 throughput against device count (1, 2, 4, ... up to the GPUs visible),
#              the global batch sharded over the devices; worth running on a multi-GPU machine.
# ARCHS, PEER_ARCHS, BATCH, IMAGE, REPS   environment overrides of the sizes (defaults: "vgg11 wrn16_4",
#              "vgg11 wrn16", 128, 32,32,3, 20); e.g. a CPU smoke run of the script itself:
#              ARCHS=small PEER_ARCHS=vgg11 BATCH=2 IMAGE=28,28,1 REPS=2 PYTHON=.venv/bin/python bench/gpu_suite.sh /tmp/out
#
# Every tgo_jax configuration of an architecture runs in one process: "step_estimate_mib" is the
# compiler's per-configuration memory for the train step; "peak_mib" is the device's peak so far in the
# process (configurations run from the expected smallest to the largest). Budget: about 8-10 minutes on
# one H100, most of it compilation; run the sections in two calls if one call must stay shorter.
set -uo pipefail
out=${1:?usage: bench/gpu_suite.sh OUT_DIR [PEER_SCRIPT] [WHEEL_DIR]}
peer=${2:-$(dirname "$0")/peer_torch.py}
wheels=${3:-}
sections=${SECTIONS:-tests,jax,noise,multi,peers}
py=${PYTHON:-python3}
archs=${ARCHS:-vgg11 wrn16_4}
peer_archs=${PEER_ARCHS:-vgg11 wrn16}
batch=${BATCH:-128}
image=${IMAGE:-32,32,3}
reps=${REPS:-20}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec > >(tee -a "$out/log.txt") 2>&1

if [ -n "$wheels" ]; then
  $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/tgo_site "$wheels"/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/tgo_site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
$py -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__)" \
  | tee -a "$out/gpu.txt"
has() { [[ ",$sections," == *",$1,"* ]]; }
stamp() { echo "== $(date +%T) $*"; }

if has tests; then  # the fast paths against the plain paths, on the GPU backend
  stamp tests
  timeout 240 $py -m pytest -q -p no:cacheprovider tests/test_fastconv.py tests/test_fused.py \
    tests/test_models.py -k "not block_remat" >"$out/tests.txt" 2>&1
  tail -3 "$out/tests.txt"
fi

bench() {  # one process: tgo_train.bench with its flags; JSON lines to jax.jsonl
  stamp "tgo_train.bench $*"
  timeout 420 $py -m tgo_train.bench --image "$image" --batch "$batch" --reps "$reps" --surrogate rectangle "$@" \
    | grep '^{' | tee -a "$out/jax.jsonl"
}
if has jax; then
  first=${archs%% *}
  for arch in $archs; do
    # Smallest first, so that the process peak after each line is that configuration's peak.
    bench --arch "$arch" --T 4 --dtype bfloat16,float32 --remat block,none --no_apgd
    bench --arch "$arch" --T 4 --fused false --no_apgd
  done
  bench --arch "$first" --T 2,8 --no_apgd  # cost against T
  bench --arch "${archs// /,}" --T 4 --reps 10  # APGD timing, default configuration
fi

if has noise; then  # the cost of Noisy-LIF noise: its JSON lines end with the noisy/LIF ratios (the wall ones;
  # on a GPU the CPU ones measure the host only)
  stamp "noise_cost"
  timeout 420 $py bench/noise_cost.py --reps "${NOISE_REPS:-5}" | grep '^{' | tee -a "$out/noise_cost.jsonl"
fi

if has multi; then  # throughput against device count; the batch grows with the devices (weak scaling)
  gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}  # GPUS=2 JAX_NUM_CPU_DEVICES=2: a CPU smoke run
  [ "${gpus:-0}" -ge 1 ] 2>/dev/null || gpus=1
  n=1
  while [ "$n" -le "$gpus" ]; do
    bench --arch "${archs%% *}" --T 4 --devices "$n" --batch $((batch * n)) --no_apgd
    n=$((n * 2))
  done
fi

if has peers && [ -n "$peer" ]; then
  for arch in $peer_archs; do
    stamp "peer $arch"
    timeout 400 $py "$peer" --arch "$arch" --batch "$batch" --T 4 --iters "$reps" | grep '^{' | tee -a "$out/peers.jsonl"
  done
fi
stamp done

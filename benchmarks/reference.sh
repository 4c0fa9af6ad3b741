#!/usr/bin/env bash
# The reference suite in one command, on whatever device is present (CUDA if available, else CPU):
#   train_eager     bench train, every recipe x lion,adamw, scale=full data=synthetic, compile off
#   train_compiled  the same with compile on
#   overhead        benchmarks/overhead.py: lionbench run against a hand-written loop (gpt2 small)
#   optim           bench optim on gpt2-124m, resnet50 and vit-b16 shapes
#   study           lionbench sweep recipe=gpt2 --ratios 3,10 --seeds 0,1, then lionbench report
# Logs, CSV/JSON and the report go to OUTDIR; each stage is timed; a short table is printed last.
#
#   benchmarks/reference.sh [--tiny] [--only STAGE,STAGE] OUTDIR
#
# --tiny: the same stages at smoke scale with a few steps and one repeat (a CPU, CI: minutes).
# --only: run these stages only (to split the suite over several device calls).
set -uo pipefail
cd "$(dirname "$0")/.."

tiny=0
only=""
while [[ $# -gt 1 ]]; do
  case "$1" in
    --tiny) tiny=1; shift ;;
    --only) only="$2"; shift 2 ;;
    *) echo "error: unknown option $1 (accepted: --tiny, --only STAGES, then OUTDIR)" >&2; exit 2 ;;
  esac
done
if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "error: usage: benchmarks/reference.sh [--tiny] [--only STAGE,STAGE] OUTDIR" >&2
  exit 2
fi
out=$1
stages=(train_eager train_compiled overhead optim study)
for s in ${only//,/ }; do
  [[ " ${stages[*]} " == *" $s "* ]] || {
    echo "error: unknown stage '$s' (accepted: ${stages[*]})" >&2; exit 2; }
done
mkdir -p "$out" || { echo "error: cannot create $out" >&2; exit 2; }
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
lb=("$py" -m lionbench)

if [[ $tiny == 1 ]]; then
  train_args=(--recipes gpt2,resnet50,vit,unet --scale smoke --steps 3 --warmup 1 --repeats 1)
  compiled_args=(--recipes gpt2 --scale smoke --steps 3 --warmup 1 --repeats 1)
  overhead_args=(--scale smoke --steps 8 --warmup 2 --repeats 1)
  optim_params=(flat:1e5)
  optim_args=(--impls lion:lionbench,adamw:foreach --steps 3 --warmup 1 --repeats 1)
  study_args=(recipe=gpt2 scale=smoke train.steps=10 train.eval_interval=5 --adamw-lrs 1
              --max-extend 0 --confirm-seeds none)
else
  train_args=(--recipes gpt2,resnet50,vit,unet --scale full --data synthetic --steps 20
              --warmup 8 --repeats 1)
  compiled_args=("${train_args[@]}")
  overhead_args=(--scale small --steps 200 --warmup 20 --repeats 3)
  optim_params=(gpt2-124m resnet50 vit-b16)
  optim_args=(--steps 20 --warmup 3 --repeats 3)
  study_args=(recipe=gpt2 scale=small)
fi

names=() secs=() codes=()
stage() {  # stage NAME COMMAND...: run it unless --only leaves it out; log, time, exit code
  local name=$1; shift
  if [[ -n "$only" && ",$only," != *",$name,"* ]]; then return; fi
  echo "== $name: $*" >&2
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local code=$?
  names+=("$name") secs+=($((SECONDS - t0))) codes+=("$code")
  tail -n 25 "$out/$name.log"
}
optim_all() {
  local code=0 p
  for p in "${optim_params[@]}"; do
    "${lb[@]}" bench optim --params "$p" "${optim_args[@]}" --out "$out/optim_${p//:/_}.csv" ||
      code=1
  done
  return $code
}
study() {
  "${lb[@]}" sweep --ratios 3,10 --seeds 0,1 "${study_args[@]}" results_dir="$out/study" &&
    "${lb[@]}" report "$out/study" --out "$out/report"
}

stage train_eager "${lb[@]}" bench train "${train_args[@]}" --compile off --out "$out/train_eager.csv"
stage train_compiled "${lb[@]}" bench train "${compiled_args[@]}" --compile on \
  --out "$out/train_compiled.csv"
stage overhead "$py" benchmarks/overhead.py "${overhead_args[@]}" --out "$out/overhead.json"
stage optim optim_all
stage study study

echo
printf '%-16s %8s %6s  %s\n' stage seconds exit log
failed=0
for i in "${!names[@]}"; do
  printf '%-16s %8s %6s  %s\n' "${names[$i]}" "${secs[$i]}" "${codes[$i]}" "$out/${names[$i]}.log"
  [[ ${codes[$i]} == 0 ]] || failed=1
done
[[ -f "$out/overhead.json" ]] && "$py" -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(f\"overhead: hand {r['hand_steps_per_s']:.4g} steps/s, lionbench \
{r['lionbench_steps_per_s']:.4g} steps/s, ratio {r['ratio']:.3f}\")" "$out/overhead.json"
exit $failed

#!/bin/bash
# Development measurements of the stacks in docs/calibration.md, on the lent GPU (one run of the machine).
# Usage (device machine, repository root): bash validation/stacks/devrun.sh   (writes under $OUT)
#   1. launch census (validation.stacks.census) of hf eager, hf graph and torch-unfused on a dense and an MoE model;
#   2. hf eager over the whole grid in 3 interleaved rounds (host-bound: its host speed drifts);
#   3. torch-unfused eager: prefill, decode and training steps.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee $OUT/env.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a $OUT/env.txt
nproc | sed 's/^/cpu cores /' | tee -a $OUT/env.txt
M="--model llama-3.2-1b --model olmoe-1b-7b --model llama-2-7b --model qwen2.5-7b --model llama-3.2-3b"
C="--model llama-3.2-1b --model olmoe-1b-7b"
for cfg in "hf eager" "hf graph" "torch-unfused eager"; do
  set -- $cfg
  start=$SECONDS
  python3 -m validation.stacks.census --stack $1 --mode $2 $C --out $OUT/census-$1-$2.json 2>>$OUT/log.txt
  echo "census $1 $2: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
done
start=$SECONDS
python3 -m roofsim calibrate --stack hf --mode eager $M --rounds 3 --measurements $OUT/hf-eager.csv \
    --out /tmp/hf-eager.json --budget-s ${BUDGET_HF:-150} >/dev/null 2>>$OUT/log.txt
echo "hf eager x3 rounds: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
start=$SECONDS
python3 -m roofsim calibrate --stack torch-unfused --mode eager $M --phases prefill,decode,train \
    --measurements $OUT/torch-unfused-eager.csv --out /tmp/tu.json --budget-s ${BUDGET_TU:-150} >/dev/null 2>>$OUT/log.txt
echo "torch-unfused eager + train: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
grep -v " ms$" $OUT/log.txt | tail -n 25

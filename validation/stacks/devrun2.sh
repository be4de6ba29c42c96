#!/bin/bash
# Second development run (docs/calibration.md): the transformers source the hf stack runs; a launch census of
# hf eager on olmoe-1b-7b and the 28-layer llama-3.2-3b (checks the per-layer launch counts taken from the
# 16-layer models); hf eager again with the decode cache reset to contiguous tensors, in 3 interleaved rounds
# (its host speed drifts over minutes).
# Usage (device machine, repository root): bash validation/stacks/devrun2.sh   (writes under $OUT)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee $OUT/env.txt
python3 -m validation.stacks.hf_source > $OUT/hf-source.txt 2>&1
M="--model llama-3.2-1b --model olmoe-1b-7b --model llama-2-7b --model qwen2.5-7b --model llama-3.2-3b"
start=$SECONDS
python3 -m validation.stacks.census --stack hf --mode eager --model olmoe-1b-7b --model llama-3.2-3b \
    --shapes prefill:1:512,prefill:4:1024,decode:1:512,decode:32:4096 --out $OUT/census2-hf-eager.json 2>>$OUT/log.txt
echo "census hf eager: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
start=$SECONDS
python3 -m roofsim calibrate --stack hf --mode eager $M --rounds 3 --measurements $OUT/hf-eager.csv \
    --out /tmp/hf-eager.json --budget-s ${BUDGET_HF:-110} >/dev/null 2>>$OUT/log.txt
echo "hf eager x3 rounds: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
grep -v " ms$" $OUT/log.txt | tail -n 12

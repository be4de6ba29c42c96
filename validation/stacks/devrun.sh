#!/bin/bash
# Development measurements of the stacks in docs/calibration.md, on the lent GPU (one call).
# Usage (device machine, repository root): bash validation/stacks/devrun.sh   (writes under $OUT)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee $OUT/env.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a $OUT/env.txt
M="--model llama-3.2-1b --model olmoe-1b-7b --model llama-2-7b --model qwen2.5-7b --model llama-3.2-3b"
for cfg in "hf eager" "hf graph" "torch-unfused eager" "torch-unfused graph"; do
  set -- $cfg
  start=$SECONDS
  python3 -m roofsim calibrate --stack $1 --mode $2 $M --measurements $OUT/$1-$2.csv --out $OUT/$1-$2.json \
      --budget-s ${BUDGET:-62} >>$OUT/fit.txt 2>>$OUT/log.txt
  echo "$1 $2: rc=$? wall $((SECONDS - start)) s" | tee -a $OUT/env.txt
done
tail -n 5 $OUT/log.txt

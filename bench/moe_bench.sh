#!/usr/bin/env bash
# Decode speed of a Mixtral-shaped model (mixture of experts: 8 experts, top 2)
# in F16, Q8_0 and SpQR w3, each as a fraction of the memory read bandwidth
# measured in the same process (engine bench). A decoded token reads attention,
# the router and its 2 experts of every block, plus the head: that is the byte
# count (LlamaModel::weight_bytes), not the whole file.
# Usage: [MAKE_SPQR=1] bench/moe_bench.sh [ENGINE]   (models are made under build/bench/
# and reused)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
THREADS=${THREADS:-2}
dir=build/bench
mkdir -p "$dir"

# dim 2048 (as bench/run.sh's model), FFN 1408 per expert (Mixtral's 3.5x ratio at
# 1/2 its width would be 7168: too big to quantize here), 4 blocks, Llama-2 vocab:
# 901 MB in F16, of which a decoded token reads 354 MB (attention 4 x 21, two experts
# 4 x 35, head 131).
shape="--dim 2048 --ffn 1408 --layers 4 --heads 16 --kv-heads 4 --vocab 32000 --experts 8 --experts-used 2"
for t in f16 q8_0; do
  m="$dir/moe-2048-$t.gguf"
  [ -f "$m" ] || $ENGINE init-model $shape --type $t --seed 1 -t "$THREADS" -o "$m" 2>/dev/null
done
# SpQR w3 of the F16 model: quantizing its 315 M block parameters takes ~25 min of
# 2 busy cores (bench/NOTES.md), so it is made only with MAKE_SPQR=1 (as bench/run.sh
# skips its own SpQR model when missing).
spqr="$dir/moe-2048-spqr3.gguf"
quant="$ENGINE quantize -m $dir/moe-2048-f16.gguf --calib ../shared/data/stories260K-calib.txt --nsamples 8"
quant="$quant --seqlen 128 --head-type q8_0 -t $THREADS -o $spqr"
types="f16 q8_0"
if [ ! -f "$spqr" ] && [ "${MAKE_SPQR:-0}" = 1 ]; then
  echo "quantizing $spqr (SpQR w3, Q8_0 head; one-time) ..."
  start=$(date +%s)
  $quant 2>"$dir/moe-quantize.log" >/dev/null
  echo "quantized in $(($(date +%s) - start)) s"
fi
if [ -f "$spqr" ]; then types="$types spqr3"; else echo "($spqr is missing: SpQR row skipped; MAKE_SPQR=1 makes it: $quant)"; fi

echo "== MoE decode (dim 2048, 8 experts, top 2, 4 blocks), $THREADS threads"
printf '%-6s %10s %12s %12s %14s %14s %10s\n' type file_MB token_MB decode_t/s decode_GB/s measured_GB/s ratio
for t in $types; do
  m="$dir/moe-2048-$t.gguf"
  j=$($ENGINE bench -m "$m" -t "$THREADS" -p 32 -n 32 -r 3 --json 2>/dev/null)
  python3 - "$t" "$j" "$(stat -c %s "$m")" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
print('%-6s %10.0f %12.1f %12.2f %14.2f %14.2f %9.1f%%' % (sys.argv[1], int(sys.argv[3]) / 1e6,
      r['weight_bytes_per_token'] / 1e6, r['decode_tok_s'], r['decode_bandwidth_gb_s'],
      r['measured_bandwidth_gb_s'], 100 * r['bandwidth_fraction']))
PY
done

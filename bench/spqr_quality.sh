#!/usr/bin/env bash
# Quality of SpQR against its baselines on stories260K: calibrated on
# ../shared/data/stories260K-calib.txt, evaluated on stories260K-eval.txt by
# perplexity (-c 128, llama.cpp's protocol) and by mean KL divergence of the
# next-token distribution from the F32 model's. Prints a markdown table.
# Usage: bench/spqr_quality.sh [SHARED_DIR] [NSAMPLES] [SEQLEN]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
NS=${2:-128}
SL=${3:-128}
ENGINE=./engine
M="$SHARED/models/stories260K.gguf"
CAL="$SHARED/data/stories260K-calib.txt"
EVAL="$SHARED/data/stories260K-eval.txt"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

row() {  # name, bits, model
  local j
  j=$($ENGINE perplexity -m "$2" -f "$EVAL" -c 128 --kl-base "$M" --json 2>/dev/null)
  python3 - "$1" "$3" "$j" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
print('| %-42s | %6s | %7.4f | %+6.2f%% | %.4f |' % (sys.argv[1], sys.argv[2], r['ppl'], 100 * (r['ppl'] / 4.6059 - 1), r['kl_mean']))
PY
}

echo "| method | bits | PPL | vs F32 | mean KL |"
echo "|---|---|---|---|---|"
row "F32" "$M" "32"
while IFS='|' read -r name args; do
  out="$dir/q.gguf"
  # The comparison of methods keeps the embedding and head F32 (as before issue 22);
  # rows marked "default tables" store them as quantize does by default.
  case "$name" in *"default tables"*) keep="";; *) keep="--head-type keep --embd-type keep";; esac
  bits=$($ENGINE quantize -m "$M" -o "$out" --calib "$CAL" --nsamples "$NS" --seqlen "$SL" --json $keep $args 2>/dev/null |
         python3 -c "import json,sys; print('%.3f' % json.load(sys.stdin)['avg_bits'])")
  row "$name" "$out" "$bits"
done <<'EOF2'
RTN w4 g16 s3|--method rtn --wbits 4
RTN w3 g16 s3|--method rtn --wbits 3
GPTQ w3 g16 (fp16 stats)|--method gptq --wbits 3
GPTQ w3 g64 (fp16 stats)|--method gptq --wbits 3 --groupsize 64
SpQR w3 g16 s3, no outliers, plain stats|--wbits 3 --outlier-threshold 1000 --stat-search 0
SpQR w3 g16 s3, no outliers|--wbits 3 --outlier-threshold 1000
SpQR w3 g16 s3, tau 0.5|--wbits 3 --outlier-threshold 0.5
SpQR w3 g16 s3, tau 0.2, plain stats|--wbits 3 --outlier-threshold 0.2 --stat-search 0
SpQR w3 g16 s3, tau 0.2|--wbits 3 --outlier-threshold 0.2
SpQR w3 g16 s3, tau 0.3|--wbits 3
SpQR w3 defaults (tau 0.3, default tables)|--wbits 3
SpQR w4 g16 s3, no outliers, plain stats|--wbits 4 --outlier-threshold 1000 --stat-search 0
SpQR w4 g16 s3, no outliers|--wbits 4 --outlier-threshold 1000
SpQR w4 g16 s3, tau 0.5|--wbits 4 --outlier-threshold 0.5
SpQR w4 g16 s3, tau 0.2|--wbits 4 --outlier-threshold 0.2
SpQR w4 defaults (tau 0.3, default tables)|--wbits 4
EOF2

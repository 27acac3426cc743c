#!/usr/bin/env bash
# Issue 22: our quantized and F16 inference beside llama.cpp's, on one model, in one run.
#
# Makes (and caches under build/quant_vs_llama/) the issue's benchmark model with
# init-model (dim 2048, 7B-like shapes at 1/2 width, Llama-2 vocab; 483 M params, F16),
# quantizes it with `engine quantize` defaults (--wbits 3) on the stories260K
# calibration text, and, when LLAMA_BENCH is given, llama.cpp's Q4_0 of the same F16
# file (llama-quantize next to llama-bench). Then alternates rounds of
#   engine bench -p 64 -n 32 -r 3 -t T     and     llama-bench -p 64 -n 32 -r 3 -t T
# on engine-default-quantized vs llama Q4_0 and engine F16 vs llama F16, and prints
# file sizes, prefill and decode tokens/s (best repetition of each, both tools), and
# per round the engine/llama.cpp ratios. Without LLAMA_BENCH it prints the engine's
# numbers and decode's share of the memory bandwidth `engine bench` measures.
#
# Environment:
#   LLAMA_BENCH=/path/llama-bench   llama.cpp's bench (llama-quantize beside it)
#   THREADS=2  ROUNDS=2             threads for both tools; alternating rounds
#   NSAMPLES=8 SEQLEN=128           calibration sequences for quantize, printed with the
#                                   results (fewer shorten the calibration forward; the
#                                   per-layer GPTQ work does not shrink: 2 blocks took
#                                   1476 s at NSAMPLES=4 on 2 cores shared with others)
#   LAYERS=8                        blocks of the model (fewer: a quicker, smaller run)
#   QUANT_ARGS=""                   extra `engine quantize` flags
#   LLAMA_ARGS=""                   extra llama-bench flags (e.g. "--poll 0": on a machine
#                                   shared with other jobs its spinning workers lose
#                                   their time slices to them, and it slows down far more)
#   PAIRS="w3 f16"                  which comparisons to run (w3: quantized; f16)
# Usage: bench/quant_vs_llama.sh [SHARED_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
ENGINE=${ENGINE:-./engine}
[ -x "$ENGINE" ] || ENGINE=build/engine
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
NSAMPLES=${NSAMPLES:-8}
SEQLEN=${SEQLEN:-128}
LAYERS=${LAYERS:-8}
QUANT_ARGS=${QUANT_ARGS:-}
PAIRS=${PAIRS:-w3 f16}
CAL="$SHARED/data/stories260K-calib.txt"
dir=build/quant_vs_llama
mkdir -p "$dir"

f16="$dir/m-2048-l$LAYERS-f16.gguf"
# The cached quantized file is named after quantize's defaults (a hash of its --help,
# which prints them) and this run's flags, so a change of defaults quantizes anew.
qkey=$( { $ENGINE quantize --help; echo "$SEQLEN $QUANT_ARGS"; } | md5sum | cut -c1-8)
ours="$dir/m-2048-l$LAYERS-engine-w3-ns$NSAMPLES-$qkey.gguf"
q40="$dir/m-2048-l$LAYERS-llama-q4_0.gguf"
shape="--dim 2048 --ffn 5632 --layers $LAYERS --heads 32 --kv-heads 4 --vocab 32000"

[ -f "$f16" ] || $ENGINE init-model $shape --type f16 --seed 1 -o "$f16" >&2
if [ ! -f "$ours" ] && [[ " $PAIRS " == *" w3 "* ]]; then
  echo "quantizing with engine defaults (--wbits 3, --nsamples $NSAMPLES --seqlen $SEQLEN $QUANT_ARGS)..." >&2
  t0=$(date +%s)
  $ENGINE quantize -m "$f16" -o "$ours.tmp" --calib "$CAL" --wbits 3 --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
    -t "$THREADS" $QUANT_ARGS >&2
  mv "$ours.tmp" "$ours"
  echo "quantize took $(( $(date +%s) - t0 )) s" >&2
fi
if [ -n "${LLAMA_BENCH:-}" ]; then
  LLAMA_QUANTIZE=${LLAMA_QUANTIZE:-$(dirname "$LLAMA_BENCH")/llama-quantize}
  [ -f "$q40" ] || "$LLAMA_QUANTIZE" "$f16" "$q40" Q4_0 "$THREADS" >&2
fi

mib() { python3 -c 'import os, sys; print("%.1f" % (os.path.getsize(sys.argv[1]) / 1048576))' "$1"; }
echo "model: init-model $shape (F16 source), $THREADS threads, quantize --nsamples $NSAMPLES --seqlen $SEQLEN"
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
     "flags: $(grep -m1 -o -w -e avx512f -e avx2 /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "files: engine F16 $(mib "$f16") MiB" "${LLAMA_BENCH:+(llama reads the same file)}" \
     "$([ -f "$ours" ] && echo ", engine w3 (defaults) $(mib "$ours") MiB")" \
     "$([ -n "${LLAMA_BENCH:-}" ] && echo ", llama Q4_0 $(mib "$q40") MiB")"

# One engine measurement: "prefill decode bandwidth_fraction" (best of -r 3).
engine_run() {
  $ENGINE bench -m "$1" -t "$THREADS" -p 64 -n 32 -r 3 --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["prefill_tok_s"], r["decode_tok_s"], r["bandwidth_fraction"])'
}
# One llama.cpp measurement: "prefill decode" (best of its -r 3 samples, as the engine reports).
llama_run() {
  "$LLAMA_BENCH" -m "$1" -t "$THREADS" -p 64 -n 32 -r 3 ${LLAMA_ARGS:-} -o json 2>/dev/null | python3 -c '
import json, sys
pp = tg = 0.0
for r in json.load(sys.stdin):
    best = max(r["samples_ts"])
    if r["n_prompt"] > 0: pp = best
    else: tg = best
print(pp, tg)'
}

printf '%-5s %-22s %10s %10s %8s %8s\n' round pair "pp64 t/s" "tg32 t/s" pp_ratio tg_ratio
for round in $(seq 1 "$ROUNDS"); do
  for pair in "w3|$ours|$q40|engine w3 / llama Q4_0" "f16|$f16|$f16|engine F16 / llama F16"; do
    IFS='|' read -r tag a b label <<<"$pair"
    [[ " $PAIRS " == *" $tag "* ]] || continue
    read -r epp etg efrac <<<"$(engine_run "$a")"
    if [ -n "${LLAMA_BENCH:-}" ]; then
      read -r lpp ltg <<<"$(llama_run "$b")"
      python3 - "$round" "$label" "$epp" "$etg" "$lpp" "$ltg" <<'PY'
import sys
rd, label, epp, etg, lpp, ltg = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
name = label.split(' / ')
print('%-5s %-22s %10.1f %10.2f' % (rd, name[0], epp, etg))
print('%-5s %-22s %10.1f %10.2f' % (rd, name[1], lpp, ltg))
print('%-5s %-22s %10s %10s %7.2fx %7.2fx' % (rd, 'ratio', '', '', epp / lpp, etg / ltg))
PY
    else
      python3 -c 'import sys; print("%-5s %-22s %10.1f %10.2f   decode at %.0f%% of measured bandwidth" % (sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), 100 * float(sys.argv[5])))' \
        "$round" "engine $tag" "$epp" "$etg" "$efrac"
    fi
  done
done

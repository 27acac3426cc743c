#!/usr/bin/env bash
# engine api against engine generate on the same model, in one run: greedy
# decode tokens/s through the HTTP API (streamed, one client, measured by the
# client from its first to its last token) over `engine generate`'s decode
# tokens/s, and the time to first token (request sent -> first text received,
# prefill included). Best of R runs each, alternated. Prints numbers, not verdicts.
# Usage: bench/api_bench.sh [ENGINE] [MODEL]
#   default MODEL: the dim-2048, 8-block f16 bench model of bench/run.sh
#   N=64 tokens, R=3, THREADS=2, CTX=512
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
MODEL=${2:-}
N=${N:-64}
R=${R:-3}
THREADS=${THREADS:-2}
CTX=${CTX:-512}
PROMPT="Once upon a time there was"
source scripts/procs.bash
if [ -z "$MODEL" ]; then
  MODEL=build/bench/bench-2048-f16.gguf
  mkdir -p build/bench
  [ -f "$MODEL" ] || $ENGINE init-model --dim 2048 --ffn 5632 --layers 8 --heads 32 --kv-heads 4 --vocab 32000 \
    --type f16 --seed 1 -o "$MODEL" >/dev/null
fi

$ENGINE api -m "$MODEL" -t "$THREADS" -c "$CTX" --parallel 1 --listen 127.0.0.1:0 >"$T/api.out" 2>"$T/api.err" &
PIDS+=($!)
wait_line "$T/api.out" "api: ready"
URL=$(sed -n 's/.*listening on //p' "$T/api.out")

# One streamed greedy completion; prints "decode_tok_s ttft_s tokens".
api_run() {
  python3 - "$URL" "$PROMPT" "$N" <<'PY'
import http.client, json, sys, time, urllib.parse
url, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
                   "stream_options": {"include_usage": True}})
t0 = time.perf_counter()
c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
r = c.getresponse()
times, usage = [], None
for line in r:
    line = line.strip()
    if not line.startswith(b"data: {"):
        continue
    d = json.loads(line[6:])
    if d.get("usage"):
        usage = d["usage"]
    for ch in d.get("choices", []):
        if ch.get("text"):
            times.append(time.perf_counter())
toks = usage["completion_tokens"]
# Chunks carry one token each unless a UTF-8 character or a stop string held text back.
rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0
print("%.3f %.4f %d" % (rate, times[0] - t0, toks))
PY
}
# One greedy `engine generate`; prints "decode_tok_s prefill_s tokens". Its "generated N tokens in S s"
# spans N samples but N - 1 evaluations (the first token comes from the prefill's logits), so
# (N - 1) / S is the rate comparable to the client's first-to-last-token rate.
gen_run() {
  $ENGINE generate -m "$MODEL" -p "$PROMPT" -n "$N" --temp 0 -t "$THREADS" -c "$CTX" 2>&1 >/dev/null |
    sed -n 's/.*prompt [0-9]* tokens in \([0-9.]*\) s.*generated \([0-9]*\) tokens in \([0-9.]*\) s.*/\1 \2 \3/p' |
    awk '{ printf "%.3f %s %s\n", ($2 - 1) / $3, $1, $2 }'
}

api_run >/dev/null  # warm-up: page in the weights, first-touch the KV cache
best_api=0 best_gen=0 ttft=999 prefill=999
for i in $(seq "$R"); do
  read -r g p gt < <(gen_run)
  read -r a t at < <(api_run)
  echo "run $i: generate $g tok/s ($gt tokens, prefill $p s); api $a tok/s ($at tokens, first token after $t s)"
  best_gen=$(python3 -c "print(max($best_gen, $g))")
  best_api=$(python3 -c "print(max($best_api, $a))")
  ttft=$(python3 -c "print(min($ttft, $t))")
  prefill=$(python3 -c "print(min($prefill, $p))")
done
# The server's own token intervals (every run, warm-up included): what the generation loop
# achieves, before the HTTP thread, the socket and the client.
server=$(curl -s "$URL/metrics" | awk '$1 == "engine_api_time_per_token_seconds_sum" { s = $2 }
  $1 == "engine_api_time_per_token_seconds_count" { c = $2 } END { printf "%.3f", c / s }')
echo "== engine api vs engine generate: $(basename "$MODEL"), $N tokens, $THREADS threads, best of $R"
python3 -c "
g, a = $best_gen, $best_api
print('generate decode %.2f tok/s, api decode %.2f tok/s: ratio %.3f (goal >= 0.95)' % (g, a, a / g))
print('api decode measured by the server (all runs): %.2f tok/s: ratio %.3f' % ($server, $server / g))
print('api time to first token %.3f s (generate prefill alone %.3f s)' % ($ttft, $prefill))"

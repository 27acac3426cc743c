#!/usr/bin/env bash
# engine api, the OpenAI-compatible server, on stories260K: the official
# OpenAI client (tests/web/*.mjs, from BUILD/node/node_modules) runs chat,
# streamed chat and completions locally and through a 2-server swarm on
# 127.0.0.1, with greedy text equal to `engine generate --temp 0`; 8
# concurrent streams on 3 slots all finish; a client SIGKILLed mid-stream and
# one cut off by curl free their slots (seen in /metrics); a full queue gets
# 503 + Retry-After; bad requests get OpenAI-style 4xx errors.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
WEB=$(cd "$(dirname "$0")/../web" && pwd)
NODE_MODULES=$(cd "$(dirname "$ENGINE")" && pwd)/node/node_modules
HAVE_NODE=1
if ! command -v node >/dev/null || [ ! -d "$NODE_MODULES/openai" ]; then
  HAVE_NODE=0
  echo "SKIP (later: exit 77): node or the openai package missing (run scripts/install-npm-deps.sh $(dirname "$ENGINE")/node)"
else
  # ES modules resolve packages next to the script, not through NODE_PATH.
  cp "$WEB"/*.mjs "$TMP/"
  ln -s "$NODE_MODULES" "$TMP/node_modules"
fi
JSON='Content-Type: application/json'

declare -A API_ADDR API_PID
start_api() {  # NAME ARGS... -> API_ADDR[NAME]
  local name=$1
  shift
  "$ENGINE" api -m "$MODEL" --listen 127.0.0.1:0 -t 1 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  API_PID[$name]=$!
  PIDS+=($!)
  wait_for "$TMP/$name.out" "api: ready" || die "api $name did not start"
  API_ADDR[$name]=$(sed -n 's/.*listening on //p' "$TMP/$name.out")
}
metric() { curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
# wait_metric URL NAME VALUE: polls /metrics (0.1 s, at most 15 s) until NAME == VALUE.
wait_metric() {
  for _ in $(seq 150); do [ "$(metric "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done
  return 1
}
# post URL BODY -> HTTP status; the body lands in $TMP/body
post() { curl -s -o "$TMP/body" -w '%{http_code}' -H "$JSON" --data-binary "$2" "$1"; }
field() { python3 -c "import json,sys; d=json.load(open('$TMP/body')); print($1)"; }

PROMPT="Once upon a time"
CHATP=$'<|im_start|>user\nTell me a story<|im_end|>\n<|im_start|>assistant\n'  # chatml: stories260K has no template
timeout 60 "$ENGINE" generate -m "$MODEL" -p "$PROMPT" -n 24 --temp 0 -t 1 >"$TMP/gen.txt" 2>/dev/null || die "generate failed"
timeout 60 "$ENGINE" generate -m "$MODEL" -p "$CHATP" -n 20 --temp 0 -t 1 >"$TMP/chatgen.txt" 2>/dev/null || die "generate failed"

# ---- local ---------------------------------------------------------------------------------
start_api local --parallel 3 --queue 16 -c 4096
L=http://${API_ADDR[local]#http://}
check "health" [ "$(curl -s "$L/health")" = '{"status":"ok"}' ]
expect_fail "a taken port is a clear error" "cannot listen" "$ENGINE" api -m "$MODEL" --listen "${API_ADDR[local]#http://}"

if [ $HAVE_NODE = 1 ]; then
  (cd "$TMP" && timeout 120 node openai_client.mjs "$L" stories260K "$PROMPT" 24 "$TMP/gen.txt" "$CHATP" "$TMP/chatgen.txt") \
    >"$TMP/client.out" 2>&1
  check "openai client, local: chat, streamed chat, completions" [ $? -eq 0 ]
  sed 's/^/   /' "$TMP/client.out"
  OUT=$(cd "$TMP" && timeout 120 node concurrent_streams.mjs "$L" stories260K 8 2>&1)
  check "8 concurrent streams on 3 slots all finish ($OUT)" [ $? -eq 0 ]

  cancelled=$(metric "$L" engine_api_requests_cancelled_total)
  (cd "$TMP" && exec node stream_then_hang.mjs "$L" stories260K) >"$TMP/hang.out" 2>&1 &
  HANG=$!
  PIDS+=($HANG)
  wait_for "$TMP/hang.out" streaming 300 || die "the streaming client got no text"
  { kill -9 $HANG; wait $HANG; } 2>/dev/null
  check "a SIGKILLed client frees its slot" wait_metric "$L" engine_api_sessions_active 0
  check "... and counts as cancelled" [ "$(metric "$L" engine_api_requests_cancelled_total)" = $((${cancelled%.*} + 1)) ]
fi

C="$L/v1/chat/completions"
P="$L/v1/completions"
check "malformed JSON: 400" [ "$(post "$C" '{"messages":')" = 400 ]
check "... with an OpenAI error object" [ "$(field "d['error']['type']")" = invalid_request_error ]
check "missing messages: 400" [ "$(post "$C" '{"model":"stories260K"}')" = 400 ]
check "wrong type: 400 naming the field" [ "$(post "$P" '{"prompt":"x","temperature":"hot"}')" = 400 ] &&
  check "... param" [ "$(field "d['error']['param']")" = temperature ]
check "negative max_tokens: 400" [ "$(post "$P" '{"prompt":"x","max_tokens":-5}')" = 400 ]
check "unknown model: 404" [ "$(post "$C" '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}')" = 404 ]
check "... model_not_found" [ "$(field "d['error']['code']")" = model_not_found ]
check "the file name is accepted as model" [ "$(post "$P" '{"model":"stories260K.gguf","prompt":"x","max_tokens":2}')" = 200 ]
LONG=$(python3 -c "print('{\"prompt\":\"' + 'a' * 6000 + '\"}')")
check "prompt longer than the context: 400" [ "$(post "$P" "$LONG")" = 400 ]
check "... context_length_exceeded" [ "$(field "d['error']['code']")" = context_length_exceeded ]
head -c 2000000 /dev/zero | tr '\0' a >"$TMP/huge"
check "a 2 MB body: 413" [ "$(curl -s -o "$TMP/body" -w '%{http_code}' -H "$JSON" --data-binary @"$TMP/huge" "$P")" = 413 ]
check "unknown route: 404" [ "$(curl -s -o /dev/null -w '%{http_code}' "$L/v1/nothing")" = 404 ]
check "requests are counted by endpoint and status" \
  grep -q 'engine_api_requests_total{endpoint="/v1/completions",status="400"}' <(curl -s "$L/metrics")
check "GET / names the local model" grep -q '<b>stories260K</b>' <(curl -s "$L/")
check "one log line per request" grep -q 'api: POST /v1/completions 404\|api: POST /v1/chat/completions 404' "$TMP/local.err"

# ---- swarm ---------------------------------------------------------------------------------
# Servers slowed to ~20 ms a step so that a stream is still running when it is cut off, and
# holding one session at most: a session the client failed to close would block the next request.
start_dht
start_server a --blocks 0:2 --step-delay 20 --max-sessions 1
start_server b --blocks 2:5 --step-delay 20 --max-sessions 1
start_api swarm --swarm --initial-peers "$DHT_ADDR" --parallel 1 --queue 1
S=http://${API_ADDR[swarm]#http://}
check "swarm: greedy completion == engine generate --temp 0" \
  [ "$(post "$S/v1/completions" "{\"prompt\":\"$PROMPT\",\"max_tokens\":24,\"temperature\":0}")" = 200 ]
check "... same text" [ "$PROMPT$(field "d['choices'][0]['text']")" = "$(cat "$TMP/gen.txt")" ]
check "swarm: GET / is the swarm health page" grep -q 'swarm health' <(curl -s "$S/")
# The page's watcher crawls the DHT every 3 s: both servers show up within a bounded wait.
servers_seen() {
  curl -s "$S/api/v1/state" | python3 -c "import json,sys; d=json.load(sys.stdin)
m=[m for m in d['models'] if m['name']=='stories260K']
sys.exit(0 if m and len(m[0]['servers'])==2 else 1)" 2>/dev/null
}
seen=0
for _ in $(seq 40); do servers_seen && { seen=1; break; }; sleep 0.5; done
check "... and /api/v1/state lists the model's 2 servers" [ $seen = 1 ]
if [ $HAVE_NODE = 1 ]; then
  (cd "$TMP" && timeout 120 node openai_client.mjs "$S" stories260K "$PROMPT" 24 "$TMP/gen.txt" "$CHATP" "$TMP/chatgen.txt") \
    >"$TMP/client2.out" 2>&1
  check "openai client, swarm: chat, streamed chat, completions" [ $? -eq 0 ]
  grep FAIL "$TMP/client2.out"
fi

# One slot, one queue place: A streams (cut off by curl after 3 s), B waits, C is refused.
STREAM='{"prompt":"Once","max_tokens":400,"stream":true}'
curl -s -N --max-time 3 -H "$JSON" -d "$STREAM" "$S/v1/completions" >"$TMP/a.sse" 2>/dev/null &
A=$!
check "swarm: A holds the slot" wait_metric "$S" engine_api_sessions_active 1
curl -s -N --max-time 30 -H "$JSON" -d '{"prompt":"Once","max_tokens":4,"stream":true}' "$S/v1/completions" >"$TMP/b.sse" &
B=$!
check "B waits in the queue" wait_metric "$S" engine_api_queue_depth 1
code=$(curl -s -D "$TMP/c.headers" -o "$TMP/body" -w '%{http_code}' -H "$JSON" -d "$STREAM" "$S/v1/completions")
check "C: the full queue answers 503" [ "$code" = 503 ]
check "... with Retry-After" grep -qi '^retry-after: ' "$TMP/c.headers"
check "... and an error object" [ "$(field "d['error']['code']")" = queue_full ]
wait $A
wait $B
check "A was cut off mid-stream" bash -c "grep -q '^data: {' '$TMP/a.sse' && ! grep -q DONE '$TMP/a.sse'"
check "B ran after A let go of the slot and of its server sessions" grep -q 'data: \[DONE\]' "$TMP/b.sse"
check "no session is left open" wait_metric "$S" engine_api_sessions_active 0
check "A counts as cancelled" [ "$(metric "$S" engine_api_requests_cancelled_total)" = 1 ]
check "RPC bytes are reported" [ "$(metric "$S" engine_api_swarm_rpc_bytes_in_total)" != 0 ]

if [ $HAVE_NODE = 0 ] && [ $FAIL -eq 0 ]; then
  echo "$PASS passed; node checks skipped"
  exit 77
fi
finish

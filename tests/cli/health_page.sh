#!/usr/bin/env bash
# The swarm health page, /api/v1/state and /metrics (docs/health.md) on a DHT node
# and two servers of stories260K (blocks 0:3 and 3:5, announcing every second so a
# dead server's records expire within 3 s). curl checks the JSON and the metrics
# (present, and moving with traffic); headless Chromium (tests/web/health_page.py)
# reads the rendered blocks and servers, SIGKILLs one server and waits for its
# blocks to turn into a red gap. Screenshots go to $ENGINE_TEST_LOGS (default:
# test-logs/ next to the engine binary). Without chromium, chromedriver or
# python3-selenium the browser part is skipped (exit 77 when all else passed).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
LOGDIR=${ENGINE_TEST_LOGS:-$(dirname "$ENGINE")/test-logs}/health_page
mkdir -p "$LOGDIR" && rm -f "$LOGDIR"/*.png

"$ENGINE" dht --listen 127.0.0.1:0 --http 127.0.0.1:0 --crawl-interval 0.5 >"$TMP/dht.out" 2>"$TMP/dht.err" &
PIDS+=($!)
wait_for "$TMP/dht.out" "health page at" || die "dht node did not start"
DHT_ADDR=$(sed -n 's/.*others join with --initial-peers //p' "$TMP/dht.out")
DHT_URL=$(sed -n 's/.*health page at //p' "$TMP/dht.out")
check "dht logs its HTTP address on stderr" grep -q "http: listening on 127.0.0.1:" "$TMP/dht.err"
start_server a --blocks 0:3 --throughput 50 --announce-interval 1 --http 127.0.0.1:0 --crawl-interval 0.5 --public-name alpha
start_server b --blocks 3:5 --throughput 50 --announce-interval 1
SRV_URL=$(sed -n 's/.*health page at //p' "$TMP/a.out")
B_ID=$(sed -n 's/serve: node \([0-9a-f]*\) .*/\1/p' "$TMP/b.out")

state() { curl -sf --max-time 5 "${1}api/v1/state"; }
metric() { curl -sf --max-time 5 "${1}metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
# poll_state URL JQ_EXPR: waits (<= 15 s) until the expression is true on the state.
poll_state() {
  for _ in $(seq 75); do state "$1" | jq -e "$2" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

check "dht state: one model, 5 blocks, both servers online, no gap" \
  poll_state "$DHT_URL" '.models | length == 1 and .[0].name == "stories260K" and .[0].n_blocks == 5
    and .[0].complete and ([.[0].servers[] | select(.state == "online")] | length == 2)'
check "serve state: the same view from a server's own watcher" \
  poll_state "$SRV_URL" '.node.role == "serve" and .models[0].complete and (.models[0].servers | length == 2)'
S=$(state "$DHT_URL")
jqs() { jq -e "$1" <<<"$S" >/dev/null; }
check "state fields: node, status, crawls, blocks, servers" jqs '.version == 1 and .node.role == "dht" and .status == "ok"
  and .crawls > 0 and (.updated | type == "number") and (.runs | type == "array")
  and (.models[0].blocks | length == 5) and (.models[0].blocks[4].servers == ["'"$B_ID"'"])
  and ([.models[0].servers[] | select(.public_name == "alpha" and .first == 0 and .last == 3
        and .throughput == 50 and .cache_tokens_left > 0 and (.address | test(":")) and .version != "")] | length == 1)' \


for n in engine_rpc_requests_total engine_rpc_received_bytes_total engine_rpc_sent_bytes_total engine_rpc_connections \
  engine_dht_contacts engine_dht_records engine_uptime_seconds engine_rpc_violations_total; do
  [ -n "$(metric "$DHT_URL" $n)" ] || bad "dht /metrics has $n"
done
for n in engine_blocks_served engine_cache_tokens_left engine_inference_sessions_open engine_inference_steps_total \
  engine_forwards_total engine_backwards_total engine_block_errors_total engine_rpc_calls_total; do
  [ -n "$(metric "$SRV_URL" $n)" ] || bad "serve /metrics has $n"
done
check "metric names present on dht and serve" [ "$FAIL" -eq 0 ]
poll_metric() {  # URL NAME VALUE: waits (<= 5 s) for the loop's next export
  for _ in $(seq 25); do [ "$(metric "$1" "$2")" = "$3" ] && return 0; sleep 0.2; done
  return 1
}
check "serve exports its span (3 blocks)" poll_metric "$SRV_URL" engine_blocks_served 3
R1=$(metric "$DHT_URL" engine_rpc_requests_total)
timeout 60 "$ENGINE" generate -m "$MODEL" --temp 0 --ids -t 1 -n 6 --swarm --initial-peers "$DHT_ADDR" \
  >/dev/null 2>"$TMP/gen.err" || die "swarm generation failed"
sleep 1.2  # the loop copies its stats into the registry every second
R2=$(metric "$DHT_URL" engine_rpc_requests_total)
check "dht request counter moves ($R1 -> $R2)" awk -v a="$R1" -v b="$R2" 'BEGIN { exit !(b > a) }'
STEPS=$(metric "$SRV_URL" engine_inference_steps_total)
check "serve counts the inference steps it served ($STEPS)" awk -v a="$STEPS" 'BEGIN { exit !(a >= 6) }'
check "serve counts the session ($(metric "$SRV_URL" engine_inference_sessions_total))" \
  [ "$(metric "$SRV_URL" engine_inference_sessions_total)" -ge 1 ]

BROWSER_RC=0
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! /usr/bin/python3 -c "import selenium" 2>/dev/null; then
  echo "SKIP: browser part (needs /usr/bin/chromium, /usr/bin/chromedriver and python3-selenium: make deps)"
  { kill -9 "${SRV_PID[b]}"; wait "${SRV_PID[b]}"; } 2>/dev/null
  BROWSER_RC=77
else
  # Debian's python (the selenium package is there, not in a pyenv shim's).
  timeout 120 /usr/bin/python3 "$(dirname "$0")/../web/health_page.py" "$DHT_URL" "$B_ID" "$LOGDIR" \
    ${HEALTH_PAGE_DOC_PNG:+"$HEALTH_PAGE_DOC_PNG"} >"$TMP/browser.out" 2>"$TMP/browser.err" &
  BROWSER=$!
  PIDS+=($BROWSER)
  wait_for "$TMP/browser.out" "kill the victim now" 400
  { kill -9 "${SRV_PID[b]}"; wait "${SRV_PID[b]}"; } 2>/dev/null
  wait $BROWSER
  BROWSER_RC=$?
  cat "$TMP/browser.out"
  [ $BROWSER_RC -eq 1 ] || [ $BROWSER_RC -gt 77 ] && tail -5 "$TMP/browser.err"
  check "headless browser: the page shows the servers, then the dead server's gap" [ $BROWSER_RC -eq 0 -o $BROWSER_RC -eq 77 ]
fi
check "dht state shows the gap at blocks 3:5 after the kill" poll_state "$DHT_URL" '.models[0].gaps == [[3, 5]]'

finish || exit 1
[ $BROWSER_RC -eq 77 ] && exit 77
exit 0

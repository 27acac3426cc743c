#!/usr/bin/env bash
# engine train --swarm (collaborative data-parallel training) on 127.0.0.1:
#   exactness  one peer with --target-batch B == engine train --batch B, bit for bit
#   parity     3 peers from scratch reach single-process eval loss at equal samples
#              (within 3%), and their parameter checksums agree after every step
#   churn      a peer SIGKILLed mid-round, another mid-step, one restarted: the run
#              completes, the restarted peer downloads state and matches the others
#   byzantine  4 peers, one sending -1000x gradients: CenteredClip stays near the
#              honest loss, the plain mean does not
#   bad input  a joiner with another model config is refused
# Every process is started on ephemeral ports and reaped on exit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
CORPUS=/usr/share/games/fortunes/computers
[ -f "$CORPUS" ] || { echo "SKIP: $CORPUS not found (Debian package fortunes; make deps installs it)"; exit 77; }
DIFF="python3 $(dirname "$0")/gguf_tensors.py"
SHAPE="--dim 64 --ffn 160 --layers 2 --heads 4 --seqlen 48 --lr 3e-3 --seed 5 --eval-windows 16 -t 1"
tr() { timeout 300 "$ENGINE" train --data "$CORPUS" $SHAPE "$@"; }
# peer NAME ARGS...: a swarm peer in the background (-> PEER_PID[NAME]).
declare -A PEER_PID
peer() {
  local name=$1
  shift
  tr --swarm --run "${RUN:-r}" --initial-peers "$DHT_ADDR" --listen 127.0.0.1:0 --matchmaking-time 0.4 \
    --progress-period 0.2 --averaging-timeout 10 --verbose "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PEER_PID[$name]=$!
  PIDS+=($!)
}
wait_peers() {  # wait_peers NAME...: each exits 0 within the bound
  local rc=0
  for n in "$@"; do wait "${PEER_PID[$n]}" || { echo "peer $n exited with $?"; tail -5 "$TMP/$n.err"; rc=1; }; done
  return $rc
}
# col FILE NAME: the values of a CSV column, one per line (rows where it is set).
col() { awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } c && $c != "" { print $c }' "$1"; }
last_eval() { col "$1" eval_loss | tail -1; }
within() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= r * b) }'; }

start_dht

# ---- exactness: one peer == one process ----
tr --steps 20 --batch 4 -o "$TMP/single.gguf" 2>"$TMP/single.err" || die "single-process run failed"
RUN=exact peer solo --steps 20 --batch 4 --target-batch 4 --data-seed 5 -o "$TMP/solo.gguf"
wait_peers solo
check "1 peer, target 4 == engine train --batch 4 (bit for bit)" $DIFF "$TMP/single.gguf" "$TMP/solo.gguf"
check "same loss at every step" cmp -s <(col "$TMP/single.csv" train_loss) <(col "$TMP/solo.csv" train_loss)

# ---- parity: 3 peers against one process at equal samples ----
STEPS=30
tr --steps $STEPS --batch 12 --eval-every 10 -o "$TMP/ref.gguf" 2>"$TMP/ref.err" || die "reference run failed"
for p in a b c; do RUN=par peer $p --steps $STEPS --batch 2 --target-batch 12 --eval-every 10 -o "$TMP/$p.gguf"; done
wait_peers a b c
check "3 peers complete $STEPS steps" test "$(col "$TMP/a.csv" step | tail -1)" = $STEPS
for p in b c; do
  check "peer $p: checksum equal to peer a's after every step" \
    cmp -s <(col "$TMP/a.csv" params_xxh3) <(col "$TMP/$p.csv" params_xxh3)
done
check "the three final models are identical" $DIFF "$TMP/a.gguf" "$TMP/c.gguf"
ref=$(last_eval "$TMP/ref.csv")
got=$(last_eval "$TMP/a.csv")
echo "# parity: eval loss single $ref, 3 peers $got"
check "3 peers within 3% of the single-process eval loss ($got vs $ref)" within "$got" "$ref" 0.03
# Every step: the peers' own contributions add up to at least the target batch.
short=$(paste -d' ' <(col "$TMP/a.csv" local_samples) <(col "$TMP/b.csv" local_samples) \
  <(col "$TMP/c.csv" local_samples) | awk '$1 + $2 + $3 < 12' | wc -l)
check "every step has the target batch from the three peers' own counts" test "$short" -eq 0

# ---- churn: kill one peer mid-round, another mid-step, restart one ----
STEPS=24
for p in d e f; do RUN=churn peer $p --steps $STEPS --batch 2 --target-batch 12 -o "$TMP/$p.gguf"; done
wait_for "$TMP/e.err" "all-reduce: round" 300 || die "no round started"
kill -9 "${PEER_PID[e]}"
wait_for "$TMP/f.out" "step 8/" 300 || die "no step 8"
kill -9 "${PEER_PID[f]}"
RUN=churn peer f2 --steps $STEPS --batch 2 --target-batch 12 -o "$TMP/f2.gguf"
wait_peers d f2
check "the restarted peer downloaded state" grep -q "state loaded: epoch" "$TMP/f2.err"
check "the survivors end with the same parameters" $DIFF "$TMP/d.gguf" "$TMP/f2.gguf"
check "final steps agree" test "$(col "$TMP/d.csv" step | tail -1)" = "$(col "$TMP/f2.csv" step | tail -1)"
# No sample counted twice: what a peer computed is what it contributed plus what it
# threw away (gradients of an epoch the run had already left), never more.
for p in d f2; do
  check "peer $p: samples computed = contributed + discarded" awk '/samples computed/ {
    for (i = 1; i <= NF; i++) { if ($i == "computed") c = $(i + 1); if ($i == "contributed") s = $(i + 1);
      if ($i == "discarded") d = $(i + 1) } } END { exit !(c != "" && c == s + d) }' "$TMP/$p.err"
done

# ---- byzantine: 4 peers, one sign-flipping ----
STEPS=20
byz() {  # byz TAG AGGREGATOR MODE
  for p in 1 2 3 4; do
    mode=none
    [ $p = 4 ] && mode=$3
    RUN=byz-$1 peer "$1$p" --steps $STEPS --batch 2 --target-batch 8 --aggregator $2 --byzantine $mode \
      -o "$TMP/$1$p.gguf"
  done
  wait_peers "$11" "$12" "$13" "$14"
}
byz honest centered-clip none
byz clip centered-clip sign-flip
byz mean mean sign-flip
h=$(last_eval "$TMP/honest1.csv")
c=$(last_eval "$TMP/clip1.csv")
m=$(last_eval "$TMP/mean1.csv")
echo "# byzantine sign-flip: honest $h, centered-clip $c, mean $m"
check "centered-clip with a sign-flipping peer within 5% of the honest run ($c vs $h)" within "$c" "$h" 0.05
check "the plain mean with a sign-flipping peer does not ($m vs $h)" awk -v m="$m" -v h="$h" \
  'BEGIN { exit !(m == "nan" || m == "-nan" || m > 1.05 * h) }'

# ---- bad input: a joiner with another model ----
expect_fail "a joiner with another config is refused" "trains another model" \
  tr --swarm --run par --initial-peers "$DHT_ADDR" --dim 32 --steps 2 --batch 2 -o "$TMP/x.gguf"
finish

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
# Every process listens on an ephemeral port, every wait is bounded, and every
# process is killed and reaped on exit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
CORPUS=/usr/share/games/fortunes/computers
[ -f "$CORPUS" ] || { echo "SKIP: $CORPUS not found (Debian package fortunes; make deps installs it)"; exit 77; }
DIFF="python3 $(dirname "$0")/gguf_tensors.py"
SHAPE="--dim 64 --ffn 160 --layers 2 --heads 4 --seqlen 48 --lr 3e-3 --seed 5 --eval-windows 16 -t 1"
tr() { timeout 300 "$ENGINE" train --data "$CORPUS" $SHAPE "$@"; }
# peer NAME ARGS...: a swarm peer in the background (PEER_PID[NAME] is the engine itself,
# so a SIGKILL reaches it); RUN names the run.
peer() {
  local name=$1
  shift
  "$ENGINE" train --data "$CORPUS" $SHAPE --swarm --run "${RUN:-r}" --initial-peers "$DHT_ADDR" \
    --listen 127.0.0.1:0 --matchmaking-time 0.4 --progress-period 0.2 --averaging-timeout 10 --verbose "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PEER_PID[$name]=$!
  PIDS+=($!)
}
start_dht

# ---- exactness: one peer == one process ----
tr --steps 20 --batch 4 -o "$TMP/single.gguf" 2>"$TMP/single.err" || die "single-process run failed"
RUN=exact peer solo --steps 20 --batch 4 --target-batch 4 --data-seed 5 -o "$TMP/solo.gguf"
check "the lone peer completes" wait_peers solo
check "1 peer, target 4 == engine train --batch 4 (bit for bit)" $DIFF "$TMP/single.gguf" "$TMP/solo.gguf"
check "same loss at every step" cmp -s <(col "$TMP/single.csv" train_loss) <(col "$TMP/solo.csv" train_loss)

# ---- parity: 3 peers against one process at equal samples ----
STEPS=30
# Peer c accepts no connections (--client-mode: as behind a NAT): it sends and
# receives its parts through the others and reduces nothing.
for p in a b c; do
  extra=""
  [ $p = c ] && extra=--client-mode
  RUN=par peer $p --steps $STEPS --batch 2 --target-batch 12 --eval-every 10 $extra -o "$TMP/$p.gguf"
done
check "3 peers complete" wait_peers a b c
check "the progress is in the DHT (engine dht get par.progress)" \
  bash -c "'$ENGINE' dht get par.progress --initial-peers '$DHT_ADDR' 2>/dev/null | grep -q '\"epoch\":$STEPS'"
check "3 peers did $STEPS steps" test "$(col "$TMP/a.csv" step | tail -1)" = $STEPS
for p in b c; do
  check "peer $p: parameter checksum equal to peer a's after every step" \
    cmp -s <(col "$TMP/a.csv" params_xxh3) <(col "$TMP/$p.csv" params_xxh3)
done
check "the three final models are identical" $DIFF "$TMP/a.gguf" "$TMP/c.gguf"
# Each step's group total is what its members announced; the three peers' own counts
# add up to it at every step (no sample counted twice, none left out).
sums=$(paste -d' ' <(col "$TMP/a.csv" local_samples) <(col "$TMP/b.csv" local_samples) \
  <(col "$TMP/c.csv" local_samples) <(col "$TMP/a.csv" group_samples) | awk '$1 + $2 + $3 != $4' | wc -l)
check "every step's group total is the sum of the peers' own samples" test "$sums" -eq 0
short=$(col "$TMP/a.csv" group_samples | awk '$1 < 12' | wc -l)
check "every step used at least the target batch" test "$short" -eq 0
# The single-process reference sees as many samples, in as many steps.
total=$(col "$TMP/a.csv" group_samples | awk '{ s += $1 } END { print s }')
B=$(( (total + STEPS / 2) / STEPS ))
tr --steps $STEPS --batch $B --eval-every 10 -o "$TMP/ref.gguf" 2>"$TMP/ref.err" || die "reference run failed"
ref=$(last_eval "$TMP/ref.csv")
got=$(last_eval "$TMP/a.csv")
echo "# parity: $total samples in $STEPS steps; eval loss: 3 peers $got, one process (batch $B) $ref"
echo "# held-out loss by step (samples), one process | 3 peers:"
paste -d' ' <(awk -F, 'NR > 1 && $5 != "" { print $1, $2, $5 }' "$TMP/ref.csv") \
  <(awk -F, 'NR > 1 && $5 != "" { print $2, $5 }' "$TMP/a.csv") | sed 's/^/#   /'

check "3 peers within 3% of the single-process eval loss ($got vs $ref)" within "$got" "$ref" 0.03
"$ENGINE" train --plot "$TMP/parity.svg" --plot-logs "single=$TMP/ref.csv,swarm=$TMP/a.csv" 2>/dev/null
check "loss chart of both runs" grep -q "<polyline" "$TMP/parity.svg"

# ---- churn: one peer SIGKILLed mid-round, another mid-step, one restarted ----
STEPS=24
# (f16 gradients on the wire in this run.)
CH="--steps $STEPS --batch 2 --target-batch 12 --wire-dtype f16"
RUN=churn peer d $CH -o "$TMP/d.gguf"
RUN=churn peer e $CH --test-die round:4 -o "$TMP/e.gguf"
RUN=churn peer f $CH --test-die step:8 -o "$TMP/f.gguf"
wait_peers e
check "peer e was killed in its all-reduce" grep -q "SIGKILL 3 ms into the all-reduce of epoch 4" "$TMP/e.err"
wait_peers f
check "peer f was killed in the middle of a step" grep -q "SIGKILL in the middle of epoch 8" "$TMP/f.err"
RUN=churn peer f2 $CH -o "$TMP/f2.gguf"
check "the survivor and the restarted peer complete" wait_peers d f2
check "the restarted peer downloaded state" grep -q "state loaded: epoch" "$TMP/f2.err"
check "the survivor and the restarted peer end with the same parameters" $DIFF "$TMP/d.gguf" "$TMP/f2.gguf"
check "both did $STEPS steps" test "$(col "$TMP/d.csv" step | tail -1)$(col "$TMP/f2.csv" step | tail -1)" = $STEPS$STEPS
check "checksums agree from the restart on" cmp -s <(col "$TMP/f2.csv" params_xxh3) \
  <(col "$TMP/d.csv" params_xxh3 | tail -n "$(col "$TMP/f2.csv" params_xxh3 | wc -l)")
# No sample counted twice: what a peer computed is what it contributed plus what it
# threw away (gradients of an epoch the run had already left).
for p in d f2; do
  check "peer $p: samples computed = contributed + discarded" awk '/samples computed/ {
    for (i = 1; i <= NF; i++) { if ($i == "computed") c = $(i + 1); if ($i == "contributed") s = $(i + 1);
      if ($i == "discarded") d = $(i + 1) } } END { exit !(c != "" && c == s + d) }' "$TMP/$p.err"
done

# ---- byzantine: 4 peers, one sign-flipping ----
STEPS=24
byz() {  # byz TAG AGGREGATOR MODE
  local p mode
  for p in 1 2 3 4; do
    mode=none
    [ $p = 4 ] && mode=$3
    RUN=byz-$1 peer "$1$p" --steps $STEPS --batch 4 --target-batch 32 --aggregator $2 --byzantine $mode \
      -o "$TMP/$1$p.gguf"
  done
  wait_peers "${1}1" "${1}2" "${1}3" "${1}4"
}
check "honest run" byz honest centered-clip none
check "centered-clip run with a sign-flipping peer" byz clip centered-clip sign-flip
byz mean mean sign-flip
h=$(last_eval "$TMP/honest1.csv")
c=$(last_eval "$TMP/clip1.csv")
m=$(last_eval "$TMP/mean1.csv")
echo "# byzantine sign-flip: eval loss honest $h, centered-clip $c, mean ${m:-none}"
# 10%: the groups' make-up depends on timing (a group of two, one of them the liar,
# cannot be told apart by any aggregator), and the plain mean lands far beyond it.
echo "# group sizes seen by clip1 (count size):" $(awk '/: group of/ {print $6}' "$TMP/clip1.err" | sort | uniq -c)
check "centered-clip with a sign-flipping peer within 10% of the honest run ($c vs $h)" within "$c" "$h" 0.10
check "the plain mean with a sign-flipping peer does not ($m vs $h)" awk -v m="$m" -v h="$h" \
  'BEGIN { exit !(m == "" || m == "nan" || m == "-nan" || m > 1.5 * h) }'

# ---- a peer that lies about its epoch: the others do not follow it ----
check "a run with an epoch liar completes" byz lie centered-clip epoch-lie
# The honest peers stay on one trajectory: each one's parameters agree with another
# honest peer's after some step of the last six, or its final model is another honest
# peer's, or at the least it ends as well trained as another honest peer (final eval
# loss within 10%). Timing on a loaded machine decides the groups: two honest peers
# may average in different groups for the last steps (a group of two with the liar,
# whose gradients are honest), after which their parameters differ for good; and a
# peer starved of CPU falls behind, then downloads an honest peer's state at the
# last epoch and ends with it. Following the liar would mean loading its epoch,
# which the check after this one rules out.
same_trajectory() {  # same_trajectory P: honest peer P against the other honest ones
  local q
  for q in 1 2 3; do
    [ "$q" = "$1" ] && continue
    comm -12 <(grep -o 'xxh3 [0-9a-f]*' "$TMP/lie$1.err" | tail -6 | sort) \
             <(grep -o 'xxh3 [0-9a-f]*' "$TMP/lie$q.err" | tail -6 | sort) | grep -q xxh3 && return 0
    $DIFF "$TMP/lie$1.gguf" "$TMP/lie$q.gguf" >/dev/null 2>&1 && return 0
  done
  for q in 1 2 3; do
    [ "$q" = "$1" ] && continue
    within "$(last_eval "$TMP/lie$1.csv")" "$(last_eval "$TMP/lie$q.csv")" 0.10 && {
      echo "# peer $1 averaged apart from the other honest peers at the end; its eval loss is within 10% of peer $q's"
      return 0
    }
  done
  echo "peer $1's last steps:"; grep -E 'xxh3|state loaded' "$TMP/lie$1.err" | tail -3
  return 1
}
for p in 1 2 3; do
  check "with an epoch liar, honest peer $p stays on the honest trajectory" same_trajectory $p
done
# An honest peer may try once to download the liar's claimed epoch (while the
# records it sees tie, the higher epoch leads); the liar has no such state, is then
# distrusted, and no honest peer ever loads a state of the liar's epoch.
check "no honest peer took the liar's epoch" bash -c "! grep -q 'state loaded: epoch [0-9]\{4\}' '$TMP'/lie[123].err"
if grep -q 'run at epoch [0-9]\{4\}' "$TMP"/lie[123].err; then
  check "an honest peer that chased the liar distrusts it" grep -q 'has no state at it: ignoring its progress' \
    "$TMP"/lie[123].err
fi

# ---- bad input: a joiner with another model ----
# (against a run that is alive: a finished run's config expires from the DHT)
RUN=cfg peer cfg1 --steps 400 --batch 4 --target-batch 8 -o "$TMP/cfg1.gguf"
wait_for "$TMP/cfg1.err" "step 1/" 300 || echo "# (the config run did not start in 30 s)"
expect_fail "a joiner with another config is refused" "trains another model" \
  tr --swarm --run cfg --initial-peers "$DHT_ADDR" --dim 32 --steps 2 --batch 2 -o "$TMP/x.gguf"
check "nothing written by the refused joiner" test ! -e "$TMP/x.gguf"
kill -9 "${PEER_PID[cfg1]}" 2>/dev/null
expect_fail "--swarm with an unreachable DHT" "bootstrap" \
  tr --swarm --run par --initial-peers 127.0.0.1:1 --steps 2 --batch 2 -o "$TMP/x.gguf"
expect_fail "a bad --aggregator" "--aggregator" tr --swarm --aggregator median --steps 2 -o "$TMP/x.gguf"
expect_fail "swarm flags without --swarm" "--initial-peers needs --swarm" \
  tr --initial-peers "$DHT_ADDR" --steps 2 -o "$TMP/x.gguf"
expect_fail "a target batch that is not positive" "--target-batch must be positive" \
  tr --swarm --target-batch 0 --steps 2 -o "$TMP/x.gguf"
expect_fail "a run name that cannot be a DHT key" "--run is 1-64" tr --swarm --run 'a b' --steps 2 -o "$TMP/x.gguf"
finish

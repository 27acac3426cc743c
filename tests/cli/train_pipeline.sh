#!/usr/bin/env bash
# engine train --swarm --stages 2 (SWARM pipeline training) on 127.0.0.1:
#   parity     2 stages x 2 peers + 2 trainers from scratch reach single-process eval
#              loss at equal samples (within 3%); the peers of a stage have equal
#              parameter checksums after every step; stages count what trainers count
#   churn      stage peers SIGKILLed in a forward, in a backward and in averaging, a
#              trainer killed mid-step, a stage peer joining mid-run: the run completes,
#              the joiner downloads its stage and serves
#   rebalance  5 stage peers, 4 on stage 0 and a slow one (--throttle) on stage 1:
#              peers move to stage 1
#   byzantine  one stage peer of three sends -1000x gradients: CenteredClip stays
#              within 5% of the honest run
#   bad input  a joiner with another config is refused; stage peers answering NaN or
#              wrong-shaped activations are banned by the trainer, which completes
# Every process listens on an ephemeral port, every wait is bounded, and every
# process is killed and reaped on exit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
CORPUS=/usr/share/games/fortunes/computers
[ -f "$CORPUS" ] || { echo "SKIP: $CORPUS not found (Debian package fortunes; make deps installs it)"; exit 77; }
DIFF="python3 $(dirname "$0")/gguf_tensors.py"
SHAPE="--dim 64 --ffn 160 --layers 4 --heads 4 --seqlen 48 --lr 3e-3 --seed 5 --eval-windows 16 -t 1"
# role NAME ARGS...: a SWARM process in the background (RUN names the run).
role() {
  local name=$1
  shift
  "$ENGINE" train $SHAPE --swarm --stages 2 --run "${RUN:-r}" --initial-peers "$DHT_ADDR" --listen 127.0.0.1:0 \
    --matchmaking-time 0.4 --progress-period 0.2 --averaging-timeout 10 --rebalance-period 0 --verbose "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PEER_PID[$name]=$!
  PIDS+=($!)
}
stage() { local n=$1 k=$2; shift 2; role "$n" --stage "$k" "$@"; }
trainer() { local n=$1; shift; role "$n" --trainer --data "$CORPUS" "$@"; }
# exited_with NAME CODE: the process has exited with CODE (waits up to 240 s).
exited_with() {
  local p=${PEER_PID[$1]}
  for _ in $(seq 2400); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  wait "$p"
  [ $? -eq "$2" ]
}
# step_sums FILE: "step xxh3" of every stage step line of a stage peer's log.
step_sums() { sed -n 's/.*stage [0-9] step \([0-9]*\)\/.*xxh3 \([0-9a-f]*\)$/\1 \2/p' "$1"; }
# step_samples FILE: "step samples" of every step line (stage peers and trainers).
stage_samples() { sed -n 's/.*stage [0-9] step \([0-9]*\)\/[0-9]*  group [0-9]* (\([0-9]*\) samples.*/\1 \2/p' "$1"; }
trainer_samples() { sed -n 's/.*trainer step \([0-9]*\): group [0-9]* (\([0-9]*\) samples.*/\1 \2/p' "$1"; }

start_dht

# ---- parity: 2 x 2 + 2 against one process at equal samples ----
STEPS=30
"$ENGINE" train --data "$CORPUS" $SHAPE --steps $STEPS --batch 16 -o "$TMP/single.gguf" 2>"$TMP/single.err" ||
  die "single-process run failed"
RUN=par
stage s0a 0 --steps $STEPS --target-batch 16
stage s0b 0 --steps $STEPS --target-batch 16
stage s1a 1 --steps $STEPS --target-batch 16
# The fourth picks its stage itself: stage 1 has one peer, stage 0 two.
wait_for "$TMP/s1a.err" "stage 1 of 2" 300 && wait_for "$TMP/s0b.err" "stage 0 of 2" 300 && sleep 1.5
stage s1b auto --steps $STEPS --target-batch 16
trainer t1 --steps $STEPS --batch 4 --target-batch 16 -o "$TMP/pipe.gguf" --plot "$TMP/pipe.svg"
trainer t2 --steps $STEPS --batch 4 --target-batch 16
check "parity run: trainers and stage peers complete" wait_peers t1 t2 s0a s0b s1a s1b
check "the trainer wrote the whole model" test -s "$TMP/pipe.gguf"
check "the model opens in engine generate" "$ENGINE" generate -m "$TMP/pipe.gguf" -p "The " -n 8 --temp 0 -t 1
s=$(last_eval "$TMP/single.csv")
p=$(last_eval "$TMP/pipe.csv")
echo "# parity: eval loss single $s, pipeline $p (samples: single $(col "$TMP/single.csv" samples | tail -1), pipeline $(col "$TMP/pipe.csv" samples | tail -1))"
echo "# step samples eval_loss (single | pipeline):"
paste -d' ' <(awk -F, 'NR > 1 && $5 != "" { print "#  ", $1, $2, $5 }' "$TMP/single.csv") \
  <(awk -F, 'NR > 1 && $5 != "" { print "|", $1, $2, $5 }' "$TMP/pipe.csv")
check "pipeline eval loss within 3% of one process ($p vs $s)" within "$p" "$s" 0.03
"$ENGINE" train --plot "$TMP/parity.svg" --plot-logs "single=$TMP/single.csv,pipeline=$TMP/pipe.csv" 2>/dev/null
check "loss chart of both runs" grep -q "<svg" "$TMP/parity.svg"
for k in 0 1; do
  check "stage $k: both peers have the same checksum after every step" \
    bash -c "[ -n \"\$(cat <<<'$(step_sums "$TMP/s${k}a.err")')\" ] && diff <(echo '$(step_sums "$TMP/s${k}a.err")') <(echo '$(step_sums "$TMP/s${k}b.err")')"
  check "stage $k counts every step exactly the samples the trainers count" \
    diff <(stage_samples "$TMP/s${k}a.err") <(trainer_samples "$TMP/t1.err")
done
check "--stage auto took the stage with the least throughput" grep -q "stage auto: stage 1 has the least" "$TMP/s1b.err"
check "both stages took $STEPS steps" bash -c "grep -q 'stage 0 at step $STEPS' '$TMP/s0a.err' && grep -q 'stage 1 at step $STEPS' '$TMP/s1b.err'"

# ---- churn: kills in forward, backward, averaging; a trainer killed; a joiner ----
STEPS=24
RUN=churn
stage c0a 0 --steps $STEPS --target-batch 16 --test-die fwd:4
stage c0b 0 --steps $STEPS --target-batch 16 --test-die round:10
stage c0c 0 --steps $STEPS --target-batch 16
stage c1a 1 --steps $STEPS --target-batch 16 --test-die bwd:7
stage c1b 1 --steps $STEPS --target-batch 16
trainer ct1 --steps $STEPS --batch 4 --target-batch 16 -o "$TMP/churn.gguf"
trainer ct2 --steps $STEPS --batch 4 --target-batch 16 --test-die step:6
wait_for "$TMP/ct1.err" "step 12/$STEPS" 1200 || echo "# (the run did not reach step 12 in 120 s)"
stage c1c 1 --steps $STEPS --target-batch 16
check "stage peer killed in a forward" exited_with c0a 137
check "stage peer killed in a backward" exited_with c1a 137
check "stage peer killed in its averaging round" exited_with c0b 137
check "trainer killed mid-step" exited_with ct2 137
check "the run completes: the surviving trainer and stage peers" wait_peers ct1 c0c c1b c1c
check "the joiner downloaded its stage's state" grep -q "state loaded" "$TMP/c1c.err"
# The trainer routes each call to the earliest expected finish, so a joiner whose first
# measured call was slow may get few calls while the other peer idles; it must get some.
check "the joiner served requests" bash -c "grep -Eq 'stage peer done: stage 1 at step $STEPS, ([1-9][0-9]* forwards|[0-9]* forwards, [1-9][0-9]* backwards)' '$TMP/c1c.err'"
a=$(step_sums "$TMP/c1b.err" | tail -1)
b=$(step_sums "$TMP/c1c.err" | tail -1)
check "the joiner ends with the other stage-1 peer's parameters ($b vs $a)" test -n "$a" -a "$a" = "$b"
check "the surviving trainer wrote the model" test -s "$TMP/churn.gguf"
grep -h "trainer done" "$TMP/ct1.err" | sed 's/^/# /'

# ---- rebalancing: a slow stage attracts peers ----
STEPS=40
RUN=reb
for p in a b c d; do stage "r0$p" 0 --steps $STEPS --target-batch 16 --rebalance-period 1.5; done
stage r1a 1 --steps $STEPS --target-batch 16 --throttle 6 --rebalance-period 1.5
trainer rt --steps $STEPS --batch 4 --target-batch 16 --inflight 4
check "rebalancing run completes" wait_peers rt r0a r0b r0c r0d r1a
moved=$(grep -l "moving from stage 0 to stage 1" "$TMP"/r0?.err | wc -l)
echo "# peers that moved to the slow stage: $moved"
check "peers moved to the slow stage" test "$moved" -ge 1
check "stage 0 kept a peer" bash -c "grep -l 'stage peer done: stage 0' '$TMP'/r0?.err | grep -q ."

# ---- byzantine: one of three stage-0 peers flips its gradients ----
STEPS=24
byz() {  # byz TAG MODE
  RUN=byz-$1
  stage "$1s0a" 0 --steps $STEPS --target-batch 16
  stage "$1s0b" 0 --steps $STEPS --target-batch 16
  stage "$1s0c" 0 --steps $STEPS --target-batch 16 --byzantine $2
  stage "$1s1" 1 --steps $STEPS --target-batch 16
  trainer "$1t" --steps $STEPS --batch 4 --target-batch 16 --log "$TMP/$1.csv"
  wait_peers "$1t" "$1s0a" "$1s0b" "$1s0c" "$1s1"
}
check "honest run" byz honest none
check "run with a sign-flipping stage peer" byz flip sign-flip
h=$(last_eval "$TMP/honest.csv")
c=$(last_eval "$TMP/flip.csv")
echo "# byzantine sign-flip in stage 0: eval loss honest $h, centered-clip $c"
check "centered-clip with a sign-flipping stage peer within 5% of the honest run ($c vs $h)" within "$c" "$h" 0.05

# ---- bad input ----
RUN=bad
# (f32 activations, so that a NaN reaches the trainer as a NaN, not as an f16 infinity)
stage b0a 0 --steps 12 --target-batch 16 --wire-dtype f32
stage b0n 0 --steps 12 --target-batch 16 --wire-dtype f32 --byzantine-serve nan
stage b0s 0 --steps 12 --target-batch 16 --wire-dtype f32 --byzantine-serve shape
stage b1 1 --steps 12 --target-batch 16 --wire-dtype f32
trainer bt --steps 12 --batch 4 --target-batch 16 --wire-dtype f32
check "a trainer facing NaN and wrong-shaped replies completes" wait_peers bt
check "it banned the NaN peer" grep -q "non-finite" "$TMP/bt.err"
check "it banned the wrong-shaped peer" grep -q "malformed reply" "$TMP/bt.err"
expect_fail "a joiner with another model config is refused" "trains another model" \
  timeout 60 "$ENGINE" train --dim 32 --ffn 160 --layers 4 --heads 4 --seqlen 48 --lr 3e-3 --seed 5 -t 1 --swarm \
  --stages 2 --stage 0 --run bad --initial-peers "$DHT_ADDR" --listen 127.0.0.1:0 --steps 12 --target-batch 16 \
  --wire-dtype f32
for n in b0a b0n b0s b1; do kill -9 "${PEER_PID[$n]}" 2>/dev/null; done
expect_fail "--stage without --stages" "--stages N" "$ENGINE" train $SHAPE --swarm --stage 0
expect_fail "a stage out of range" "--stage is auto or a stage in 0..1" \
  timeout 60 "$ENGINE" train $SHAPE --swarm --stages 2 --stage 5 --initial-peers "$DHT_ADDR" --run other --steps 5
expect_fail "more stages than blocks" "the model has only 4 blocks" \
  "$ENGINE" train $SHAPE --swarm --stages 5 --stage 0 --initial-peers "$DHT_ADDR" --steps 5
expect_fail "both roles" "either a stage peer" "$ENGINE" train $SHAPE --swarm --stages 2 --stage 0 --trainer --data "$CORPUS"
expect_fail "a trainer without data" "--data is required" "$ENGINE" train $SHAPE --swarm --stages 2 --trainer
expect_fail "a bad --wire-dtype" "--wire-dtype is" "$ENGINE" train $SHAPE --swarm --stages 2 --stage 0 --wire-dtype q4
finish

#!/usr/bin/env bash
# engine finetune (local prompt tuning) and generate --adapter on stories260K:
# held-out loss goes down, the adapter and the CSV log are written, resume
# continues, bad input is refused with a clear error.
source "$(dirname "$0")/lib.sh"
need_shared
M="$SHARED/models/stories260K.gguf"
D="$SHARED/data/stories260K-calib.txt"

"$ENGINE" finetune -m "$M" --data "$D" --mode ptune --prefix 8 --steps 30 --batch 4 --seqlen 32 --lr 3e-2 \
  -t 2 -o "$TMP/pt.gguf" 2>"$TMP/ft.err"
check "finetune ptune exits 0" test $? -eq 0
check "adapter written" test -s "$TMP/pt.gguf"
check "progress shows step, loss, tok/s and ETA" grep -q "step 30/30  loss .* tok/s  ETA" "$TMP/ft.err"
check "CSV log: header + start + 30 steps" test "$(wc -l <"$TMP/pt.csv")" -eq 32
first=$(awk -F, 'NR==2 {print $3}' "$TMP/pt.csv")
last=$(awk -F, 'END {print $3}' "$TMP/pt.csv")
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'

out=$("$ENGINE" generate -m "$M" -p "Once upon a time" -n 20 --temp 0 --adapter "$TMP/pt.gguf" 2>/dev/null)
check "generate --adapter" grep -q "^Once upon a time" <<<"$out"
plain=$("$ENGINE" generate -m "$M" -p "Once upon a time" -n 60 --temp 0 2>/dev/null)
want=$'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily'
check "generate without --adapter unchanged" test "$plain" = "$want"

"$ENGINE" finetune -m "$M" --data "$D" --mode deep-ptune --prefix 4 --steps 4 --batch 2 --seqlen 16 \
  -o "$TMP/dp.gguf" --log "$TMP/dp.csv" 2>/dev/null
check "finetune deep-ptune" test -s "$TMP/dp.gguf"
"$ENGINE" finetune -m "$M" --data "$D" --steps 6 --batch 2 --seqlen 16 --resume "$TMP/dp.gguf" \
  -o "$TMP/dp.gguf" --log "$TMP/dp.csv" 2>"$TMP/resume.err"
check "resume continues from step 4" grep -q "steps 6 from 4" "$TMP/resume.err"
# 0 (held-out), 1..4, 4 (held-out on resume), 5, 6
check "resumed log appends" test "$(grep -c '^[0-9]' "$TMP/dp.csv")" -eq 8
"$ENGINE" generate -m "$M" -n 5 --adapter "$TMP/dp.gguf" >/dev/null 2>&1
check "generate --adapter deep-ptune" test $? -eq 0

# LoRA on q,v: held-out loss goes down too, and generate runs with the merged weights.
"$ENGINE" finetune -m "$M" --data "$D" --mode lora --rank 4 --alpha 8 --steps 30 --batch 4 --seqlen 32 --lr 1e-2 \
  -o "$TMP/lora.gguf" 2>"$TMP/lora.err"
check "finetune lora exits 0" test $? -eq 0
first=$(awk -F, 'NR==2 {print $3}' "$TMP/lora.csv")
last=$(awk -F, 'END {print $3}' "$TMP/lora.csv")
check "lora: held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'
"$ENGINE" generate -m "$M" -p "Once upon a time" -n 10 --temp 0 --adapter "$TMP/lora.gguf" >/dev/null 2>&1
check "generate --adapter lora" test $? -eq 0
# Through a SpQR base (quantized here, in a fraction of a second): the frozen weights
# are read packed in the backward pass.
"$ENGINE" quantize -m "$M" -o "$TMP/spqr.gguf" --calib "$D" --nsamples 8 --seqlen 64 >/dev/null 2>&1
"$ENGINE" finetune -m "$TMP/spqr.gguf" --data "$D" --mode lora --steps 10 --batch 2 --seqlen 32 \
  -o "$TMP/spqr-lora.gguf" 2>/dev/null
check "finetune lora on a SpQR model" test -s "$TMP/spqr-lora.gguf"
check "  (whose embedding is Q4_0, head Q8_0)" bash -c "'$ENGINE' info -m '$TMP/spqr.gguf' | grep -q '^embedding: *Q4_0' && '$ENGINE' info -m '$TMP/spqr.gguf' | grep -q '^head: *Q8_0'"
"$ENGINE" generate -m "$TMP/spqr.gguf" -n 8 --temp 0 --adapter "$TMP/spqr-lora.gguf" >/dev/null 2>&1
check "generate --adapter on a SpQR model" test $? -eq 0
expect_fail "bad lora target" "unknown LoRA target" "$ENGINE" finetune -m "$M" --data "$D" --mode lora --lora-targets q,x -o "$TMP/x.gguf"

expect_fail "--swarm without peers" "needs --initial-peers" "$ENGINE" finetune -m "$M" --data "$D" --swarm -o "$TMP/x.gguf"
expect_fail "unknown mode" "unknown adapter mode" "$ENGINE" finetune -m "$M" --data "$D" --mode foo -o "$TMP/x.gguf"
printf 'tiny' >"$TMP/tiny.txt"
expect_fail "text too short" "fewer than --seqlen" "$ENGINE" finetune -m "$M" --data "$TMP/tiny.txt" -o "$TMP/x.gguf"
expect_fail "adapter that is not one" "not an adapter file" "$ENGINE" generate -m "$M" -n 2 --adapter "$M"
expect_fail "missing data file" "nope.txt" "$ENGINE" finetune -m "$M" --data "$TMP/nope.txt" -o "$TMP/x.gguf"
check "failed runs wrote no adapter" test ! -e "$TMP/x.gguf"
finish

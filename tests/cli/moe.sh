#!/usr/bin/env bash
# Mixture-of-experts (Mixtral layout) end to end on ../shared/models/random-mixtral.gguf
# (2 blocks, 4 experts, top 2): info, greedy == llama.cpp's, logits and perplexity;
# the same greedy tokens and deep-ptune loss curve through a 2-server swarm (and
# random-qwen2's greedy tokens); Q8_0 and
# SpQR versions that generate; LoRA fine-tuning through the experts; full-parameter
# training (engine train) from the file and from scratch with --experts; init-model
# --experts; clear errors.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/random-mixtral.gguf
[ -f "$MODEL" ] || { echo "SKIP: $MODEL not found"; exit 77; }
CAL=$SHARED/data/stories260K-calib.txt
gen() { timeout 60 "$ENGINE" generate --temp 0 --ids -t 1 -p "Once upon a time" "$@" 2>/dev/null; }
WANT=$(sed -n 's/^Once upon a time\t//p' "$SHARED/oracle/random-mixtral/greedy.tsv")

check "info shows the experts" bash -c "'$ENGINE' info -m '$MODEL' | grep -q 'experts: *4 per block, 2 used per token'"
LOCAL=$(gen -m "$MODEL" -n 48)
check "greedy == llama.cpp's (48 tokens)" [ "$LOCAL" = "$WANT" ]
"$ENGINE" logits -m "$MODEL" -p "Once upon a time" -o "$TMP/l.f32" 2>/dev/null
check "logits" test "$(stat -c %s "$TMP/l.f32" 2>/dev/null)" -eq $((5 * 512 * 4))
head -c 3000 "$SHARED/data/stories260K-eval.txt" >"$TMP/eval.txt"
j=$("$ENGINE" perplexity -m "$MODEL" -f "$TMP/eval.txt" -c 64 --json 2>/dev/null)
check "perplexity runs (random weights: near the vocabulary size)" python3 -c \
  "import json,sys; p=json.loads(sys.argv[1])['ppl']; sys.exit(0 if 50 < p < 5000 else 1)" "$j"

# The swarm: blocks 0:1 and 1:2 on two servers.
start_dht
start_server a --blocks 0:1 --throughput 50
start_server b --blocks 1:2 --throughput 50
OUT=$(gen -m "$MODEL" -n 48 --swarm --initial-peers "$DHT_ADDR")
check "swarm (0:1 -> 1:2) greedy == local" [ "$OUT" = "$LOCAL" ]
CHAT_IN=$'Once upon a time\nThe cat'
LOCALCHAT=$(timeout 60 "$ENGINE" chat -m "$MODEL" --temp 0 -n 12 -t 1 <<<"$CHAT_IN" 2>/dev/null)
OUT=$(timeout 60 "$ENGINE" chat -m "$MODEL" --temp 0 -n 12 -t 1 --initial-peers "$DHT_ADDR" <<<"$CHAT_IN" 2>/dev/null)
check "chat through the swarm == local chat" [ -n "$OUT" ] && [ "$OUT" = "$LOCALCHAT" ]
# Deep prompt tuning through the swarm: the servers' backward runs through the
# experts and the router; it follows the local loss curve.
dp() { timeout 60 "$ENGINE" finetune -m "$MODEL" --data "$CAL" --mode deep-ptune --prefix 4 --steps 6 --batch 2 \
  --seqlen 32 --lr 3e-2 --seed 7 -t 1 "$@" 2>/dev/null; }
dp -o "$TMP/local-dp.gguf"
dp --swarm --initial-peers "$DHT_ADDR" -o "$TMP/swarm-dp.gguf"
check "swarm deep-ptune exits 0" test $? -eq 0
check "swarm deep-ptune follows the local loss curve" awk -F, 'NR == FNR { a[FNR] = $2; next }
  { d = a[FNR] - $2; if (d > 1e-4 || d < -1e-4) bad = 1; n++ } END { exit bad || n != 8 }' \
  "$TMP/local-dp.csv" "$TMP/swarm-dp.csv"
QWEN=$SHARED/models/random-qwen2.gguf
QWANT=$(sed -n 's/^Once upon a time\t//p' "$SHARED/oracle/random-qwen2/greedy.tsv")
MODEL=$QWEN start_server qa --blocks 0:1 --throughput 50
MODEL=$QWEN start_server qb --blocks 1:2 --throughput 50
OUT=$(gen -m "$QWEN" -n 48 --swarm --initial-peers "$DHT_ADDR")
check "qwen2 swarm greedy == llama.cpp's" [ "$OUT" = "$QWANT" ]

# Weight formats: Q8_0 (the router stays F32) and SpQR per expert.
"$ENGINE" convert -m "$MODEL" -o "$TMP/q8.gguf" --type q8_0 2>/dev/null
check "q8_0: router kept F32" bash -c "'$ENGINE' info -m '$TMP/q8.gguf' | grep -q 'blk.0.ffn_gate_inp.weight *F32'"
check "q8_0: experts Q8_0" bash -c "'$ENGINE' info -m '$TMP/q8.gguf' | grep -q 'blk.0.ffn_up_exps.weight *Q8_0'"
OUT=$(gen -m "$TMP/q8.gguf" -n 48)
check "q8_0 generates 48 tokens" [ "$(wc -w <<<"$OUT")" -eq 48 ]
"$ENGINE" quantize -m "$MODEL" -o "$TMP/spqr.gguf" --calib "$CAL" --nsamples 8 --seqlen 64 >/dev/null 2>&1
check "quantize spqr w3" test $? -eq 0
check "spqr: one layer per expert" bash -c "'$ENGINE' info -m '$TMP/spqr.gguf' | grep -q 'blk.1.ffn_down_exps.3 '"
OUT=$(gen -m "$TMP/spqr.gguf" -n 48)
check "spqr generates 48 tokens" [ "$(wc -w <<<"$OUT")" -eq 48 ]
check "spqr keeps the first token" [ "$(cut -d' ' -f1 <<<"$OUT")" = "$(cut -d' ' -f1 <<<"$LOCAL")" ]

# LoRA on q,v: gradients flow back through the experts and the router.
"$ENGINE" finetune -m "$MODEL" --data "$CAL" --mode lora --rank 4 --steps 12 --batch 2 --seqlen 32 --lr 1e-2 \
  -o "$TMP/lora.gguf" --log "$TMP/lora.csv" -t 1 2>"$TMP/lora.err"
check "finetune lora exits 0" test $? -eq 0
first=$(awk -F, 'NR==2 {print $3}' "$TMP/lora.csv")
last=$(awk -F, 'END {print $3}' "$TMP/lora.csv")
check "lora: held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'
expect_fail "lora on the experts: clear error" "mixture-of-experts" "$ENGINE" finetune -m "$MODEL" --data "$CAL" \
  --mode lora --lora-targets q,gate --steps 1 --batch 1 --seqlen 16 -o "$TMP/x.gguf"

# Full-parameter training: every weight, the router and the experts included.
TR=(--data "$CAL" --batch 4 --seqlen 32 --eval-every 4 --eval-windows 8 -t 2)
"$ENGINE" train "${TR[@]}" --init-from "$MODEL" --steps 8 -o "$TMP/tr.gguf" 2>/dev/null
check "train --init-from a mixture exits 0" test $? -eq 0
first=$(awk -F, 'NR == 2 {print $5}' "$TMP/tr.csv")
last=$(awk -F, 'END {print $5}' "$TMP/tr.csv")
check "train: held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }'
check "trained mixture: info shows its experts" \
  bash -c "'$ENGINE' info -m '$TMP/tr.gguf' | grep -q 'experts: *4 per block, 2 used per token'"
check "trained mixture generates 8 tokens" [ "$(gen -m "$TMP/tr.gguf" -n 8 | wc -w)" -eq 8 ]
# From scratch with --experts, and --resume exact through the state's expert counts.
S=("${TR[@]}" --dim 32 --ffn 32 --layers 1 --heads 2 --experts 4 --experts-used 2 --steps 8)
"$ENGINE" train "${S[@]}" -o "$TMP/s-full.gguf" 2>/dev/null
"$ENGINE" train "${S[@]}" -o "$TMP/s-half.gguf" --stop-after 4 2>/dev/null
"$ENGINE" train "${S[@]}" -o "$TMP/s-half.gguf" --resume "$TMP/s-half.gguf" 2>/dev/null
check "train --experts from scratch: resumed = uninterrupted (bytes)" cmp -s "$TMP/s-full.gguf" "$TMP/s-half.gguf"
check "train --experts: file has 4 experts" \
  bash -c "'$ENGINE' info -m '$TMP/s-full.gguf' | grep -q 'experts: *4 per block, 2 used per token'"
expect_fail "train: more used experts than experts" "--experts-used 5 must be in 1..4" "$ENGINE" train \
  "${TR[@]}" --dim 32 --layers 1 --heads 2 --experts 4 --experts-used 5 --steps 1 -o "$TMP/x.gguf"

# init-model --experts: a Mixtral-shaped file engine runs.
"$ENGINE" init-model --dim 64 --ffn 64 --layers 1 --heads 4 --experts 4 --experts-used 2 --type q8_0 \
  -o "$TMP/init.gguf" 2>/dev/null
check "init-model --experts" test $? -eq 0
check "init-model file generates" [ "$(gen -m "$TMP/init.gguf" -n 8 | wc -w)" -eq 8 ]
expect_fail "init-model: more used experts than experts" "--experts-used 5 must be in 1..4" \
  "$ENGINE" init-model --dim 64 --layers 1 --heads 4 --experts 4 --experts-used 5 -o "$TMP/x.gguf"
finish

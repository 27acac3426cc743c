#!/usr/bin/env bash
# engine train: a tiny Llama trained from scratch on fortunes (byte vocabulary):
# progress lines, held-out loss goes down, CSV log and SVG chart, the model runs in
# generate / info / quantize, --resume is bit-exact against an uninterrupted run,
# folders of text, and bad input is refused without touching an existing output.
source "$(dirname "$0")/lib.sh"
F=/usr/share/games/fortunes/fortunes
if [ ! -f "$F" ]; then
  echo "SKIP: no corpus at $F (apt-get install fortunes)"
  exit 77
fi
# A model small enough that 40 steps take a few seconds on 2 cores.
TINY=(--dim 64 --layers 2 --heads 2 --batch 4 --seqlen 64 -t 2)

"$ENGINE" train --data "$F" "${TINY[@]}" --steps 40 --eval-every 10 -o "$TMP/m.gguf" --plot "$TMP/m.svg" 2>"$TMP/m.err"
check "train exits 0" test $? -eq 0
check "model and state written" test -s "$TMP/m.gguf" -a -s "$TMP/m.gguf.state"
check "progress line: step, loss, lr, |g|, tok/s, ETA" \
  grep -Eq '^train: step 40/40  loss [0-9.]+  lr [0-9.]+e[-+][0-9]+  \|g\| [0-9.]+  [0-9]+ tok/s  ETA [0-9]+:[0-9]{2}$' "$TMP/m.err"
check "eval lines" grep -Eq '^train: step 10/40  eval loss [0-9.]+$' "$TMP/m.err"
check "summary" grep -q "^train: done: step 40, 160 samples" "$TMP/m.err"
check "CSV header" test "$(head -1 "$TMP/m.csv")" = "step,samples,tokens,train_loss,eval_loss,lr,grad_norm,tokens_per_s,elapsed_s"
check "CSV: the start evaluation + 40 steps" test "$(grep -c '^[0-9]' "$TMP/m.csv")" -eq 41
check "CSV: 5 evaluations (0, 10, 20, 30, 40)" test "$(awk -F, 'NR > 1 && $5 != ""' "$TMP/m.csv" | wc -l)" -eq 5
first=$(awk -F, 'NR == 2 {print $5}' "$TMP/m.csv")
last=$(awk -F, 'END {print $5}' "$TMP/m.csv")
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }'
check "SVG chart" grep -q "<svg" "$TMP/m.svg"
check "SVG has the train and eval curves" test "$(grep -c "<polyline" "$TMP/m.svg")" -eq 2
check "SVG ends" grep -q "</svg>" "$TMP/m.svg"

out=$("$ENGINE" generate -m "$TMP/m.gguf" -p "The " -n 10 --temp 0 2>/dev/null)
check "generate runs on the trained model" grep -q "^The" <<<"$out"
info=$("$ENGINE" info -m "$TMP/m.gguf" 2>&1)
check "info reads it" grep -q "vocab 260, dim 64" <<<"$info"
check "info shows the training step" grep -q "train.step .*40" <<<"$info"
"$ENGINE" quantize -m "$TMP/m.gguf" -o "$TMP/q.gguf" --calib "$F" --nsamples 8 --seqlen 64 >/dev/null 2>"$TMP/q.err"
check "quantize (SpQR) the trained model" test $? -eq 0 -a -s "$TMP/q.gguf"
"$ENGINE" generate -m "$TMP/q.gguf" -p "The " -n 10 >/dev/null 2>&1
check "generate on the quantized model" test $? -eq 0
reply=$(printf 'The computer\n' | "$ENGINE" chat -m "$TMP/m.gguf" -n 8 --temp 0 2>/dev/null)
check "chat on the trained model" test -n "$reply"

# Resume: 10 steps, then on to 20, equals 20 steps in one go (f32 and f16 outputs).
R=(--data "$F" "${TINY[@]}" --steps 20 --eval-every 5)
for type in f32 f16; do
  "$ENGINE" train "${R[@]}" --type $type -o "$TMP/full-$type.gguf" 2>/dev/null
  "$ENGINE" train "${R[@]}" --type $type -o "$TMP/half-$type.gguf" --stop-after 10 2>"$TMP/half.err"
  check "$type: --stop-after 10 stops at step 10" grep -q "^train: done: step 10," "$TMP/half.err"
  "$ENGINE" train "${R[@]}" --type $type -o "$TMP/half-$type.gguf" --resume "$TMP/half-$type.gguf" 2>"$TMP/res.err"
  check "$type: resume exits 0" test $? -eq 0
  check "$type: resume says where it starts" grep -q "resumed at step 10" "$TMP/res.err"
  check "$type: resumed model = uninterrupted model (bytes)" cmp -s "$TMP/full-$type.gguf" "$TMP/half-$type.gguf"
  check "$type: resumed state = uninterrupted state (bytes)" cmp -s "$TMP/full-$type.gguf.state" "$TMP/half-$type.gguf.state"
done
check "resumed log: rows 0..20 once each" test "$(cut -d, -f1 "$TMP/half-f32.csv" | grep -c '^[0-9]')" -eq 21
check "resumed log = uninterrupted log in losses" \
  test "$(cut -d, -f1-5 "$TMP/half-f32.csv")" = "$(cut -d, -f1-5 "$TMP/full-f32.csv")"
"$ENGINE" train --plot "$TMP/cmp.svg" --plot-logs "full=$TMP/full-f32.csv,resumed=$TMP/half-f32.csv" 2>/dev/null
check "--plot-logs draws two logs (4 curves)" test "$(grep -c "<polyline" "$TMP/cmp.svg")" -eq 4

# --init-from a model (its shape and tokenizer), and a GGUF tokenizer when the shared models are there.
"$ENGINE" train --data "$F" --init-from "$TMP/m.gguf" --batch 2 --seqlen 32 --steps 2 -t 2 -o "$TMP/init.gguf" 2>/dev/null
check "--init-from" test $? -eq 0 -a -s "$TMP/init.gguf"
if [ -n "$SHARED" ] && [ -f "$SHARED/models/stories260K.gguf" ]; then
  "$ENGINE" train --data "$F" --vocab "$SHARED/models/stories260K.gguf" "${TINY[@]}" --steps 2 -o "$TMP/v.gguf" 2>/dev/null
  check "--vocab GGUF: the model has its 512 tokens" grep -q "vocab 512" <<<"$("$ENGINE" info -m "$TMP/v.gguf" 2>&1)"
fi

# A folder: text files read in path order (recursively), binary files skipped with a note.
mkdir -p "$TMP/corpus/sub" "$TMP/bin"
cp "$F" "$TMP/corpus/a.txt"
head -c 3000 "$F" >"$TMP/corpus/sub/b.txt"
printf 'bin\0ary' >"$TMP/corpus/c.bin"
printf 'only\0binary' >"$TMP/bin/x"
"$ENGINE" train --data "$TMP/corpus" "${TINY[@]}" --steps 2 -o "$TMP/dir.gguf" 2>"$TMP/dir.err"
check "folder corpus trains" test $? -eq 0
check "folder corpus: binary file skipped with a note" grep -q "skipping .*c.bin" "$TMP/dir.err"

# Bad input: exit 1 with a message naming the problem; an existing output survives.
cp "$TMP/m.gguf" "$TMP/keep.gguf"
cp "$TMP/m.gguf.state" "$TMP/keep.state"
K=(-o "$TMP/m.gguf" -t 2)
expect_fail "missing corpus" "nope.txt: no such file" "$ENGINE" train --data "$TMP/nope.txt" "${K[@]}"
: >"$TMP/empty.txt"
expect_fail "empty corpus" "empty.txt: the corpus is empty" "$ENGINE" train --data "$TMP/empty.txt" "${K[@]}"
mkdir -p "$TMP/none"
expect_fail "folder without text" "no text in the folder" "$ENGINE" train --data "$TMP/bin" "${K[@]}"
expect_fail "empty folder" "no text in the folder" "$ENGINE" train --data "$TMP/none" "${K[@]}"
printf 'tiny text' >"$TMP/tiny.txt"
expect_fail "corpus shorter than --seqlen" "fewer than --seqlen" "$ENGINE" train --data "$TMP/tiny.txt" "${K[@]}"
expect_fail "--resume with another --dim" "--dim 32 was given" \
  "$ENGINE" train --data "$F" --resume "$TMP/m.gguf" --dim 32 --steps 50 "${K[@]}"
expect_fail "--resume past --steps" "already taken 40 steps" "$ENGINE" train --data "$F" --resume "$TMP/m.gguf" --steps 40 "${K[@]}"
expect_fail "--resume of a model without state" "not a training checkpoint" \
  "$ENGINE" train --data "$F" --resume "$TMP/q.gguf" --steps 50 "${K[@]}"
expect_fail "bad --type" "unknown --type 'q4'" "$ENGINE" train --data "$F" --type q4 "${K[@]}"
expect_fail "bad --steps" "--steps and --batch must be > 0" "$ENGINE" train --data "$F" --steps 0 "${K[@]}"
expect_fail "bad --heldout" "--heldout must be in" "$ENGINE" train --data "$F" --heldout 2 "${K[@]}"
expect_fail "bad --dim/--heads" "--dim must be a multiple of --heads" "$ENGINE" train --data "$F" --dim 60 --heads 7 "${K[@]}"
expect_fail "--seqlen past --ctx" "exceeds the model's context" "$ENGINE" train --data "$F" --ctx 32 --seqlen 64 "${K[@]}"
expect_fail "no output" "-o/--output is required" "$ENGINE" train --data "$F"
check "failed runs left the existing model alone" cmp -s "$TMP/m.gguf" "$TMP/keep.gguf"
check "failed runs left the existing state alone" cmp -s "$TMP/m.gguf.state" "$TMP/keep.state"
"$ENGINE" train --help >"$TMP/help.txt"
check "--help lists the flags" grep -q -- "--resume CKPT.gguf" "$TMP/help.txt"
finish

#!/usr/bin/env bash
# Every command prints --help; bad input gets a clear error and exit code 1;
# init-model writes a model that info and generate read back.
source "$(dirname "$0")/lib.sh"

check "engine --help lists commands" bash -c "'$ENGINE' --help | grep -q generate"
for c in generate chat tokenize logits perplexity bench init-model info convert; do
  check "$c --help" bash -c "'$ENGINE' $c --help | grep -q 'usage: engine $c'"
done
expect_fail "unknown command" "unknown command" "$ENGINE" frobnicate
expect_fail "unknown option" "unknown option '--bogus'" "$ENGINE" info --bogus
expect_fail "missing model" "missing required option" "$ENGINE" generate
expect_fail "bad number" "invalid value '12x'" "$ENGINE" generate -m x -n 12x
expect_fail "missing file" "cannot open" "$ENGINE" info -m "$TMP/nope.gguf"

# Malformed files: a clear error naming the file, exit 1, no crash.
printf 'GGUF' >"$TMP/trunc.gguf"
expect_fail "truncated GGUF" "error: $TMP/trunc.gguf: file is truncated" "$ENGINE" info -m "$TMP/trunc.gguf"
printf 'NOPE0000000000000000000000000000' >"$TMP/magic.gguf"
expect_fail "bad magic" "bad magic" "$ENGINE" info -m "$TMP/magic.gguf"
head -c 5000 /dev/urandom >"$TMP/random.gguf"
expect_fail "random bytes" "error: $TMP/random.gguf" "$ENGINE" generate -m "$TMP/random.gguf" -n 1

# init-model → info → generate, in every weight type.
for t in f32 f16 bf16 q8_0; do
  m="$TMP/tiny-$t.gguf"
  check "init-model $t" "$ENGINE" init-model --dim 64 --ffn 160 --layers 2 --heads 4 --kv-heads 2 --vocab 320 --type $t -o "$m"
  check "info $t" bash -c "'$ENGINE' info -m '$m' | grep -q 'vocab 320, dim 64, ffn 160, layers 2'"
  check "info --json $t" bash -c "'$ENGINE' info -m '$m' --json | grep -q '\"architecture\":\"llama\"'"
  out=$("$ENGINE" generate -m "$m" -p "hello" -n 8 --temp 0 --ids 2>/dev/null)
  check "generate $t gives 8 ids" test "$(wc -w <<<"$out")" -eq 8
done
# Determinism: the same seed gives the same file.
"$ENGINE" init-model --dim 64 --layers 1 --heads 4 --vocab 320 --seed 5 -o "$TMP/a.gguf" 2>/dev/null
"$ENGINE" init-model --dim 64 --layers 1 --heads 4 --vocab 320 --seed 5 -t 1 -o "$TMP/b.gguf" 2>/dev/null
check "init-model is deterministic" cmp -s "$TMP/a.gguf" "$TMP/b.gguf"
check "no temp file left" test ! -e "$TMP/a.gguf.tmp"
# A model written by init-model reloads identically: rewriting it through the
# reader and writer (convert to its own type) gives the same bytes.
"$ENGINE" init-model --dim 64 --layers 2 --heads 4 --vocab 320 --type f32 -o "$TMP/f32.gguf" 2>/dev/null
"$ENGINE" convert -m "$TMP/f32.gguf" --type f32 -o "$TMP/f32-again.gguf" 2>/dev/null
check "write -> read -> write is byte-identical" cmp -s "$TMP/f32.gguf" "$TMP/f32-again.gguf"
"$ENGINE" convert -m "$TMP/f32.gguf" --type q8_0 -o "$TMP/q8.gguf" 2>/dev/null
check "convert to q8_0" bash -c "'$ENGINE' info -m '$TMP/q8.gguf' | grep -q 'Q8_0'"
expect_fail "convert bad type" "unknown --type" "$ENGINE" convert -m "$TMP/f32.gguf" --type q3 -o "$TMP/x.gguf"
expect_fail "init-model bad type" "unknown --type" "$ENGINE" init-model --type q4 -o "$TMP/x.gguf"
expect_fail "init-model bad heads" "multiple of --heads" "$ENGINE" init-model --dim 100 --heads 3 -o "$TMP/x.gguf"
# A vocab-only file is not a model.
if [ -n "$SHARED" ] && [ -f "$SHARED/models/vocab/ggml-vocab-gpt-2.gguf" ]; then
  expect_fail "vocab-only file" "not a model file" "$ENGINE" generate -m "$SHARED/models/vocab/ggml-vocab-gpt-2.gguf"
fi
finish

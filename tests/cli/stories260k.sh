#!/usr/bin/env bash
# The real model through the command line: tokenization, greedy generation and
# perplexity against ../shared/models/SOURCES.md and llama.cpp.
source "$(dirname "$0")/lib.sh"
need_shared
M="$SHARED/models/stories260K.gguf"

tok() { "$ENGINE" tokenize -m "$M" -p "$1"; }
check "tokenize 'Once upon a time'" test "$(tok 'Once upon a time')" = "1 403 407 261 378"
check "tokenize 18 tokens" test "$(tok 'I believe the meaning of life is')" = "1 359 329 421 417 411 360 265 284 411 303 299 373 397 431 411 410 293"
check "tokenize á" test "$(tok 'á')" = "1 410 198 164"
check "tokenize --no-bos" test "$("$ENGINE" tokenize -m "$M" -p 'Once upon a time' --no-bos)" = "403 407 261 378"
printf 'Once upon a time\n' >"$TMP/p.txt"
check "tokenize -f keeps the newline" test "$("$ENGINE" tokenize -m "$M" -f "$TMP/p.txt")" = "1 403 407 261 378 13"

want="403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310 439 419 357 336 432 313 438 310 432 278 316 439 419 298 414 267 265 282 295 433 426 436 317 286 296 418 269 279 292 416 439 413 409 416 327 263 415 294 267 400 426 338 336 432 313 442 391 267 337 335 364 420 268 388 432 398 359 280 303 439 413 272 417 264 312 426 436 13 438 310 286 296 418 269 279 292 416 439 413 409 416 327 263 415 294 267 400 426 338 336 432 313 442 439 423 262 304 420 422 432 317 426 359 279 292 416 439 413 409 416 327 263 415 294 267 400 426 436 13 438 310 279 292 416 439 413 391 267 281 421 427 311 357 432 384 358 336 432 313 442 439 423 262 304 420 422 432 357 426 359 279 292 416 439 413 409 416 327 263 415 294 267 400 426 436 320 285 357 336 432 313 455 289 439 413 263 304 420 422 432 317 426 410 448 411 280 303 281 421 427 364"
got=$("$ENGINE" generate -m "$M" -n 255 --temp 0 --ids 2>/dev/null)
check "greedy from BOS: 255 ids" test "$got" = "$want"

got=$("$ENGINE" generate -m "$M" -p "Once upon a time" -n 60 --temp 0 2>/dev/null)
want=$'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily'
check "greedy 'Once upon a time'" test "$got" = "$want"
got=$("$ENGINE" generate -m "$M" -p "One day, Lily met a Shoggoth" -n 50 --temp 0 2>/dev/null)
want='One day, Lily met a Shoggoth named Sam. Sam was very excited to see what was inside. He wanted to show his friends the shop. Sam said, "Let'"'"
check "greedy Shoggoth prompt" test "$got" = "$want"

# Sampling is reproducible for a seed.
a=$("$ENGINE" generate -m "$M" -n 40 --temp 1 --top-p 0.9 --seed 42 --ids 2>/dev/null)
b=$("$ENGINE" generate -m "$M" -n 40 --temp 1 --top-p 0.9 --seed 42 --ids 2>/dev/null)
check "seeded sampling repeats" test "$a" = "$b"

# logits: one row of 512 floats per prompt token (16 tokens).
"$ENGINE" logits -m "$M" -p "Once upon a time, there was a little girl named Lily." -o "$TMP/l.f32" 2>/dev/null
check "logits file size" test "$(stat -c %s "$TMP/l.f32")" -eq $((16 * 512 * 4))
check "logits match the oracle" python3 - "$TMP/l.f32" "$SHARED/oracle/stories260K/logits1.f32" <<'PY'
import struct, sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
x = struct.unpack('<%df' % (len(a) // 4), a); y = struct.unpack('<%df' % (len(b) // 4), b)
# Within llama.cpp's own f16 KV-cache rounding (see tests/unit/models/test_llama_oracle.cpp).
sys.exit(0 if len(x) == len(y) and max(abs(p - q) for p, q in zip(x, y)) <= 5e-3 else 1)
PY

ppl=$("$ENGINE" perplexity -m "$M" -f "$SHARED/data/stories260K-eval.txt" -c 128 --json 2>/dev/null)
echo "perplexity: $ppl"
check "perplexity 4.6059 +/- 0.002" python3 -c "import json,sys; p=json.loads(sys.argv[1])['ppl']; sys.exit(0 if abs(p-4.6059)<=0.002 else 1)" "$ppl"
expect_fail "perplexity on a short file" "needs at least" "$ENGINE" perplexity -m "$M" -f "$TMP/p.txt" -c 128

# chat: plain continuation (stories260K has no template).
out=$(printf 'Once upon a time\n' | "$ENGINE" chat -m "$M" --temp 0 -n 20 2>/dev/null)
check "chat continues the text" grep -q "there was a little girl" <<<"$out"
finish

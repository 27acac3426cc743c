#!/usr/bin/env bash
# engine quantize end to end on stories260K: a SpQR model that every command
# reads, close to F32 in perplexity, and clear errors on bad input.
source "$(dirname "$0")/lib.sh"
need_shared
M="$SHARED/models/stories260K.gguf"
CAL="$SHARED/data/stories260K-calib.txt"
EVAL="$SHARED/data/stories260K-eval.txt"
Q="$TMP/spqr-w3.gguf"

check "quantize spqr w3" "$ENGINE" quantize -m "$M" -o "$Q" --calib "$CAL" --nsamples 32 --seqlen 256 --json
check "no temp file left" test ! -e "$Q.tmp"
check "info shows SpQR bits" bash -c "'$ENGINE' info -m '$Q' | grep -q 'SpQR layers:   35'"
bits=$("$ENGINE" info -m "$Q" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['spqr_bits_per_param'])")
echo "SpQR bits per parameter: $bits"
check "about 3.6-4.5 bits" python3 -c "import sys; b=float(sys.argv[1]); sys.exit(0 if 3.6 <= b <= 4.5 else 1)" "$bits"

out=$("$ENGINE" generate -m "$Q" -p "Once upon a time" -n 20 --temp 0 2>/dev/null)
check "generate on SpQR" grep -q "^Once upon a time" <<<"$out"
"$ENGINE" logits -m "$Q" -p "Once upon a time" -o "$TMP/q.f32" 2>/dev/null
check "logits on SpQR" test "$(stat -c %s "$TMP/q.f32")" -eq $((5 * 512 * 4))
j=$("$ENGINE" perplexity -m "$Q" -f "$EVAL" -c 128 --kl-base "$M" --json 2>/dev/null)
echo "SpQR w3 perplexity: $j (F32: 4.6059)"
# stories260K has 64-wide layers and loses a lot at 3 bits (RTN w3: PPL 6.35); SpQR must do far better.
check "SpQR w3 perplexity well below RTN's" python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r['ppl'] < 5.9 and 0 <= r['kl_mean'] < 0.3 else 1)" "$j"
check "bench on SpQR" bash -c "'$ENGINE' bench -m '$Q' -p 8 -n 4 -r 1 --json | grep -q decode_tok_s"
printf 'Once upon a time\n' | "$ENGINE" chat -m "$Q" --temp 0 -n 8 >/dev/null 2>&1
check "chat on SpQR" test $? -eq 0

# Baselines use the same format.
check "quantize rtn w4" "$ENGINE" quantize -m "$M" -o "$TMP/rtn.gguf" --calib "$CAL" --method rtn --wbits 4 --nsamples 4 --seqlen 64
check "quantize gptq w3" "$ENGINE" quantize -m "$M" -o "$TMP/gptq.gguf" --calib "$CAL" --method gptq --nsamples 8 --seqlen 128
# Defaults: the head as Q6_K, the embedding as Q4_0 (dequantized a row per token);
# "keep" stores them as in the input. stories260K's rows (64 values) are not whole
# Q6_K blocks, so its head falls back to Q8_0.
check "default head q8_0 (64-wide rows)" bash -c "'$ENGINE' info -m '$Q' | grep -q '^head: *Q8_0'"
check "default embedding q4_0" bash -c "'$ENGINE' info -m '$Q' | grep -q '^embedding: *Q4_0'"
check "keep head and embedding" "$ENGINE" quantize -m "$M" -o "$TMP/h.gguf" --calib "$CAL" --nsamples 4 --seqlen 64 --head-type keep --embd-type keep
check "kept as F32" bash -c "'$ENGINE' info -m '$TMP/h.gguf' | grep -E '^(head|embedding):' | grep -c F32 | grep -q 2"
# convert rewrites the embedding and head of a SpQR file and keeps its blocks SpQR.
check "convert a SpQR model" "$ENGINE" convert -m "$Q" -o "$TMP/conv.gguf" --type f16
check "converted tables f16" bash -c "'$ENGINE' info -m '$TMP/conv.gguf' | grep -E '^(head|embedding):' | grep -c F16 | grep -q 2"
out2=$("$ENGINE" generate -m "$TMP/conv.gguf" -p "Once upon a time" -n 20 --temp 0 2>/dev/null)
check "generate on the converted SpQR model" grep -q "^Once upon a time" <<<"$out2"

# A model whose rows are whole 256-value blocks gets the Q6_K head, which generate,
# perplexity (its GEMM path), LoRA finetune (its transposed product) and convert read.
"$ENGINE" init-model --dim 256 --layers 1 --heads 4 --vocab 512 --vocab-from "$M" -o "$TMP/w256-f16.gguf" >/dev/null 2>&1
check "quantize a 256-wide model" "$ENGINE" quantize -m "$TMP/w256-f16.gguf" -o "$TMP/w256.gguf" --calib "$CAL" --nsamples 4 --seqlen 64
check "its default head q6_k" bash -c "'$ENGINE' info -m '$TMP/w256.gguf' | grep -q '^head: *Q6_K'"
check "generate with a Q6_K head" "$ENGINE" generate -m "$TMP/w256.gguf" -p "Once upon a time" -n 8 --temp 0
j6=$("$ENGINE" perplexity -m "$TMP/w256.gguf" -f "$EVAL" -c 64 --chunks 2 --kl-base "$TMP/w256-f16.gguf" --json 2>/dev/null)
echo "256-wide model, SpQR w3 blocks + Q6_K head against F16: $j6"
check "perplexity with a Q6_K head" python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r['ppl'] > 0 and 0 <= r['kl_mean'] < 0.05 else 1)" "$j6"
check "LoRA finetune through a Q6_K head" "$ENGINE" finetune -m "$TMP/w256.gguf" --data "$CAL" --mode lora --steps 2 --batch 2 --seqlen 32 -o "$TMP/w256-lora.gguf"
check "convert a Q6_K head to f16" "$ENGINE" convert -m "$TMP/w256.gguf" -o "$TMP/w256-conv.gguf" --type f16
check "  converted head f16" bash -c "'$ENGINE' info -m '$TMP/w256-conv.gguf' | grep -q '^head: *F16'"
expect_fail "an explicit Q6_K head needs 256-value rows" "not a multiple of 256" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --head-type q6_k

# Bad input: clear errors, exit 1, nothing written.
printf 'tiny' >"$TMP/short.txt"
expect_fail "calibration too short" "calibration text has" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$TMP/short.txt"
expect_fail "impossible group size" "--groupsize must be" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --groupsize 0
expect_fail "impossible bits" "--wbits must be" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --wbits 12
expect_fail "impossible statistics search" "--stat-search is 0 to 4" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --stat-search 9
expect_fail "bad head type" "unknown --head-type 'q4_0'" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --head-type q4_0
expect_fail "bad embedding type" "unknown --embd-type 'q5'" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$CAL" --embd-type q5
expect_fail "already quantized" "already quantized" "$ENGINE" quantize -m "$Q" -o "$TMP/x.gguf" --calib "$CAL"
expect_fail "not a model" "not a model file" "$ENGINE" quantize -m "$SHARED/models/vocab/ggml-vocab-gpt-2.gguf" -o "$TMP/x.gguf" --calib "$CAL"
expect_fail "missing calibration" "cannot open" "$ENGINE" quantize -m "$M" -o "$TMP/x.gguf" --calib "$TMP/none.txt"
check "nothing written on failure" test ! -e "$TMP/x.gguf" -a ! -e "$TMP/x.gguf.tmp"
# A corrupted SpQR file is refused at load.
python3 - "$Q" "$TMP/bad.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
# The u32 value of spqr.format_version sits after its key and its 4-byte type.
j = b.find(b'spqr.format_version')
b[j + len(b'spqr.format_version') + 4] = 7
open(sys.argv[2], 'wb').write(b)
PY
expect_fail "bad format version" "spqr.format_version is 7" "$ENGINE" generate -m "$TMP/bad.gguf" -n 1
finish

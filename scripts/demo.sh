#!/usr/bin/env bash
# make demo: the main job on a fresh machine. With MODEL=path.gguf it runs that
# model; without, it makes a small random-weight model with `engine init-model`
# and generates from it (the text is gibberish: the weights are random).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=./engine
PROMPT=${PROMPT:-"Once upon a time"}
N=${N:-48}

if [ -n "${MODEL:-}" ]; then
  [ -f "$MODEL" ] || { echo "demo: MODEL=$MODEL does not exist" >&2; exit 1; }
  echo "== demo: generating from $MODEL"
  $ENGINE info -m "$MODEL" | sed -n '1,4p'
  $ENGINE generate -m "$MODEL" -p "$PROMPT" -n "$N" --temp 0
  exit 0
fi

mkdir -p build/demo
model=build/demo/random-tiny.gguf
if [ ! -f "$model" ]; then
  echo "== demo: making a small random-weight model with engine init-model"
  $ENGINE init-model --dim 256 --ffn 688 --layers 4 --heads 8 --kv-heads 4 --vocab 1024 --type f16 --seed 1 -o "$model"
fi
$ENGINE info -m "$model" | sed -n '1,4p'
echo
echo "== demo: generating from $model"
echo "   NOTE: its weights are RANDOM, so the text is gibberish. To use a real model:"
echo "         MODEL=path/to/model.gguf make demo"
echo
$ENGINE generate -m "$model" -p "$PROMPT" -n "$N" --temp 0.8 --seed 7

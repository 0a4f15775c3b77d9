#!/usr/bin/env bash
# Evaluates a toy model (default: the bundled samples/toy-model) on held-out images, the four figures per set:
#   1. a world seed no training run uses, drawn by the world's own renderer;
#   2. the same kind of scenes (another unused seed) drawn and encoded by SkiaSharp (other software).
# Usage: bash eng/eval-toy.sh [MODEL] [COUNT]   (COUNT images per set, default 100; about 2.5 questions per image)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-samples/toy-model/minigpt4.json}
count=${2:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet build samples/MiniGpt4.Cli -c Release -v quiet -nologo >/dev/null
cli="dotnet samples/MiniGpt4.Cli/bin/Release/net10.0/MiniGpt4.Cli.dll"
for set in "world 424242" "skia 515151"; do
  read -r renderer seed <<<"$set"
  $cli world --out "$work/$renderer" --count "$count" --seed "$seed" --renderer "$renderer" >/dev/null 2>&1
  start=$(date +%s)
  $cli batch --model "$model" --input "$work/$renderer/eval.jsonl" --output "$work/$renderer/answers.jsonl" --temperature 0 --max-new-tokens 40 2>/dev/null
  lines=$(wc -l <"$work/$renderer/eval.jsonl")
  echo "== held-out seed $seed drawn by $renderer: $lines questions in $(( $(date +%s) - start )) s (load included)"
  $cli world-score --eval "$work/$renderer/eval.jsonl" --answers "$work/$renderer/answers.jsonl"
done

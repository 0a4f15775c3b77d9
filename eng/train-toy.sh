#!/usr/bin/env bash
# Trains the toy model from scratch (docs/toy-model.md) into DIR (default: artifacts/toy-model):
# vision tower + Q-Former on the synthetic world, assembly with the toy language model, stage 1 and stage 2.
# Usage: bash eng/train-toy.sh [DIR] [train-toy options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/toy-model}
shift || true
dotnet build samples/MiniGpt4.Cli -c Release -v quiet -nologo >/dev/null
cli="dotnet samples/MiniGpt4.Cli/bin/Release/net10.0/MiniGpt4.Cli.dll"
llm="$out-work/llm"
if [ ! -f "$llm/config.json" ]; then
  $cli pretrain-llm --out "$llm"
fi
$cli train-toy --out "$out" --llm "$llm" "$@"

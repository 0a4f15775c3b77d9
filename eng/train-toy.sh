#!/usr/bin/env bash
# Trains the toy model from scratch (docs/toy-model.md) into DIR (default: artifacts/toy-model): the language model
# (pretrain-llm, into DIR-work/llm unless it is already there), then train-toy: vision tower + Q-Former on the
# synthetic world, assembly, stage 1 and stage 2. One libtorch thread each: on a shared 2-core machine more are slower.
# Usage: bash eng/train-toy.sh [DIR] [train-toy options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/toy-model}
shift || true
dotnet build samples/MiniGpt4.Cli -c Release -v quiet -nologo >/dev/null
cli="dotnet samples/MiniGpt4.Cli/bin/Release/net10.0/MiniGpt4.Cli.dll"
llm="$out-work/llm"
start=$(date +%s)
if [ ! -f "$llm/config.json" ]; then
  $cli pretrain-llm --out "$llm" --threads 1
fi
$cli train-toy --out "$out" --llm "$llm" --threads 1 "$@"
echo "train-toy.sh: $(( $(date +%s) - start )) s" >&2

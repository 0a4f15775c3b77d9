#!/usr/bin/env bash
# The README's sample command: bootstrap (idempotent), then run the console sample on the tiny
# MiniGPT-4 in ../shared/oracle (or $MINIGPT4_SHARED): one greedy answer about a test image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash eng/bootstrap-linux.sh
shared=${MINIGPT4_SHARED:-../shared}
if [ ! -d "$shared/oracle" ]; then
  echo "The sample runs on the tiny test model in ../shared/oracle, which is absent."
  echo "With the real weights: dotnet run --project samples/MiniGpt4.Cli -c Release -- chat --model <minigpt4.json> --image <file>"
  exec dotnet run --project samples/MiniGpt4.Cli -c Release -- --help
fi
dotnet run --project samples/MiniGpt4.Cli -c Release -- generate \
  --model "$shared/oracle/tiny/minigpt4-vicuna0.json" \
  --image "$shared/oracle/images/a_gradient_shapes_640x480.png" \
  --prompt "Describe this image in detail." --temperature 0 --dtype float32 --max-new-tokens 20 "$@"

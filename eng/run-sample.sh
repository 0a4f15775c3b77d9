#!/usr/bin/env bash
# The README's sample command: bootstrap (idempotent), build, then ask the bundled toy model
# (samples/toy-model, in the repository: nothing to download) three questions about its sample picture.
# Extra arguments go to each `generate` (e.g. --format json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash eng/bootstrap-linux.sh
dotnet build samples/MiniGpt4.Cli -c Release -v quiet -nologo
image=samples/toy-model/example.png
echo "Image: $image (the toy model's sample; samples/toy-model/MODEL.md says what the model knows)"
for question in "Describe this image." "How many shapes are there?" "What colour is the circle?"; do
  echo "Q: $question"
  # The answer is printed once it is complete, so the load's progress lines (stderr) come before it, not inside it.
  answer=$(dotnet run --project samples/MiniGpt4.Cli -c Release --no-build -- generate \
    --image "$image" --prompt "$question" --temperature 0 --max-new-tokens 40 "$@")
  echo "A: $answer"
done

#!/usr/bin/env bash
# The README's test command: bootstrap (idempotent), build everything, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash eng/bootstrap-linux.sh
dotnet build MiniGpt4.sln -c Release
dotnet test tests/MiniGpt4.Tests/MiniGpt4.Tests.csproj -c Release --no-build "$@"

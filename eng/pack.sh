#!/usr/bin/env bash
# Packs every packable project (one version, from Directory.Build.props) with its symbol package into
# artifacts/packages, a folder usable as a local NuGet feed: dotnet add package MiniGpt4 --source artifacts/packages --prerelease
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/packages}
dotnet pack MiniGpt4.sln -c Release -o "$out" -p:ContinuousIntegrationBuild="${CI:-false}"
ls -1 "$out"

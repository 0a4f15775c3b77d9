#!/usr/bin/env bash
# Packs the libraries (one version, from Directory.Build.props), each with its README, the LICENSE and a .snupkg
# symbol package, into artifacts/packages: a folder usable as a local NuGet feed
# (dotnet add package MiniGpt4 --prerelease --source artifacts/packages). SourceLink maps the PDBs to the commit
# when the checkout has a git remote.
# Usage: eng/pack.sh [OUTPUT_FOLDER [dotnet pack options...]], e.g. `eng/pack.sh /tmp/feed --no-build` after a Release
# build (what the package acceptance test, tests/MiniGpt4.Tests/Packaging, does).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/packages}
shift $(( $# > 0 ? 1 : 0 ))
for project in src/MiniGpt4.Abstractions src/MiniGpt4 src/MiniGpt4.Imaging.Skia src/MiniGpt4.Extensions.AI src/MiniGpt4.Extensions.Hosting; do
  dotnet pack "$project" -c Release -o "$out" -p:ContinuousIntegrationBuild="${CI:-false}" "$@"
done
ls -1 "$out"

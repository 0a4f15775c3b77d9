#!/usr/bin/env bash
# Records public API changes in PublicAPI.Unshipped.txt of each packable library (see docs/architecture.md,
# "Public API"): builds, adds every symbol RS0016 reports as new, and lists the removals RS0017 reports.
# A removal breaks users' code: it is recorded (as a *REMOVED* line) only with --accept-removals.
set -euo pipefail
cd "$(dirname "$0")/.."
accept=${1:-}
for project in src/MiniGpt4.Abstractions src/MiniGpt4 src/MiniGpt4.Imaging.Skia src/MiniGpt4.Extensions.AI src/MiniGpt4.Extensions.Hosting; do
  log=$(dotnet build "$project" -c Release --no-incremental -p:TreatWarningsAsErrors=false 2>&1 || true)
  file="$project/PublicAPI.Unshipped.txt"
  added=$(grep -oP "RS0016: Symbol '\K.*(?=' is not part of the declared)" <<<"$log" | sort -u || true)
  removed=$(grep -oP "RS0017: Symbol '\K.*(?=' is part of the declared)" <<<"$log" | sort -u || true)
  if [ -n "$removed" ]; then
    echo "$project: removed from the public API (breaks users' code):"; sed 's/^/  /' <<<"$removed"
    if [ "$accept" = "--accept-removals" ]; then added=$(printf '%s\n%s' "$added" "$(sed 's/^/*REMOVED*/' <<<"$removed")"); fi
  fi
  [ -z "$added" ] && continue
  { head -1 "$file"; { tail -n +2 "$file"; printf '%s\n' "$added"; } | grep -v '^$' | sort -u; } > "$file.new"
  mv "$file.new" "$file"
  echo "$project: $(grep -c . <<<"$added") line(s) recorded in $file"
done

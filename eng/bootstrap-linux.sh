#!/usr/bin/env bash
# Idempotent set-up for a Debian/Ubuntu machine: makes sure the native pieces that
# TorchSharp 0.107 (libtorch 2.10) needs are present. Installs only what is missing and
# says what it did. Safe to run again and again.
#
# Why: libLibTorchSharp.so is built against GCC 13's libstdc++ (symbol version
# GLIBCXX_3.4.32). Debian 12 ships 3.4.30, so the library fails to load there. Debian
# trixie's libstdc++6 provides it; we add trixie as an apt source pinned *below* the
# default release, so nothing comes from it unless asked, then install libstdc++6 from it
# (which brings what it requires: libc6 2.41, the GCC 14 runtime libraries, dpkg, ...).
set -euo pipefail

say() { printf '[bootstrap] %s\n' "$*"; }
need_glibcxx="GLIBCXX_3.4.32"

if [ "$(uname -s)" != "Linux" ]; then
  say "not Linux: nothing to do (TorchSharp's native packages carry their own runtime on Windows/macOS)."
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
    say "not root and no sudo: run this script as root."; exit 1; fi
fi

find_libstdcxx() {
  local p
  for p in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do
    [ -e "$p" ] && { echo "$p"; return 0; }
  done
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}'
}

has_glibcxx() {
  local lib; lib=$(find_libstdcxx) || return 1
  [ -n "$lib" ] || return 1
  # grep -a on the binary: no dependency on binutils' strings.
  grep -aq "$need_glibcxx" "$lib"
}

if has_glibcxx; then
  say "libstdc++ already provides $need_glibcxx: nothing to install."
else
  if ! command -v apt-get >/dev/null 2>&1; then
    say "libstdc++ lacks $need_glibcxx and this is not an apt-based system."
    say "Install GCC 13+'s libstdc++ (package libstdc++6 >= 13) with your package manager."
    exit 1
  fi
  . /etc/os-release
  if [ "${ID:-}" = "debian" ]; then
    src=/etc/apt/sources.list.d/trixie.list
    pin=/etc/apt/preferences.d/trixie-low-priority
    if [ ! -f "$src" ]; then
      # Reuse the mirror this machine already uses for bookworm (deb822 or one-line format).
      mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
      [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
      if [ -z "$mirror" ]; then say "could not find the Debian mirror in /etc/apt: add a trixie source by hand."; exit 1; fi
      say "adding Debian trixie apt source ($src, mirror $mirror), pinned low so only what we ask for comes from it"
      echo "deb $mirror trixie main" | "${sudo_cmd[@]}" tee "$src" >/dev/null
    fi
    if [ ! -f "$pin" ]; then
      printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | "${sudo_cmd[@]}" tee "$pin" >/dev/null
    fi
    say "apt-get update"
    "${sudo_cmd[@]}" apt-get update -qq
    say "installing libstdc++6 from trixie (also lifts libc6)"
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq -t trixie libstdc++6 >/dev/null
  elif [ "${ID:-}" = "ubuntu" ]; then
    say "Ubuntu: installing libstdc++6 from the ubuntu-toolchain-r/test PPA is the usual fix;"
    say "this script does not add PPAs. Run: sudo add-apt-repository ppa:ubuntu-toolchain-r/test && sudo apt-get install libstdc++6"
    exit 1
  else
    say "trying the distribution's libstdc++6"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq libstdc++6 >/dev/null
  fi
  if has_glibcxx; then say "libstdc++ now provides $need_glibcxx."; else
    say "libstdc++ still lacks $need_glibcxx after the install."; exit 1; fi
fi

if command -v dotnet >/dev/null 2>&1; then
  say "dotnet $(dotnet --version) present."
else
  say "the .NET 10 SDK is missing: install it (https://dot.net) and run again."; exit 1
fi

# Headless Chromium for the chat page's browser test (tests/MiniGpt4.Tests/Serving/ChatPageBrowserTests.cs drives it with
# Playwright pointed at this executable; Playwright's own browser download cannot work here). Installed only when missing.
if command -v chromium >/dev/null 2>&1; then
  say "chromium present: $(chromium --version 2>/dev/null | head -1)"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing chromium (headless browser test of the chat page)"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
  say "chromium $(chromium --version 2>/dev/null | head -1) installed"
else
  say "chromium missing and no apt-get: the browser test of the chat page will skip (fail under CI=true)."
fi

# A C compiler for the optional native kernels (src/MiniGpt4/Native: 512-bit VNNI products .NET has no intrinsic for).
# Without one the build skips them and the managed kernels run (same results, slower); CI's test of them needs it.
if command -v cc >/dev/null 2>&1; then
  say "C compiler present: $(cc --version 2>/dev/null | head -1)"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing gcc (native kernels)"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
  say "$(cc --version 2>/dev/null | head -1) installed"
else
  say "no C compiler and no apt-get: the native kernels will not be built (the managed ones run)."
fi

#!/usr/bin/env bash
# Installs the Debian packages ingot builds against; only what is missing, so it is idempotent
# and fast on a machine that already has them.
set -euo pipefail
PKGS=(cmake g++ make ccache pkg-config
      libopenblas-pthread-dev nlohmann-json3-dev libcli11-dev libfmt-dev
      libgtest-dev libgmock-dev libbenchmark-dev libonig-dev libutf8proc-dev
      clang libclang-rt-14-dev nodejs npm golang-go libcpp-httplib-dev libtcmalloc-minimal4)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # nodejs/npm may come from outside Debian's packages on some images: accept the binaries.
    case "$p" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
    esac
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "[deps] installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[deps] all present"
fi

#!/usr/bin/env bash
# Installs the Debian packages the build needs, only when they are missing:
# libclang-dev (bindgen for the RocksDB bindings) and librocksdb-dev (the
# system RocksDB the storage links against; see README).
set -euo pipefail
need=()
for pkg in libclang-dev librocksdb-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

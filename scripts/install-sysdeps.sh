#!/usr/bin/env bash
# Install the Debian packages listed in sysdeps.txt that are missing ("pkg:cmd" lines: skip if cmd exists). Idempotent; quiet when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(grep -v -E '^\s*(#|$)' sysdeps.txt)
missing=()
for entry in "${wanted[@]}"; do
  pkg="${entry%%:*}"
  # "package:command" means: any installed `command` will do (e.g. a kubectl from another package).
  if [[ "$entry" == *:* ]] && command -v "${entry#*:}" >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to apt-get install ${missing[*]}" >&2; exit 3; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

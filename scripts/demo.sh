#!/usr/bin/env bash
# The README's main job. Sets up the machine, builds the suite, and shows what works so far:
# every CNI plugin answers VERSION, the CLI reports itself, and the IPAM hands out addresses
# from the embedded store. Later issues extend it into the full demo (daemon, network, sandboxes,
# published port, DNS, metrics).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setting up (Debian packages, npm ci, build)"
bash scripts/setup.sh

step "shoal version"
node dist/bin/shoal version

step "asking every CNI plugin for VERSION (from another working directory)"
for plugin in dist/cni/shoal-*; do
  name=$(basename "$plugin")
  out=$(cd / && CNI_COMMAND=VERSION "$OLDPWD/$plugin" </dev/null)
  printf '%-14s %s\n' "$name" "$out"
done

if [[ -x scripts/demo-ipam.sh ]]; then
  step "shoal-ipam on the embedded store"
  bash scripts/demo-ipam.sh
fi

step "done"

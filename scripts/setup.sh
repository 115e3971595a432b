#!/usr/bin/env bash
# Prepares a fresh Debian machine (as root) to build and test Shoal: the Debian packages the
# suite drives (nftables, iproute2, the reference CNI plugins for side-by-side benchmarks),
# the pinned npm dependencies, and the build. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# etcd-server/etcd-client: the cluster store's tests start their own etcd members inside test
# namespaces (test/helpers/cluster.ts); a system etcd service the package may start is never used.
# wrk/haproxy: the load-balancer bench (bench/lb.mjs) drives load with wrk and compares the proxy
# path with HAProxy, which it runs itself by PID with its own config (no system service).
DEBIAN_PACKAGES=(gcc libc6-dev nftables iproute2 iputils-ping util-linux procps containernetworking-plugins podman containerd runc busybox-static dnsutils dnsmasq-base dnsperf hyperfine iperf3 ethtool prometheus iptables etcd-server etcd-client wrk haproxy)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No package may start a system service (haproxy, etcd, dnsmasq...): the suite runs its own
  # instances by PID. policy-rc.d answering 101 tells invoke-rc.d "not allowed"; one we put
  # there is removed afterwards, one already there (container images ship one) is left alone.
  own_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
fi

# Node 24 LTS first on PATH (installed from the npm registry when the system's Node is older).
source scripts/node-env.sh
echo "setup: node $(node --version) at $(command -v node)" >&2

# npm ci is exact and reproducible but slow: skip it when the
# installed tree was made from this very lock file.
# A tree installed by another Node is installed again (native packages are built per Node ABI).
node_mark=node_modules/.shoal-node-version
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json || "$(cat "$node_mark" 2>/dev/null)" != "$(node --version)" ]]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  node --version > "$node_mark"
fi

echo "setup: npm run build" >&2
npm run build --silent

#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing (fresh machines have none of
# it), then runs cargo test. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Parts the integration tests use for real; a test never silently skips because one is missing.
# Fault tests: a real sshd on 127.0.0.1 (tests/integration/sshd.rs), the ssh client and
# ssh-keygen; the dead-man switch uses setsid/nohup (util-linux, coreutils) on the node.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
# gpu-lockout as a non-root user with `sudo: true` (tests/integration/ssh_nodes.rs): sudo and
# visudo (to validate the test's sudoers drop-in); useradd comes with passwd (always present).
[ -x /usr/bin/sudo ] && [ -x /usr/sbin/visudo ] || need+=(sudo)
# Kubernetes tests run the real kubectl against the sim's API (tests/integration/kube.rs).
# Debian's package is kubernetes-client; a kubectl already on the PATH (from any package) is used.
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
# Partition tests (tests/integration/netns.rs): a network namespace with a veth pair (ip, from
# iproute2) and an iptables DROP rule inside it. They need root as well.
[ -x /usr/sbin/ip ] || need+=(iproute2)
[ -x /usr/sbin/iptables ] || need+=(iptables)
# process-pause (tests/integration/process_pause.rs) finds processes with pgrep (procps).
command -v pgrep >/dev/null 2>&1 || need+=(procps)
# Bottleneck analysis: a real Prometheus scraping the sim (tests/integration/prometheus.rs).
[ -x /usr/bin/prometheus ] || need+=(prometheus)
# Report tests: report.html opened in a real headless browser (tests/integration/report.rs).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test "$@"

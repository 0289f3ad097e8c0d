#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test
# (brokerd/admin TestDashboardInChromium). Idempotent: does nothing when
# /usr/bin/chromium is already there. Run as root (CI is).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version

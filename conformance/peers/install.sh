#!/usr/bin/env bash
# Installs the real mail software that conformance/tests/interop.rs talks to:
# Postfix, Dovecot (imapd + pop3d), aiosmtpd 1.4.6, swaks, msmtp, curl, openssl,
# aiosmtpd 1.4.5 (CVE-2024-34083, command injection after STARTTLS) in its
# own venv at /opt/aiosmtpd-1.4.5, for calibrating `starttls probe`, and Knot
# DNS (knotd, keymgr, kdig) for the DNSSEC-signed test zone of
# conformance/src/zone.rs (conformance/tests/dns_glue.rs), and unbound as the
# local validating resolver in front of it (`Validation::TrustAd`,
# `probe --domain --trust-ad`).
#
# Run as root, non-interactive, idempotent: packages already present are not
# fetched again. No daemon is left running: a policy-rc.d that exits 101 keeps
# the packages' postinst scripts from starting their services, and the tests
# start each server in the foreground with their own config in a temp dir.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export APT_LISTCHANGES_FRONTEND=none

say() { printf '[peers/install] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "conformance/peers/install.sh: run as root (it installs Debian packages)" >&2
  exit 2
fi

start=$(date +%s)

DEBS=(
  postfix
  dovecot-imapd dovecot-pop3d
  swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl
  msmtp
  curl
  openssl
  ca-certificates
  knot knot-dnsutils
  unbound
)
AIOSMTPD_VERSION=1.4.6
# The vulnerable release, kept apart from the python3 the tests run.
AIOSMTPD_OLD_VERSION=1.4.5
AIOSMTPD_OLD_VENV=/opt/aiosmtpd-$AIOSMTPD_OLD_VERSION

updated=""
apt_update_once() {
  if [ -z "$updated" ]; then
    apt-get update -qq
    updated=1
  fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${DEBS[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing: ${missing[*]}"

  # Keep postinst scripts from starting daemons (there is no init system here,
  # and a half-started postfix on :25 is the last thing the tests want).
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  cleanup() { if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT

  # Postfix asks what kind of mail system this is; we configure it ourselves.
  if command -v debconf-set-selections >/dev/null 2>&1; then
    printf '%s\n' \
      'postfix postfix/main_mailer_type select No configuration' \
      'postfix postfix/mailname string localhost' \
      | debconf-set-selections
  fi

  apt_update_once
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/tmp/peers-apt.log 2>&1 || {
      tail -n 50 /tmp/peers-apt.log >&2
      echo "conformance/peers/install.sh: apt-get install failed" >&2
      exit 1
    }
  cleanup
  trap - EXIT
else
  say "Debian packages already installed"
fi

# The packages may have started something after all (an init script that
# ignored policy-rc.d): stop it, so nothing listens on the standard ports.
if [ -x /usr/lib/postfix/sbin/master ] && postfix status >/dev/null 2>&1; then
  postfix stop >/dev/null 2>&1 || true
fi
if [ -x /usr/sbin/dovecot ] && doveadm service status >/dev/null 2>&1; then
  doveadm stop >/dev/null 2>&1 || true
fi
if [ -x /usr/sbin/knotc ] && knotc status >/dev/null 2>&1; then
  knotc stop >/dev/null 2>&1 || true
fi
# unbound's own service would hold port 53 (and, under systemd, rewrite
# resolv.conf through unbound-resolvconf): stop it and keep it off. The tests
# run `unbound -d -c FILE` on a free loopback port.
if [ -x /usr/sbin/unbound ]; then
  if [ -x /etc/init.d/unbound ] && /etc/init.d/unbound status >/dev/null 2>&1; then
    /etc/init.d/unbound stop >/dev/null 2>&1 || true
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
  elif command -v update-rc.d >/dev/null 2>&1 && [ -x /etc/init.d/unbound ]; then
    update-rc.d unbound disable >/dev/null 2>&1 || true
  fi
fi

# aiosmtpd goes into the python3 that the tests will run (the first on PATH).
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  say "no $PY on PATH: installing Debian's python3"
  apt_update_once
  apt-get install -y -qq --no-install-recommends python3 python3-pip >>/tmp/peers-apt.log 2>&1
fi
have=$("$PY" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))' 2>/dev/null || true)
if [ "$have" != "$AIOSMTPD_VERSION" ]; then
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    say "no pip for $PY: installing python3-pip"
    apt_update_once
    apt-get install -y -qq --no-install-recommends python3-pip >>/tmp/peers-apt.log 2>&1
  fi
  say "pip installing aiosmtpd==$AIOSMTPD_VERSION for $("$PY" -c 'import sys; print(sys.executable)')"
  pip_args=(install -q --disable-pip-version-check --root-user-action=ignore "aiosmtpd==$AIOSMTPD_VERSION")
  if ! "$PY" -m pip "${pip_args[@]}"; then
    # Debian's own python3 is "externally managed" (PEP 668).
    say "retrying with --break-system-packages"
    "$PY" -m pip "${pip_args[@]}" --break-system-packages
  fi
else
  say "aiosmtpd $have already installed"
fi

# aiosmtpd 1.4.5 in its own venv: the probe's calibration must see
# CVE-2024-34083's injection found (conformance/tests/interop.rs).
old_have=$("$AIOSMTPD_OLD_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))' 2>/dev/null || true)
if [ "$old_have" != "$AIOSMTPD_OLD_VERSION" ]; then
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
    say "no venv/ensurepip for $PY: installing python3-venv"
    apt_update_once
    apt-get install -y -qq --no-install-recommends python3-venv >>/tmp/peers-apt.log 2>&1
  fi
  say "creating $AIOSMTPD_OLD_VENV with aiosmtpd==$AIOSMTPD_OLD_VERSION"
  rm -rf "$AIOSMTPD_OLD_VENV"
  "$PY" -m venv "$AIOSMTPD_OLD_VENV"
  "$AIOSMTPD_OLD_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "aiosmtpd==$AIOSMTPD_OLD_VERSION"
else
  say "aiosmtpd $old_have already installed in $AIOSMTPD_OLD_VENV"
fi

say "installed:"
for p in "${DEBS[@]}"; do
  printf '  %-24s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"
done
printf '  %-24s %s\n' "aiosmtpd (pip)" "$("$PY" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))')"
printf '  %-24s %s\n' "aiosmtpd (venv)" "$("$AIOSMTPD_OLD_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))') in $AIOSMTPD_OLD_VENV"
printf '  %-24s %s\n' "python3" "$("$PY" -c 'import sys; print(sys.executable)')"
say "done in $(( $(date +%s) - start ))s"

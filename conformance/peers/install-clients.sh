#!/usr/bin/env bash
# Installs the extra mail clients that `starttls hostile` is calibrated on
# (docs/hostile.md): fetchmail, mbsync (isync), mutt and neomutt (with
# `script`, from bsdutils, to give them a terminal). curl, openssl, swaks and
# msmtp come from conformance/peers/install.sh; Python is in the base image.
#
# Run as root, non-interactive, idempotent.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "conformance/peers/install-clients.sh: run as root (it installs Debian packages)" >&2
  exit 2
fi

missing=()
command -v fetchmail >/dev/null 2>&1 || missing+=(fetchmail)
command -v mbsync >/dev/null 2>&1 || missing+=(isync)
command -v mutt >/dev/null 2>&1 || missing+=(mutt)
command -v neomutt >/dev/null 2>&1 || missing+=(neomutt)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[peers/install-clients] installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "[peers/install-clients] fetchmail: $(fetchmail --version 2>/dev/null | head -1)"
echo "[peers/install-clients] mbsync: $(mbsync --version 2>/dev/null | head -1)"
echo "[peers/install-clients] mutt: $(mutt -v 2>/dev/null | head -1)"
echo "[peers/install-clients] neomutt: $(neomutt -v 2>/dev/null | head -1)"

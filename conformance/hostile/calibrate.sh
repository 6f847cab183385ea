#!/usr/bin/env bash
# Runs `starttls hostile` on the real clients of docs/hostile.md and writes
# one JSON report per client and protocol into OUT (default target/hostile),
# then prints the client x class table (conformance/hostile/table.py).
#
#   bash conformance/hostile/calibrate.sh [OUT] [CLIENT...]
#
# Clients: connect python curl openssl swaks msmtp fetchmail mbsync mutt
# neomutt weak.
# Install them first: conformance/peers/install.sh and install-clients.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/hostile}
shift || true
mkdir -p "$OUT"
BIN=${STARTTLS_BIN:-target/debug/starttls}
[ -x "$BIN" ] || cargo build -q -p starttls-conformance
HERE=$PWD/conformance/hostile
JOBS=${JOBS:-2}
TIMEOUT=${TIMEOUT:-12}

# client proto command
cmd() {
  local client=$1 proto=$2
  case "$client:$proto" in
    connect:*) echo "$PWD/$BIN connect {url} --ca {ca} --user alice --password s3cret --timeout 8" ;;
    python:*) echo "python3 $HERE/python_client.py {url} {ca}" ;;
    weak:*) echo "python3 $HERE/weak_client.py {url}" ;;
    curl:smtp) echo "printf 'Subject: t\\r\\n\\r\\nhi\\r\\n' | curl -sS --max-time 9 --ssl-reqd --cacert {ca} --user alice:s3cret --mail-from a@example.org --mail-rcpt b@example.org -T - {url}" ;;
    curl:*) echo "curl -sS --max-time 9 --ssl-reqd --cacert {ca} --user alice:s3cret {url}/" ;;
    openssl:smtp) echo "printf 'EHLO c\\r\\nQUIT\\r\\n' | openssl s_client -brief -ign_eof -starttls smtp -connect 127.0.0.1:{port} -CAfile {ca} -verify_return_error -verify_ip 127.0.0.1" ;;
    openssl:imap) echo "printf 'a CAPABILITY\\r\\nb LOGOUT\\r\\n' | openssl s_client -brief -ign_eof -starttls imap -connect 127.0.0.1:{port} -CAfile {ca} -verify_return_error -verify_ip 127.0.0.1" ;;
    openssl:pop3) echo "printf 'CAPA\\r\\nQUIT\\r\\n' | openssl s_client -brief -ign_eof -starttls pop3 -connect 127.0.0.1:{port} -CAfile {ca} -verify_return_error -verify_ip 127.0.0.1" ;;
    swaks:smtp) echo "swaks --server 127.0.0.1:{port} --tls --tls-verify --tls-ca-path {ca} --auth PLAIN --auth-user alice --auth-password s3cret --from a@example.org --to b@example.org --timeout 9" ;;
    msmtp:smtp) echo "printf 'Subject: t\\n\\nhi\\n' | msmtp --host=127.0.0.1 --port={port} --tls=on --tls-starttls=on --tls-trust-file={ca} --auth=plain --user=alice --passwordeval='echo s3cret' --from=a@example.org --timeout=9 b@example.org" ;;
    fetchmail:imap|fetchmail:pop3)
      local P; P=$(echo "$proto" | tr a-z A-Z)
      echo "printf 'poll localhost port %s proto $P timeout 9 user alice password s3cret sslproto \"tls1.2+\" sslcertck sslcertfile %s\\n' {port} {ca} > rc && chmod 600 rc && HOME=\$PWD fetchmail -f rc --pidfile \$PWD/pid --nosyslog --nokeep; rc=\$?; [ \$rc -le 1 ] && exit 0; exit \$rc" ;;
    mbsync:imap)
      echo "printf 'IMAPAccount a\\nHost localhost\\nPort %s\\nUser alice\\nPass s3cret\\nSSLType STARTTLS\\nCertificateFile %s\\nTimeout 9\\n\\nIMAPStore r\\nAccount a\\n\\nMaildirStore l\\nPath %s/m/\\nInbox %s/m/INBOX\\n\\nChannel c\\nFar :r:\\nNear :l:\\nPatterns INBOX\\nCreate Near\\n' {port} {ca} \$PWD \$PWD > rc && mkdir -p m && HOME=\$PWD mbsync -c rc c" ;;
    mutt:*|neomutt:*) echo "bash $HERE/mutt_client.sh $client {proto} {name} {port} {ca}" ;;
    *) return 1 ;;
  esac
}

CLIENTS=("$@")
[ ${#CLIENTS[@]} -gt 0 ] || CLIENTS=(connect python curl openssl swaks msmtp fetchmail mbsync mutt neomutt weak)
for client in "${CLIENTS[@]}"; do
  for proto in smtp imap pop3; do
    c=$(cmd "$client" "$proto") || continue
    echo "== $client $proto" >&2
    "$BIN" hostile --jobs "$JOBS" --timeout "$TIMEOUT" --cases "$proto-*" \
      --client "$c" --json "$OUT/$client-$proto.json" > "$OUT/$client-$proto.txt"
    tail -1 "$OUT/$client-$proto.txt" >&2
  done
done
python3 "$HERE/table.py" "$OUT"

#!/usr/bin/env bash
# Drives mutt or neomutt non-interactively for the `starttls hostile`
# calibration (docs/hostile.md, "mutt and neomutt"). Run by the runner in
# the case's scratch directory:
#
#   bash mutt_client.sh CLIENT PROTO HOST PORT CA
#
# CLIENT is mutt or neomutt, PROTO smtp, imap or pop3, HOST the certificate's
# name. Configuration: STARTTLS required (ssl_starttls, ssl_force_tls), the
# certificate verified against CA and the host name, login alice/s3cret.
#
# * smtp: batch send (`-s subject rcpt < body`; no terminal, no prompt).
# * imap: `-z -f imap://...`: open the mailbox only to see whether it has
#   mail (STATUS), then exit; "Mailbox is empty." is exit 1, taken as 0.
# * pop3: `-f pop://...` in the index, then the key `q`.
# imap and pop3 need a terminal: `script` gives them one (TERM=hostile-tty,
# see tty_text.py), with `r` typed ahead, which rejects a certificate at
# mutt's "(r)eject, accept (o)nce, (a)ccept always" prompt (and is harmless
# elsewhere). What they showed is printed afterwards by tty_text.py.
set -u
client=$1 proto=$2 host=$3 port=$4 ca=$5
here=$(cd "$(dirname "$0")" && pwd)
dir=$PWD
export HOME=$dir
cat > muttrc <<RC
unset record
set folder="$dir"
set from=a@example.org
set ssl_starttls=yes
set ssl_force_tls=yes
set ssl_verify_host=yes
set ssl_ca_certificates_file="$ca"
set certificate_file="$dir/certs"
set smtp_url="smtp://alice@$host:$port/"
set smtp_pass=s3cret
set imap_user=alice
set imap_pass=s3cret
set pop_user=alice
set pop_pass=s3cret
RC

if [ "$proto" = smtp ]; then
  printf 'hi\n' > body
  exec "$client" -n -F muttrc -s t b@example.org < body
fi

case "$proto" in
  imap) args="-z -f imap://alice@$host:$port/INBOX" ;;
  pop3) args="-f pop://alice@$host:$port/" ;;
  *) echo "mutt_client.sh: unknown protocol $proto" >&2; exit 2 ;;
esac
# The keys typed: `r` at once, then `q` every second. mutt drops what was
# typed ahead when it opens a mailbox, so one `q` comes after that.
keys() {
  printf r
  while sleep 1; do printf q || return 0; done
}
mkdir -p ti
tic -o ti - <<'TI'
hostile-tty|a terminal whose every control sequence tty_text.py can name,
	cols#80, lines#24,
	cr=\r, cud1=\n, ind=\n,
	cup=\E[%i%p1%d;%p2%dH, home=\E[H, clear=\E[H\E[J,
	ed=\E[J, el=\E[K,
	smso=\E[7m, rmso=\E[m, rev=\E[7m, sgr0=\E[m,
TI
keys | TERMINFO=$dir/ti TERM=hostile-tty \
  script -qec "$client -n -F muttrc $args" tty > /dev/null
rc=$?
python3 "$here/tty_text.py" tty
# -z: "Mailbox is empty." (and a mailbox that could not be opened) is 1.
[ "$proto" = imap ] && [ $rc -eq 1 ] && rc=0
exit $rc

#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) with its seeds and
# dictionary. New corpus entries go to fuzz/corpus/<target>/ (not committed);
# crashes go to fuzz/artifacts/<target>/. Exits non-zero if any target fails.
#   RUSTC_BOOTSTRAP=1 is needed on a stable toolchain.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-30}
export RUSTC_BOOTSTRAP=1
status=0
for t in $(cargo fuzz list); do
  case $t in
    smtp_*|*_smtp|session_smtp_*|roundtrip_smtp) dict=dict/smtp.dict ;;
    imap_*|*_imap|session_imap_*|roundtrip_imap) dict=dict/imap.dict ;;
    policy_*) dict=dict/policy.dict ;;
    pop3_*|*_pop3|session_pop3_*|roundtrip_pop3) dict=dict/pop3.dict ;;
    *) dict=dict/smtp.dict ;;
  esac
  mkdir -p "corpus/$t" "seeds/$t"
  printf '==> %s (%ss)\n' "$t" "$SECONDS_EACH"
  log=$(mktemp)
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_EACH" -dict="$dict" -print_final_stats=1 \
      -rss_limit_mb=2048 -malloc_limit_mb=512 >"$log" 2>&1
  rc=$?
  grep -E "^(#[0-9]+\s+DONE|==[0-9]+==ERROR|SUMMARY)|stat::average_exec_per_sec|panicked|assertion" "$log"
  if [ $rc -ne 0 ]; then
    echo "!! $t: cargo fuzz run exited $rc"; tail -30 "$log"; status=1
  fi
  rm -f "$log"
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "!! $t: crash artifacts in fuzz/artifacts/$t"
    status=1
  fi
done
exit $status

#!/usr/bin/env python3
"""Turns the output of `cargo bench -p starttls-bench` into the ratio tables
of docs/performance.md.

    cargo bench -p starttls-bench 2>&1 | tee /tmp/bench.log
    python3 bench/report.py /tmp/bench.log

Criterion's median of each benchmark (the middle figure of `time: [...]`)
is divided by the median of the floor (`memchr_split`) and of the peers
measured in the same run. The `items`, `alloc`, `heap` and `ratio` lines the
bench binaries print before criterion starts are carried over as they are.
"""
import re
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]")
ID = re.compile(r"^([a-z0-9_]+/[a-z0-9_]+)")

# Per group: the floor and the peers to compare ours with.
GROUPS = {
    "smtp_commands": ["smtp_proto", "mailin"],
    "smtp_replies": ["smtp_proto"],
    "imap_commands": ["imap_codec"],
    "imap_responses": ["imap_proto", "imap_codec"],
    "pop3_commands": [],
    "pop3_responses": [],
}


def main(path):
    medians, items, notes = {}, {}, []
    current = None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"items (\S+) (\d+)", line)
        if m:
            items[m.group(1)] = int(m.group(2))
        if re.match(r"(items|alloc|heap|ratio|allocations) ", line):
            notes.append(line)
        m = ID.match(line)
        if m and "time:" not in line.split(m.group(1), 1)[0]:
            current = m.group(1)
        m = TIME.search(line)
        if m and current:
            medians.setdefault(current, float(m.group(1)) * UNITS[m.group(2)])
            current = None
    for group, peers in GROUPS.items():
        floor = medians.get(f"{group}/memchr_split")
        ours = medians.get(f"{group}/starttls")
        if not floor or not ours:
            continue
        n = items.get(group)
        print(f"\n{group}" + (f" ({n} items)" if n else ""))
        # The borrowed path against the peers: the walking row where the
        # group has one (IMAP: every argument walked, as the peers build
        # them), else the plain one.
        borrowed = medians.get(f"{group}/starttls_borrowed_walk") or medians.get(
            f"{group}/starttls_borrowed"
        )
        print("| parser | ns/item | x memchr split | owned faster by | borrowed faster by |")
        print("|---|---|---|---|---|")
        rows = ["memchr_split", "bytes_split", "starttls", "starttls_walk"]
        rows += ["starttls_borrowed", "starttls_borrowed_walk"]
        for name in rows + peers:
            t = medians.get(f"{group}/{name}")
            if t is None:
                continue
            per = f"{t / n:.0f}" if n else "-"
            faster = f"{t / ours:.2f}x" if name in peers else ""
            fb = f"{t / borrowed:.2f}x" if name in peers and borrowed else ""
            print(f"| {name} | {per} | {t / floor:.2f} | {faster} | {fb} |")
    sessions = {k: v for k, v in medians.items() if k.startswith("session/")}
    base = sessions.get("session/rustls_handshake")
    if base:
        print("\nsession (rate / bare rustls handshake rate)")
        for k, v in sorted(sessions.items()):
            print(f"| {k.split('/', 1)[1]} | {v / 1e3:.0f} us | {base / v:.3f} |")
    if notes:
        print()
        print("\n".join(notes))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py BENCH-LOG")
    main(sys.argv[1])

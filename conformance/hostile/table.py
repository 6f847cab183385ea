#!/usr/bin/env python3
"""Reads the JSON reports of calibrate.sh (DIR/CLIENT-PROTO.json) and prints
the client x class table of docs/hostile.md: passed/total per class, all
protocols the client speaks together."""
import glob
import json
import os
import sys

CLASSES = ["control", "stripping", "injection", "preauth", "tampering",
           "ui-spoofing", "referral", "certificate", "robustness"]
ORDER = ["connect", "python", "curl", "openssl", "swaks", "msmtp",
         "fetchmail", "mbsync", "mutt", "neomutt", "weak"]


def main():
    d = sys.argv[1]
    table = {}
    for path in sorted(glob.glob(os.path.join(d, "*-*.json"))):
        client, proto = os.path.basename(path)[:-5].rsplit("-", 1)
        r = json.load(open(path))
        row = table.setdefault(client, {"protos": [], **{c: [0, 0] for c in CLASSES}})
        row["protos"].append(proto)
        for c in r["cases"]:
            row[c["class"]][1] += 1
            row[c["class"]][0] += c["verdict"] == "pass"
    print("| client | protocols | " + " | ".join(CLASSES) + " |")
    print("|---|---|" + "---|" * len(CLASSES))
    for client in sorted(table, key=lambda c: ORDER.index(c) if c in ORDER else 99):
        row = table[client]
        cells = ["%d/%d" % tuple(row[c]) if row[c][1] else "-" for c in CLASSES]
        print("| %s | %s | %s |" % (client, " ".join(row["protos"]), " | ".join(cells)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns what mutt or neomutt wrote to its terminal into lines of text, for
the `starttls hostile` output rules (docs/hostile.md, "mutt and neomutt").

    python3 tty_text.py TYPESCRIPT

The terminal is `hostile-tty` (mutt_client.sh), whose terminfo entry has only
these sequences: cursor addressing (ESC [ row ; col H, ESC [ H), erasing
(ESC [ J, ESC [ K), reverse video on and off (ESC [ 7 m, ESC [ m), CR and LF.
Exactly those are taken out here, each cursor move becoming a line break;
everything else is written as it came, so an escape sequence, BEL or BS
found in the result is one the client passed through from elsewhere (the
server), not one curses made for this terminal.
"""
import re
import sys

CURSES = re.compile(rb"\x1b\[(?:\d+;\d+)?H|\x1b\[[JK]|\x1b\[7m|\x1b\[m|\r\n?")


def main():
    data = open(sys.argv[1], "rb").read()
    # util-linux `script` frames the typescript with two lines of its own.
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"Script started on "):
        lines = lines[1:]
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    if lines and lines[-1].startswith(b"Script done on "):
        lines = lines[:-1]
    text = b"\n".join(lines)
    out = CURSES.sub(lambda m: b"\n" if m.group(0)[-1:] in (b"H", b"\r", b"\n") else b"", text)
    out = re.sub(rb"[ \n]*\n[ \n]*", b"\n", out)
    sys.stdout.buffer.write(out.strip(b"\n") + b"\n")


if __name__ == "__main__":
    main()

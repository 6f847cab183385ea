#!/usr/bin/env python3
"""A deliberately weak STARTTLS client: the calibration target that must
FAIL cases of every class of `starttls hostile` (docs/hostile.md).

Usage: weak_client.py URL  (smtp://, imap:// or pop3://HOST:PORT)

Its bugs, on purpose, one per class of the catalog:
* stripping: looks for STARTTLS/STLS as a substring of the capability
  answer, goes on in cleartext when the upgrade is missing or refused, and
  after a failed handshake reconnects without TLS;
* injection: keeps its read buffer across the upgrade;
* tampering: never asks for capabilities again after TLS, and uses an
  XHOSTILE mechanism if it saw one;
* PREAUTH: takes PREAUTH as "logged in" and selects INBOX in cleartext;
* UI spoofing: prints every server line as it came, escapes included;
* referrals: connects to any URL it sees in a server line;
* certificates: verifies nothing;
* robustness: lines are read until CRLF without a limit, an IMAP literal
  is waited for whatever its size, end of file is retried forever, and a
  NUL or a line over 4096 bytes aborts the process.
"""
import base64
import os
import re
import socket
import ssl
import sys
import time


class Weak:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port))
        self.buf = b""  # kept across the upgrade: the injection bug
        self.n = 0

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                time.sleep(0.05)  # end of file: try again, forever
                continue
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        if b"\0" in line or len(line) > 4096:
            os.abort()
        sys.stdout.buffer.write(line + b"\n")  # raw, escapes and all
        sys.stdout.buffer.flush()
        m = re.search(rb"(smtp|imap|pop3)://[0-9.]+:(\d+)", line)
        if m:  # follow referrals
            try:
                socket.create_connection(("127.0.0.1", int(m.group(2)))).close()
            except OSError:
                pass
        lit = re.search(rb"\{(\d+)\}$", line)
        if lit:
            want = int(lit.group(1))
            while len(self.buf) < want:
                data = self.sock.recv(65536)
                if not data:
                    time.sleep(0.05)
                    continue
                self.buf += data
        return line

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def tag(self):
        self.n += 1
        return "a%d" % self.n

    def imap(self, cmd):
        t = self.tag()
        self.send("%s %s" % (t, cmd))
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(t.encode() + b" "):
                return lines

    def smtp(self, cmd):
        self.send(cmd)
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return lines

    def pop3(self, cmd, multi=False):
        self.send(cmd)
        lines = [self.line()]
        if multi and lines[0].startswith(b"+OK"):
            while lines[-1] != b".":
                lines.append(self.line())
        return lines

    def tls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # any certificate will do
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.host)


def session(proto, host, port, use_tls=True):
    w = Weak(host, port)
    greeting = w.line()
    caps = b""
    if proto == "imap":
        if b"PREAUTH" in greeting:
            w.imap("SELECT INBOX")
            w.imap("LOGOUT")
            return
        caps = b" ".join(w.imap("CAPABILITY"))
    elif proto == "smtp":
        caps = b" ".join(w.smtp("EHLO weak.localhost"))
    else:
        caps = b" ".join(w.pop3("CAPA", multi=True))
    up = b"STLS" if proto == "pop3" else b"STARTTLS"
    if use_tls and up in caps.upper():
        if proto == "imap":
            t = w.tag()
            w.send("%s STARTTLS" % t)
            reply = w.line()
        elif proto == "smtp":
            reply = w.smtp("STARTTLS")[-1]
        else:
            reply = w.pop3("STLS")[0]
        if reply[:1] in (b"2", b"+") or b"OK" in reply:
            try:
                w.tls()
            except (ssl.SSLError, OSError):
                return session(proto, host, port, use_tls=False)
    mech = "XHOSTILE" if b"XHOSTILE" in caps.upper() else "PLAIN"
    plain = base64.b64encode(b"\0alice\0s3cret").decode()
    if proto == "imap":
        if mech == "XHOSTILE":
            w.imap("AUTHENTICATE XHOSTILE " + plain)
        else:
            w.imap("LOGIN alice s3cret")
        w.imap("LOGOUT")
    elif proto == "smtp":
        w.smtp("AUTH %s %s" % (mech, plain))
        w.smtp("QUIT")
    else:
        if mech == "XHOSTILE":
            w.pop3("AUTH XHOSTILE " + plain)
        else:
            w.pop3("USER alice")
            w.pop3("PASS s3cret")
        w.pop3("QUIT")


def main():
    m = re.match(r"(smtp|imap|pop3)://([^:/]+):(\d+)", sys.argv[1])
    if not m:
        sys.exit("usage: weak_client.py smtp|imap|pop3://HOST:PORT")
    session(m.group(1), m.group(2), int(m.group(3)))


if __name__ == "__main__":
    main()

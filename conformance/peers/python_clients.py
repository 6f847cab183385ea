#!/usr/bin/env python3
"""Python's own mail clients against `starttls serve`, for conformance/tests/interop.rs.

    python3 python_clients.py KIND HOST PORT CAFILE

KIND is smtp, submission, smtps, imap, imaps, pop3 or pop3s. STARTTLS kinds
upgrade first and fail if the server does not offer it; certificates are
verified against CAFILE and the host (an IP address: the leaf's IP SAN).
Prints a short transcript and `OK`; any failure raises (exit status 1).
"""

import imaplib
import poplib
import smtplib
import ssl
import sys

USER, PASSWORD = "alice", "secret"
MESSAGE = (
    "From: alice@localhost\r\n"
    "To: bob@localhost\r\n"
    "Subject: interop\r\n"
    "\r\n"
    "Hello from Python.\r\n"
    ".leading dot\r\n"
)


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")


def smtp(kind, host, port, ctx):
    if kind == "smtps":
        s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=20)
        s.ehlo()
    else:
        s = smtplib.SMTP(host, port, timeout=20)
        s.ehlo()
        check(s.has_extn("starttls"), "STARTTLS advertised")
        code, text = s.starttls(context=ctx)
        print("STARTTLS", code, text.decode(errors="replace"))
        s.ehlo()
        check(not s.has_extn("starttls"), "no STARTTLS after TLS")
    print("TLS", s.sock.version(), s.sock.cipher()[0])
    print("EHLO", sorted(s.esmtp_features))
    if kind in ("submission", "smtps"):
        code, text = s.login(USER, PASSWORD)
        print("AUTH", code, text.decode(errors="replace"))
    refused = s.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
    check(not refused, f"recipients refused: {refused}")
    print("QUIT", s.quit())


def imap(kind, host, port, ctx):
    if kind == "imaps":
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20)
    else:
        m = imaplib.IMAP4(host, port, timeout=20)
        check("STARTTLS" in m.capabilities, "STARTTLS advertised")
        print("STARTTLS", m.starttls(ssl_context=ctx))
        check("STARTTLS" not in m.capabilities, "no STARTTLS after TLS")
    print("TLS", m.sock.version(), m.sock.cipher()[0])
    print("CAPABILITY", m.capabilities)
    print("LOGIN", m.login(USER, PASSWORD))
    typ, data = m.select("INBOX")
    print("SELECT", typ, data)
    check(typ == "OK" and int(data[0]) >= 1, "INBOX has a message")
    typ, data = m.fetch("1", "(RFC822)")
    check(typ == "OK", "FETCH")
    print("FETCH", typ, len(data[0][1]), "bytes")
    print("LOGOUT", m.logout())


def pop3(kind, host, port, ctx):
    if kind == "pop3s":
        p = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    else:
        p = poplib.POP3(host, port, timeout=20)
        check("STLS" in p.capa(), "STLS advertised")
        print("STLS", p.stls(context=ctx))
        check("STLS" not in p.capa(), "no STLS after TLS")
    print("TLS", p.sock.version(), p.sock.cipher()[0])
    print("USER", p.user(USER))
    print("PASS", p.pass_(PASSWORD))
    count, size = p.stat()
    print("STAT", count, size)
    check(count >= 1, "mailbox has a message")
    resp, lines, octets = p.retr(1)
    print("RETR", resp, len(lines), "lines", octets, "octets")
    print("QUIT", p.quit())


def main():
    kind, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context(cafile=cafile)
    if kind in ("smtp", "submission", "smtps"):
        smtp(kind, host, port, ctx)
    elif kind in ("imap", "imaps"):
        imap(kind, host, port, ctx)
    elif kind in ("pop3", "pop3s"):
        pop3(kind, host, port, ctx)
    else:
        raise SystemExit(f"unknown kind {kind}")
    print("OK")


if __name__ == "__main__":
    main()

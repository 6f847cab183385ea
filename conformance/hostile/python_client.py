#!/usr/bin/env python3
"""Python's smtplib/imaplib/poplib as a careful script would use them, for
the `starttls hostile` calibration (docs/hostile.md).

    python3 python_client.py URL CAFILE

Requires STARTTLS (fails if it is not advertised), verifies the certificate
against CAFILE and the host, asks for capabilities again after TLS, logs in
as alice and says goodbye. Prints nothing of the server's texts itself;
exceptions (with their messages) go to stderr.
"""

import imaplib
import poplib
import re
import smtplib
import ssl
import sys


def main():
    m = re.match(r"(smtp|imap|pop3)://([^:/]+):(\d+)", sys.argv[1])
    proto, host, port = m.group(1), m.group(2), int(m.group(3))
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    if proto == "smtp":
        s = smtplib.SMTP(host, port, timeout=5)
        s.ehlo()
        if not s.has_extn("starttls"):
            raise SystemExit("STARTTLS not offered")
        s.starttls(context=ctx)
        s.ehlo()
        s.login("alice", "s3cret")
        s.quit()
    elif proto == "imap":
        c = imaplib.IMAP4(host, port, timeout=5)
        c.starttls(ssl_context=ctx)
        c.login("alice", "s3cret")
        c.logout()
    else:
        p = poplib.POP3(host, port, timeout=5)
        if "STLS" not in p.capa():
            raise SystemExit("STLS not offered")
        p.stls(context=ctx)
        p.capa()
        p.user("alice")
        p.pass_("s3cret")
        p.quit()


if __name__ == "__main__":
    main()

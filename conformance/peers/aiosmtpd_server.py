#!/usr/bin/env python3
"""aiosmtpd SMTP server with STARTTLS for conformance/tests/interop.rs.

    python3 aiosmtpd_server.py --host 127.0.0.1 --port P --cert leaf.pem --key leaf.key

Run by python3 (aiosmtpd 1.4.6) or by /opt/aiosmtpd-1.4.5/bin/python (1.4.5,
CVE-2024-34083, for calibrating `starttls probe`); it prints the version.

require_starttls=True: every command but EHLO/HELO/NOOP/QUIT/STARTTLS is refused
before TLS. Messages are accepted and dropped. Prints `listening HOST:PORT` on
stdout once the socket is bound, then logs to stderr. Loopback only; stops on
SIGTERM/SIGINT or after --lifetime seconds.
"""

import argparse
import asyncio
import ipaddress
import logging
import signal
import ssl
import sys

import aiosmtpd
from aiosmtpd.smtp import SMTP


class Sink:
    async def handle_DATA(self, server, session, envelope):
        print(
            f"message from {envelope.mail_from} to {envelope.rcpt_tos}: "
            f"{len(envelope.content or b'')} bytes",
            file=sys.stderr,
            flush=True,
        )
        return "250 2.0.0 OK"


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--lifetime", type=float, default=120.0)
    a = ap.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        print("aiosmtpd_server.py: loopback addresses only", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Sink(),
            hostname="localhost",
            tls_context=ctx,
            require_starttls=True,
            timeout=30,
        ),
        host=a.host,
        port=a.port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"aiosmtpd {aiosmtpd.__version__}", file=sys.stderr, flush=True)
    print(f"listening {a.host}:{a.port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

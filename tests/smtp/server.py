"""A real SMTP server for Herald's tests: aiosmtpd writing a Maildir, with TLS, AUTH and per-recipient faults.

Usage: server.py --port N --maildir DIR [--starttls CERT KEY] [--smtps CERT KEY]
                 [--auth USER:PASSWORD] [--reply ADDRESS=CODE TEXT]...
Prints "READY" on stdout once it accepts connections; runs until killed.
"""

import argparse
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler(Mailbox):
    """Mailbox that answers RCPT with a configured reply for some addresses."""

    def __init__(self, maildir, replies):
        super().__init__(maildir)
        self.replies = replies

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


def tls_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--smtps", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    parser.add_argument("--reply", action="append", default=[], metavar="ADDRESS=CODE TEXT")
    args = parser.parse_args()

    replies = {}
    for item in args.reply:
        address, reply = item.split("=", 1)
        replies[address.lower()] = reply
    params = {}
    if args.auth:
        user, password = args.auth.split(":", 1)
        params["authenticator"] = authenticator(user, password)
        params["auth_required"] = True
        # On implicit TLS the session is already encrypted; aiosmtpd needs this to offer AUTH.
        params["auth_require_tls"] = not args.smtps
    if args.starttls:
        params["tls_context"] = tls_context(*args.starttls)
        params["require_starttls"] = False
    ssl_context = tls_context(*args.smtps) if args.smtps else None

    controller = Controller(
        Handler(args.maildir, replies),
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=ssl_context,
        server_hostname="localhost",
        ready_timeout=10,
        **params,
    )
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()

"""A real SMTP server for Herald's tests: aiosmtpd writing a Maildir, with TLS, AUTH and per-recipient faults.

Usage: server.py --port N --maildir DIR [--starttls CERT KEY] [--smtps CERT KEY]
                 [--auth USER:PASSWORD] [--reply ADDRESS=CODE TEXT]...
                 [--raw DIR] [--log FILE] [--refuse-starttls] [--only-auth-mechanism NAME]
                 [--pipelining]
--raw DIR saves each message's DATA exactly as received (after dot-unstuffing) as DIR/<n>.eml,
with its envelope recipients in DIR/<n>.rcpt; --log FILE appends one line per command verb,
"clear" or "tls" first; --refuse-starttls offers STARTTLS and answers it 454;
--pipelining offers PIPELINING;
--only-auth-mechanism offers AUTH with that one mechanism only (which always fails).
Prints "READY" on stdout once it accepts connections; runs until killed.
"""

import argparse
import itertools
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler(Mailbox):
    """Mailbox that answers RCPT with a configured reply for some addresses, and keeps raw DATA."""

    def __init__(self, maildir, replies, raw):
        super().__init__(maildir)
        self.replies = replies
        self.raw = raw
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        if self.raw:
            n = next(self.counter)
            path = os.path.join(self.raw, f"{n:06}")
            with open(path + ".rcpt.tmp", "w") as f:
                f.write("\n".join(envelope.rcpt_tos))
            with open(path + ".eml.tmp", "wb") as f:
                f.write(envelope.original_content)
            os.rename(path + ".rcpt.tmp", path + ".rcpt")
            os.rename(path + ".eml.tmp", path + ".eml")
        return await super().handle_DATA(server, session, envelope)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def offer_pipelining(server, session, envelope, hostname, responses):
    """EHLO offers PIPELINING: aiosmtpd reads pipelined commands in order but does not say so."""
    session.host_name = hostname
    return responses[:-1] + ["250-PIPELINING"] + responses[-1:]


class LoggingSMTP(SMTP):
    """SMTP that logs each command verb with whether the session was encrypted, and can
    refuse STARTTLS after offering it."""

    log_file = None
    refuse_starttls = False

    def _log(self, verb):
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(f"{'tls' if self._tls_protocol else 'clear'} {verb}\n")

    async def smtp_EHLO(self, arg):
        self._log("EHLO")
        return await super().smtp_EHLO(arg)

    async def smtp_STARTTLS(self, arg):
        self._log("STARTTLS")
        if self.refuse_starttls:
            await self.push("454 4.7.0 TLS not available due to temporary reason")
            return
        return await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg):
        self._log("AUTH")
        return await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg):
        self._log("MAIL")
        return await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        self._log("RCPT")
        return await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg):
        self._log("DATA")
        return await super().smtp_DATA(arg)


class LoggingController(Controller):
    def factory(self):
        return LoggingSMTP(self.handler, **self.SMTP_kwargs)


def only_mechanism(name):
    """An AUTH mechanism Herald does not speak; it always fails."""

    async def mechanism(server, args):
        return AuthResult(success=False, handled=False)

    mechanism.__auth_mechanism_name__ = name
    return mechanism


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
    parser.add_argument("--raw", metavar="DIR")
    parser.add_argument("--log", metavar="FILE")
    parser.add_argument("--refuse-starttls", action="store_true")
    parser.add_argument("--only-auth-mechanism", metavar="NAME")
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args()
    LoggingSMTP.log_file = args.log
    LoggingSMTP.refuse_starttls = args.refuse_starttls
    if args.raw:
        os.makedirs(args.raw, exist_ok=True)

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
    handler = Handler(args.maildir, replies, args.raw)
    if args.pipelining:
        handler.handle_EHLO = offer_pipelining
    if args.only_auth_mechanism:
        name = args.only_auth_mechanism.upper()
        handler.auth_ONLY = only_mechanism(name)
        params["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        params["auth_required"] = True
        params["auth_require_tls"] = False
        params.setdefault("authenticator", lambda *a: AuthResult(success=False))
    ssl_context = tls_context(*args.smtps) if args.smtps else None

    controller = LoggingController(
        handler,
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

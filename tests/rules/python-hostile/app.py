"""A deliberately bad Python rule for the sandbox tests: `config.misdeed` picks what it does
on a `test.*` event (an event with `data.behave` makes it behave)."""

import os
import random
import socket
import sys
import time

from herald import Address, Message, Rule, RuleError


class Hostile(Rule):
    defaults = {"misdeed": "none"}

    def on_custom(self, event, custom):
        data = custom.value() or {}
        misdeed = "none" if data.get("behave") else self.settings().misdeed
        return MISDEEDS[misdeed]()


def behave():
    return [Message(subject="behaved", text="fine\n", to=[Address("root@example.org")])]


def spin():
    n = 0
    while True:
        n += 1


def hoard():
    kept = []
    while True:
        kept.append(bytearray(1 << 20))


def recurse(depth=0):
    return recurse(depth + 1) + 1


def recurse_unbounded():
    sys.setrecursionlimit(1_000_000)
    return recurse()


def raise_error():
    return {"a": 1}["missing key, on purpose"]


def flood():
    to = [Address("root@example.org")]
    return [Message(subject=f"flood {i}", text="x\n", to=to) for i in range(100_000)]


def inject():
    to = [Address("root@example.org")]
    return [Message(subject="hello\r\nBcc: victim@example.org", text="x\n", to=to)]


def refuse():
    raise RuleError("refusing on purpose")


def chance():
    """Reads the clock and random numbers: the same bytes on every replay."""
    text = f"random {random.random()!r} {random.getrandbits(64)}\ntime {time.time()!r}\n"
    return [Message(subject=f"chance {random.randint(0, 10**9)}", text=text,
                    to=[Address("root@example.org")])]


def attempt(what):
    try:
        return f"got {what()!r}"[:60]
    except Exception as err:  # noqa: BLE001 (the point is to see what fails)
        return f"refused ({type(err).__name__})"


def escape():
    """Tries the doors a sandbox must keep shut, and mails what it saw."""
    seen = {
        "file": attempt(lambda: open("/etc/passwd").read()),
        "listdir": attempt(lambda: os.listdir("/")),
        "environ": attempt(lambda: dict(os.environ) or None),
        "socket": attempt(lambda: socket.create_connection(("127.0.0.1", 25), timeout=1)),
    }
    text = "".join(f"{k}: {v}\n" for k, v in seen.items())
    return [Message(subject="escape", text=text, to=[Address("root@example.org")])]


MISDEEDS = {
    "none": behave,
    "loop": spin,
    "memory": hoard,
    "recursion": recurse,
    "recursion-unbounded": recurse_unbounded,
    "raise": raise_error,
    "flood": flood,
    "header-injection": inject,
    "error": refuse,
    "chance": chance,
    "escape": escape,
}

"""The host calls: logging, the rule's config, and its own key-value store."""

import json
from typing import Any, Optional

from wit_world.imports import host as _host


def log(level: str, message: str) -> None:
    """Write a line to Herald's log: level is trace, debug, info, warn or error."""
    _host.log(_host.Level[level.upper()], str(message))


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)


def config() -> Any:
    """The rule's `config` map from herald.yaml, parsed (`{}` when empty)."""
    return json.loads(_host.config())


def kv_get(key: str) -> Optional[bytes]:
    """A key of this rule's own store; None when absent or expired."""
    return _host.kv_get(key)


def kv_set(key: str, value: bytes, ttl_seconds: Optional[int] = None) -> None:
    """Write a key, with an optional time to live counted from the event's time."""
    _host.kv_set(key, bytes(value), ttl_seconds)


def kv_delete(key: str) -> None:
    _host.kv_delete(key)

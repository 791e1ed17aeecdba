"""The `Rule` base class: per-kind handlers, settings with defaults, and the config check."""

from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from herald._host import config as _config
from herald._types import (
    Broadcast, CommentAdded, Custom, Event, GroupCreated, LoginFailed, ServerDown, ServerUp,
    Tick, UserCreated, WebError,
)

_HANDLERS = {
    ServerUp: "on_server_up",
    ServerDown: "on_server_down",
    LoginFailed: "on_login_failed",
    UserCreated: "on_user_created",
    GroupCreated: "on_group_created",
    CommentAdded: "on_comment_added",
    WebError: "on_web_error",
    Broadcast: "on_broadcast",
    Tick: "on_tick",
    Custom: "on_custom",
}

_registered: List[type] = []


class RuleError(Exception):
    """Raise it to fail this invocation with its text (the engine records it; no traceback)."""


class Rule:
    """Subclass it once in `app.py`. Either override `handle(event)`, or write the handlers
    of the event kinds the rule cares about: `on_user_created(self, event, created)`,
    `on_login_failed(self, event, failed)`, ... (`on_server_up`, `on_server_down`,
    `on_group_created`, `on_comment_added`, `on_web_error`, `on_broadcast`, `on_tick`,
    `on_custom`). Each returns a list of `Message`s (or None for none).

    `defaults` are the rule's settings: `config:` in herald.yaml overrides them, keys it does
    not list are refused when Herald loads the rule, and a value must have its default's type
    (a None default takes anything). `defaults = None` accepts any config unchecked."""

    defaults: Optional[Dict[str, Any]] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registered.append(cls)

    def handle(self, event: Event) -> Optional[list]:
        """Call the handler of the event's kind, if the rule has one."""
        handler = getattr(self, _HANDLERS.get(type(event.data), ""), None)
        if handler is None:
            return []
        return handler(event, event.data)

    def settings(self) -> SimpleNamespace:
        """`defaults` overridden by the rule's `config:`, as attributes (`settings.mode`)."""
        merged = dict(self.defaults or {})
        merged.update(_config())
        return SimpleNamespace(**merged)

    def check_config(self, config: Dict[str, Any]) -> Optional[tuple]:
        """(path, message) of the first thing wrong with `config`, or None when it is fine."""
        if self.defaults is None:
            return None
        if not isinstance(config, dict):
            return ("", "the config must be a map of settings")
        for key, value in config.items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "none"
                return (key, f"unknown setting `{key}`; the settings are: {known}")
            wrong = _type_problem(self.defaults[key], value)
            if wrong:
                return (key, wrong)
        return None


def _type_problem(default: Any, value: Any) -> Optional[str]:
    """Why `value` cannot replace `default`, or None."""
    if default is None:
        return None
    expected = type(default)
    if expected is bool:
        fits = isinstance(value, bool)
    elif expected is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = isinstance(value, expected)
    if fits:
        return None
    return f"invalid type: {_json_type(value)}, expected {_json_type(default)}"


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a map", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def the_rule() -> Rule:
    """The one `Rule` subclass that app.py defines, instantiated."""
    rules = [cls for cls in _registered if cls.__module__ == "app"]
    if len(rules) != 1:
        names = ", ".join(cls.__name__ for cls in rules) or "none"
        raise RuntimeError(
            f"app.py must define exactly one subclass of herald.Rule (found: {names})"
        )
    return rules[0]()

"""The component's entry point: binds the author's `Rule` in app.py to the WIT world `rule`.

componentize-py imports this module when it builds the component (the interpreter is
pre-initialised then), so an app.py that does not import, or defines no `Rule`, fails
`herald rule build` rather than the first event.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit

import app  # noqa: F401  (the author's module: its Rule subclass registers itself)
from herald import _message as m
from herald._rule import RuleError, the_rule
from herald._types import Custom, Event

_RULE = the_rule()


def _event(event: wit.Event) -> Event:
    data = event.data
    value = Custom(data.value) if isinstance(data, wit.Payload_Custom) else data.value
    return Event(event.id, event.kind, event.source, event.time, event.time_unix_ms, value,
                 event.data_json)


def _recipient(r: m.Recipient) -> wit.Recipient:
    if isinstance(r, m.Address):
        return wit.Recipient_Address(r.email)
    if isinstance(r, m.UserId):
        return wit.Recipient_UserId(r.id)
    if isinstance(r, m.UserName):
        return wit.Recipient_UserName(r.name)
    if isinstance(r, m.Group):
        return wit.Recipient_Group(r.name)
    if isinstance(r, m.GroupOwners):
        return wit.Recipient_GroupOwners(r.name)
    if isinstance(r, m.Admins):
        return wit.Recipient_Admins()
    if isinstance(r, m.ActiveUsers):
        return wit.Recipient_ActiveUsers()
    if isinstance(r, str):
        return wit.Recipient_Address(r)
    raise TypeError(f"not a recipient: {r!r} (use Address, UserName, Admins(), ...)")


def _message(msg: m.Message) -> wit.Message:
    if not isinstance(msg, m.Message):
        raise TypeError(f"a rule returns a list of herald.Message, not {type(msg).__name__}")
    addressing = wit.Addressing.TOGETHER if msg.together else wit.Addressing.INDIVIDUAL
    return wit.Message(
        to=[_recipient(r) for r in msg.to],
        cc=[_recipient(r) for r in msg.cc],
        reply_to=list(msg.reply_to),
        subject=msg.subject,
        text=msg.text,
        html=msg.html,
        headers=[wit.Header(name, value) for name, value in msg.headers.items()],
        addressing=addressing,
    )


class WitWorld(wit_world.WitWorld):
    def handle(self, event: wit.Event) -> list:
        try:
            out = _RULE.handle(_event(event))
        except RuleError as err:
            raise Err(str(err))
        return [_message(msg) for msg in out or []]

    def check_config(self, config: str) -> None:
        problem = _RULE.check_config(json.loads(config))
        if problem is not None:
            raise Err(wit.ConfigError(path=problem[0], message=problem[1]))

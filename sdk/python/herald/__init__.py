"""Herald's Python SDK: write a notification rule as one class.

A rule is a subclass of `Rule` in `app.py`. Herald calls its `handle(event)` once per
event, on a fresh sandbox instance, and mails the `Message`s it returns::

    from herald import Rule, Message, Admins, UserCreated

    class NewUser(Rule):
        defaults = {"subject_prefix": "[OMERO] "}

        def on_user_created(self, event, created: UserCreated):
            settings = self.settings()
            return [Message(subject=f"{settings.subject_prefix}Welcome {created.user.name}",
                            text="...", to=[Admins()])]

`herald rule build` turns the folder into a WebAssembly component (componentize-py, the
contract `herald:rule` in `wit/rule.wit`); `herald test` runs its cases.
"""

from herald._types import (
    Broadcast,
    Comment,
    CommentAdded,
    ConfigError,
    Custom,
    Entry,
    Event,
    ExceptionInfo,
    Group,
    GroupCreated,
    LoginFailed,
    Member,
    ObjectRef,
    RequestInfo,
    ServerDown,
    ServerUp,
    Tick,
    User,
    UserCreated,
    WebError,
)
from herald._message import (
    ActiveUsers,
    Address,
    Admins,
    Group as GroupMembers,
    GroupOwners,
    Message,
    UserId,
    UserName,
)
from herald._host import config, debug, error, info, kv_delete, kv_get, kv_set, log, warn
from herald._rule import Rule, RuleError
from herald import directory, omero

__all__ = [
    "ActiveUsers", "Address", "Admins", "Broadcast", "Comment", "CommentAdded", "ConfigError",
    "Custom", "Entry", "Event", "ExceptionInfo", "Group", "GroupCreated", "GroupMembers",
    "GroupOwners", "LoginFailed", "Member", "Message", "ObjectRef", "RequestInfo", "Rule",
    "RuleError", "ServerDown", "ServerUp", "Tick", "User", "UserCreated", "UserId", "UserName",
    "WebError", "config", "debug", "directory", "error", "info", "kv_delete", "kv_get", "kv_set",
    "log", "omero", "warn",
]

"""Messages and their recipients, as a rule author writes them."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union


@dataclass(frozen=True)
class Address:
    """A literal email address."""

    email: str


@dataclass(frozen=True)
class UserId:
    """A directory user by OMERO id."""

    id: int


@dataclass(frozen=True)
class UserName:
    """A directory user by omeName."""

    name: str


@dataclass(frozen=True)
class Group:
    """Every member of a group, by name."""

    name: str


@dataclass(frozen=True)
class GroupOwners:
    """The owners of a group, by name."""

    name: str


@dataclass(frozen=True)
class Admins:
    """Members of `system` with an email."""


@dataclass(frozen=True)
class ActiveUsers:
    """Members of `user`."""


Recipient = Union[Address, UserId, UserName, Group, GroupOwners, Admins, ActiveUsers]


@dataclass
class Message:
    """One mail to send. `text` is always sent; `html` is an optional alternative.
    `headers` must be `X-` headers (or the few the engine allows), with no CR or LF.
    `together=True` sends one mail with every recipient in To: instead of one each."""

    subject: str
    text: str
    to: List[Recipient] = field(default_factory=list)
    cc: List[Recipient] = field(default_factory=list)
    reply_to: List[str] = field(default_factory=list)
    html: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    together: bool = False

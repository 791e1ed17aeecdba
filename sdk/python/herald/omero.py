"""OMERO's stock mail, for rules that match what OMERO.server sends (parity) or add to it
(enriched): the same texts and helpers as the Rust SDK's `herald_sdk::omero`, so the mail is
byte-identical."""

import json
from typing import List, Optional, Sequence, Tuple

from herald._message import Message
from herald._types import User

SUBJECT_PREFIX = "[OMERO] "
DEFAULT_BODY = "Automated email sent by the OMERO server.\n"
EXPERIMENTER = "ome.model.meta.Experimenter"
EXPERIMENTER_GROUP = "ome.model.meta.ExperimenterGroup"
FACT_CHARS = 1000
LINK_BYTES = 4096
HEADER_VALUE_CHARS = 200


def modified_objects(cls: str, ids: Sequence[int], action: str) -> str:
    """OMERO's body for a model change: `Modified objects:` then one line per object."""
    return "Modified objects:\n" + "".join(f"class {cls}:{i} - {action}\n" for i in ids)


def _breaks_a_line(c: str) -> bool:
    code = ord(c)
    return code < 0x20 or 0x7F <= code <= 0x9F or c in "\u2028\u2029"


def one_line(value: str, max_chars: int) -> str:
    """`value` with every control character made a space, cut to `max_chars` (then `…`)."""
    folded = "".join(" " if _breaks_a_line(c) else c for c in value[:max_chars])
    return folded + "…" if len(value) > max_chars else folded


def header_value(value: str) -> str:
    """Safe inside a subject or header: one line, at most 200 characters."""
    return one_line(value, HEADER_VALUE_CHARS)


def escape_html(text: str) -> str:
    table = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
    return "".join(table.get(c, c) for c in text)


def percent_encode(text: str) -> str:
    """Every byte but ASCII letters, digits and `-._~` as %XX (upper-case hex)."""
    keep = b"-._~"
    return "".join(
        chr(b) if (chr(b).isascii() and chr(b).isalnum()) or b in keep else f"%{b:02X}"
        for b in text.encode("utf-8")
    )


def _head_bytes(value: str, max_bytes: int) -> str:
    return value.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def link(template: str, variables: Sequence[Tuple[str, str]]) -> str:
    """`template` with `{name}` placeholders filled, each value percent-encoded."""
    return _fill(template, variables, lambda v: percent_encode(_head_bytes(v, LINK_BYTES + 1)))


def _fill(template: str, variables: Sequence[Tuple[str, str]], encode) -> str:
    values = dict(variables)
    out, rest = [], template
    while "{" in rest:
        before, after = rest.split("{", 1)
        out.append(before)
        close = after.find("}")
        if close >= 0 and after[:close] in values:
            out.append(encode(values[after[:close]]))
            rest = after[close + 1:]
        else:
            out.append("{")
            rest = after
    out.append(rest)
    return "".join(out)


def display_name(user: User) -> str:
    """`First Last (omeName)`, or the omeName alone when the directory has no full name."""
    parts = [_head_bytes(p, FACT_CHARS).strip() for p in (user.first_name, user.last_name) if p]
    parts = [p for p in parts if p]
    return f"{' '.join(parts)} ({user.name})" if parts else user.name


def login_definitely_failed(data_json: str) -> bool:
    """Whether a login event says it failed: `success` false or absent."""
    try:
        data = json.loads(data_json)
    except ValueError:
        return True
    return not isinstance(data, dict) or data.get("success", False) is False


class Summary:
    """The enriched body: an intro line, `Label: value` facts and links, as text and HTML."""

    def __init__(self, intro: str):
        self.intro = one_line(intro, FACT_CHARS)
        self.facts: List[Tuple[str, str]] = []
        self.links: List[Tuple[str, str]] = []

    def fact(self, label: str, value: str) -> "Summary":
        self.facts.append((label, one_line(value, FACT_CHARS)))
        return self

    def link(self, label: str, url: Optional[str]) -> "Summary":
        if url is not None and len(url.encode("utf-8")) <= LINK_BYTES:
            self.links.append((one_line(label, FACT_CHARS), url))
        return self

    def text(self) -> str:
        out = f"{self.intro}\n\n" + "".join(f"{k}: {v}\n" for k, v in self.facts)
        if self.links:
            out += "\n" + "".join(f"{k}: {v}\n" for k, v in self.links)
        return out + "\n" + DEFAULT_BODY

    def html(self) -> str:
        e = escape_html
        out = "<!DOCTYPE html>\n<html><body>\n" + f"<p>{e(self.intro)}</p>\n"
        if self.facts:
            rows = "".join(
                f'<tr><th align="left">{e(k)}</th><td>{e(v)}</td></tr>\n' for k, v in self.facts
            )
            out += f"<table>\n{rows}</table>\n"
        out += "".join(f'<p><a href="{e(u)}">{e(k)}</a></p>\n' for k, u in self.links)
        small = e(DEFAULT_BODY.rstrip())
        return out + f"<p><small>{small}</small></p>\n</body></html>\n"

    def message(self, subject: str) -> Message:
        return Message(subject=subject, text=self.text(), html=self.html())

"""Operator text to values: ``KEY=VALUE`` pairs (selectors, labels, env) and queue lists.

The one place these are read, for the CLI and the server alike. Standard library only, so
the CLI can parse its options without loading the wire models. Every parser raises
``ValueError`` with a one-line message; each caller says which option or parameter it was
(a CLI usage error, a 400 from the server).

The name syntaxes here are also the wire contract's (``contract.LabelKey``,
``contract.QueueName``), so the CLI refuses exactly what the server would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: A label key: letters, digits, ``_ . - /``, at most ``MAX_LABEL_KEY`` characters.
LABEL_KEY_PATTERN = r"^[A-Za-z0-9_.\-/]+$"
MAX_LABEL_KEY = 63
#: A queue name: letters, digits, ``_ . : -``.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_QUEUE_NAME = 255

_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def split_pair(item: str, *, strip: bool = True, secret: bool = False) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; the value may be empty or hold more ``=``.

    ``strip`` trims blanks around key and value (labels, selectors; not env values).
    A ``secret`` item is never echoed back, not even in an error.
    """
    key, sep, value = item.partition("=")
    if strip:
        key, value = key.strip(), value.strip()
    if not sep or not key:
        shown = "a value" if secret else repr(item)
        raise ValueError(f"{shown} is not KEY=VALUE")
    return key, value


def parse_pairs(
    items: Iterable[str], *, strip: bool = True, secret: bool = False
) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` items (``--env``, ``--label``); a later key wins."""
    return dict(split_pair(item, strip=strip, secret=secret) for item in items)


def split_list(text: str) -> list[str]:
    """``a, b,,c`` -> ``["a", "b", "c"]``: comma-separated, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_selector(text: str) -> dict[str, str]:
    """``site=plant1,env=prod`` -> a dict of labels a worker must all have."""
    items = split_list(text)
    if not items:
        raise ValueError("empty selector: give at least one KEY=VALUE label")
    try:
        return parse_pairs(items)
    except ValueError as exc:
        raise ValueError(f"bad selector: {exc}") from None


def format_selector(selector: Mapping[str, str]) -> str:
    """The text ``parse_selector`` reads back."""
    return ",".join(f"{key}={value}" for key, value in selector.items())


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` worker labels, checked as the wire contract checks them."""
    labels: dict[str, str] = {}
    for item in items:
        key, value = split_pair(item)
        if len(key) > MAX_LABEL_KEY or not _LABEL_KEY.match(key):
            raise ValueError(
                f"bad label {item!r}: use KEY=VALUE with a key of letters, digits, '.', '_', "
                f"'-' or '/' (at most {MAX_LABEL_KEY})"
            )
        if _CONTROL_CHARS.search(value):
            raise ValueError(f"bad label {item!r}: the value holds control characters")
        labels[key] = value
    return labels


def parse_queues(text: str) -> list[str]:
    """``default,gpu`` -> queue names, in the order given; at least one."""
    queues = split_list(text)
    if not queues:
        raise ValueError("give at least one queue, e.g. -q default,gpu")
    for queue in queues:
        if len(queue) > MAX_QUEUE_NAME or not _QUEUE_NAME.match(queue):
            raise ValueError(f"bad queue name {queue!r}: use letters, digits, '_', '.', ':' or '-'")
    return queues

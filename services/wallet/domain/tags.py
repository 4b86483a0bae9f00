"""Tags a family puts on statement lines (``# обеды``, ``# проезд``), kept apart from the
account: a few short words per line, the same for every guardian of the child."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from services.wallet.domain.values import RejectionReason, WalletRejected

MAX_TAGS_PER_LINE = 5
TAG_MAX_LENGTH = 32
TAGGABLE_KINDS = frozenset({"top_ups", "sales", "rides", "fare_refunds", "sale_refunds",
                            "transfers", "expiries"})
"""The operation records that make statement lines (a dispute is no line of its own)."""

_TAG = re.compile(r"[\w-]+(?: [\w-]+)*")


def normalize_tag(text: str) -> str:
    """A tag as it is kept and compared: without the leading ``#`` and surrounding spaces,
    case-folded, inner runs of spaces made one (``" #Обеды  в школе"`` -> ``"обеды в школе"``)."""
    return " ".join(text.strip().lstrip("#").split()).casefold()


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The line's tags, normalised, each once, in the order given; refused (``invalid_tags``)
    when one is empty, longer than :data:`TAG_MAX_LENGTH`, holds other than letters, digits,
    ``_``, ``-`` and single spaces, or when there are more than :data:`MAX_TAGS_PER_LINE`."""
    kept: list[str] = []
    for raw in tags:
        tag = normalize_tag(raw)
        if not tag or len(tag) > TAG_MAX_LENGTH or not _TAG.fullmatch(tag):
            raise WalletRejected(RejectionReason.INVALID_TAGS,
                                 f"a tag is 1-{TAG_MAX_LENGTH} letters, digits, _ or -")
        if tag not in kept:
            kept.append(tag)
    if len(kept) > MAX_TAGS_PER_LINE:
        raise WalletRejected(RejectionReason.INVALID_TAGS,
                             f"at most {MAX_TAGS_PER_LINE} tags per statement line")
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class LineTags:
    """The tags of one statement line (an operation of the account); none: the line has none."""

    operation_id: str
    tags: tuple[str, ...]


def tag_statement_line(operation_id: str, tags: Iterable[str], *,
                       recorded_kinds: Collection[str],
                       reissue_ids: Collection[str]) -> LineTags:
    """Set the tags of the line of ``operation_id`` (replacing what it had; an empty list
    clears them). The operation must be one of the account's statement lines: recorded as one
    of ``recorded_kinds`` that make lines, or one of its card reissues (``unknown_operation``)."""
    if not (TAGGABLE_KINDS & set(recorded_kinds)) and operation_id not in reissue_ids:
        raise WalletRejected(RejectionReason.UNKNOWN_OPERATION,
                             f"no statement line {operation_id} on this account")
    return LineTags(operation_id, normalize_tags(tags))

"""Password policy (NIST SP 800-63B 5.1.1.2, OWASP ASVS V2.1).

* Length in Unicode code points after NFKC: at least 8, at most 128 (64+ must be allowed;
  128 bounds the hashing work an attacker can ask for). No truncation, no composition rules,
  spaces and any printable Unicode are allowed.
* Rejected: common passwords (list + "word with a short affix" + leet + keyboard-layout
  folding), repetitive or sequential strings, and passwords containing the account's phone, a
  contract number or a child's birth date in any common digit order.

Every rule has its own :class:`Reason`, and :func:`check_password` returns all that apply so a
client can explain them at once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from ..security import normalize_password
from .common import AuthRejected, Reason
from .common_passwords import COMMON_PASSWORDS

MIN_LENGTH = 8
MAX_LENGTH = 128
_MAX_AFFIX = 4
_MIN_CORE = 4

_LEET = str.maketrans({"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s",
                       "5": "s", "7": "t", "+": "t", "8": "b", "9": "g"})
# Russian letters typed with the keyboard left in the Latin layout ("пароль" -> "gfhjkm") and
# back, so that a word in either layout is recognised.
_RU = "йцукенгшщзхъфывапролджэячсмитьбюё"
_EN = "qwertyuiop[]asdfghjkl;'zxcvbnm,.`"
_RU_TO_EN = str.maketrans(_RU, _EN)
_EN_TO_RU = str.maketrans(_EN, _RU)
_KEYBOARD_ROWS = (
    "1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./",
    "йцукенгшщзхъ", "фывапролджэ", "ячсмитьбю", "qazwsxedcrfvtgbyhnujmikolp",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
)
_AFFIX_CHARS = "0123456789!@#$%^&*()_-+=.,?~ "
_YEAR_SUFFIX = re.compile(r"(19|20)\d\d[!.?]?$")


@dataclass(frozen=True)
class PasswordContext:
    """Personal data a password must not be built from. ``phone`` is E.164."""

    phone: str | None = None
    contract_numbers: Sequence[str] = field(default_factory=tuple)
    birth_dates: Sequence[date] = field(default_factory=tuple)


def _strip_affixes(word: str) -> tuple[str, str]:
    core = word.strip(_AFFIX_CHARS)
    start = word.find(core) if core else 0
    affix = word[:start] + word[start + len(core):]
    return core, affix


def _affix_is_trivial(affix: str) -> bool:
    return len(affix) <= _MAX_AFFIX or bool(_YEAR_SUFFIX.fullmatch(affix.lstrip("!@#._-")))


def is_common(password: str) -> bool:
    """True for a listed password or a listed base with a short affix or a year."""
    lowered = normalize_password(password).lower()
    forms = {lowered, lowered.translate(_RU_TO_EN), lowered.translate(_EN_TO_RU)}
    for form in list(forms):
        forms.add(form.translate(_LEET))
    if forms & COMMON_PASSWORDS:
        return True
    for form in forms | {f.replace(" ", "") for f in forms}:
        core, affix = _strip_affixes(form)
        if len(core) < _MIN_CORE or not _affix_is_trivial(affix):
            continue
        variants = {core, core.translate(_LEET), core.translate(_RU_TO_EN),
                    core.translate(_EN_TO_RU)}
        if variants & COMMON_PASSWORDS:
            return True
    return False


def is_repetitive_or_sequential(password: str) -> bool:
    """Whole-password patterns only: one or two symbols, a repeated unit of up to 4 symbols, a
    run of consecutive code points either way, or a walk along one keyboard row."""
    p = normalize_password(password).lower()
    if len(set(p)) <= 2:
        return True
    for unit in range(1, 5):
        if len(p) % unit == 0 and p[:unit] * (len(p) // unit) == p:
            return True
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(p)}
    if steps in ({1}, {-1}):
        return True
    if p.isdigit():
        cyclic = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(p)}
        if cyclic in ({1}, {9}):
            return True
    return any(p in row * 2 or p in (row * 2)[::-1] for row in _KEYBOARD_ROWS)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def phone_forms(phone: str) -> set[str]:
    """Digit strings a person would type for their own number: +7 912 345-67-89 gives
    79123456789, 89123456789, 9123456789 and the 7-digit subscriber part 3456789."""
    digits = _digits(phone)
    forms = {digits}
    if len(digits) >= 10:
        national = digits[-10:]
        forms |= {national, "8" + national, national[-7:]}
    return {f for f in forms if len(f) >= 7}


def birth_date_forms(born: date) -> set[str]:
    """DDMMYYYY, YYYYMMDD, MMDDYYYY, DDMMYY, YYMMDD, MMDDYY and unpadded D/M variants, as digit
    strings (separators such as "." or "-" are ignored when matching)."""
    d, m, y = born.day, born.month, born.year
    yy = f"{y % 100:02d}"
    dd, mm = f"{d:02d}", f"{m:02d}"
    forms = {f"{dd}{mm}{y}", f"{y}{mm}{dd}", f"{mm}{dd}{y}", f"{dd}{mm}{yy}",
             f"{yy}{mm}{dd}", f"{mm}{dd}{yy}", f"{d}{m}{y}", f"{y}{m}{d}", f"{m}{d}{y}"}
    return {f for f in forms if len(f) >= 6}


def check_password(password: str, context: PasswordContext | None = None) -> list[Reason]:
    """All policy violations of ``password`` (empty list = acceptable)."""
    ctx = context or PasswordContext()
    normalized = normalize_password(password)
    reasons: list[Reason] = []
    if len(normalized) < MIN_LENGTH:
        reasons.append(Reason.PASSWORD_TOO_SHORT)
    if len(normalized) > MAX_LENGTH:
        reasons.append(Reason.PASSWORD_TOO_LONG)
        return reasons  # the remaining checks are not worth running on oversized input
    if is_common(normalized):
        reasons.append(Reason.PASSWORD_COMMON)
    if is_repetitive_or_sequential(normalized):
        reasons.append(Reason.PASSWORD_REPETITIVE)
    digits = _digits(normalized)
    if ctx.phone and _contains_any(digits, phone_forms(ctx.phone)):
        reasons.append(Reason.PASSWORD_CONTAINS_PHONE)
    if _contains_any(digits, {_digits(c) for c in ctx.contract_numbers if _digits(c)}):
        reasons.append(Reason.PASSWORD_CONTAINS_CONTRACT)
    if any(_contains_any(digits, birth_date_forms(b)) for b in ctx.birth_dates):
        reasons.append(Reason.PASSWORD_CONTAINS_BIRTH_DATE)
    return reasons


def _contains_any(haystack: str, needles: Iterable[str]) -> bool:
    return bool(haystack) and any(n and n in haystack for n in needles)


def require_acceptable_password(password: str, context: PasswordContext | None = None) -> None:
    """Raise :class:`AuthRejected` carrying every violated rule (first one as ``reason``)."""
    reasons = check_password(password, context)
    if reasons:
        raise AuthRejected(reasons[0], reasons=tuple(reasons))

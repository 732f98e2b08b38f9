"""Unified social credit codes (GB 32100-2015), the taxpayer id on every invoice."""

from __future__ import annotations

import re
from functools import lru_cache

from streams.observability.logs import mask_tax_id

__all__ = ["TAX_ID_ALPHABET", "TAX_ID_LENGTH", "check_character", "make_tax_id", "tax_id_problem"]

#: the 31 characters a code may use; I, O, S, V and Z are left out as easy to misread
TAX_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
TAX_ID_LENGTH = 18
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUES = {char: index for index, char in enumerate(TAX_ID_ALPHABET)}
# Per position, each character's value times that position's weight: the check sum is
# one lookup per character, and a character outside the alphabet is a KeyError.
_WEIGHTED = tuple({char: value * weight for char, value in _VALUES.items()} for weight in _WEIGHTS)
#: positions 3-8 (1-based) are the administrative region code
_REGION = slice(2, 8)
# Length, case, alphabet and region in one match, so a valid id skips the checks that
# exist to word the error.
_WELL_FORMED = re.compile(f"[{TAX_ID_ALPHABET}]{{2}}[0-9]{{6}}[{TAX_ID_ALPHABET}]{{10}}")


def check_character(first17: str) -> str:
    """The 18th character that makes ``first17`` a valid code.

    Raises ``ValueError`` unless ``first17`` is 17 characters of ``TAX_ID_ALPHABET``.
    """
    if len(first17) != TAX_ID_LENGTH - 1:
        raise ValueError(f"expected 17 characters, got {len(first17)}")
    try:
        total = sum(map(dict.__getitem__, _WEIGHTED, first17))
    except KeyError:
        raise ValueError(
            f"{mask_tax_id(first17)!r} has characters outside the code alphabet"
        ) from None
    return TAX_ID_ALPHABET[(31 - total % 31) % 31]


def make_tax_id(first17: str) -> str:
    """``first17`` with its check character appended (tests and the demo feed)."""
    return first17 + check_character(first17)


# A worker sees the same sellers and buyers again and again; bounded, so a stream of
# distinct ids costs a miss each and never memory.
@lru_cache(maxsize=4096)
def tax_id_problem(value: str) -> str | None:
    """None when ``value`` is a valid code, else a sentence saying what is wrong.

    The sentence never quotes the whole id: it is stored (the ledger's error message and
    history), sent (``invoice.failed``, dead-letter headers) and logged, and a buyer's
    tax id is personal data. Masked as the logs mask it, the sender still recognises it.
    """
    if _WELL_FORMED.fullmatch(value) is not None and value[-1] == check_character(value[:-1]):
        return None
    if len(value) != TAX_ID_LENGTH:
        # Not quoted at all: the mask keeps 6 characters, too many of a short value.
        return f"A tax id has {TAX_ID_LENGTH} characters; this one has {len(value)}."
    shown = mask_tax_id(value)
    lower = sorted({char for char in value if char.islower()})
    if lower:
        # Never upper-cased for the sender: the platform compares ids byte for byte.
        return (
            f"Tax id {shown!r} has lower-case letters ({', '.join(lower)}); "
            "send it in upper case exactly as registered."
        )
    bad = sorted({char for char in value if char not in _VALUES})
    if bad:
        return (
            f"Tax id {shown!r} has characters a tax id never uses ({', '.join(bad)}); "
            "only digits and upper-case letters other than I, O, S, V and Z are allowed."
        )
    if not value[_REGION].isdigit():
        return f"Characters 3-8 of tax id {shown!r} are the region code and must be digits."
    expected = check_character(value[:-1])
    if value[-1] != expected:
        return (
            f"Tax id {shown!r} fails its check character (expected {expected!r} at the end); "
            "it is probably mistyped."
        )
    return None

"""The configurable facts of invoice-domain.md, as one immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING

from streams.settings import DEFAULT_PROVINCE_CODES, DEFAULT_TAX_RATES
from streams.validation.money import plain_quantity

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["DomainRules"]


@dataclass(frozen=True, slots=True)
class DomainRules:
    """What the authority may change; the defaults are invoice-domain.md's."""

    #: issue dates up to this day of January may still carry last year's number prefix
    january_grace_days: int = 7
    #: an invoice dated exactly this many days ago still passes
    max_issue_age_days: int = 366
    max_lines: int = 2000
    tax_rates: frozenset[Decimal] = field(
        default_factory=lambda: frozenset(Decimal(rate) for rate in DEFAULT_TAX_RATES)
    )
    province_codes: frozenset[str] = field(
        default_factory=lambda: frozenset(DEFAULT_PROVINCE_CODES)
    )
    #: each allowed rate by its plain text (``"0.13"``, ``"0"``): a line's rate is one
    #: lookup, where parsing it and looking the Decimal up in ``tax_rates`` is two
    #: calls and a hash; other spellings of a rate (``"0.130"``) take that way
    rate_by_text: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        texts = {f"{rate:f}": rate for rate in self.tax_rates}
        # Only what parse_quantity reads as that rate: a rate of more places than a
        # line may carry is refused with its words, as before.
        readable = {text: rate for text, rate in texts.items() if plain_quantity(text) == rate}
        object.__setattr__(self, "rate_by_text", MappingProxyType(readable))

    @classmethod
    def from_settings(cls, settings: Settings) -> DomainRules:
        return cls(
            january_grace_days=settings.january_grace_days,
            max_issue_age_days=settings.max_issue_age_days,
            max_lines=settings.max_lines,
            tax_rates=frozenset(settings.tax_rates),
            province_codes=frozenset(settings.province_codes),
        )

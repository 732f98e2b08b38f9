"""Item names as invoice-domain.md writes them: *category*name, like *信息技术服务*软件维护."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["has_item_name_form"]

_ITEM_NAME = re.compile(r"\*([^*]*)\*(.*)", re.DOTALL)


# Item names come from a seller's catalogue and repeat; bounded, so a stream of
# distinct names costs a miss each and never memory.
@lru_cache(maxsize=4096)
def has_item_name_form(name: str) -> bool:
    """Whether ``name`` is *category*name with neither part blank."""
    match = _ITEM_NAME.fullmatch(name)
    return match is not None and bool(match[1].strip()) and bool(match[2].strip())

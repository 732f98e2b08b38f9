from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.validation.taxid import (
    TAX_ID_ALPHABET,
    check_character,
    make_tax_id,
    tax_id_problem,
)

KNOWN_GOOD = "91110000600037341L"

# Position 1-2 any code characters, 3-8 the region digits, 9-17 any code characters.
first17s = st.builds(
    lambda head, region, tail: head + region + tail,
    st.text(TAX_ID_ALPHABET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(TAX_ID_ALPHABET, min_size=9, max_size=9),
)


def test_known_good_id_passes() -> None:
    assert tax_id_problem(KNOWN_GOOD) is None
    assert check_character(KNOWN_GOOD[:17]) == "L"
    assert make_tax_id(KNOWN_GOOD[:17]) == KNOWN_GOOD


def test_alphabet_leaves_out_easily_misread_letters() -> None:
    assert len(TAX_ID_ALPHABET) == 31
    assert not set("IOSVZ") & set(TAX_ID_ALPHABET)


@given(first17s)
def test_any_generated_id_passes(first17: str) -> None:
    assert tax_id_problem(make_tax_id(first17)) is None


@given(first17s, st.sampled_from(TAX_ID_ALPHABET))
def test_any_other_check_character_fails(first17: str, wrong: str) -> None:
    good = make_tax_id(first17)
    if wrong == good[-1]:
        return
    problem = tax_id_problem(first17 + wrong)
    assert problem is not None
    assert "check character" in problem


@given(first17s, st.integers(0, 16), st.sampled_from(TAX_ID_ALPHABET))
def test_any_single_substitution_in_the_body_fails(first17: str, at: int, char: str) -> None:
    # Weights are distinct and non-zero mod 31 (prime), so one changed character
    # always changes the check character.
    good = make_tax_id(first17)
    if good[at] == char:
        return
    assert tax_id_problem(good[:at] + char + good[at + 1 :]) is not None


@given(first17s, st.integers(0, 17), st.sampled_from("ISVZOa-"))
def test_a_problem_never_quotes_the_whole_id(first17: str, at: int, char: str) -> None:
    # The sentence is stored in the ledger and sent on the topics: buyer ids stay masked.
    good = make_tax_id(first17)
    for bad in (good[:at] + char + good[at + 1 :], good[:-1] + ("0" if good[-1] != "0" else "1")):
        problem = tax_id_problem(bad)
        assert problem is not None
        assert bad not in problem
        assert f"'{bad[:4]}{'*' * 12}{bad[-2:]}'" in problem


def test_lower_case_is_an_error_not_fixed() -> None:
    problem = tax_id_problem(KNOWN_GOOD.lower())
    assert problem is not None
    assert "upper case" in problem


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (KNOWN_GOOD[:-1], "18 characters"),
        (KNOWN_GOOD + "0", "18 characters"),
        ("", "18 characters"),
        ("9111000060003734IL", "never uses (I)"),
        ("91O10000600037341L", "never uses (O)"),
        ("91A10000600037341L", "region code"),
        ("91110000600037341X", "check character"),
    ],
)
def test_problems_are_named(value: str, words: str) -> None:
    problem = tax_id_problem(value)
    assert problem is not None
    assert words in problem


@pytest.mark.parametrize("bad", ["", "9111000060003734", "911100006000373411", "9111000060003734Z"])
def test_check_character_refuses_what_is_not_17_code_characters(bad: str) -> None:
    with pytest.raises(ValueError, match="characters"):
        check_character(bad)

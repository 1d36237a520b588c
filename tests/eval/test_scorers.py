"""Scorers against hand-computed cases, plus invariants."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.eval.scorers import (
    SCORERS,
    edit_sim,
    lcs_length,
    lcs_length_reference,
    normalise_py150,
    rouge_l,
    sari,
    score,
    score_each,
)


# ----------------------------------------------------------------- exact / first
def test_exact_match_strips_whitespace():
    assert score("exact_match", [" A\n", "B", "c"], ["A", "B ", "C"]) == pytest.approx(200 / 3)
    assert score("exact_match", [""], [""]) == 100.0
    assert score("exact_match", [""], ["A"]) == 0.0


def test_first_char_compares_first_non_space_char():
    preds = ["  B. because ...", "A", "", "C"]
    refs = ["B. The answer", "B", "A", "C is right"]
    assert score_each("first_char", preds, refs) == [100.0, 0.0, 0.0, 100.0]
    assert score("first_char", preds, refs) == 50.0


# -------------------------------------------------------------------- rouge-l
def test_rouge_l_hand_cases():
    # LCS("a b c d", "a c d e") = 3 -> P = R = 3/4 -> F = 75
    assert rouge_l("a b c d", "a c d e") == pytest.approx(75.0)
    # LCS = 2, P = 2/2, R = 2/5 -> F = 2 * 1 * 0.4 / 1.4
    assert rouge_l("the cat", "the cat sat on mat") == pytest.approx(100 * 0.8 / 1.4)
    assert rouge_l("x y z", "x y z") == 100.0          # identical
    assert rouge_l("p q", "r s t") == 0.0              # disjoint
    assert rouge_l("", "a b") == 0.0                    # empty prediction
    assert rouge_l("", "") == 100.0                     # both empty


def test_multiple_references_take_the_best():
    assert score("rouge_l", ["a b"], [["c d", "a b"]]) == 100.0
    assert score("exact_match", ["B"], [["A", "B"]]) == 100.0
    with pytest.raises(ValueError, match="at least one reference"):
        score("rouge_l", ["a"], [[]])


# ------------------------------------------------------------------- edit sim
def test_py150_normalisation():
    assert normalise_py150("x = <NUM_LIT>") == "x = 0"
    assert normalise_py150("print(<STR_LIT>, <CHAR_LIT>)") == "print(, )"
    assert normalise_py150("open(<STR_LIT:data.txt>)") == "open(data.txt)"
    assert normalise_py150("f(<NUM_LIT:3>) + g(<STR_LIT:a b>)") == "f(3) + g(a b)"


def test_edit_sim_hand_cases():
    # LCS("abc", "abd") = 2, T = 6 -> 100 * 4 / 6
    assert edit_sim("abc", "abd") == pytest.approx(400 / 6)
    # after normalisation both are "x = 0"
    assert edit_sim("x = <NUM_LIT>", "x = 0") == 100.0
    assert edit_sim("abc", "xyz") == 0.0
    assert edit_sim("", "abc") == 0.0
    assert edit_sim("", "") == 100.0
    # "kitten" vs "sitting": LCS = "ittn" = 4, T = 13
    assert edit_sim("kitten", "sitting") == pytest.approx(100 * 8 / 13)


# ----------------------------------------------------------------------- SARI
def test_sari_hand_computed():
    # source "a b c", prediction "a b d", reference "a d" (worked by hand):
    # n=1: keep P=1/2 R=1 F=2/3; del P=1; add F=1
    # n=2: keep P=0 R=1 F=0;     del P=1; add F=0
    # n=3: keep F=1;             del P=1; add P=0 R=1 F=0
    # n=4: all 1
    # SARI = 100 * ((2/3+0+1+1)/4 + 1 + (1+0+0+1)/4) / 3 = 100 * 13/18
    assert sari("a b c", "a b d", ["a d"]) == pytest.approx(100 * 13 / 18)


def test_sari_empty_prediction_hand_computed():
    # source "a b", prediction "", reference "a":
    # n=1: keep P=1 (nothing kept) R=0 F=0; del {a,b}: good a=0, b=1 -> P=1/2; add F=1
    # n>=2: keep F=1, del P=1 ("a b" deleted, not in ref), add F=1
    # SARI = 100 * (3/4 + 3.5/4 + 1) / 3 = 87.5
    assert sari("a b", "", ["a"]) == pytest.approx(87.5)


def test_sari_identical_and_published_example():
    assert sari("a b c d e", "a b c d e", ["a b c d e"]) == 100.0
    # Example from the HF `evaluate` SARI card (already lower-cased and tokenised).
    got = sari(
        "about 95 species are currently accepted .",
        "about 95 you now get in .",
        ["about 95 species are currently known .", "about 95 species are now accepted .", "95 species are now accepted ."],
    )
    assert got == pytest.approx(26.953601953601954)


def test_sari_dispatch_and_fallback():
    assert score("sari", ["a b d"], ["a d"], sources=["a b c"]) == pytest.approx(100 * 13 / 18)
    with pytest.warns(UserWarning, match="ROUGE-L"):
        got = score("sari", ["a b c d"], ["a c d e"])
    assert got == pytest.approx(75.0)


# -------------------------------------------------------------------- errors
def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", ["a"], ["a"])
    with pytest.raises(ValueError, match="one reference per prediction"):
        score("exact_match", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        score("exact_match", [], [])
    with pytest.raises(ValueError, match="one source per prediction"):
        score("sari", ["a"], ["a"], sources=["a", "b"])


# ---------------------------------------------------------------- invariants
_text = st.lists(st.sampled_from("ab c"), max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=20), st.lists(st.integers(0, 4), max_size=20))
def test_bit_parallel_lcs_matches_dp(a, b):
    assert lcs_length(a, b) == lcs_length_reference(a, b)


@settings(max_examples=200, deadline=None)
@given(_text, _text, _text)
def test_every_scorer_in_range_and_identity_is_100(src, pred, ref):
    for metric in SCORERS:
        kw = {"sources": [src]} if metric == "sari" else {}
        s = score(metric, [pred], [ref], **kw)
        assert 0.0 <= s <= 100.0 and not math.isnan(s)
        if metric != "sari":
            assert score(metric, [ref], [ref]) == 100.0
    assert sari(src, src, [src]) == 100.0
    assert rouge_l(pred, ref) == pytest.approx(rouge_l(ref, pred))
    assert edit_sim(pred, ref) == pytest.approx(edit_sim(ref, pred))

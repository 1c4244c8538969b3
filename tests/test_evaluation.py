"""Normalisers and error rates, checked by hand and against jiwer on random input."""

from __future__ import annotations

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.benchmark import evaluation
from tingxie.benchmark.evaluation import (
    character_error_rate,
    edit_distance,
    normalize_chinese,
    normalize_english,
    word_error_rate,
)


def _naive_distance(a, b) -> int:
    """Textbook full-table Levenshtein, as an independent oracle."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(
                table[i - 1][j] + 1,
                table[i][j - 1] + 1,
                table[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
    return table[len(a)][len(b)]


# --- edit distance ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("abc", "abc", 0),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        (["the", "cat", "sat"], ["the", "cat", "sat", "down"], 1),
        (["a", "b"], ["b", "a"], 2),
        ("你好世界", "你们好世界", 1),
    ],
)
def test_edit_distance_by_hand(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_edit_distance_over_many_bits():
    # Longer than any machine word, so carries between words of the big int matter.
    a = "abcde" * 60
    b = ("abdce" * 50) + "xyz"
    assert edit_distance(a, b) == _naive_distance(a, b)


@settings(max_examples=300)
@given(st.text(alphabet="abcd", max_size=40), st.text(alphabet="abcd", max_size=40))
def test_edit_distance_matches_naive(a, b):
    assert edit_distance(a, b) == _naive_distance(a, b)


@settings(max_examples=100)
@given(st.lists(st.integers(0, 5), max_size=80), st.lists(st.integers(0, 5), max_size=80))
def test_edit_distance_on_any_hashable(a, b):
    assert edit_distance(a, b) == _naive_distance(a, b)


# --- WER / CER against jiwer -----------------------------------------------------

_words = st.lists(st.sampled_from(["a", "b", "c", "dd", "e"]), max_size=12).map(" ".join)
_nonempty_words = st.lists(st.sampled_from(["a", "b", "c", "dd", "e"]), min_size=1, max_size=12).map(" ".join)
_chars = st.text(alphabet="你好世界中文ab", max_size=20)
_nonempty_chars = st.text(alphabet="你好世界中文ab", min_size=1, max_size=20)


def _pairs(ref, hyp):
    return st.lists(st.tuples(ref, hyp), min_size=1, max_size=5).map(lambda p: [list(x) for x in zip(*p)])


@settings(max_examples=200)
@given(_pairs(_nonempty_words, _words))
def test_wer_matches_jiwer(pairs):
    refs, hyps = pairs
    assert word_error_rate(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))


@settings(max_examples=200)
@given(_pairs(_nonempty_chars, _chars))
def test_cer_matches_jiwer(pairs):
    refs, hyps = pairs
    assert character_error_rate(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps))


def test_rates_by_hand():
    # 1 substitution + 1 deletion over 4 words, 1 insertion over 2 words: 3 / 6.
    refs = ["the cat sat down", "hello world"]
    hyps = ["the bat sat", "hello big world"]
    assert word_error_rate(refs, hyps) == pytest.approx(0.5)
    assert character_error_rate(["你好世界"], ["你好世"]) == pytest.approx(0.25)
    assert character_error_rate(["abc"], ["abc"]) == 0.0
    # An empty reference in a corpus that has words elsewhere is fine.
    assert word_error_rate(["", "a b"], ["x", "a b"]) == pytest.approx(0.5)


def test_rate_argument_errors():
    with pytest.raises(ValueError):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        word_error_rate([""], ["a"])
    with pytest.raises(TypeError):
        character_error_rate("abc", "abd")


# --- normalisation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Hello, World!", "hello world"),
        ("  And so,   my fellow\nAmericans:  ask not. ", "and so my fellow americans ask not"),
        ("Don\u2019t stop", "don't stop"),
        ("\u201cQuoted\u201d and \u2018single\u2019", "quoted and single"),
        ("'tis the dogs' bone", "tis the dogs bone"),
        ("rock'n'roll", "rock'n'roll"),
        ("well-known \u2014 long\u2013dash", "well known long dash"),
        ("ＦＵＬＬ width", "full width"),
        ("50% of $10", "50 of 10"),
        ("", ""),
    ],
)
def test_normalize_english(raw, normal):
    assert normalize_english(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("你好，世界！", "你好世界"),
        ("這是繁體中文。", "这是繁体中文"),
        ("「引號」《書名》……", "引号书名"),
        ("我 爱 AI, OK?", "我爱aiok"),
        ("（全角）１２３", "全角123"),
    ],
)
def test_normalize_chinese(raw, normal):
    assert normalize_chinese(raw) == normal


def test_normalize_chinese_without_opencc(monkeypatch):
    monkeypatch.setattr(evaluation, "_t2s", lambda: None)
    assert normalize_chinese("這是，繁體。") == "這是繁體"


@settings(max_examples=1000)
@given(st.text())
def test_normalisers_are_idempotent(text):
    once = normalize_english(text)
    assert normalize_english(once) == once
    once = normalize_chinese(text)
    assert normalize_chinese(once) == once

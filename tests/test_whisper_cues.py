"""Cues from timed words: where they are cut, and punctuation kept with the word it closes."""

from tingxie.backends.whisper.timing import TimedWord, cues


def words(*items):
    return [TimedWord(text, start, end) for text, start, end in items]


def test_punctuation_after_a_span_join_stays_with_the_word_before():
    # "you" ends the second packed span; the aligner puts "." at the start of the third.
    timed = words((" not", 3.9, 4.2), (" what", 4.2, 4.5), (" you", 7.5, 8.2), (".", 8.3, 8.3),
                  (" Ask", 8.4, 8.8), (" what", 8.8, 9.1))
    got = cues(timed, part_starts=[0.0, 3.8, 8.25])
    assert [text for _, _, text in got] == ["not what you.", "Ask what"]
    assert got[0][1] == 8.3 and got[1][0] == 8.4


def test_an_opening_quote_after_a_pause_starts_the_next_cue():
    timed = words((" He", 0.0, 1.0), (" said,", 1.0, 3.5), (' "', 3.6, 3.6), ("Go", 3.6, 4.0), (" home", 4.0, 4.5))
    got = cues(timed, part_starts=[0.0])
    assert [text for _, _, text in got] == ["He said,", '"Go home']


def test_a_glued_closing_quote_ends_the_cue_it_closes():
    timed = words((" Be", 0.0, 0.5), (" calm.", 0.5, 1.2), ('"', 1.2, 1.2), (" There", 1.5, 2.0))
    got = cues(timed, part_starts=[0.0, 1.25])
    assert [text for _, _, text in got] == ['Be calm."', "There"]


def test_sentences_end_cues_once_a_second_long():
    timed = words((" Mr.", 0.0, 0.4), (" Smith", 0.4, 0.8), (" left.", 0.8, 1.6), (" Then", 2.0, 2.3))
    got = cues(timed, part_starts=[0.0])
    assert [text for _, _, text in got] == ["Mr. Smith left.", "Then"]

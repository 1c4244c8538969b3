"""The embedded models on real recordings: what a user of the default install gets."""

from tingxie.benchmark.evaluation import character_error_rate, normalize_chinese, normalize_english, word_error_rate

# Whisper tiny.en scores 5.6 % WER on LibriSpeech test-clean in the Whisper paper (Radford et
# al., table 2), read speech like LJSpeech. Our normaliser keeps numerals as written, so
# "fifteenth" read as "15th" and "fourteen fifty five" as "1455" cost about 2 points here
# (6 of the 279 reference words). 10 % leaves a margin for int8 and still fails on a real
# regression such as a dropped tail or a wrong language.
LJSPEECH_WER_BOUND = 0.10


def test_jfk_matches_its_reference_with_both_embedded_models(data_dir, tiny_transcriber, base_transcriber):
    reference = normalize_english((data_dir / "jfk.txt").read_text())
    for transcriber in (tiny_transcriber, base_transcriber):
        transcript = transcriber.transcribe(str(data_dir / "jfk.flac"))
        assert normalize_english(transcript.text) == reference, transcriber.backend.name
        assert transcript.language == "en"
        assert 10.9 < transcript.stats.audio_seconds < 11.1
        assert all(0 <= s.start <= s.end <= 11.1 for s in transcript.segments)


def test_ljspeech_word_error_rate_is_under_its_bound(data_dir, tiny_transcriber):
    references = dict(line.rstrip("\n").split("\t") for line in (data_dir / "ljspeech/references.tsv").open())
    refs, hyps = [], []
    for key, text in sorted(references.items()):
        transcript = tiny_transcriber.transcribe(str(data_dir / "ljspeech" / f"{key}.flac"))
        refs.append(normalize_english(text))
        hyps.append(normalize_english(transcript.text))
    wer = word_error_rate(refs, hyps)
    print(f"\nLJSpeech LJ001-0001..0016, whisper-tiny.en int8: WER {wer:.2%} over {len(refs)} clips")
    assert wer < LJSPEECH_WER_BOUND


def test_mandarin_through_the_default_model_contains_the_reference(data_dir, base_transcriber):
    transcript = base_transcriber.transcribe(str(data_dir / "asr_example.wav"))
    reference = normalize_chinese((data_dir / "asr_example.txt").read_text())
    hypothesis = normalize_chinese(transcript.text)
    print(f"\nasr_example.wav: {transcript.text} (CER {character_error_rate([reference], [hypothesis]):.2%})")
    assert transcript.language == "zh"
    assert reference in hypothesis


def test_a_clip_is_decoded_to_its_end(data_dir, tiny_transcriber):
    # Decoding with timestamp tokens, Whisper closes this clip at 7.0 s with two timestamps and
    # says nothing of the last 1.2 s ("beautiful letters"); tingxie decodes without them.
    transcript = tiny_transcriber.transcribe(str(data_dir / "ljspeech/LJ001-0012.flac"))
    assert normalize_english(transcript.text).endswith("beautiful letters")

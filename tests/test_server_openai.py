"""The real whisper-tiny.en behind `tingxie serve`, driven by the official openai client.

Results must equal the CLI's on the same file, in every response format, and 20 concurrent
requests of mixed lengths must all come back with their own correct transcripts.
"""

import json
import subprocess
import sys
import threading

import openai  # the dev extra: missing fails, never skips
import pytest

from long_audio import english_pieces, joined, write_flac
from tingxie.benchmark.evaluation import normalize_english, word_error_rate


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    return {"jfk": data_dir / "jfk.flac",
            "talk": write_flac(folder / "talk.flac", joined(english_pieces()[:7], seed=2))}  # 51 s, 2 windows


@pytest.fixture(scope="module")
def cli_outputs(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    subprocess.run([sys.executable, "-m", "tingxie.cli.main", "transcribe", *map(str, inputs.values()), "-m",
                    "whisper-tiny.en", "-o", str(out), "-q"], check=True, timeout=600, capture_output=True)
    return {name: {fmt: (out / f"{path.stem}.{fmt}").read_text() for fmt in ("txt", "srt", "vtt", "json")}
            for name, path in inputs.items()}


def create(client, path, **kwargs):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=audio, model="whisper-1", **kwargs)


@pytest.mark.parametrize("name", ["jfk", "talk"])
def test_every_response_format_through_the_openai_client_equals_the_cli(client, inputs, cli_outputs, name):
    cli = cli_outputs[name]
    cli_json = json.loads(cli["json"])
    formats = ("json", "text", "srt", "vtt", "verbose_json") if name == "jfk" else ("verbose_json",)
    for fmt in formats:
        result = create(client, inputs[name], response_format=fmt)
        if fmt == "json":
            assert result.text == cli_json["text"]
        elif fmt == "text":
            assert result == cli_json["text"] + "\n"
        elif fmt in ("srt", "vtt"):
            assert result == cli[fmt]
        else:
            assert result.text == cli_json["text"] and result.language == "en"
            assert result.duration == pytest.approx(cli_json["stats"]["audio_duration_s"], abs=0.01)
            got = [(s.start, s.end, s.text.strip()) for s in result.segments]
            assert got == [(s["start"], s["end"], s["text"]) for s in cli_json["segments"]]
            assert all(s.temperature == 0.0 and s.compression_ratio > 0 for s in result.segments)
    if name == "jfk":
        assert "ask not what your country can do for you" in cli_json["text"].lower()


def test_the_model_list_and_model_names(client):
    assert {m.id for m in client.models.list()} == {"whisper-tiny.en", "whisper-base", "whisper-1"}  # embedded: on demand
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.transcriptions.create(file=("a.flac", b"never decoded"), model="whisper-large-v3")
    assert error.value.status_code == 400 and "whisper-tiny.en" in error.value.message


def test_twenty_concurrent_requests_of_mixed_lengths_all_get_their_own_transcripts(client, data_dir, tmp_path):
    references = dict(line.rstrip("\n").split("\t") for line in (data_dir / "ljspeech/references.tsv").open())
    references["jfk"] = (data_dir / "jfk.txt").read_text().strip()
    pieces = {key: data_dir / "ljspeech" / f"{key}.flac" for key in sorted(references) if key != "jfk"}
    cases = [(path, references[key]) for key, path in pieces.items()]  # 16 clips, 1.8-10 s
    cases += [(data_dir / "jfk.flac", references["jfk"])] * 2  # 11 s, twice: identical answers
    from tingxie.audio.decode import decode_audio

    for n, keys in enumerate((["LJ001-0002", "LJ001-0008", "LJ001-0013"], ["LJ001-0001", "LJ001-0004", "LJ001-0006",
                                                                            "LJ001-0009"])):
        audio = joined([decode_audio(str(pieces[k])) for k in keys], seed=n)
        cases.append((write_flac(tmp_path / f"joined{n}.flac", audio), " ".join(references[k] for k in keys)))
    assert len(cases) == 20

    answers = [None] * len(cases)

    def ask(i, path):
        answers[i] = create(client, path).text

    threads = [threading.Thread(target=ask, args=(i, path)) for i, (path, _) in enumerate(cases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert all(answer for answer in answers)
    assert answers[16] == answers[17]
    assert normalize_english(answers[16]) == normalize_english(references["jfk"])
    refs = [normalize_english(ref) for _, ref in cases]
    hyps = [normalize_english(answer) for answer in answers]
    assert word_error_rate(refs, hyps) < 0.10  # the bound test_transcribe_real sets for tiny.en
    for ref, hyp in zip(refs, hyps):  # each answer is its own input's: no mix-up between requests
        assert word_error_rate([ref], [hyp]) < 0.35, (ref, hyp)

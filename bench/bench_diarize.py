"""Diarization error rate (DER) and the cost of --diarize, on real voices with known turns.

Cases: long/real_en_long.flac (four real readers; its segments.json names each piece's source, so
the turns are known), and conversations built here from pieces of those readers' audio, with
turns of 2 to 15 s and 2, 3 and 4 speakers. Each case runs `tingxie transcribe` twice, without and
with --diarize (number of speakers not given), and scores the JSON's speaker segments against the
turns (missed speech, false alarm, confusion; 0.25 s collar). Those include what the recogniser
left out (speech it gave no text is missed speech), so the stage's own turns are scored too: the
same VAD segments (tiny.en's packing) through the diarization stage in this process.

    flock /tmp/tingxie-bench.lock .venv/bin/python bench/bench_diarize.py [--model whisper-tiny.en]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tingxie.audio.decode import decode_audio
from tingxie.benchmark.der import score

SHARED = Path("/work/shared/audio/long")
RATE = 16000


def real_long_case(folder: Path):
    pieces = json.loads((SHARED / "real_en_long.segments.json").read_text())
    turns = [(p["start"], p["start"] + p["dur"], p["source"].split(":")[0]) for p in pieces]
    return SHARED / "real_en_long.flac", turns


def voices() -> dict[str, np.ndarray]:
    """Each reader's audio from real_en_long, pieces joined (pauses inside pieces kept)."""
    audio = decode_audio(str(SHARED / "real_en_long.flac"))
    pieces = json.loads((SHARED / "real_en_long.segments.json").read_text())
    out: dict[str, list[np.ndarray]] = {}
    for p in pieces:
        start = int(p["start"] * RATE)
        out.setdefault(p["source"].split(":")[0], []).append(audio[start:start + int(p["dur"] * RATE)])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def conversation(speakers: list[str], audio: dict[str, np.ndarray], seconds: float, seed: int):
    """Turns of 2-15 s, never the same speaker twice in a row, with 0.2-0.8 s pauses."""
    rng = np.random.default_rng(seed)
    cursor = {name: 0 for name in speakers}
    parts, turns, now, last = [], [], 0.0, None
    while now < seconds:
        name = rng.choice([s for s in speakers if s != last])
        length = int(rng.uniform(2.0, 15.0) * RATE)
        source = audio[name]
        if cursor[name] + length > len(source):
            cursor[name] = 0  # a short source (JFK) is reused from its start
        piece = source[cursor[name]:cursor[name] + length]
        cursor[name] += length
        turns.append((now, now + len(piece) / RATE, name))
        gap = np.zeros(int(rng.uniform(0.2, 0.8) * RATE), dtype=np.float32)
        parts += [piece, gap]
        now += (len(piece) + len(gap)) / RATE
        last = name
    return np.concatenate(parts), turns


def write_wav(path: Path, samples: np.ndarray) -> Path:
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def run(path: Path, out: Path, model: str, diarize: bool) -> tuple[float, dict]:
    command = [str(Path(sys.executable).parent / "tingxie"), "transcribe", str(path), "-m", model, "-f", "json",
               "-o", str(out), "-q"] + (["--diarize"] if diarize else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, json.loads((out / (path.stem + ".json")).read_text())


def stage_turns(path: Path, model: str):
    """The diarization stage's speaker turns for one input, as the pipeline computes them."""
    from tingxie.audio.decode import decode_chunks
    from tingxie.diarize.stage import Diarizer, load_encoder
    from tingxie.engine.streaming import StreamState

    transcriber = _transcriber(model)
    diarizer = Diarizer(load_encoder())
    for _ in diarizer.observe(transcriber.segments(decode_chunks(str(path)), StreamState())):
        pass
    return [(t.start, t.end, t.speaker) for t in diarizer.speaker_timeline().turns]


_loaded = {}


def _transcriber(model: str):
    from tingxie.engine.pipeline import Transcriber
    from tingxie.options import ModelOptions, TranscribeOptions

    if model not in _loaded:
        _loaded[model] = Transcriber(TranscribeOptions(model=ModelOptions(name=model)))
    return _loaded[model]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of each built conversation")
    args = parser.parse_args()
    audio = voices()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [("real_en_long (4 readers)", *real_long_case(folder))]
        for count, names in ((2, ["ss", "dc"]), (3, ["ss", "dc", "ljspeech"]), (4, ["ss", "dc", "ljspeech", "jfk.flac"])):
            samples, turns = conversation(names, audio, args.seconds, seed=count)
            cases.append((f"conversation, {count} speakers", write_wav(folder / f"conv{count}.wav", samples), turns))
        print("| case | audio s | speakers (true / found) | DER % of the stage's turns | DER % of the output "
              "segments | missed % | false alarm % | confusion % | wall s without / with --diarize | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, path, turns in cases:
            plain_s, _ = run(path, folder / "plain", args.model, diarize=False)
            diarized_s, document = run(path, folder / "diarized", args.model, diarize=True)
            hypothesis = [(s["start"], s["end"], s["speaker"]) for s in document["segments"]]
            result = score(turns, hypothesis)
            stage = score(turns, stage_turns(path, args.model))
            ref = result.reference_s
            print(f"| {name} | {document['stats']['audio_duration_s']:.0f} | {result.reference_speakers} / "
                  f"{result.found_speakers} | {100 * stage.der:.1f} | {100 * result.der:.1f} | "
                  f"{100 * result.missed_s / ref:.1f} | "
                  f"{100 * result.false_alarm_s / ref:.1f} | {100 * result.confusion_s / ref:.1f} | "
                  f"{plain_s:.1f} / {diarized_s:.1f} | {diarized_s / plain_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()

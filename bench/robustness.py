"""Robustness: the same speech under hard conditions, tingxie beside faster-whisper.

    flock /tmp/tingxie-bench.lock .venv/bin/python bench/robustness.py

The inputs are made here from the repository's clips: tests/data/ljspeech/*.flac joined with
half a second between them, and (with --long) /work/shared/audio/long/real_en_long.flac.
Conditions: clean; an 8 kHz mu-law telephone line; white noise at 10, 5 and 0 dB SNR;
reverberation (a synthetic room, RT60 0.6 s); played 0.9x and 1.1x as fast; and two inputs
without speech, two minutes of digital silence and two of music-like tones.

Each input is transcribed by tingxie (its defaults: guards on, beam 5), faster-whisper
sequential (vad_filter=True) and BatchedInferencePipeline with batch 4 and 8, same model, one
run each, every run a whole child process (import, load, transcribe) timed from outside. The
table gives WER (invented words, for the inputs without speech), the longest run of a repeated
block of words (a loop: more than 4 where the reference has none) and the process seconds.
Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import wave
from pathlib import Path

import av
import numpy as np
from scipy.signal import fftconvolve, resample_poly

from tingxie.audio.decode import decode_audio
from tingxie.backends.whisper.guards import longest_repeat
from tingxie.benchmark.cases import CaseSpec
from tingxie.benchmark.command import read_reference
from tingxie.benchmark.evaluation import normalize_english
from tingxie.benchmark.runner import run_once, english_wer
from compare_faster_whisper import snapshot_source, source_state  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
LJSPEECH = ROOT / "tests" / "data" / "ljspeech"
LONG = ROOT.parent / "shared" / "audio" / "long" / "real_en_long.flac"
RATE = 16000
KINDS = (("tingxie", "tingxie", 0), ("fw-sequential", "fw-sequential", 0),
         ("fw-batched-4", "fw-batched", 4), ("fw-batched-8", "fw-batched", 8))
LOOP = 4  # copies in a row of a block of words that are still speech; one more is a loop


def joined_ljspeech() -> tuple[np.ndarray, str]:
    references = dict(line.rstrip("\n").split("\t") for line in (LJSPEECH / "references.tsv").open())
    gap = np.zeros(RATE // 2, np.float32)
    keys = sorted(references)
    samples = np.concatenate([part for key in keys for part in (decode_audio(LJSPEECH / f"{key}.flac"), gap)])
    return samples, " ".join(references[key] for key in keys)


def with_noise(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32)
    speech_power = np.mean(samples[np.abs(samples) > 1e-4] ** 2)  # the gaps are not speech
    return samples + noise * np.sqrt(speech_power / 10 ** (snr_db / 10))


def reverberant(samples: np.ndarray, rt60_s: float = 0.6, seed: int = 0) -> np.ndarray:
    """Convolved with a synthetic room: a direct path and exponentially decaying diffuse noise."""
    length = int(rt60_s * RATE)
    t = np.arange(length) / RATE
    response = np.random.default_rng(seed).standard_normal(length) * 10 ** (-3 * t / rt60_s) * 0.3
    response[0] = 1.0
    wet = fftconvolve(samples, response)[:len(samples)]
    return (wet * np.max(np.abs(samples)) / np.max(np.abs(wet))).astype(np.float32)


def at_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times as fast (pitch moves with it, as a tape or a resampler does)."""
    up, down = round(10 / factor), 10
    return resample_poly(samples, up, down).astype(np.float32) if factor != 1 else samples


def music_like_tones(seconds: float, seed: int = 0) -> np.ndarray:
    """Notes of a pentatonic scale with harmonics and a decaying envelope, two voices: music's
    texture without words."""
    rng = np.random.default_rng(seed)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16]) / 12)
    out = np.zeros(int(seconds * RATE), np.float32)
    for voice, gain in ((0, 0.12), (1, 0.08)):
        at = 0
        while at < len(out):
            length = int(rng.choice([0.25, 0.5, 0.75]) * RATE)
            t = np.arange(min(length, len(out) - at)) / RATE
            pitch = scale[rng.integers(len(scale))] / (2 if voice else 1)
            note = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3))
            out[at:at + len(t)] += (gain * note * np.exp(-3 * t)).astype(np.float32)
            at += length
    return out


def write_wav(samples: np.ndarray, path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def write_telephone(samples: np.ndarray, path: Path) -> None:
    """8 kHz mu-law WAV through FFmpeg's encoder, as a telephone line carries it."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :],
                                           format="s16", layout="mono")
        frame.sample_rate = RATE
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_inputs(into: Path, long: bool) -> list[tuple[str, Path, str | None]]:
    """(condition, file, reference or None for no speech) of every input, written into `into`."""
    speech, reference = joined_ljspeech()
    inputs: list[tuple[str, Path, str | None]] = []

    def add(name: str, samples: np.ndarray, ref: str | None, telephone: bool = False) -> None:
        path = into / (name.replace(" ", "_") + ".wav")
        (write_telephone if telephone else write_wav)(samples, path)
        inputs.append((name, path, ref))

    add("ljspeech clean", speech, reference)
    add("ljspeech 8 kHz mu-law", speech, reference, telephone=True)
    add("silence 120 s", np.zeros(120 * RATE, np.float32), None)
    add("music-like tones 120 s", music_like_tones(120), None)
    for snr in (10, 5, 0):
        add(f"ljspeech noise {snr} dB SNR", with_noise(speech, snr, seed=snr), reference)
    add("ljspeech reverb RT60 0.6 s", reverberant(speech), reference)
    add("ljspeech 0.9x speed", at_speed(speech, 0.9), reference)
    add("ljspeech 1.1x speed", at_speed(speech, 1.1), reference)
    if long:  # last: the longest
        samples = decode_audio(LONG)
        long_reference = read_reference(LONG.with_suffix(".txt"))
        add("real_en_long 8 kHz mu-law", samples, long_reference, telephone=True)
        inputs.append(("real_en_long clean", LONG, long_reference))
    return inputs


def loop_length(text: str) -> int:
    return longest_repeat(normalize_english(text).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="also real_en_long.flac, clean and 8 kHz mu-law")
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--inputs", type=Path, default=Path("/tmp/tingxie-robustness"), help="where inputs are made")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "robustness",
                        help="path stem: writes STEM.json and STEM.md")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    args.inputs.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    inputs = make_inputs(args.inputs, args.long)
    # the children run the code as it was when this started, whatever is edited meanwhile
    with tempfile.TemporaryDirectory(prefix="tingxie-source-") as tmp:
        snapshot = snapshot_source("worktree", Path(tmp))
        source = source_state("worktree", snapshot)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(snapshot), os.environ.get("PYTHONPATH")]))}
        meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                "started": started.isoformat(timespec="seconds"), "model": args.model, "compute_type": "int8",
                "cpus": os.cpu_count(), "source": source, "loadavg_before": load_before}

        def write(rows: list[dict]) -> str:  # after every condition: a run cut short keeps its rows
            table = markdown(rows)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            meta["loadavg_after"] = os.getloadavg()
            args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
            args.out.with_suffix(".md").write_text(table)
            return table

        print(measure(inputs, args, env, write))
    return 0


def measure(inputs, args, env, write) -> str:
    rows: list[dict] = []
    table = ""
    first = True
    for condition, path, reference in inputs:
        row = {"condition": condition, "speech": reference is not None, "runs": {}}
        for name, kind, batch in KINDS:
            spec = CaseSpec(f"{condition} / {name}", kind, str(path), model=args.model, compute_type="int8",
                            batch_size=batch)
            if first:  # one unmeasured load of each kind: one-time costs land on no row
                run_once(spec, prepare=True, timeout_s=args.timeout, env=env)
            record = run_once(spec, timeout_s=args.timeout, env=env)
            words = normalize_english(record.text).split()
            figures = {"process_s": round(record.process_s, 2), "audio_s": round(record.audio_s, 1),
                       "longest_repeat": loop_length(record.text), "text": record.text}
            if reference is not None:
                figures["wer"] = round(english_wer(reference, record.text), 4)
                figures["loop"] = figures["longest_repeat"] > LOOP >= loop_length(reference)
            else:
                figures["invented_words"] = len(words)
            row["runs"][name] = figures
            print(f"{condition} / {name}: {figures.get('wer', figures.get('invented_words'))} "
                  f"repeat {figures['longest_repeat']} {figures['process_s']} s", file=sys.stderr, flush=True)
        first = False
        rows.append(row)
        table = write(rows)
    return table


def markdown(rows: list[dict]) -> str:
    names = [name for name, _, _ in KINDS]
    lines = ["| condition | " + " | ".join(f"{n} WER / invented" for n in names) + " | "
             + " | ".join(f"{n} s" for n in names) + " | longest repeat (" + ", ".join(names) + ") |",
             "|---" * (2 * len(names) + 2) + "|"]
    for row in rows:
        runs = [row["runs"][n] for n in names]
        quality = [f"{100 * r['wer']:.1f}%" if "wer" in r else f"{r['invented_words']} words" for r in runs]
        lines.append(f"| {row['condition']} | " + " | ".join(quality) + " | "
                     + " | ".join(f"{r['process_s']:.1f}" for r in runs) + " | "
                     + ", ".join(str(r["longest_repeat"]) for r in runs) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Silero VAD CPU: the whole model frame by frame (as before) against the cut model and lanes.

Silero's own file (silero_vad.onnx from the silero-vad package, scripts/setup.sh --dev) is the
reference "whole model" and what exact/lanes run; "tingxie default" is faster-whisper's file run
the way tingxie now runs it by default (vad/silero.py, EXACT blocks, issue 15).

    .venv/bin/python bench/bench_vad.py --runs 3
    .venv/bin/python bench/bench_vad.py --convergence 0 8 16 32 64 125 250

Decodes real_en_long once, then times each probability source alone (CPU seconds of this
process, time.process_time) in turn, --runs times: the whole model, one session.run per frame
(what tingxie did before); vad_model.EXACT, the default (encoder cut off and run on 64 frames
per call, decoder per frame); vad_model.LANES (or --lanes/--lane-frames/--warmup); and, for
reference, faster-whisper's own silero_vad_v6.onnx (another export: 1000 frames per call, h/c
carried). Prints µs per frame, medians and the median of the per-run ratios, then compares
each one's probabilities and speech spans (default VadOptions) with the whole model's.
--convergence W... compares lanes with each warm-up W (frames) instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime

from tingxie.audio.decode import decode_audio
from tingxie.options import VadOptions
from tingxie.vad.detector import FrameRules, shape_spans, speech_runs
from tingxie.vad.silero import _SR, EXACT, FRAME, LANES, LaneLayout, SpeechProbabilities, model_path, silero_model

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio" / "long" / "real_en_long.flac"


def silero_own_file() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None:
        raise SystemExit("needs silero-vad's file: scripts/setup.sh --dev (pip install --no-deps silero-vad)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


def probabilities(audio: np.ndarray, layout: LaneLayout, model: Path | None = None) -> tuple[np.ndarray, float]:
    source = SpeechProbabilities(model or silero_own_file(), layout)
    started = time.process_time()
    probs = np.concatenate([source.push(audio), source.flush()])
    return probs, time.process_time() - started


def model_inputs(audio: np.ndarray) -> np.ndarray:
    """(frames, 64 + 512): each frame after the last 64 samples of the one before (zeros first)."""
    padded = np.concatenate([audio, np.zeros(-len(audio) % FRAME, np.float32)]).reshape(-1, FRAME)
    return np.concatenate([np.vstack([np.zeros((1, 64), np.float32), padded[:-1, -64:]]), padded], axis=1)


def faster_whisper_probabilities(audio: np.ndarray, session: onnxruntime.InferenceSession) -> tuple[np.ndarray, float]:
    """faster-whisper's model: input (frames, 64 + 512), the LSTM's h and c carried; 1000 frames a call."""
    started = time.process_time()
    windows = model_inputs(audio)
    h = c = np.zeros((1, 1, 128), np.float32)
    out = []
    for at in range(0, len(windows), 1000):
        probs, h, c = session.run(None, {"input": windows[at : at + 1000], "h": h, "c": c})
        out.append(probs.reshape(-1))
    return np.concatenate(out), time.process_time() - started


def one_thread_session(model: str | bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def faster_whisper_session() -> onnxruntime.InferenceSession:
    from faster_whisper.vad import get_assets_path

    return one_thread_session(str(Path(get_assets_path()) / "silero_vad_v6.onnx"))


def whole_model_probabilities(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """What tingxie did before: the whole model, one session.run per frame."""
    whole = silero_model(str(silero_own_file())).whole
    started = time.process_time()
    state = np.zeros((2, 1, 128), np.float32)
    windows = model_inputs(audio)
    probs = np.empty(len(windows), np.float32)
    for frame in range(len(windows)):
        out, state = whole.run(None, {"input": windows[frame : frame + 1], "state": state, "sr": _SR})
        probs[frame] = out[0, 0]
    return probs, time.process_time() - started


def spans(probs: np.ndarray) -> list[tuple[int, int]]:
    rules = FrameRules.from_options(VadOptions())
    return shape_spans(speech_runs(probs, rules), probs, len(probs), rules)


def compare(name: str, probs: np.ndarray, reference: np.ndarray, warm_frames: int) -> None:
    """How far probabilities (past the first warm_frames, which are exact) and spans are from the reference."""
    diff = np.abs(probs - reference)
    threshold = VadOptions().threshold
    crossings = int(((probs >= threshold) != (reference >= threshold)).sum())
    got, want = spans(probs), spans(reference)
    moved = sorted(set(got) ^ set(want))
    covered = np.zeros((2, len(reference)), bool)
    for row, shaped in enumerate((got, want)):
        for start, end in shaped:
            covered[row, start:end] = True
    print(f"{name}: first {warm_frames} frames equal: {np.array_equal(probs[:warm_frames], reference[:warm_frames])}; "
          f"|diff| max {diff.max():.3f}, 99.9% {np.quantile(diff, 0.999):.3f}, mean {diff.mean():.4f}; "
          f"frames on the other side of {threshold}: {crossings}; spans {len(got)} vs {len(want)}, "
          f"equal: {got == want}" + (f" (differing: {len(moved)}, e.g. {moved[:3]}; frames in speech in one "
                                     f"only: {(covered[0] != covered[1]).mean():.2%})" if moved else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", default=str(AUDIO))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=LANES.lanes)
    parser.add_argument("--lane-frames", type=int, default=LANES.lane_frames)
    parser.add_argument("--warmup", type=int, default=LANES.warmup)
    parser.add_argument("--convergence", type=int, nargs="*", metavar="W", help="warm-ups to compare (frames)")
    args = parser.parse_args()
    audio = decode_audio(args.audio)
    layout = LaneLayout(args.lanes, args.lane_frames, args.warmup)
    print(f"{args.audio}: {len(audio) / 16000:.1f} s; lanes: {layout}, block {layout.block_frames} frames "
          f"({layout.block_frames * 0.032:.1f} s); model cut in two: {silero_model(str(silero_own_file())).is_cut}; default: {model_path()}")
    reference, _ = whole_model_probabilities(audio)
    if args.convergence:
        for warmup in args.convergence:
            lanes = LaneLayout(args.lanes, args.lane_frames, warmup)
            compare(f"W={warmup:3d}", probabilities(audio, lanes)[0], reference, args.lane_frames + warmup)
        return
    session = faster_whisper_session()
    sources = {"whole model": lambda: whole_model_probabilities(audio), "exact": lambda: probabilities(audio, EXACT),
               "lanes": lambda: probabilities(audio, layout),
               "faster-whisper": lambda: faster_whisper_probabilities(audio, session),
               "tingxie default": lambda: probabilities(audio, EXACT, model_path())}
    seconds: dict[str, list[float]] = {name: [] for name in sources}
    outputs = {}
    for _ in range(args.runs):
        for name, source in sources.items():
            outputs[name], cpu = source()
            seconds[name].append(cpu)
    frames = len(reference)
    for name, runs in seconds.items():
        ratios = [s / r for s, r in zip(seconds["whole model"], runs)]
        print(f"{name:14s} CPU s {', '.join(f'{s:.3f}' for s in runs)}; median {statistics.median(runs):.3f} s "
              f"= {statistics.median(runs) / frames * 1e6:.1f} µs per frame; whole / this: median "
              f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})")
    compare("exact", outputs["exact"], reference, frames)
    compare("lanes", outputs["lanes"], reference, layout.lane_frames + layout.warmup)
    compare("faster-whisper", outputs["faster-whisper"], reference, 0)
    compare("tingxie default", outputs["tingxie default"], outputs["faster-whisper"], frames)


if __name__ == "__main__":
    main()

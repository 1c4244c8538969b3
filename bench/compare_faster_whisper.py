"""Compare tingxie with faster-whisper (sequential and batched) on one long English file.

    .venv/bin/python bench/compare_faster_whisper.py --runs 3

Every run is a fresh child process (peak RSS via wait4); runs are interleaved round-robin.
The children import tingxie from a snapshot taken at the start (the working tree, or a git
revision with --source), so edits made meanwhile cannot mix code versions within one table.
Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from tingxie.benchmark.cases import CaseSpec
from tingxie.benchmark.command import read_reference
from tingxie.benchmark.report import cpu_model, markdown_table, to_json
from tingxie.benchmark.runner import run_cases
from tingxie.memory.resources import usable_cpus

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = ROOT.parent / "shared" / "audio" / "long" / "real_en_long.flac"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--reference", type=Path, help="text, one line per piece (default: the audio's .txt)")
    parser.add_argument("--model", default="whisper-tiny.en", help="embedded name or CTranslate2 model directory")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8], help="fw-batched batch sizes")
    parser.add_argument("--tingxie-batch-sizes", type=int, nargs="*", default=[],
                        help="extra tingxie rows with these max batch sizes (beam 5)")
    parser.add_argument("--cases", nargs="+", help="run only the cases with these names")
    parser.add_argument("--baselines", nargs="+", default=["fw-sequential", "fw-batched-4"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compare_faster_whisper",
                        help="path stem: writes STEM.json and STEM.md")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed")
    parser.add_argument("--source", default="worktree",
                        help="the tingxie code to measure: 'worktree' (as it is now) or a git revision")
    parser.add_argument("--no-prepare", action="store_true", help="skip the unmeasured first load of each case")
    return parser.parse_args(argv)


def build_cases(args: argparse.Namespace) -> list[CaseSpec]:
    common = {"audio": str(args.audio), "model": args.model, "compute_type": args.compute_type}
    cases = [CaseSpec("fw-sequential", "fw-sequential", **common)]
    cases += [CaseSpec(f"fw-batched-{n}", "fw-batched", batch_size=n, **common) for n in args.batch_sizes]
    # the defaults (beam 5, automatic cap), with word-aligned times as `-f all|srt|vtt|json` writes them,
    # and as `-f txt` runs: no align pass, one piece per window (fw-batched's granularity)
    cases.append(CaseSpec("tingxie", "tingxie", batch_size=0, **common))
    cases.append(CaseSpec("tingxie-txt", "tingxie", batch_size=0, timestamps=False, **common))
    # one replica with every thread (the earlier CPU path) beside the default's one replica per thread
    cases.append(CaseSpec("tingxie-1-replica (extra)", "tingxie", batch_size=0, replicas=1, **common))
    cases.append(CaseSpec("tingxie-txt-1-replica (extra)", "tingxie", batch_size=0, timestamps=False, replicas=1, **common))
    cases.append(CaseSpec("tingxie-beam1 (extra: greedy)", "tingxie", batch_size=0, beam_size=1, **common))
    cases += [CaseSpec(f"tingxie-max-batch-{n} (extra)", "tingxie", batch_size=n, **common)
              for n in args.tingxie_batch_sizes]
    if args.cases:
        unknown = set(args.cases) - {case.name for case in cases}
        if unknown:
            raise SystemExit(f"unknown case names: {', '.join(sorted(unknown))}")
        cases = [case for case in cases if case.name in args.cases]
    return cases


def machine() -> dict:
    versions = {}
    for package in ("faster-whisper", "ctranslate2", "onnxruntime", "tingxie"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": os.cpu_count(), "usable_cpus": usable_cpus(), "cpu": cpu_model(),
        "python": platform.python_version(), "versions": versions,
    }


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


def snapshot_source(source: str, into: Path) -> Path:
    """Copy the tingxie package as it is now ('worktree') or at a git revision into `into`, with
    this harness's benchmark package on top; returns the directory for the children's PYTHONPATH."""
    package, ignore = ROOT / "src" / "tingxie", shutil.ignore_patterns("__pycache__")
    if source == "worktree":
        shutil.copytree(package, into / "tingxie", ignore=ignore)
    else:
        archive = git("archive", "--format=tar", source, "src/tingxie")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")
        shutil.move(into / "src" / "tingxie", into / "tingxie")
    shutil.copytree(package / "benchmark", into / "tingxie" / "benchmark", ignore=ignore, dirs_exist_ok=True)
    return into


def source_state(source: str, snapshot: Path) -> dict:
    """What was measured: the revision, its commit, and a digest of the snapshot's files."""
    digest = hashlib.sha256()
    for path in sorted(snapshot.rglob("*.py")):
        digest.update(str(path.relative_to(snapshot)).encode() + b"\0" + path.read_bytes())
    state = {"source": source, "commit": git("rev-parse", "HEAD" if source == "worktree" else source).decode().strip(),
             "digest": digest.hexdigest()[:16]}
    if source == "worktree":
        state["changed_from_commit"] = git("status", "--porcelain", "--", "src").decode().splitlines()
    return state


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reference_path = args.reference or args.audio.with_suffix(".txt")
    reference = read_reference(reference_path)
    cases = build_cases(args)

    def progress(round_, spec, run):
        print(f"run {round_}/{args.runs} {spec.name}: {run.wall_s:.1f} s, load {run.load_s:.1f} s, "
              f"peak {run.peak_rss_bytes / 2**20:.0f} MiB, WER {100 * run.wer:.2f}%", file=sys.stderr, flush=True)

    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tingxie-source-") as tmp:
        snapshot = snapshot_source(args.source, Path(tmp))
        source = source_state(args.source, snapshot)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(snapshot), os.environ.get("PYTHONPATH")]))}
        results = run_cases(cases, args.runs, reference=reference, on_run=progress, timeout_s=args.timeout,
                            prepare=not args.no_prepare, env=env)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started.isoformat(timespec="seconds"),
        "audio": str(args.audio), "reference": str(reference_path),
        "model": args.model, "compute_type": args.compute_type, "runs": args.runs,
        "machine": machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "source": source,
    }
    table = markdown_table(results, args.baselines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(to_json(results, args.baselines, meta), indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`tingxie serve` under 8 concurrent 1-minute requests: cross-request batching vs one at a time.

    .venv/bin/python bench/bench_server.py --runs 3

Each mode gets its own server process (`tingxie serve`, and `tingxie serve --no-cross-batching`
for one request at a time). Before every run the server's peak-RSS mark is reset through
/proc/PID/clear_refs, so the peak read from /proc/PID/status (VmHWM) afterwards is that run's,
model included, start-up profile excluded. Runs alternate between the modes; the table gives
the median of the runs. Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tingxie.memory.resources import proc_status_kib, usable_cpus

ROOT = Path(__file__).resolve().parent.parent
SHARED_LONG = ROOT.parent / "shared" / "audio" / "long" / "real_en_long.flac"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each request's audio")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["cross-16", "serial-16", "cross-4"],
                        help="cross-N: cross-request batching, max batch N; serial-N: --no-cross-batching")
    parser.add_argument("--source", type=Path, default=SHARED_LONG,
                        help="long recording cut into the inputs (default: ../shared real_en_long.flac; "
                             "falls back to tests/data pieces)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_server")
    return parser.parse_args(argv)


def make_inputs(args, folder: Path) -> list[Path]:
    """`requests` different stretches of real speech, each `seconds` long, as FLAC."""
    sys.path.insert(0, str(ROOT / "tests"))
    from long_audio import english_pieces, joined, write_flac  # noqa: E402

    from tingxie.audio.decode import decode_audio

    n = int(args.seconds * 16000)
    if args.source.is_file():
        audio = decode_audio(str(args.source))
    else:
        audio = joined(english_pieces() * (1 + int(args.requests * args.seconds / 120)), seed=0)
    if len(audio) < args.requests * n:
        raise SystemExit(f"{args.source}: too short for {args.requests} inputs of {args.seconds} s")
    return [write_flac(folder / f"input{i}.flac", audio[i * n:(i + 1) * n]) for i in range(args.requests)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, args, folder: Path, cross: bool, max_batch: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "tingxie.cli.main", "serve", "--port", str(self.port), "-m", args.model,
                   "--db", str(folder / f"jobs-{self.port}.db"), "--max-batch-size", str(max_batch)]
        if not cross:
            command.append("--no-cross-batching")
        self.command = command
        self.log = open(folder / f"server-{self.port}.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 900
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start; see {self.log.name}")
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def status_kib(self, field: str) -> int:
        kib = proc_status_kib(self.process.pid, field)
        if kib is None:
            raise KeyError(field)
        return kib

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


def one_run(server: Server, inputs: list[Path], seconds: float) -> dict:
    server.reset_peak()
    batches0, items0 = server.metric("tingxie_batch_size_count"), server.metric("tingxie_batch_size_sum")
    latencies: list[float] = [0.0] * len(inputs)
    texts: list[str] = [""] * len(inputs)
    started = time.perf_counter()

    def ask(i: int, path: Path) -> None:
        with open(path, "rb") as audio:
            response = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": (path.name, audio)},
                                  data={"model": "whisper-1"}, timeout=3600)
        response.raise_for_status()
        texts[i], latencies[i] = response.json()["text"], time.perf_counter() - started

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(inputs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    batches = server.metric("tingxie_batch_size_count") - batches0
    return {
        "wall_s": round(wall, 2),
        "throughput": round(len(inputs) * seconds / wall, 2),
        "peak_rss_mib": round(server.status_kib("VmHWM") / 1024, 1),
        "latency_median_s": round(statistics.median(latencies), 2),
        "latency_max_s": round(max(latencies), 2),
        "batches": int(batches),
        "mean_batch": round((server.metric("tingxie_batch_size_sum") - items0) / batches, 2) if batches else 0,
        "texts": texts,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="bench-server-"))
    inputs = make_inputs(args, folder)
    modes = {}
    for mode in args.modes:
        kind, _, size = mode.partition("-")
        if kind not in ("cross", "serial") or not size.isdigit():
            raise SystemExit(f"--modes: {mode!r} is not cross-N or serial-N")
        label = ("cross-request batching" if kind == "cross" else "one at a time (--no-cross-batching)")
        modes[f"{label}, max batch {size}"] = (kind == "cross", int(size))
    servers = {mode: Server(args, folder, cross, size) for mode, (cross, size) in modes.items()}
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        for run in range(args.runs):
            for mode, server in servers.items():  # alternate, so drift hits both alike
                result = one_run(server, inputs, args.seconds)
                runs[mode].append(result)
                print(f"run {run + 1} {mode}: {result['wall_s']} s, {result['throughput']}x, "
                      f"peak {result['peak_rss_mib']} MiB, mean batch {result['mean_batch']}", file=sys.stderr)
        idle = {mode: round(server.status_kib("VmRSS") / 1024, 1) for mode, server in servers.items()}
        commands = {mode: " ".join(Path(c).name if i == 0 else c for i, c in enumerate(server.command))
                    for mode, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    same = all(r["texts"] == runs[next(iter(modes))][0]["texts"] for rs in runs.values() for r in rs)
    rows = []
    for mode, results in runs.items():
        median = {key: statistics.median(r[key] for r in results)
                  for key in ("wall_s", "throughput", "peak_rss_mib", "latency_median_s", "latency_max_s",
                              "mean_batch")}
        rows.append({"mode": mode, **median, "runs": [{k: v for k, v in r.items() if k != "texts"} for r in results],
                     "rss_after_runs_mib": idle[mode], "command": commands[mode]})
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, usable {usable_cpus()}",
        "model": args.model, "requests": args.requests, "seconds_each": args.seconds, "runs": args.runs,
        "source": str(args.source), "same_texts_in_every_run": same,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
    }
    table = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def markdown(report: dict) -> str:
    lines = [f"{report['requests']} concurrent requests of {report['seconds_each']:g} s each, {report['model']}, "
             f"median of {report['runs']} runs ({report['machine']}).", "",
             "| mode | wall s | throughput (audio s / wall s) | peak RSS MiB | median latency s | max latency s "
             "| mean batch |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        lines.append(f"| {row['mode']} | {row['wall_s']} | {row['throughput']} | {row['peak_rss_mib']} | "
                     f"{row['latency_median_s']} | {row['latency_max_s']} | {row['mean_batch']} |")
    lines += ["", f"Transcripts identical across modes and runs: {report['same_texts_in_every_run']}. "
              f"1-minute load average before / after: {report['load_average_before_after']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

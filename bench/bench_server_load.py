"""`tingxie serve` under load: N concurrent clients for a while, mixed lengths, some corrupt uploads.

    flock /tmp/tingxie-bench.lock .venv/bin/python bench/bench_server_load.py --clients 50 --duration-s 120

Loopback only (127.0.0.1), bounded in time. One server process (whisper-tiny.en by default).
First every good input is transcribed alone, one at a time: its reference text. Then `clients`
threads send requests for `duration-s` seconds, each picking an input at random (a share
`--corrupt` of them corrupt: cut, garbage, empty, text). Checked: every good request is 200 with
its reference text (results do not depend on batch composition on CPU, server/README.md),
every bad one a 4xx in OpenAI's error shape, no 5xx, no transport error. The server's resident
memory is read after the reference pass (baseline), at its peak, and 10 s after the load.
Writes OUT.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tingxie.memory.resources import proc_status_kib

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=120.0)
    parser.add_argument("--corrupt", type=float, default=0.10, help="share of requests with a corrupt upload")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_server_load")
    return parser.parse_args(argv)


def make_inputs(folder: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Good inputs of mixed lengths (2 s to 60 s) and corrupt ones."""
    sys.path.insert(0, str(ROOT / "tests"))
    from long_audio import english_pieces, joined, write_flac  # noqa: E402

    good = {"lj-2s.flac": (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes(),
            "jfk-11s.flac": (DATA / "jfk.flac").read_bytes()}
    long = joined(english_pieces(), seed=5)
    for seconds in (30, 60):
        good[f"talk-{seconds}s.flac"] = write_flac(folder / f"talk{seconds}.flac", long[: seconds * 16000]).read_bytes()
    jfk = good["jfk-11s.flac"]
    bad = {"cut.flac": jfk[: len(jfk) * 2 // 5], "garbage.flac": jfk[:8192] + bytes(range(256)) * 400,
           "empty.wav": b"", "notes.mp3": b"this is not audio\n" * 50}
    return good, bad


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    return round((proc_status_kib(pid, field) or 0) / 1024, 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))
    good, bad = make_inputs(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tingxie.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
               "-m", args.model, "--db", str(folder / "jobs.db"), "--max-queue", str(args.clients + 8), "--no-ui"]
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {log.name}")
            time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=600) as client:
            reference = {}
            for name, content in good.items():
                response = client.post("/v1/audio/transcriptions", files={"file": (name, content)})
                response.raise_for_status()
                reference[name] = response.json()["text"]
        baseline = rss_mib(server.pid)
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # the peak from here on is the load's

        counts: collections.Counter = collections.Counter()
        latencies: dict[str, list[float]] = collections.defaultdict(list)
        problems: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.duration_s

        def client_loop(number: int) -> None:
            rng = random.Random(args.seed * 1000 + number)
            with httpx.Client(base_url=url, timeout=600) as http:
                while time.monotonic() < stop_at:
                    corrupt = rng.random() < args.corrupt
                    name = rng.choice(sorted(bad if corrupt else good))
                    content = (bad if corrupt else good)[name]
                    started = time.perf_counter()
                    try:
                        response = http.post("/v1/audio/transcriptions", files={"file": (name, content)})
                    except httpx.HTTPError as error:
                        with lock:
                            counts["transport error"] += 1
                            problems.append(f"{name}: {type(error).__name__}")
                        continue
                    seconds = time.perf_counter() - started
                    with lock:
                        latencies[name].append(seconds)
                        if response.status_code >= 500:
                            counts["5xx"] += 1
                            problems.append(f"{name}: {response.status_code} {response.text[:200]}")
                        elif corrupt:
                            shaped = 400 <= response.status_code < 500 and "error" in response.json()
                            counts["bad 4xx" if shaped else "bad not refused"] += 1
                            if not shaped:
                                problems.append(f"{name}: {response.status_code}")
                        elif response.status_code == 200 and response.json()["text"] == reference[name]:
                            counts["good correct"] += 1
                        else:
                            counts["good wrong"] += 1
                            problems.append(f"{name}: {response.status_code} {response.text[:200]}")

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        peak = rss_mib(server.pid, "VmHWM")
        time.sleep(10)
        after = rss_mib(server.pid)
        health = httpx.get(url + "/healthz", timeout=10).json()
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    audio_s = {"lj-2s.flac": 1.9, "jfk-11s.flac": 11.0, "talk-30s.flac": 30.0, "talk-60s.flac": 60.0}
    done_audio = sum(audio_s.get(name, 0.0) * len(values) for name, values in latencies.items())
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(["bench/bench_server_load.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": args.model, "clients": args.clients, "duration_s": args.duration_s, "corrupt_share": args.corrupt,
        "wall_s": round(wall, 1), "counts": dict(counts), "requests": sum(counts.values()),
        "audio_s_transcribed": round(done_audio, 1),
        "latency_median_s": {name: round(statistics.median(v), 2) for name, v in sorted(latencies.items())},
        "latency_max_s": {name: round(max(v), 2) for name, v in sorted(latencies.items())},
        "rss_mib": {"baseline": baseline, "peak": peak, "10 s after": after},
        "health_after": health.get("status"), "problems": problems[:20],
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = not problems and counts["good correct"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

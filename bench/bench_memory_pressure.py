"""Another process takes memory in the middle of a run: tingxie's batches shrink, nothing is killed.

Inside a memory-limited cgroup (v1 `memory.limit_in_bytes` or v2 `memory.max`, made by this
script under the current process's own cgroup: root needed), two runs of `tingxie transcribe`
on the same input, whole processes:

  undisturbed   tingxie alone in the cgroup
  pressure      after --hog-at of the undisturbed wall time, a second process in the same
                cgroup takes --hog-mib (touched pages), holds them for --hog-for of it, then frees
                them and exits

For each: exit status, wall time, tingxie's peak RSS (VmHWM polled from outside), the hog's
peak, the cgroup's own high-water mark and OOM kills, and the JSON stats' budget_shrinks; the
texts of the two runs are compared. No swap is involved where the machine has none (`free`).

    python bench/bench_memory_pressure.py INPUT --limit-mib 1200 --hog-mib 700 -o results/pressure
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tingxie.memory.resources import proc_status_kib  # noqa: E402

HOG = """
import sys, time
time.sleep(float(sys.argv[1]))
block = bytearray(int(sys.argv[2]) * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page: resident, not just reserved
print("hog: holding", flush=True)
time.sleep(float(sys.argv[3]))
"""


class Cgroup:
    """A child memory cgroup of this process's own, with a limit; v1 or v2, whichever is mounted."""

    def __init__(self, name: str, limit_bytes: int):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        v1 = next((line.split(":", 2)[2] for line in lines if "memory" in line.split(":", 2)[1].split(",")), None)
        if v1 is not None and Path("/sys/fs/cgroup/memory").is_dir():
            self.path = Path("/sys/fs/cgroup/memory") / v1.lstrip("/") / name
            self.v2 = False
        else:
            v2 = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
            self.path = Path("/sys/fs/cgroup") / v2.lstrip("/") / name
            self.v2 = True
        self.path.mkdir()
        (self.path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit_bytes))
        if not self.v2 and (self.path / "memory.memsw.limit_in_bytes").exists():
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))  # no swap either

    def prefix(self) -> list[str]:
        """A command prefix that moves the command into this cgroup before it starts."""
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh"]

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        path = self.path / name
        return int(path.read_text()) if path.exists() else -1

    def oom_kills(self) -> int:
        text = (self.path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(fields.get("oom_kill", 0))

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def run(args, label: str, hog_at_s: float | None, hog_for_s: float) -> dict:
    cgroup = Cgroup(f"tingxie-bench-{os.getpid()}-{label}", args.limit_mib * 2**20)
    out = Path(args.out) / label
    shutil.rmtree(out, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "tingxie"), "transcribe", args.input, "-m", args.model,
               "-f", "txt,json", "-o", str(out), "-q", "--restart", *args.extra]
    hog = None
    try:
        started = time.perf_counter()
        tingxie = subprocess.Popen(cgroup.prefix() + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if hog_at_s is not None:
            hog = subprocess.Popen(cgroup.prefix() + [sys.executable, "-c", HOG, str(hog_at_s), str(args.hog_mib),
                                                       str(hog_for_s)], stdout=subprocess.DEVNULL)
        peak = hog_peak = 0
        while tingxie.poll() is None:
            peak = max(peak, (proc_status_kib(tingxie.pid, "VmHWM") or 0) * 1024)
            if hog is not None and hog.poll() is None:
                hog_peak = max(hog_peak, (proc_status_kib(hog.pid, "VmRSS") or 0) * 1024)
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stderr = tingxie.stderr.read()
        if hog is not None:
            hog.kill()
            hog.wait()
        stem = Path(args.input).stem
        stats = json.loads((out / f"{stem}.json").read_text())["stats"] if (out / f"{stem}.json").exists() else {}
        text = (out / f"{stem}.txt").read_text() if (out / f"{stem}.txt").exists() else None
        return {"run": label, "exit": tingxie.returncode, "wall_s": round(wall, 1), "tingxie_peak_mib": round(peak / 2**20),
                "hog_peak_mib": round(hog_peak / 2**20), "cgroup_peak_mib": round(cgroup.peak_bytes() / 2**20),
                "limit_mib": args.limit_mib, "oom_kills": cgroup.oom_kills(),
                "budget_shrinks": stats.get("budget_shrinks"), "batches": stats.get("batches"),
                "lowest_batch_memory_mib": round((stats.get("lowest_batch_memory_bytes") or 0) / 2**20),
                "text": text, "stderr_tail": stderr[-300:]}
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
        cgroup.remove()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("-m", "--model", default="whisper-tiny.en")
    parser.add_argument("--limit-mib", type=int, default=1200, help="the cgroup's memory limit")
    parser.add_argument("--hog-mib", type=int, default=700, help="what the second process takes")
    parser.add_argument("--hog-at", type=float, default=0.2, help="when it takes it, as a share of the undisturbed wall")
    parser.add_argument("--hog-for", type=float, default=0.4, help="how long it holds it, same share")
    parser.add_argument("-o", "--out", default="bench/results/pressure")
    parser.add_argument("extra", nargs="*", help="more tingxie transcribe options, after --")
    args = parser.parse_args(argv)
    print(f"uptime: {os.getloadavg()}", file=sys.stderr)
    # the model's memory profile is measured once and cached: not inside the timed runs
    jfk = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"
    subprocess.run([str(Path(sys.executable).parent / "tingxie"), "transcribe", str(jfk), "-m", args.model, "-f", "txt",
                    "-o", str(Path(args.out) / "warmup"), "-q", "--restart", *args.extra], check=True,
                   stdout=subprocess.DEVNULL)
    alone = run(args, "undisturbed", None, 0)
    wall = alone["wall_s"]
    pressed = run(args, "pressure", args.hog_at * wall, args.hog_for * wall)
    rows = [alone, pressed]
    print("| run | exit | wall (s) | tingxie peak (MiB) | hog peak (MiB) | cgroup peak / limit (MiB) | OOM kills | "
          "budget shrinks | batches | lowest batch memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['exit']} | {r['wall_s']} | {r['tingxie_peak_mib']} | {r['hog_peak_mib']} | "
              f"{r['cgroup_peak_mib']} / {r['limit_mib']} | {r['oom_kills']} | {r['budget_shrinks']} | {r['batches']} | "
              f"{r['lowest_batch_memory_mib']} |")
    same = alone["text"] is not None and alone["text"] == pressed["text"]
    print(f"\ntexts equal: {same}")
    for r in rows:
        if r["exit"] != 0:
            print(f"{r['run']} stderr: {r['stderr_tail']}", file=sys.stderr)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "pressure.json").write_text(json.dumps({"rows": rows, "texts_equal": same, "argv": sys.argv}, indent=1))
    return 0 if same and all(r["exit"] == 0 and r["oom_kills"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""CLI start-up: wall time and peak RSS of everyday ``syndicator`` commands (issue #16 item 5).

    .venv/bin/python bench/cli_startup.py [--runs 9] [--old-code DIR]

Each command runs ``--runs`` times, each in a fresh subprocess, against a throwaway SQLite data
directory (migrated first, no rows: the figure is start-up, not the command's own work), after
one warm-up run of each (bytecode cached, as after a user's first run). It prints the median and
the spread of the wall time and the peak RSS of one process (``wait4``'s ``ru_maxrss``), and the
same for ``python -c "import django"`` for scale. The goal is 0.3 s.

The commands run as ``python -c "from syndicator.cli import main; main()" ARGS`` from the code's
directory, which is what the ``syndicator`` script does: ``--old-code DIR`` runs them from another
checkout (e.g. ``git worktree add /tmp/old main``) with this venv, and the runs of the two are
interleaved, so a machine that gets busier half-way slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    ["--help"],
    ["queue", "--json"],
    ["log", "--since", "1h", "--json"],
    ["targets", "list"],
    ["feeds", "list"],
]
CLI = "from syndicator.cli import main; main()"


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one subprocess; fails loudly if the command does."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} (in {cwd}) exited {proc.returncode}:\n{stderr}")
    return wall, usage.ru_maxrss  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per command (default 9)")
    parser.add_argument("--old-code", type=Path, help="another checkout to measure side by side")
    args = parser.parse_args()

    codes = {"new": ROOT}
    if args.old_code:
        codes = {"old": args.old_code.resolve(), "new": ROOT}
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as data_dir:
        # A user's command finds its bytecode cached after its first run; a shell that forbids
        # writing it (PYTHONDONTWRITEBYTECODE, set on some build machines) would time the
        # compiling of our modules on every run instead (~40 ms here).
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONDONTWRITEBYTECODE")},
            "SYNDICATOR_DATA_DIR": data_dir,
            "DJANGO_SETTINGS_MODULE": "syndicator.settings",
        }
        subprocess.run([sys.executable, "-c", CLI, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        cases: list[tuple[str, str, list[str], Path]] = [
            ("-", 'python -c "import django"', [sys.executable, "-c", "import django"], ROOT)
        ]
        for command in COMMANDS:
            for code, path in codes.items():
                label = "syndicator " + " ".join(command)
                cases.append((code, label, [sys.executable, "-c", CLI, *command], path))
        for _, _, argv, cwd in cases:  # warm-up: bytecode written, files in the page cache
            run_once(argv, cwd, env)
        results: dict[int, list[tuple[float, int]]] = {i: [] for i in range(len(cases))}
        for _ in range(args.runs):  # round-robin: every case sees the same machine
            for i, (_, _, argv, cwd) in enumerate(cases):
                results[i].append(run_once(argv, cwd, env))

    print(f"{'code':4}  {'command':36} {'median s':>9} {'min–max s':>12} {'peak RSS MB':>12}")
    for i, (code, label, _, _) in enumerate(cases):
        walls = [w for w, _ in results[i]]
        rss = statistics.median(r for _, r in results[i]) / 1024
        spread = f"{min(walls):.2f}–{max(walls):.2f}"
        print(f"{code:4}  {label:36} {statistics.median(walls):9.3f} {spread:>12} {rss:12.1f}")
    load = os.getloadavg()[0]
    print(f"({args.runs} runs each, interleaved; load average {load:.2f}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()

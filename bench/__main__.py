"""``python -m bench [--quick] [--only NAME ...] [--events N] [--write FILE] [--profile DIR]``

Runs the registered benchmarks (all, or the ``--only`` ones) on one broker, prints a table per
benchmark and, with ``--write``, a markdown document of method, machine and figures. The
broker is ``AXMON_BENCH_BOOTSTRAP`` if set, else a local broker started (and removed) for the
run. Exit code 1 if any benchmark failed (the others still run and are reported).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from bench import registered
from bench.common import (
    BenchContext,
    Report,
    bench_broker,
    machine_info,
    source_fingerprint,
)
from bench.report import markdown, print_report, run_time


def build_parser(names: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run axmon's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    parser.add_argument("--only", action="append", choices=list(names), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(names)}")
    parser.add_argument("--events", type=int, metavar="N", help="events per case, instead of each benchmark's own size")
    parser.add_argument("--write", type=Path, metavar="FILE", help="also write the results as markdown (BENCHMARKS.md)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile the processes under test with py-spy, into DIR (skews the figures)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    benchmarks = registered()
    args = build_parser([b.name for b in benchmarks]).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.events is not None and args.events < 1:
        print("--events must be at least 1", file=sys.stderr)
        return 2
    selected = [b for b in benchmarks if not args.only or b.name in args.only]
    console = Console(highlight=False)
    reports: list[Report] = []
    failed: list[str] = []
    durations: list[tuple[str, float]] = []
    began = time.monotonic()
    with bench_broker() as broker, tempfile.TemporaryDirectory(prefix="axmon-bench-") as workdir:
        machine = machine_info(broker.description)
        durations.append(("broker start", time.monotonic() - began))
        for name, value in machine.lines():
            console.print(f"[dim]{name}:[/] {value}")
        ctx = BenchContext(bootstrap=broker.bootstrap, quick=args.quick, events=args.events,
                           workdir=Path(workdir), profile_dir=args.profile)
        for benchmark in selected:
            console.print(f"\n[bold]{benchmark.title}[/] ({benchmark.name}){' --quick' if args.quick else ''} ...")
            started = time.monotonic()
            try:
                report = benchmark.run(ctx)
            except Exception:  # noqa: BLE001 - report it and go on with the others
                console.print(f"[bold red]{benchmark.name} failed:[/]\n{traceback.format_exc()}")
                failed.append(benchmark.name)
                continue
            finally:
                durations.append((benchmark.name, time.monotonic() - started))
            reports.append(report)
            print_report(report, console)
        changed = source_fingerprint() not in machine.code
        if changed:  # others edit the code while it is measured: say so rather than mislead
            console.print("[bold yellow]warning:[/] the sources changed during the run; the figures mix code versions")
    console.print(f"\n[dim]took {run_time(durations)}[/]")
    if args.write is not None:
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else list(argv))
        text = markdown(reports, machine, command=command.strip(), durations=durations)
        if changed:
            text += f"\n**Warning**: the sources changed during the run (now {source_fingerprint()}); the figures mix code versions.\n"
        if failed:
            text += "\n## Failed\n\n" + "".join(f"- {name}\n" for name in failed)
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        console.print(f"\nwrote {args.write}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

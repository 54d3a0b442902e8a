"""`perfserve profile`: where a replica's CPU goes under a controlled load, in one command.

    perfserve profile --variant onnx_int8 --rate 8000 --seconds 20 [--url URL | --pid PID]
                      [--store DIR] [--memory] [--out DIR]
    perfserve profile --compare DIR_A DIR_B [--out DIR]

Without `--url` or `--pid` it starts `perfserve serve --store` pinned to the first of
`--server-cpus`; the native engine's generator is pinned to the first of
`--generator-cpus`. Load only goes to loopback (the server started here) or to the URL
given, and lasts `--seconds` twice over plus a warm-up (with and without the profiler).
A missing tool, a process that is not a perfserve server, or a kernel refusing ptrace
ends in one line and exit code 4.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtests.argtypes import cpu_list, positive_float
from perfserve.benchmarks.profile.spy import check_ptrace, find_py_spy
from perfserve.benchmarks.profile.target import Target, attached, started
from perfserve.cli.exit_codes import ExitCode
from perfserve_common.usage import UsageError, add_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options: list[tuple[str, dict[str, Any], str]] = [
        ("--variant", {}, "Variant to load and profile (POST /models/{variant}/predict)."),
        ("--rate", {"type": positive_float, "default": 2000.0}, "Open-loop rate, requests/s."),
        ("--seconds", {"type": positive_float, "default": 20.0},
         "Profiled seconds in all (split into --repeats steps); as long again runs without "
         "the profiler, to measure its overhead."),
        ("--url", {}, "A running perfserve server on this machine to attach to."),
        ("--pid", {"type": int}, "The PID of a running `perfserve serve` to attach to."),
        ("--store", {"type": Path, "default": Path("model_store")},
         "Model store: served when nothing is attached; its hold-out rows are the bodies."),
        ("--out", {"type": Path, "default": Path("reports/profile")}, "Folder to write."),
        ("--memory", {"action": "store_true"},
         "Also record allocations with memray over a window of requests (starts its own "
         "server)."),
        ("--repeats", {"type": int, "default": 4},
         "Profiled steps (their spread is the noise --compare judges against)."),
        ("--sample-rate", {"type": int, "default": 1000}, "py-spy samples per second."),
        ("--native", {"action": "store_true"},
         "Native frames too (the garbage collector, uvloop, onnxruntime); costs the server "
         "much more per sample."),
        ("--server-cpus", {"type": cpu_list, "default": "0"},
         "CPUs the started server may run on (it is pinned to the first), e.g. 0."),
        ("--generator-cpus", {"type": cpu_list, "default": "1"},
         "CPUs the load generator may run on (it is pinned to the first), e.g. 1."),
        ("--compare", {"nargs": 2, "type": Path, "metavar": ("DIR_A", "DIR_B")},
         "Compare two profiles' folders instead: per-stage differences and a differential "
         "flame graph, written to --out."),
    ]  # fmt: skip
    for name, settings, text in options:
        add_option(parser, name, help=text, **settings)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Environment problems (py-spy missing, ptrace refused, not a perfserve server) are
    `MissingTool`s: one line, exit code 4, from the command line's `main`."""
    if args.compare:
        return _compare(args)
    _check_arguments(args)
    return _profile(args)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.variant is None:
        raise UsageError("--variant is required (or --compare DIR_A DIR_B)")
    if args.repeats < 2:
        raise UsageError("--repeats must be at least 2 (their spread is the noise)")
    if not 1 <= args.sample_rate <= 2000:
        raise UsageError("--sample-rate must be between 1 and 2000 samples/s")
    if args.memory and (args.url or args.pid):
        raise UsageError("--memory starts its own server: leave out --url and --pid")
    if not (args.store / "manifest.json").exists():
        raise UsageError(f"--store {args.store}: no model store there (run `perfserve build`)")


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[Target]:
    if args.url or args.pid:
        yield attached(args.url, args.pid)
        return
    with started(args.store, args.server_cpus[0]) as target:
        yield target


def _profile(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.profile.outputs import write
    from perfserve.benchmarks.profile.run import ProfileSettings, profile

    find_py_spy()
    _beside_the_generator(args.generator_cpus[0])
    settings = ProfileSettings(
        variant=args.variant,
        rate=args.rate,
        seconds=args.seconds,
        repeats=args.repeats,
        sample_rate=args.sample_rate,
        native=args.native,
        generator_cpu=args.generator_cpus[0],
    )
    with _target(args) as target:
        check_ptrace(target.pid)
        _check_variant(target, args.variant)
        print(f"profiling {target.url} (process {target.pid})", file=sys.stderr)
        run = profile(target, args.store, settings, lambda line: print(line, file=sys.stderr))
        conditions = {"url": target.url, "pid": target.pid, "server_cpus": target.cpus,
                      "attached": bool(args.url or args.pid)}  # fmt: skip
        text = write(run, args.out, conditions)
    print(text)
    if args.memory:
        from perfserve.benchmarks.profile.memory import memory_profile

        print(memory_profile(args.store, settings, args.server_cpus[0], args.out))
    print(f"written to {args.out}", file=sys.stderr)
    return ExitCode.ANSWERED


def _beside_the_generator(cpu: int) -> None:
    """Run this controller, and so py-spy, which inherits its CPUs, on the generator's
    core: py-spy reads the server a thousand times a second, and on the server's core that
    work would be taken from the server it measures (the server itself is pinned apart)."""
    if cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def _check_variant(target: Target, variant: str) -> None:
    import httpx

    variants = httpx.get(f"{target.url}/models", timeout=5.0).json().get("variants", [])
    served = [entry["name"] for entry in variants]
    if served and variant not in served:
        raise UsageError(f"--variant {variant!r}: not served by {target.url}; one of {served}")


def _compare(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.profile.compare import compare

    for folder in args.compare:
        if not (folder / "profile.json").exists():
            raise UsageError(
                f"--compare {folder}: no profile.json there (a `perfserve profile` --out)"
            )
    out = args.out if args.out != Path("reports/profile") else Path("reports/profile-compare")
    text, _ = compare(args.compare[0], args.compare[1], out)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return ExitCode.ANSWERED

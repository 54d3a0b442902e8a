"""Run perfserve's JMeter plan headless against a target and gate on its results.

    python -m loadtests.jmeter --url http://127.0.0.1:8000 --seconds 30 --rate 20 \\
        [--protocol perfserve|v1|v2] [--variant NAME] [--scenarios single_row,batch,...] \\
        [--p99-ms 50] [--max-error-rate 0.01] [--out reports/jmeter]

Bodies come from the store's hold-out rows, in the target's protocol; each scenario runs
`--rate` requests per second (JMeter paces its threads with a Constant Throughput Timer:
closed loop underneath, so a server slower than the pace slows the arrivals; the native
sweep and k6 are open loop). Exit 0 when every threshold held, 1 when one was crossed
(each printed), 2 for a bad command line, 4 when JMeter is not installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from loadtests.argtypes import positive_float, protocol
from loadtests.bodies import DISTINCT_BODIES, bad_bodies, encode_bodies, holdout_rows
from loadtests.jmeter.results import crossed, read_results
from perfserve_common.protocols import ProtocolName, predict_path

PLAN = Path(__file__).resolve().parent / "perfserve.jmx"
SCENARIOS = ("single_row", "batch", "canary", "bad_share")
THREADS = 4


def write_bodies(folder: Path, store: Path, protocol: ProtocolName, batch_rows: int) -> None:
    """One JSON body per line, for each scenario's CSV data set."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = holdout_rows(store)
    for name, size in (("single_row.txt", 1), ("batch.txt", batch_rows)):
        bodies = encode_bodies(rows, size, DISTINCT_BODIES, protocol)
        (folder / name).write_bytes(b"\n".join(bodies) + b"\n")
    (folder / "bad.txt").write_bytes(b"\n".join(bad_bodies(rows.shape[1]).values()) + b"\n")


def jmeter_command(jmeter: str, args: argparse.Namespace, bodies: Path) -> list[str]:
    target = urlsplit(args.url)
    properties = {
        "host": target.hostname or "127.0.0.1",
        "port": target.port or 80,
        "path": predict_path(args.protocol, args.variant or None),
        "split_path": predict_path(args.protocol, None),
        "bodies": bodies,
        "duration": round(args.seconds),
        "canary_users": args.canary_users,
        "jmeter.save.saveservice.output_format": "csv",
        "jmeter.save.saveservice.print_field_names": "true",
        "sample_variables": "user,variant",
    }
    for name in args.scenarios:
        properties[f"threads_{name}"] = THREADS
        properties[f"per_minute_{name}"] = args.rate * 60
    command = [jmeter, "-n", "-t", str(PLAN), "-l", str(args.out / "results.jtl")]
    command += ["-j", str(args.out / "jmeter.log")]
    return command + [f"-J{name}={value}" for name, value in properties.items()]


def why_not(log: Path) -> str:
    """What kept JMeter from running the plan, from its log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    if "ForbiddenClassException" in text:
        return (
            "this JMeter cannot load any plan (Debian's jmeter 2.13 runs with an XStream "
            "that refuses JMeter's own classes); use Apache JMeter 5.x"
        )
    errors = [line for line in text.splitlines() if "ERROR" in line]
    return errors[-1] if errors else f"see {log}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.jmeter", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--protocol", type=protocol, default="perfserve")
    parser.add_argument("--variant", default="", help="A variant, or the target's model.")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--seconds", type=positive_float, default=30.0)
    parser.add_argument("--rate", type=positive_float, default=20.0, help="Per scenario, /s.")
    parser.add_argument("--batch-rows", type=int, default=16)
    parser.add_argument("--canary-users", type=int, default=1000)
    parser.add_argument("--p99-ms", type=positive_float, default=50.0)
    parser.add_argument("--max-error-rate", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("reports/jmeter"))
    args = parser.parse_args(argv)
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenarios {','.join(unknown)}: allowed {', '.join(SCENARIOS)}")
    if not args.url.startswith("http://"):
        parser.error(f"--url {args.url}: must start with http://")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jmeter = shutil.which("jmeter")
    if jmeter is None:
        print("jmeter is not installed (Debian: apt-get install jmeter)", file=sys.stderr)
        return 4
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.jtl").unlink(missing_ok=True)
    bodies = args.out / "bodies"
    write_bodies(bodies, args.store, args.protocol, args.batch_rows)
    done = subprocess.run(jmeter_command(jmeter, args, bodies), capture_output=True, text=True)
    if done.returncode != 0 or not (args.out / "results.jtl").exists():
        print(f"jmeter ran no test: {why_not(args.out / 'jmeter.log')}", file=sys.stderr)
        return 4
    scenarios = read_results(args.out / "results.jtl")
    for scenario in scenarios.values():
        print(
            f"{scenario.name}: {scenario.requests} requests, {scenario.failed} failed, "
            f"p99 {scenario.p99_ms:.1f} ms"
        )
    missing = [name for name in args.scenarios if name not in scenarios]
    failures = crossed(scenarios, args.p99_ms, args.max_error_rate)
    failures += [f"{name}: no samples" for name in missing]
    for line in failures:
        print(f"threshold crossed: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

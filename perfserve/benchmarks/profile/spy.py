"""py-spy, run beside a live server: found, started, stopped, and its failures named.

py-spy reads the server's memory from outside (ptrace), so the server runs unchanged and
needs no restart. It samples `rate` times a second, every thread (`--threads` names
them in the stacks), functions by their first line (`--function`, so two builds of the
same code compare), and native frames with `native`: those show what C code the time
went to (the garbage collector, uvloop, onnxruntime) but each sample then costs the
server far more (measured: the server fell behind at 200 samples/s on this machine), so
they are off by default and the overhead step shows what they cost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from perfserve.benchmarks.profile.stacks import Stacks, read_collapsed
from perfserve_common.usage import MissingTool

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 60.0
PTRACE_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")


class EnvironmentProblem(MissingTool):
    """Something outside perfserve stops the profile (a tool missing, the kernel refusing,
    a process that is not a perfserve server): one line saying what to install or set;
    exit code 4 (the command line's `main` prints it)."""


def find_py_spy() -> str:
    """The py-spy binary: beside this Python first (the `profile` extra installs it there),
    then on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise EnvironmentProblem(
            "py-spy is not installed: pip install 'perfserve[profile]' (or pip install py-spy)"
        )
    return found


def check_ptrace(pid: int) -> None:
    """Refuse early, with the setting to change, when the kernel will not let py-spy read
    a process that is not its child (Yama's ptrace_scope above 0 and no CAP_SYS_PTRACE)."""
    try:
        scope = int(PTRACE_SCOPE.read_text().strip())
    except (OSError, ValueError):
        return  # no Yama: ordinary permissions decide, and py-spy reports those
    if scope >= 3:
        raise EnvironmentProblem(
            f"{PTRACE_SCOPE} is 3: ptrace is disabled until reboot; profiling needs it"
        )
    if scope >= 1 and os.geteuid() != 0:
        raise EnvironmentProblem(
            f"the kernel refuses to let py-spy read process {pid} ({PTRACE_SCOPE} = {scope}): "
            f"sudo sysctl kernel.yama.ptrace_scope=0, or run as root / with CAP_SYS_PTRACE"
        )


@dataclass
class Recording:
    """One py-spy run over one window: its stacks and how they were taken."""

    stacks: Stacks
    rate: int
    lagged: bool
    """py-spy said it fell behind its rate: the samples then undercount the time."""
    errors: str


class Sampler:
    """A py-spy recording of `pid`, from `start` until `stop`."""

    def __init__(self, pid: int, rate: int, native: bool) -> None:
        self.pid = pid
        self.rate = rate
        self.native = native
        self._folder = Path(tempfile.mkdtemp(prefix="perfserve-profile-"))
        self._output = self._folder / "raw.txt"
        self._log = self._folder / "py-spy.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start py-spy and return once it samples (it prints a line when it does)."""
        command = [find_py_spy(), "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        command += ["--format", "raw", "--threads", "--function"]
        command += ["-o", str(self._output)]
        command += ["--native"] if self.native else []
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Sampling process" not in self._log_text():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process.kill()
                self._process.wait()
                raise EnvironmentProblem(failure_line(self._log_text(), self.pid))
            time.sleep(0.02)

    def stop(self) -> Recording:
        """Stop sampling (py-spy writes its output on SIGINT) and read what it recorded."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        log = self._log_text()
        if not self._output.exists():
            raise EnvironmentProblem(failure_line(log, self.pid))
        stacks = read_collapsed(self._output)
        shutil.rmtree(self._folder, ignore_errors=True)
        errors = [line for line in log.splitlines() if "rror" in line and "Errors: 0" not in line]
        return Recording(stacks, self.rate, "behind in sampling" in log, "\n".join(errors))

    def _log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""


def failure_line(log: str, pid: int) -> str:
    """py-spy's failure as one line that says what to do."""
    lowered = log.lower()
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return (
            f"py-spy may not read process {pid} (permission denied): run as the server's "
            "user with kernel.yama.ptrace_scope=0 (sudo sysctl kernel.yama.ptrace_scope=0), "
            "or as root / with CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE)"
        )
    if "no such process" in lowered or "failed to find" in lowered:
        return f"py-spy found no process {pid} (it exited?)"
    last = next((line for line in reversed(log.splitlines()) if line.strip()), "no output")
    return f"py-spy failed on process {pid}: {last.strip()}"

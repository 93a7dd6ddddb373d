"""A job of several JAX processes seen from outside them: how long a lost process goes unnoticed,
and what the user reads when one is lost.

When a process dies (killed, out of memory, its host gone), the others cannot go on: the next
collective would wait for it forever. JAX's coordination service (started by
`jax.distributed.initialize` in process 0) notices that the process stopped sending heartbeats
and, after the heartbeat timeout, stops every other process with an abort (exit by SIGABRT, an
80-line C++ and Python stack dump: nothing in them is a bug). The supervisor below runs the
processes of one host (`launch/local_cpu_2proc.sh`), keeps that dump out of the console (in a
file the account names) and prints one account instead: which process was lost and how, the
last complete checkpoint and the command that resumes.

  python3 -m colorjax.core.multiprocess --processes=2 --workdir=W --resume='CMD' -- \\
      python3 -m colorjax.main --config=... --workdir=W --coordinator_address=... --num_processes=2

runs the command once per process with `--process_id=I` appended. No JAX here: the supervisor
must stay up, light, when the processes it watches abort.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import BinaryIO, Sequence

# Seconds a process may go without a heartbeat before JAX's coordination service declares it lost
# and stops the others: the time a lost process goes unnoticed. JAX's default is 100 s. Lower it
# to hear of a loss sooner; keep it well above the longest time a healthy host could stall
# (heartbeats come from their own thread: compilation and checkpoints do not delay them, a host
# that swaps or whose network drops for that long does).
HEARTBEAT_TIMEOUT_VARIABLE = "COLORJAX_HEARTBEAT_TIMEOUT"
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 100

# The first line of what JAX's distributed runtime prints when it stops a process because
# another was lost (coordination_service_agent.cc, client.h, coordination_service.cc in process 0).
RUNTIME_ABORT_MARKERS = (b"Polled an error from coordination service",
                         b"Failed to cancel preemption barrier",
                         b"Use error polling to propagate",
                         b"Terminating process because the JAX distributed service")


def heartbeat_timeout_seconds() -> int:
  """$COLORJAX_HEARTBEAT_TIMEOUT (whole seconds > 0), else JAX's default of 100 s."""
  text = os.environ.get(HEARTBEAT_TIMEOUT_VARIABLE, "")
  if not text:
    return DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
  seconds = int(text) if text.isdigit() else 0
  if seconds <= 0:
    raise ValueError(f"{HEARTBEAT_TIMEOUT_VARIABLE}={text!r}: expected whole seconds > 0, "
                     f"e.g. {HEARTBEAT_TIMEOUT_VARIABLE}=30")
  return seconds


def last_complete_checkpoint(workdir: str) -> int | None:
  """The newest step under <workdir>/checkpoints. Orbax writes a step into a temporary directory
  and renames it to the bare step number once every process has written its part, so a
  numbered directory is complete; a temporary one left by the loss is not counted."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return None
  steps = [int(name) for name in os.listdir(folder) if name.isdigit()]
  return max(steps, default=None)


@dataclasses.dataclass
class Ended:
  """How one process ended, as its parent saw it."""
  process: int
  pid: int
  returncode: int
  when: float  # time.time() when the parent reaped it.
  runtime_report: str | None = None  # File holding the runtime's abort dump, if it printed one.

  def how(self) -> str:
    if self.runtime_report:
      return "stopped by JAX's distributed service"
    if self.returncode < 0:
      return f"killed by {signal.Signals(-self.returncode).name}"
    return f"exit status {self.returncode}"


def account(ended: Sequence[Ended], num_processes: int, workdir: str, resume: str,
            heartbeat_timeout: int) -> str:
  """The lines printed when a run lost a process. `ended` is in the order the processes ended;
  the lost one is the first that failed other than by the runtime's stop."""
  failed = [e for e in ended if e.returncode != 0]
  lost = next((e for e in failed if not e.runtime_report), failed[0])
  clock = datetime.datetime.fromtimestamp(lost.when).strftime("%H:%M:%S")
  lines = [f"error: process {lost.process} of {num_processes} (pid {lost.pid}) was lost at "
           f"{clock}: {lost.how()}"]
  for other in ended:
    if other is lost:
      continue
    line = f"  process {other.process} (pid {other.pid}): {other.how()}"
    if other.runtime_report:
      line += f" {other.when - lost.when:.0f} s later, " + (
          "on losing its connection to process 0, which hosts the service" if lost.process == 0
          else f"once process {lost.process} had sent no heartbeat for {heartbeat_timeout} s "
               f"(${HEARTBEAT_TIMEOUT_VARIABLE})") + f"; its abort report: {other.runtime_report}"
    lines.append(line)
  step = last_complete_checkpoint(workdir)
  if step is None:
    lines.append(f"  no complete checkpoint in {workdir}: the rerun starts from step 0")
  else:
    lines.append(f"  last complete checkpoint: step {step} in "
                 f"{os.path.join(workdir, 'checkpoints')}; the rerun resumes there")
  lines.append(f"  resume with: {resume}")
  return "\n".join(lines)


class _StderrCopier(threading.Thread):
  """Copies a process's stderr to ours; from the runtime's abort on, to a file instead."""

  def __init__(self, stream: BinaryIO, report_path: str):
    super().__init__(daemon=True)
    self._stream, self._path = stream, report_path
    self.report_path: str | None = None  # Set once the abort began.

  def run(self) -> None:
    report = None
    for line in self._stream:
      if report is None and any(marker in line for marker in RUNTIME_ABORT_MARKERS):
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        report = open(self._path, "wb")
        self.report_path = self._path
      if report is not None:
        report.write(line)
      else:
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
    if report is not None:
      report.close()


def supervise(command: Sequence[str], num_processes: int, workdir: str, resume: str) -> int:
  """Runs `command --process_id=I` for each I, forwards SIGTERM/SIGINT to all of them and waits.
  0 when every process exited 0; otherwise prints the account and returns 1."""
  heartbeat_timeout = heartbeat_timeout_seconds()
  report_dir = os.path.join(tempfile.gettempdir(), f"colorjax-processes-{os.getpid()}")
  children, copiers = [], []
  for index in range(num_processes):
    child = subprocess.Popen([*command, f"--process_id={index}"], stderr=subprocess.PIPE)
    copiers.append(_StderrCopier(child.stderr, os.path.join(report_dir, f"process_{index}.log")))
    copiers[-1].start()
    children.append(child)

  def forward(signum, frame):
    del frame
    for child in children:
      if child.returncode is None:
        child.send_signal(signum)
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, forward)

  ended: list[Ended] = []
  index_of = {child.pid: index for index, child in enumerate(children)}
  while len(ended) < num_processes:
    pid, status = os.waitpid(-1, 0)  # Whichever ends first: the order tells who was lost.
    if pid in index_of:
      child = children[index_of[pid]]
      child.returncode = os.waitstatus_to_exitcode(status)
      ended.append(Ended(index_of[pid], pid, child.returncode, time.time()))
  for e in ended:
    copiers[e.process].join()  # Its stream ended with it: the last lines are copied.
    e.runtime_report = copiers[e.process].report_path
  if all(e.returncode == 0 for e in ended):
    return 0
  print(account(ended, num_processes, workdir, resume, heartbeat_timeout), file=sys.stderr)
  return 1


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--processes", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--resume", required=True, help="The command that resumes the run.")
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  try:
    heartbeat_timeout_seconds()  # A bad setting is one line here, not one traceback per process.
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return supervise(command, args.processes, args.workdir, args.resume)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

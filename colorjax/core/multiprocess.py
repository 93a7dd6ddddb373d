"""A job of several JAX processes seen from outside them: how long a lost process goes unnoticed,
and what the user reads when one is lost.

When a process dies (killed, out of memory, its host gone), the others cannot go on: the next
collective would wait for it forever. JAX's coordination service (started by
`jax.distributed.initialize` in process 0) notices that the process stopped sending heartbeats
and, after the heartbeat timeout, stops every other process with an abort (exit by SIGABRT, an
80-line C++ and Python stack dump: nothing in them is a bug). The supervisor below runs the
processes of one host (`launch/local_cpu_2proc.sh`), keeps that dump, and what the others
print because of the loss, out of the console (in a file the account names) and prints one
account instead: which process was lost and how, the last complete checkpoint and the command
that resumes.

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
import queue
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
# Seconds a process that has ended (done, or failed with an error) waits at exit for the others
# to end too (JAX's shutdown barrier; default 300 s). A process that fails with an error while the
# others wait for it in a collective holds the run this long before it exits and the others are
# stopped; nothing else is lost by lowering it, as long as it exceeds the time the processes of
# a healthy run end apart (seconds: they finish the same last step and eval together).
SHUTDOWN_TIMEOUT_VARIABLE = "COLORJAX_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 300

# The first line of what JAX's distributed runtime prints when it stops a process because
# another was lost (coordination_service_agent.cc, client.h, coordination_service.cc in process 0).
RUNTIME_ABORT_MARKERS = (b"Polled an error from coordination service",
                         b"Shutdown barrier in coordination service has failed",
                         b"Failed to cancel preemption barrier",
                         b"Use error polling to propagate",
                         b"Terminating process because the JAX distributed service")


def heartbeat_timeout_seconds() -> int:
  """$COLORJAX_HEARTBEAT_TIMEOUT (whole seconds > 0), else JAX's default of 100 s."""
  return _seconds(HEARTBEAT_TIMEOUT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT_SECONDS)


def shutdown_timeout_seconds() -> int:
  """$COLORJAX_SHUTDOWN_TIMEOUT (whole seconds > 0), else JAX's default of 300 s."""
  return _seconds(SHUTDOWN_TIMEOUT_VARIABLE, DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)


def _seconds(variable: str, default: int) -> int:
  text = os.environ.get(variable, "")
  if not text:
    return default
  seconds = int(text) if text.isdigit() else 0
  if seconds <= 0:
    raise ValueError(f"{variable}={text!r}: expected whole seconds > 0, e.g. {variable}=30")
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
  raised: bool = False  # Printed a Python traceback first: it failed by itself.

  def how(self) -> str:
    if self.raised:
      return "failed with an error (its traceback is above)" + (
          ", then was stopped by JAX's distributed service" if self.runtime_report else "")
    if self.runtime_report and self.returncode == -signal.SIGABRT:  # The runtime's abort.
      return "stopped by JAX's distributed service"
    if self.runtime_report:
      return f"stopped after the loss (exit status {self.returncode})"
    if self.returncode < 0:
      return f"killed by {signal.Signals(-self.returncode).name}"
    return f"exit status {self.returncode} (its error is above)"


def account(ended: Sequence[Ended], num_processes: int, workdir: str, resume: str,
            heartbeat_timeout: int) -> str:
  """The lines printed when a run lost a process. `ended` is in the order the processes ended;
  the lost one is the first that failed other than by the runtime's stop (killed, or its own
  error)."""
  failed = [e for e in ended if e.returncode != 0]
  lost = next((e for e in failed if e.raised or not e.runtime_report), failed[0])
  clock = datetime.datetime.fromtimestamp(lost.when).strftime("%H:%M:%S")
  lines = [f"error: process {lost.process} of {num_processes} (pid {lost.pid}) was lost at "
           f"{clock}: {lost.how()}"]
  if lost.runtime_report and not lost.raised:  # No cause seen: every process was stopped.
    lines[0] += f"; its abort report: {lost.runtime_report}"
  for other in ended:
    if other is lost:
      continue
    line = f"  process {other.process} (pid {other.pid}): {other.how()}"
    if other.runtime_report:
      line += f" {other.when - lost.when:.0f} s later"
      aborted = other.returncode == -signal.SIGABRT
      if aborted and lost.returncode < 0 and not lost.runtime_report:  # How it was noticed.
        line += (", on losing its connection to process 0, which hosts the service"
                 if lost.process == 0 else
                 f", once process {lost.process} had sent no heartbeat for {heartbeat_timeout} s "
                 f"(${HEARTBEAT_TIMEOUT_VARIABLE})")
      line += (f"; its abort report: " if aborted else "; its output after the loss: ") + \
          other.runtime_report
    lines.append(line)
  step = last_complete_checkpoint(workdir)
  if step is None:
    lines.append(f"  no complete checkpoint in {workdir}: the rerun starts from step 0")
  else:
    lines.append(f"  last complete checkpoint: step {step} in "
                 f"{os.path.join(workdir, 'checkpoints')}; the rerun resumes there")
  lines.append(f"  resume with: {resume}")
  return "\n".join(lines)


class _Console:
  """The processes' stderr on ours, each line shown `DELAY_S` after it came, so that what the
  loss of one process makes the others print can still be kept off the console: once a process
  has failed (`lost`), the others' lines from `DELAY_S` before that on go to their report file
  (a collective that broke, the runtime's dump), as does everything after a runtime marker. The
  lost process's own lines (its error) stay on the console."""

  DELAY_S = 1.0

  def __init__(self, streams: Sequence[BinaryIO], report_dir: str):
    self._lines: queue.Queue = queue.Queue()
    self._report_dir = report_dir
    self._lost: tuple[float, int] | None = None  # (time.monotonic(), process) of the loss.
    self.report_paths: list[str | None] = [None] * len(streams)
    self.raised = [False] * len(streams)  # Showed a Python traceback: it failed by itself.
    self._readers = [threading.Thread(target=self._read, args=(i, s), daemon=True)
                     for i, s in enumerate(streams)]
    self._printer = threading.Thread(target=self._print, daemon=True)
    for thread in (*self._readers, self._printer):
      thread.start()

  def lost(self, process: int) -> None:
    if self._lost is None:
      self._lost = (time.monotonic(), process)

  def join(self) -> None:
    """Once every process ended: all their lines are shown or filed."""
    self._printer.join()

  def _read(self, process: int, stream: BinaryIO) -> None:
    for line in stream:
      self._lines.put((time.monotonic(), process, line))
    self._lines.put((time.monotonic(), process, None))

  def _print(self) -> None:
    reports: dict[int, BinaryIO] = {}
    open_streams = len(self._readers)
    while open_streams:
      arrived, process, line = self._lines.get()
      if line is None:
        open_streams -= 1
        continue
      time.sleep(max(0.0, arrived + self.DELAY_S - time.monotonic()))
      if process not in reports and (self._after_loss(arrived, process) or any(
          marker in line for marker in RUNTIME_ABORT_MARKERS)):
        path = os.path.join(self._report_dir, f"process_{process}.log")
        os.makedirs(self._report_dir, exist_ok=True)
        reports[process] = open(path, "wb")
        self.report_paths[process] = path
      if process in reports:
        reports[process].write(line)
        continue
      self.raised[process] |= line.startswith(b"Traceback (most recent call last)")
      sys.stderr.buffer.write(line)
      sys.stderr.buffer.flush()
    for report in reports.values():
      report.close()

  def _after_loss(self, arrived: float, process: int) -> bool:
    lost = self._lost
    return lost is not None and process != lost[1] and arrived >= lost[0] - self.DELAY_S


def supervise(command: Sequence[str], num_processes: int, workdir: str, resume: str) -> int:
  """Runs `command --process_id=I` for each I, forwards SIGTERM/SIGINT to all of them and waits.
  0 when every process exited 0; otherwise prints the account and returns 1."""
  heartbeat_timeout = heartbeat_timeout_seconds()
  children = [subprocess.Popen([*command, f"--process_id={index}"], stderr=subprocess.PIPE)
              for index in range(num_processes)]
  console = _Console([child.stderr for child in children],
                     os.path.join(tempfile.gettempdir(), f"colorjax-processes-{os.getpid()}"))

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
      if child.returncode != 0:
        console.lost(index_of[pid])
  console.join()
  for e in ended:
    e.runtime_report, e.raised = console.report_paths[e.process], console.raised[e.process]
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
    shutdown_timeout_seconds()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return supervise(command, args.processes, args.workdir, args.resume)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

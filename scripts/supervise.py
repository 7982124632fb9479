"""Keep one process of the embedded stack running: restart it when it exits, with a back-off.

honcho (``make run``) stops every process as soon as one exits: a worker that died on a bad broker
file took the whole stack down. Each Procfile line runs its command under this instead, so a
process that dies is logged and started again while the others keep serving, and honcho stops only
when asked (Ctrl-C, SIGTERM), which this passes on to the command before it exits itself.

    python scripts/supervise.py NAME -- COMMAND [ARG ...]

The first restart waits ``--backoff`` seconds (1), each quick one after it twice as long, at most
``--max-backoff`` (30); a run that lasted ``--stable`` seconds (60) resets the back-off.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time


def _log(name: str, message: str) -> None:
    print(f"supervise[{name}]: {message}", file=sys.stderr, flush=True)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def supervise(name: str, command: list[str], *, backoff: float, max_backoff: float, stable: float) -> int:
    stopping = threading.Event()
    child: subprocess.Popen | None = None
    received = [signal.SIGTERM]

    def stop(signum, _frame):
        received[0] = signal.Signals(signum)
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)

    quick_exits = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        if stopping.is_set() and child.poll() is None:  # asked to stop while it was being started
            child.send_signal(received[0])
        code = child.wait()
        if stopping.is_set():
            return 0 if code in (0, -received[0]) else code
        ran = time.monotonic() - started
        quick_exits = 0 if ran >= stable else quick_exits + 1
        delay = min(max_backoff, backoff * 2 ** max(0, quick_exits - 1))
        _log(name, f"{_describe(code)} after {ran:.1f} s; starting it again in {delay:g} s")
        if stopping.wait(delay):
            return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description="Restart a command when it exits, with a back-off.")
    parser.add_argument("name")
    parser.add_argument("--backoff", type=float, default=1.0)
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--stable", type=float, default=60.0)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("give the command after --")
    return supervise(args.name, command, backoff=args.backoff, max_backoff=args.max_backoff, stable=args.stable)


if __name__ == "__main__":
    raise SystemExit(main())

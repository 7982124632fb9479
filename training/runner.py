"""The body of the GPU-queue task: run one training job for a TrainingRun and record what it does.

The job is a subprocess in its own process group (session), so cancelling ends it and everything
it started (data-loader workers, `accelerate` children). Its stdout and stderr go through one pipe:
JSON lines `{"event": ...}` become metrics, every line goes to the log tail. A reader thread
feeds the lines to this loop, which also beats the run's heartbeat and looks for a cancel request
every TRAINING_HEARTBEAT_SECONDS. If the worker dies, the heartbeat stops and the periodic check
fails the run; the job then dies on its next write to the closed pipe.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .checkpoints import (
    checkpoint_register,
    model_folder_problem,
    run_checkpoint_name,
    run_lineage,
    weight_files,
)
from .inputs import JOBS, command_flags, prepare
from .models import Checkpoint, RunMetric, TrainingRun

logger = logging.getLogger(__name__)
_EOF = object()


def _claim(run_id: int, worker: str) -> TrainingRun | None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("base").filter(pk=run_id).first()
        if run is None or run.status != TrainingRun.Status.QUEUED:
            return None  # a repeated delivery, or cancelled while queued
        now = timezone.now()
        run.status, run.started_at, run.heartbeat_at, run.worker = TrainingRun.Status.RUNNING, now, now, worker
        run.save(update_fields=["status", "started_at", "heartbeat_at", "worker"])
    return run


def _finish(run: TrainingRun, status: str, *, error: str = "", **fields) -> bool:
    """The final write, only while the run is still ours (the heartbeat check may have failed it)."""
    updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
        status=status, error=error[:4000], finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields)
    return bool(updated)


def job_command(run: TrainingRun, *, flags: dict) -> list[str]:
    launcher = shlex.split(settings.TRAINING_LAUNCHER) if settings.TRAINING_LAUNCHER else [sys.executable]
    command = [*launcher, "-m", JOBS[run.kind], *command_flags(flags)]
    for key, value in sorted(run.config.items()):
        command += ["--" + key.replace("_", "-"), str(value)]
    return command


def _safetensors_problem(path: Path) -> str | None:
    """The header parses and the tensors it declares fit the file exactly (a cut copy fails)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as error:
        return f"{path.name}: unreadable safetensors header ({error})"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    if not ends:
        return f"{path.name}: no tensors"
    if 8 + length + max(ends) != path.stat().st_size:
        return f"{path.name}: {path.stat().st_size} bytes, the header declares {8 + length + max(ends)}"
    return None


def checkpoint_verify(out: Path, *, expect_eval: bool) -> tuple[dict, dict | None, str | None]:
    """(job record, evaluation, problem): what the job wrote, checked before it is registered."""
    problem = model_folder_problem(out)
    for path in weight_files(out):
        problem = problem or _safetensors_problem(path)
    job = evaluation = None
    try:
        job = json.loads((out / "tandem_job.json").read_text())
        evaluation = json.loads((out / "eval.json").read_text()) if expect_eval else None
    except (OSError, ValueError) as error:
        problem = problem or f"job record unreadable: {error}"
    if expect_eval and not (isinstance(evaluation, dict) and "accuracy" in evaluation):
        problem = problem or "eval.json has no accuracy"
    return job or {}, evaluation, problem


def _kill_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, settings.TRAINING_KILL_GRACE), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(_EOF)


class _Recorder:
    """Turns the job's lines into metrics, progress, summary and the log tail of one run."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.tail = deque(maxlen=settings.TRAINING_LOG_TAIL_LINES)
        self.pending: list[RunMetric] = []
        self.step, self.max_steps, self.summary = run.step, run.max_steps, dict(run.summary)

    def line(self, text: str) -> None:
        self.tail.append(text[:2000])
        if not text.startswith('{"event"'):
            return
        try:
            event = json.loads(text)
        except ValueError:
            return
        kind = event.pop("event", "")
        event.pop("time", None)
        if kind == "log":
            self.step = int(event.get("step") or self.step)
            self.max_steps = int(event.get("max_steps") or self.max_steps)
            self.pending.append(RunMetric(run=self.run, step=self.step, values=event))
        elif kind in ("data", "done"):
            self.summary[kind] = event
        elif kind == "samples":  # generations for the run page's table: the last few steps
            self.summary["samples"] = [*self.summary.get("samples", [])[-4:], {"step": self.step, **event}]

    def flush(self, *, beat: bool) -> bool:
        """Store what came in, metric lines and the run's progress together; False when the run
        is no longer ours to write."""
        fields = {"step": self.step, "max_steps": self.max_steps, "summary": self.summary,
                  "log_tail": "\n".join(self.tail)}
        if beat:
            fields["heartbeat_at"] = timezone.now()
        with transaction.atomic():
            if self.pending:
                RunMetric.objects.bulk_create(self.pending)
                self.pending = []
            return bool(TrainingRun.objects.filter(pk=self.run.pk, status=TrainingRun.Status.RUNNING)
                        .update(**fields))


class _Heartbeat(threading.Thread):
    """Beats the run's heartbeat from a thread while this one is busy with something long (writing
    the data of a large batch), so the periodic check does not take a slow worker for a dead one."""

    def __init__(self, run: TrainingRun):
        super().__init__(name=f"heartbeat-run-{run.pk}", daemon=True)
        self.run_id = run.pk
        self.stopped = threading.Event()

    def run(self):
        from django.db import connection

        try:
            while not self.stopped.wait(settings.TRAINING_HEARTBEAT_SECONDS):
                try:
                    beaten = TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING).update(
                        heartbeat_at=timezone.now())
                except Exception:  # a database hiccup (a restart, a dropped connection): beat again next time
                    logger.exception("run %s: a heartbeat could not be written; trying again", self.run_id)
                    connection.close()  # a broken connection is replaced at the next beat
                    continue
                if not beaten:
                    return  # failed or cancelled meanwhile: the runner sees it before it starts the job
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join()


def _prepare(run: TrainingRun, run_dir: Path) -> tuple[dict, Path]:
    out = run_dir / ("output" if run.kind == TrainingRun.Kind.POLICY_EVAL else "checkpoint")
    with _Heartbeat(run):
        flags, counts = prepare(run, run_dir / "data", out)
    data = {**run.data, "written": counts}
    artifacts = {"dir": str(run_dir), "out": str(out),
                 **{flag.lstrip("-").replace("-", "_"): str(value) for flag, value in flags.items()
                    if isinstance(value, Path)}}
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
        data=data, artifacts=artifacts, heartbeat_at=timezone.now())
    run.data, run.artifacts = data, artifacts
    return flags, out


def _still_ours(run: TrainingRun) -> str | None:
    """Just before the job starts: None when the run is still ours to start; otherwise the final
    status it has, or gets (a cancel requested during the data preparation ends it here)."""
    current = TrainingRun.objects.filter(pk=run.pk).values("status", "cancel_requested_at").first()
    if current is None or current["status"] != TrainingRun.Status.RUNNING:
        return current["status"] if current else TrainingRun.Status.FAILED
    if current["cancel_requested_at"] is not None:
        _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled on request, before the job started.")
        return TrainingRun.Status.CANCELLED
    return None


def run_execute(*, run_id: int) -> str | None:
    """Run the job of a queued run to its end; returns the final status (None if not ours)."""
    run = _claim(run_id, f"{socket.gethostname()}:{os.getpid()}")
    if run is None:
        return None
    run_dir = Path(settings.TRAINING_DIR) / f"run-{run.pk}"
    try:
        flags, out = _prepare(run, run_dir)
    except Exception as error:  # the run must not stay "running" with nothing behind it
        logger.exception("preparing the data of %s failed", run)
        _finish(run, TrainingRun.Status.FAILED, error=f"Writing the training data failed: {error}")
        return TrainingRun.Status.FAILED
    ended = _still_ours(run)
    if ended is not None:
        # Failed by the heartbeat check or cancelled while the data was written: never start it.
        logger.warning("%s is %s before its job started; the job is not started", run, ended)
        return TrainingRun.Status.CANCELLED if ended == TrainingRun.Status.CANCELLED else None
    command = job_command(run, flags=flags)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
                               start_new_session=True, env=environment)
    TrainingRun.objects.filter(pk=run.pk).update(worker=f"{run.worker} job {process.pid}")
    recorder = _Recorder(run)
    recorder.tail.append("$ " + shlex.join(command))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    interval = settings.TRAINING_HEARTBEAT_SECONDS
    last_beat, outcome = time.monotonic(), None
    try:
        while True:
            try:
                line = lines.get(timeout=min(0.25, interval))
            except queue.Empty:
                line = None
            if line is _EOF:
                break
            if line is not None:
                recorder.line(line)
                if not lines.empty():
                    continue  # take what is waiting before writing
            beat = time.monotonic() - last_beat >= interval
            if recorder.pending or beat:
                if not recorder.flush(beat=beat):
                    outcome = "lost"  # failed by the heartbeat check meanwhile: stop spending the GPU
                    break
                if beat:
                    last_beat = time.monotonic()
                    if TrainingRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=False).exists():
                        outcome = "cancelled"
                        break
    except SoftTimeLimitExceeded:
        outcome = "timeout"
    if outcome:
        _kill_group(process)
    returncode = process.wait()
    _kill_group(process)  # stragglers the job left in its group
    recorder.flush(beat=True)
    tail = "\n".join(recorder.tail)
    if outcome == "lost":
        return None
    if outcome == "cancelled":
        _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled on request; the job's processes were ended.")
        return TrainingRun.Status.CANCELLED
    if outcome == "timeout":
        _finish(run, TrainingRun.Status.FAILED, error=f"Stopped at the run time limit "
                                                      f"({settings.TRAINING_RUN_TIME_LIMIT} s).")
        return TrainingRun.Status.FAILED
    if returncode != 0:
        how = f"signal {-returncode}" if returncode < 0 else f"status {returncode}"
        last = next((line for line in reversed(recorder.tail) if line.strip()), "")
        _finish(run, TrainingRun.Status.FAILED, error=f"The job exited with {how}: {last}")
        return TrainingRun.Status.FAILED
    if run.kind == TrainingRun.Kind.POLICY_EVAL:
        return _finish_evaluation(run, recorder, out, tail)
    is_rm = run.kind == TrainingRun.Kind.REWARD_MODEL
    expect_eval = is_rm and run.data.get("written", {}).get("eval_pairs", 0) > 0
    job, evaluation, problem = checkpoint_verify(out, expect_eval=expect_eval)
    if problem:
        _finish(run, TrainingRun.Status.FAILED, error=f"The job finished but its checkpoint did not verify: {problem}")
        return TrainingRun.Status.FAILED
    with transaction.atomic():
        if not _finish(run, TrainingRun.Status.SUCCEEDED, summary={**recorder.summary, "job": job.get("metrics")},
                       step=max(recorder.step, recorder.max_steps), log_tail=tail):
            return None
        checkpoint_register(name=run_checkpoint_name(run),
                            kind=Checkpoint.Kind.REWARD_MODEL if is_rm else Checkpoint.Kind.POLICY, path=out,
                            focus=run.focus if is_rm else "", run=run, base=run.base, evaluation=evaluation or {},
                            lineage=run_lineage(run))
    return TrainingRun.Status.SUCCEEDED


def _finish_evaluation(run: TrainingRun, recorder: _Recorder, out: Path, tail: str) -> str | None:
    """A model-based evaluation makes no checkpoint: its result is the win-rate tables."""
    try:
        evaluation = json.loads((out / "eval.json").read_text())
    except (OSError, ValueError) as error:
        _finish(run, TrainingRun.Status.FAILED, error=f"The evaluation finished without a readable eval.json: {error}")
        return TrainingRun.Status.FAILED
    if not _finish(run, TrainingRun.Status.SUCCEEDED, summary={**recorder.summary, "evaluation": evaluation},
                   step=max(recorder.step, recorder.max_steps), log_tail=tail):
        return None
    return TrainingRun.Status.SUCCEEDED

"""Under `make run`: kill -9 the sampling worker while a pair is being sampled. The web keeps
answering, the worker is started again (scripts/supervise.py), and the generation that was in
flight ends as the recovery sweep decides: done, or failed and retried until done. Prints how long
each took."""

import sys
import time

import httpx
import psutil
from demo_annotator import dialogue_started

base = sys.argv[1].rstrip("/")
WORKER = "-A config worker -Q sampling "


def sampling_worker() -> psutil.Process | None:
    """The celery process the `worker` supervisor runs: not the supervisor (whose command line holds
    the worker's), not the shell around it, not the worker's pool children."""
    for process in psutil.process_iter(["cmdline", "ppid"]):
        command = " ".join(process.info["cmdline"] or [])
        if WORKER not in command or "supervise.py" in command:
            continue
        try:
            parent = psutil.Process(process.info["ppid"]).cmdline()
        except psutil.NoSuchProcess:
            continue
        if len(parent) > 1 and parent[1].endswith("supervise.py"):
            return process
    return None


def wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out after {seconds:g} s waiting for {what}")


client, dialogue_id = dialogue_started(base)
worker = sampling_worker()
if worker is None:
    sys.exit("no sampling worker under supervise.py")
turn = client.post(f"/api/dialogues/{dialogue_id}/turns/", json={"user_message": "Name three fruits."})
turn.raise_for_status()
turn_id = turn.json()["id"]
wait(lambda: any(r["status"] == "running" for r in client.get(f"/api/turns/{turn_id}/").json()["responses"].values()),
     60, "a response to be running")
killed_at = time.monotonic()
worker.kill()  # SIGKILL
print(f"killed the sampling worker (pid {worker.pid}) mid-generation")
health = httpx.get(f"{base}/health", timeout=10)
print(f"/health answered {health.status_code} while the worker was down")
if health.status_code not in (200, 503):
    sys.exit("the web tier stopped answering")
replacement = wait(lambda: (p := sampling_worker()) and p.pid != worker.pid and p, 60, "the worker to come back")
print(f"the worker was back after {time.monotonic() - killed_at:.1f} s (pid {replacement.pid})")


def finished():
    body = client.get(f"/api/turns/{turn_id}/").json()
    for side, response in body["responses"].items():
        if response["status"] == "failed":  # the annotator's retry button
            client.post(f"/api/turns/{turn_id}/retry/", json={"side": side}).raise_for_status()
            return None
    return body if all(r["status"] == "done" for r in body["responses"].values()) else None


wait(finished, 420, "the pair in flight to be done")
print(f"the pair in flight was done {time.monotonic() - killed_at:.1f} s after the kill")
judged = client.post(f"/api/turns/{turn_id}/judgement/", json={"point": 3})
if judged.status_code != 201:
    sys.exit(f"the judgement was refused: {judged.text[:300]}")

"""Tandem's API as the benchmarks' roles see it: token login, calls that fail with the server's
answer, list pages followed, training runs awaited, annotator accounts made through invitations."""

from __future__ import annotations

import time

import httpx


class BenchError(RuntimeError):
    """A step of the loop failed: the message says which and why."""



class Tandem:
    """Tandem's API as one role sees it (token authentication)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 60):
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)
        response = self.client.post("/api/auth/token/", json={"username": username, "password": password})
        if response.status_code != 200:
            raise BenchError(f"Logging in to {self.base_url} as {username!r} failed "
                             f"({response.status_code}: {response.text[:200]}).")
        self.client.headers["Authorization"] = f"Token {response.json()['token']}"
        self.username = username

    def call(self, method: str, path: str, *, expect=(200,), **kwargs):
        response = self.client.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise BenchError(f"{method} {path} as {self.username} answered {response.status_code}: "
                             f"{response.text[:500]}")
        return response

    def json(self, method: str, path: str, *, expect=(200,), **kwargs):
        return self.call(method, path, expect=expect, **kwargs).json()

    def every(self, path: str) -> list:
        """All items of a list endpoint, following its pages when it has them."""
        data = self.json("GET", path)
        if isinstance(data, list):
            return data
        items = list(data["results"])
        while data.get("next"):
            data = self.json("GET", data["next"])
            items += data["results"]
        return items


def wait_for_run(researcher: Tandem, run_id: int, *, what: str, timeout: float, log=print) -> dict:
    """Poll a training run until it finishes; BenchError unless it succeeded."""
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        run = researcher.json("GET", f"/api/training/runs/{run_id}/")
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        if run["progress"] is not None and int(run["progress"] * 10) != shown:
            shown = int(run["progress"] * 10)
            log(f"  {what}: {run['status']}, step {run['step']}/{run['max_steps']}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} (run {run_id}) still {run['status']} after {timeout:.0f} s.")
        time.sleep(2)
    if run["status"] != "succeeded":
        raise BenchError(f"{what} (run {run_id}) {run['status']}: {run['error'][:500]}\n"
                         + "\n".join((run.get("log_tail") or "").splitlines()[-15:]))
    return run


def annotator_accounts(admin: Tandem, *, count: int, password: str, prefix: str, create: bool) -> tuple[str, ...]:
    """`prefix-<i>` usernames; with `create`, those that cannot log in yet are made through
    invitations (POST /api/invitations/, then POST /api/invitations/accept/)."""
    names = tuple(f"{prefix}-{index}" for index in range(count))
    if not create:
        return names
    anonymous = httpx.Client(base_url=admin.base_url, timeout=30)
    for name in names:
        if anonymous.post("/api/auth/token/", json={"username": name, "password": password}).status_code == 200:
            continue  # made by an earlier run
        invitation = admin.json("POST", "/api/invitations/", expect=(201,), json={"role": "annotator"})
        accepted = anonymous.post("/api/invitations/accept/", json={
            "token": invitation["token"], "username": name, "password": password})
        if accepted.status_code != 201:
            raise BenchError(f"Creating annotator {name} failed ({accepted.status_code}: {accepted.text[:300]}).")
    return names



"""One simulated annotator (annotation/workspace/simulation.py): a thread with its own HTTP client, token and
seeded RNG that starts dialogues, waits for each pair, judges it with the run's PreferenceModel and
finishes the dialogue, all over the public API. Nothing here imports Django."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from .simulation import Decision, SimulationConfig


@dataclass
class AnnotatorReport:
    username: str
    stored: int = 0
    strengths: Counter = field(default_factory=Counter)
    both_unusable: int = 0
    agreeing: int = 0
    compared: int = 0  # stored judgements whose noiseless preference is not a tie
    ties: int = 0
    overrides: Counter = field(default_factory=Counter)
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    pair_waits: list[float] = field(default_factory=list)  # seconds from posting a message to both done
    # Judgements the server acknowledged (201, or 200 for a repeat): turn id → the payload sent.
    acknowledged: dict[int, dict] = field(default_factory=dict)
    # Every request, and every pair wait as "pair": (time.time() at its end, what, seconds, HTTP status
    # or 0 for a connection error).
    timings: list[tuple[float, str, float, int]] = field(default_factory=list)


class _TurnFailed(Exception):
    """This turn cannot be judged; the annotator ends the dialogue and starts the next."""


class _Stop(_TurnFailed):
    """Nothing more this annotator can do (refused credentials or role, no active policy variant)."""


def _stops(status_code: int) -> bool:
    return status_code in (401, 403, 503)


def _base(url: str) -> str:
    return url.rstrip("/")


class SimulatedAnnotator(threading.Thread):
    """One annotator: its own HTTP client, token and seeded RNG; results in ``report``."""

    def __init__(self, config: SimulationConfig, index: int, token: str):
        super().__init__(name=f"simulated-{config.usernames[index]}", daemon=True)
        self.config, self.token = config, token
        self.rng = random.Random(f"{config.seed}-{index}")
        self.report = AnnotatorReport(username=config.usernames[index])
        self.model = config.model_for(index)

    def _over(self) -> bool:
        return self.config.until is not None and time.monotonic() > self.config.until

    def run(self):
        headers = {"Authorization": f"Token {self.token}"}
        with httpx.Client(base_url=_base(self.config.base_url), headers=headers, timeout=60) as self.client:
            for _ in range(self.config.dialogues):
                if self._over():
                    return
                try:
                    self._dialogue()
                except _Stop as error:
                    self.report.failures.append(str(error))
                    return
                except _TurnFailed as error:  # the dialogue could not start: try the next one
                    self.report.failures.append(str(error))
                except Exception as error:  # a thread must report, not die silently
                    self.report.failures.append(f"{error.__class__.__name__}: {error}")
                    return

    def _request(self, method: str, url: str, *, expect: tuple[int, ...], json: dict | None = None,
                 what: str = "", repeatable: bool = False) -> dict:
        tries = 1 + (self.config.request_retries if repeatable or method == "GET" else 0)
        delay = self.config.retry_delay
        for attempt in range(1, tries + 1):
            started = time.monotonic()
            try:
                response = self.client.request(method, url, json=json)
            except httpx.HTTPError as error:
                self.report.timings.append((time.time(), what or method, time.monotonic() - started, 0))
                if attempt < tries:
                    time.sleep(delay)
                    delay = min(2 * delay, 5.0)
                    continue
                raise _TurnFailed(f"{method} {url}: {error.__class__.__name__}: {error}") from error
            self.report.timings.append((time.time(), what or method, time.monotonic() - started,
                                         response.status_code))
            if response.status_code >= 500 and attempt < tries:
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            break
        if response.status_code not in expect:
            raise (_Stop if _stops(response.status_code) else _TurnFailed)(
                f"{method} {url} answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else {}

    def _dialogue(self):
        focus = self.config.focus
        if focus == "mixed":
            focus = self.rng.choice(("helpfulness", "safety"))
        dialogue = self._request("POST", "/api/dialogues/", expect=(201,), json={"focus": focus}, what="dialogue")
        context: list[dict] = []
        try:
            for _ in range(self.config.turns):
                if self._over():
                    return
                message = self.rng.choice(self.config.prompts)
                context = context + [{"role": "user", "content": message}]
                try:
                    chosen_text = self._turn(dialogue["id"], focus, message, context)
                except _Stop:
                    raise
                except _TurnFailed as error:
                    self.report.failures.append(str(error))
                    return
                if chosen_text is None:  # both unusable: nothing to continue from
                    return
                context = context + [{"role": "assistant", "content": chosen_text}]
        finally:
            try:
                self._request("POST", f"/api/dialogues/{dialogue['id']}/finish/", expect=(200,), what="finish",
                              repeatable=True)
            except _TurnFailed as error:
                self.report.failures.append(str(error))

    def _turn(self, dialogue_id: int, focus: str, message: str, context: list[dict]) -> str | None:
        """Post ``message``, wait for the pair, judge it; the chosen text (None if both unusable)."""
        posted = time.monotonic()
        turn = self._request("POST", f"/api/dialogues/{dialogue_id}/turns/", expect=(201,),
                             json={"user_message": message}, what="message")
        turn = self._wait_for_responses(turn)
        self.report.pair_waits.append(time.monotonic() - posted)
        self.report.timings.append((time.time(), "pair", time.monotonic() - posted, 200))
        texts = {side: turn["responses"][side]["text"] for side in "AB"}
        decision = self.model.judge(context=context, response_a=texts["A"], response_b=texts["B"], focus=focus,
                                    rng=self.rng)
        self._request("POST", f"/api/turns/{turn['id']}/judgement/", expect=(200, 201), json=decision.payload,
                      what="judgement", repeatable=True)
        self.report.acknowledged[turn["id"]] = decision.payload
        self._count(decision)
        return texts[decision.choice] if decision.choice else None

    def _wait_for_responses(self, turn: dict) -> dict:
        deadline = time.monotonic() + self.config.timeout
        retried = {"A": 0, "B": 0}
        while True:
            responses = turn["responses"]
            if all(responses[side]["status"] == "done" for side in "AB"):
                return turn
            for side in "AB":
                if responses[side]["status"] != "failed":
                    continue
                if retried[side] >= self.config.retries:
                    raise _TurnFailed(f"turn {turn['id']}: response {side} failed after {retried[side]} "
                                      f"retries: {responses[side]['error'][:200]}")
                turn = self._request("POST", f"/api/turns/{turn['id']}/retry/", expect=(202,),
                                     json={"side": side}, what="retry")
                retried[side] += 1
                self.report.retried += 1
            if time.monotonic() > deadline:
                statuses = "/".join(responses[side]["status"] for side in "AB")
                raise _TurnFailed(f"turn {turn['id']}: responses still {statuses} after "
                                  f"{self.config.timeout:g} s "
                                  "(is a Celery worker running?)")
            time.sleep(self.config.poll_interval)
            turn = self._request("GET", f"/api/turns/{turn['id']}/", expect=(200,), what="poll")

    def _count(self, decision: Decision) -> None:
        report = self.report
        report.stored += 1
        if decision.override:
            report.overrides[decision.override] += 1
        if decision.choice is None:
            report.both_unusable += 1
            return
        report.strengths[decision.payload["strength"]] += 1
        if decision.agrees is None:
            report.ties += 1
        else:
            report.compared += 1
            report.agreeing += decision.agrees

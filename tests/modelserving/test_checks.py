"""The system check on the sampling timeouts, the lease and the recovery thresholds."""

import os
import subprocess
import sys

from bench.processes import ROOT
from modelserving.checks import recovery_settings_check


def ids(settings) -> list[str]:
    return [problem.id for problem in recovery_settings_check()]


def test_the_defaults_fit_together(settings):
    assert ids(settings) == []


def test_a_lapse_threshold_shorter_than_a_silent_request_is_warned_about(settings):
    # Lease 30 s + lapse 10 s < connect 5 s + read 60 s: a request still waiting for its first token
    # would be taken over by the sweep and sampled twice.
    settings.SAMPLING = {**settings.SAMPLING, "LEASE_SECONDS": 30, "CONNECT_TIMEOUT": 5, "READ_TIMEOUT": 60}
    settings.RECOVERY = {**settings.RECOVERY, "LAPSED_AFTER": 10}
    assert ids(settings) == ["modelserving.W001"]
    settings.RECOVERY = {**settings.RECOVERY, "LAPSED_AFTER": 35}
    assert ids(settings) == []


def test_a_queued_threshold_within_the_retry_backoff_is_warned_about(settings):
    settings.SAMPLING = {**settings.SAMPLING, "BACKOFF_MAX": 30}
    settings.RECOVERY = {**settings.RECOVERY, "QUEUED_AFTER": 30}
    assert ids(settings) == ["modelserving.W002"]


def test_manage_py_check_reports_it():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test", RECOVERY_LAPSED_AFTER="1",
               SAMPLING_LEASE_SECONDS="5", SAMPLING_READ_TIMEOUT="60")
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert "modelserving.W001" in done.stdout + done.stderr and "RECOVERY_LAPSED_AFTER" in done.stderr

"""The broker message of a pair is lost: both generations still end done, through the recovery sweep."""

import subprocess
import sys

import pytest

from bench.processes import ROOT
from modelserving import services
from modelserving.models import Generation

from ..conftest import pair_finished
from .conftest import publishing_to, stack_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_a_pair_whose_messages_were_purged_is_sampled_by_the_recovery_sweep(private_redis, sampling_worker,
                                                                            model_servers, variant_factory):
    # A Redis that lost its data, a publish that failed after the commit: the rows are queued and
    # no message will ever come for them. Nothing was re-delivered before this sweep existed.
    variant_factory("cool", model_servers[0], max_new_tokens=8)
    variant_factory("warm", model_servers[1], max_new_tokens=8)
    with publishing_to(private_redis.url):
        pair = services.pair_request(messages=[{"role": "user", "content": "Name a colour."}])
    purged = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "purge", "-f", "-Q", "sampling"],
                            env=stack_env(private_redis.url), cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    assert "Purged 2 messages" in purged.stdout, purged.stdout
    assert set(pair.generations.values_list("status", flat=True)) == {"queued"}

    worker = sampling_worker()  # with beat: the sweep runs every second
    generations = pair_finished(pair, timeout=120)
    for generation in generations:
        assert generation.status == Generation.Status.DONE, generation.error
        assert generation.text and generation.attempts == 1  # produced once
        assert generation.recoveries >= 1  # by the sweep, not by a message that was never sent
    assert "modelserving.generations_recover" in worker.log_path.read_text()

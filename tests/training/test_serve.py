"""Closing the loop: a policy checkpoint becomes a variant that real pair requests sample from."""

import shutil

import pytest
from django.core.exceptions import ValidationError

from modelserving import services as modelserving
from modelserving.local_servers import local_server_look, local_server_stop
from modelserving.models import Generation, LocalServer, PolicyVariant
from modelserving.selectors import active_variants
from training.checkpoints import checkpoint_register
from training.models import Checkpoint
from training.services import checkpoint_serve, vllm_command

from ..conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def served():
    yield
    for server in LocalServer.objects.filter(stopped_at__isnull=True):
        local_server_stop(server=server)


def test_a_registered_policy_checkpoint_is_served_and_sampled_in_pairs(celery_worker, tiny_model_dir, researcher,
                                                                      served):
    policy = checkpoint_register(name="tiny-policy", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir,
                                 lineage={"base": "smollm2", "batches": ["2026-W48"]})
    # A name that is not a slug is refused before any process starts (it is part of a file path).
    with pytest.raises(ValidationError):
        checkpoint_serve(checkpoint=policy, researcher=researcher, name="../../etc/x")
    assert not LocalServer.objects.exists()
    # The request does not wait for the model to load: the variant joins pairing once it answers.
    variant = checkpoint_serve(checkpoint=policy, researcher=researcher, name="tiny-rlhf-v1", max_new_tokens=8,
                               temperature_min=0.5, temperature_max=1.2)
    # The request returned at once, while the server still loads the model: no one waited for it.
    assert not variant.is_active and local_server_look(server=variant.local_server) == "starting"
    wait_for(lambda: PolicyVariant.objects.get(pk=variant.pk).is_active, timeout=120,
             message="the activation task to find the server answering")
    policy.refresh_from_db()
    assert policy.variant == variant and variant.local_server.pid > 0
    with pytest.raises(ValidationError, match="served already"):
        checkpoint_serve(checkpoint=policy, researcher=researcher, name="again")
    # The new variant joins pairing (here it is the only one: one variant at two temperatures).
    pair = modelserving.pair_request(messages=[{"role": "user", "content": "Hello"}])
    wait_for(lambda: all(g.status == "done" for g in Generation.objects.filter(pair=pair)), timeout=120,
             message="both generations from the new variant")
    assert {g.variant_id for g in pair.generations.all()} == {variant.pk}


def test_a_local_server_that_exits_at_start_leaves_its_variant_inactive_with_the_reason(
        celery_worker, tiny_model_dir, tmp_path, researcher, served):
    # A checkpoint whose config was damaged after it was registered: `transformers serve` exits
    # while loading it, and the activation task says so instead of waiting for it.
    broken = tmp_path / "broken-policy"
    shutil.copytree(tiny_model_dir, broken)
    policy = checkpoint_register(name="broken-policy", kind=Checkpoint.Kind.POLICY, path=broken)
    (broken / "config.json").write_text('{"model_type": "not-a-model"}')
    variant = checkpoint_serve(checkpoint=policy, researcher=researcher, name="broken-v1")
    server = variant.local_server
    wait_for(lambda: LocalServer.objects.get(pk=server.pk).stopped_at is not None, timeout=120,
             message="the activation task to find the server gone")
    variant.refresh_from_db()
    assert not variant.is_active and "exited at start" in variant.notes


def test_in_production_the_operator_runs_vllm_and_gives_the_url(tiny_model_dir, researcher, settings):
    settings.POLICY_SERVING = "external"
    policy = checkpoint_register(name="tiny-policy", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)
    with pytest.raises(ValidationError) as refused:
        checkpoint_serve(checkpoint=policy, researcher=researcher, name="rlhf-v2")
    assert vllm_command(policy, "rlhf-v2") in refused.value.message_dict["base_url"][0]
    assert "--served-model-name rlhf-v2 --generation-config vllm" in vllm_command(policy, "rlhf-v2")
    # A researcher's URL is on an allowed host or refused, and then waits for an admin's approval.
    with pytest.raises(ValidationError, match="VARIANT_ALLOWED_HOSTS"):
        checkpoint_serve(checkpoint=policy, researcher=researcher, name="rlhf-v2",
                         base_url="http://collector.example.com/v1", model_name="rlhf-v2")
    settings.VARIANT_ALLOWED_HOSTS = [*settings.VARIANT_ALLOWED_HOSTS, "vllm-rlhf-v2:8000"]
    variant = checkpoint_serve(checkpoint=policy, researcher=researcher, name="rlhf-v2",
                               base_url="http://vllm-rlhf-v2:8000/v1", model_name="rlhf-v2")
    assert variant.base_url == "http://vllm-rlhf-v2:8000/v1" and not LocalServer.objects.exists()
    assert variant.awaiting_approval and variant not in active_variants()


def _keeper():
    """`manage.py local_servers keep`, as make run's `servers` process runs it, on the test database."""
    import os
    import subprocess
    import sys

    from django.db import connection

    from bench.processes import ROOT

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test",
               TANDEM_TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]))
    return subprocess.Popen([sys.executable, "manage.py", "local_servers", "keep"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _alive(pid: int) -> bool:
    from modelserving.local_servers import _exited

    return not _exited(pid)


def test_local_servers_stop_with_the_stack_and_come_back_for_active_variants(celery_worker, tiny_model_dir,
                                                                            researcher, served):
    import signal

    policy = checkpoint_register(name="tiny-policy", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)
    variant = checkpoint_serve(checkpoint=policy, researcher=researcher, name="tiny-kept", max_new_tokens=8)
    wait_for(lambda: PolicyVariant.objects.get(pk=variant.pk).is_active, timeout=120, message="the served variant")
    first = LocalServer.objects.get(variant=variant)
    base_url = PolicyVariant.objects.get(pk=variant.pk).base_url
    # The stack runs: the keeper has nothing to restart. The stack stops (SIGTERM): the server goes too.
    keeper = _keeper()
    line = ""
    while not line.startswith("local model servers:"):  # up and waiting (Django's own log lines first)
        line = keeper.stdout.readline()
        assert line, "the keeper exited"
    assert line.startswith("local model servers: transformers serve")
    keeper.send_signal(signal.SIGTERM)
    said = keeper.communicate(timeout=60)[0]
    assert keeper.returncode == 0, said
    assert f"stopped model server {tiny_model_dir}" in said, said
    wait_for(lambda: not _alive(first.pid), timeout=30, message="the model server to stop with the stack")
    assert PolicyVariant.objects.get(pk=variant.pk).is_active, "the variant stays active: it comes back"
    # The stack starts again: the variant's server is started on its port, and it samples.
    keeper = _keeper()
    try:
        again = wait_for(lambda: (lambda s: s if s.stopped_at is None and s.pid != first.pid else None)(
            LocalServer.objects.get(pk=first.pk)), timeout=60, message="the server started again")
        assert again.port == first.port and PolicyVariant.objects.get(pk=variant.pk).base_url == base_url
        wait_for(lambda: local_server_look(server=again) == "ready", timeout=120, message="the server to answer")
        generation = modelserving.generation_request(variant=PolicyVariant.objects.get(pk=variant.pk),
                                                     messages=[{"role": "user", "content": "Hi"}])
        wait_for(lambda: Generation.objects.get(pk=generation.pk).status == "done", timeout=120,
                 message="a generation from the server that came back")
    finally:
        keeper.send_signal(signal.SIGTERM)
        said = keeper.communicate(timeout=60)[0]
    assert f"variant tiny-kept: {tiny_model_dir} served again on :{first.port}" in said, said
    wait_for(lambda: not _alive(LocalServer.objects.get(pk=first.pk).pid), timeout=30,
             message="the restarted server to stop with the stack")

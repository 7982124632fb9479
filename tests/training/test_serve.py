"""Closing the loop: a policy checkpoint becomes a variant that real pair requests sample from."""

import pytest
from django.core.exceptions import ValidationError

from modelserving import services as modelserving
from modelserving.local_servers import local_server_stop
from modelserving.models import Generation, LocalServer, PolicyVariant
from modelserving.selectors import active_variants
from training.models import Checkpoint
from training.services import checkpoint_register, checkpoint_serve, vllm_command

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
    policy.refresh_from_db()
    assert policy.variant == variant and variant.local_server.pid > 0 and not variant.is_active
    wait_for(lambda: PolicyVariant.objects.get(pk=variant.pk).is_active, timeout=120,
             message="the worker to activate the variant once its server answers")
    with pytest.raises(ValidationError, match="served already"):
        checkpoint_serve(checkpoint=policy, researcher=researcher, name="again")
    # The new variant joins pairing (here it is the only one: one variant at two temperatures).
    pair = modelserving.pair_request(messages=[{"role": "user", "content": "Hello"}])
    wait_for(lambda: all(g.status == "done" for g in Generation.objects.filter(pair=pair)), timeout=120,
             message="both generations from the new variant")
    assert {g.variant_id for g in pair.generations.all()} == {variant.pk}


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

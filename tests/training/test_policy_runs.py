"""Policy runs through the same launch path as reward models: validation, an SFT run through the
real worker registering a policy checkpoint, and — in a slow test — the whole Llama 2 loop."""

import pytest
from django.core.exceptions import ValidationError

from annotation import services as annotation
from modelserving import services as modelserving
from modelserving.local_servers import local_server_stop
from modelserving.models import Generation, LocalServer, PolicyVariant
from training.models import Checkpoint, TrainingRun
from training.policy import policy_run_launch
from training.services import checkpoint_serve, run_launch

from ..conftest import wait_for
from .conftest import FAST

TINY_SFT = {"learning_rate": 1e-3, "epochs": 1, "max_length": 128, "per_device_batch_size": 2,
            "gradient_accumulation_steps": 1, "gradient_checkpointing": "false"}


def refreshed(run):
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_policy_launches_are_checked_and_refusals_store_nothing(preference_batch, researcher, tiny_base):
    batch = preference_batch(helpfulness=4)
    cases = [
        ({"kind": "dpo"}, "kind"),
        ({"kind": "sft", "batches": [str(batch)]}, "batches"),  # no demonstrations in it
        ({"kind": "sft", "batches": ["2030-W01"]}, "batches"),
        ({"kind": "ppo", "batches": [str(batch)]}, "helpfulness_rm"),
        ({"kind": "ppo", "batches": [str(batch)], "helpfulness_rm": "nope"}, "helpfulness_rm"),
        ({"kind": "rejection_sampling", "batches": [str(batch)], "variant": "ghost"}, "variant"),
        ({"kind": "gatt", "batches": [str(batch)], "instructions": ["  "]}, "instructions"),
        ({"kind": "policy_eval", "batches": [str(batch)], "variants": ["cool"]}, "variants"),
        ({"kind": "ppo", "batches": [str(batch)], "job_settings": {"kl_coef": 5}}, "kl_coef"),
        ({"kind": "sft", "batches": [str(batch)], "job_settings": {"warp_speed": 9}}, "warp_speed"),
    ]
    for arguments, field in cases:
        with pytest.raises(ValidationError) as refused:
            policy_run_launch(researcher=researcher, base=tiny_base, **arguments)
        assert field in refused.value.message_dict, (arguments, refused.value.message_dict)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_an_sft_run_on_demonstrations_registers_a_policy_checkpoint(celery_worker, preference_batch, researcher,
                                                                   tiny_base, django_user_model, monkeypatch):
    annotator = django_user_model.objects.get(username="ann")
    for i in range(6):
        annotation.demonstration_write(annotator=annotator, prompt=f"Say hello number {i}.",
                                       answer=f"Hello number {i}, gladly!")
    batch = preference_batch(helpfulness=2)
    run = policy_run_launch(researcher=researcher, kind="sft", batches=[str(batch)], base=tiny_base, name="sft-1",
                            job_settings=TINY_SFT)
    wait_for(lambda: refreshed(run).is_finished, timeout=400, message="the SFT run")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    assert run.data["written"] == {"demonstrations": 6} and run.metrics.exists()
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.kind == "policy" and checkpoint.base == tiny_base and checkpoint.name == f"sft-1-run{run.pk}"
    assert checkpoint.lineage["batches"] == [str(batch)] and checkpoint.lineage["kind"] == "sft"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(1200)
def test_the_whole_loop_judgements_to_a_new_variant(celery_worker, preference_batch, researcher, tiny_base,
                                                     variant_factory, model_servers, monkeypatch):
    """Judgements → frozen batch → reward model → rejection-sampling round → new variant → a pair
    sampled from it, all through the platform's own paths on the embedded stack."""
    batch = preference_batch(helpfulness=40, safety=8)
    PolicyVariant.objects.update(is_active=False)  # the batch's variants were never reachable
    rm_run = run_launch(researcher=researcher, focus="helpfulness", batches=[str(batch)], base=tiny_base, **FAST)
    wait_for(lambda: refreshed(rm_run).is_finished, timeout=400, message="the reward model")
    assert rm_run.status == "succeeded", rm_run.error
    reward_model = Checkpoint.objects.get(run=rm_run)
    variant_factory("tiny-live", model_servers[0], max_new_tokens=8)
    rs_run = policy_run_launch(researcher=researcher, kind="rejection_sampling", batches=[str(batch)],
                               base=tiny_base, variant="tiny-live", helpfulness_rm=reward_model.name,
                               job_settings={**TINY_SFT, "k": 2, "max_tokens": 8})
    wait_for(lambda: refreshed(rs_run).is_finished, timeout=600, message="the rejection-sampling round")
    assert rs_run.status == "succeeded", (rs_run.error, rs_run.log_tail[-3000:])
    policy = Checkpoint.objects.get(run=rs_run)
    assert policy.lineage["reward_models"] == [reward_model.name]
    try:
        new = checkpoint_serve(checkpoint=policy, researcher=researcher, name="rlhf-v1", max_new_tokens=8)
        PolicyVariant.objects.exclude(pk=new.pk).update(is_active=False)
        monkeypatch.undo()  # the batch was built without sampling; this pair goes to the worker
        pair = modelserving.pair_request(messages=[{"role": "user", "content": "Hello again"}])
        wait_for(lambda: all(g.status in ("done", "failed") for g in Generation.objects.filter(pair=pair)),
                 timeout=180, message="a pair from the new variant")
        generations = list(pair.generations.select_related("variant"))
        assert [g.status for g in generations] == ["done", "done"], [g.error for g in generations]
        assert {g.variant.name for g in generations} == {"rlhf-v1"}
    finally:
        for server in LocalServer.objects.filter(stopped_at__isnull=True):
            local_server_stop(server=server)

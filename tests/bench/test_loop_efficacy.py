"""The loop works: judgements made through Tandem train a reward model that learns the simulated
annotators' taste, and a rejection-sampling round makes a policy that the same taste prefers.

bench/loop_efficacy.py's `tiny` profile, run against a live Tandem (this test's server thread, a
real Celery worker, two `transformers serve` processes on the tests' tiny Llama taught to answer in
plain and polite sentences) through the API only. The taste is politeness (polite words, counted),
judged with noise.
"""

import pytest

from bench.loop_efficacy import PROMPTS_FILE, parse_args, run_loop, table
from bench.processes import ROOT, ModelServer
from modelserving.local_servers import local_server_stop
from modelserving.models import LocalServer
from training.checkpoints import checkpoint_register
from training.models import Checkpoint

from ..conftest import PASSWORD
from ..helpers.tiny_chat import build_tiny_chat

# What must hold whatever the noise: chance is 50 %, and the margins leave room for the noise of
# a small held-out split and of sampling.
RM_ACCURACY_ABOVE_CHANCE = 0.10  # held-out accuracy ≥ 60 %
NEW_VARIANT_WINS_MORE_THAN = 0.5


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(1800)
def test_the_loop_makes_a_policy_the_annotators_prefer(live_server, celery_worker, tiny_model_dir, variant_factory,
                                                       make_user, settings, tmp_path):
    settings.HELD_OUT_SHARE = 0.3  # a held-out split large enough to measure the RM on
    prompts = [line.strip() for line in PROMPTS_FILE.read_text().splitlines() if line.strip()]
    tiny_chat = build_tiny_chat(ROOT / "var" / "test-models" / "tiny-chat", base_dir=tiny_model_dir, prompts=prompts)
    base = checkpoint_register(name="tiny-chat", kind=Checkpoint.Kind.POLICY, path=tiny_chat)
    servers = [ModelServer(tiny_chat).start() for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        figures, options = _run(live_server, base, servers, variant_factory, make_user, tmp_path)
    finally:
        for server in servers:
            server.stop()
    print("\n".join(table(figures)))
    assert figures["round0"]["stored"] >= 0.9 * options.profile.judgements
    held_out = figures["reward_model"]["held_out"]
    assert held_out["pairs"] >= 30
    assert held_out["accuracy"] >= 0.5 + RM_ACCURACY_ABOVE_CHANCE, held_out
    fresh = figures["reward_model"]["fresh_pairs"]
    assert fresh["pairs"] >= 30 and fresh["agreement_with_preference"] > 0.5, fresh
    result = figures["verdict"]["rejection_sampling"]
    assert result["prompts"] == options.profile.held_out_prompts
    assert result["win_rate_noiseless"] > NEW_VARIANT_WINS_MORE_THAN, result
    assert figures["verdict_round"]["stored"] > 0
    assert {row["variant"] for row in figures["leaderboard"]["leaderboard"]} >= {"cool", "warm"}
    assert (tmp_path / "loop.json").exists()
    # Each named step ran and was timed (ppo is off without --ppo).
    assert set(figures["seconds"]) == {"round0", "freeze", "reward_model", "rejection_sampling", "serve", "verdict",
                                       "leaderboard", "total"}


def _run(live_server, base, servers, variant_factory, make_user, tmp_path):
    variant_factory("cool", servers[0], temperature_min=0.8, temperature_max=1.0)
    variant_factory("warm", servers[1], temperature_min=1.1, temperature_max=1.3)
    make_user("loop-admin", role="admin")
    make_user("loop-researcher", role="researcher")
    options = parse_args(["--url", live_server.url, "--profile", "tiny", "--admin", f"loop-admin:{PASSWORD}",
                          "--researcher", f"loop-researcher:{PASSWORD}", "--create-annotators",
                          "--base", base.name, "--out", str(tmp_path / "loop.json")])
    try:
        return run_loop(options), options
    finally:
        for server in LocalServer.objects.filter(stopped_at__isnull=True):
            local_server_stop(server=server)

"""The workspace's selectors of the judgement path (hand-written statements behind them,
annotation/workspace/hot_path.py) answer the rows the test built, turn by turn through every state,
with every column converted as the ORM converts a stored row, on SQLite (make test) and PostgreSQL
(make test-all)."""

import random

import pytest
from django.db import connection, transaction

from annotation.models import Dialogue, OverlapPolicy, Turn
from annotation.workspace import hot_path, judgements, selectors
from annotation.workspace.selectors import sides
from core.exceptions import NotYours
from modelserving.models import Generation
from tests.helpers.preferences import answered_turn

pytestmark = pytest.mark.django_db


def values(instance, deferred=()):
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields
            if f.name not in deferred}


def same_turn(read, reference):
    """``read`` holds the stored row of ``reference``'s turn, and its two responses, A (the one
    shown on the left) first."""
    stored = Turn.objects.get(pk=reference.pk)
    responses = {g.pk: g for g in Generation.objects.filter(pair_id=stored.pair_id)}
    left = responses.pop(stored.left_generation_id)
    (right,) = responses.values()
    assert values(read, {"snapshot"}) == values(stored, {"snapshot"})
    assert [values(g, {"messages", "request_body"}) for g in sides(read)] == [
        values(g, {"messages", "request_body"}) for g in (left, right)]
    # What is left out is read when asked for, and is the stored value.
    assert sides(read)[0].messages == left.messages and read.snapshot == stored.snapshot


@pytest.fixture
def desk(annotator, make_user, offline_variants):
    """The annotator's turns in every state the next-turn rule tells apart, and someone else's."""
    rng = random.Random(7)
    turns = {name: answered_turn(annotator, focus="helpfulness", rng=rng)[0]
             for name in ("judged", "ready_1", "queued", "running", "failed", "finished_dialogue", "ready_2")}
    judgements.judgement_submit(turn=turns["judged"], annotator=annotator, judgement=judgements.Judgement(
        choice="A", strength="better"))
    for name, status in (("queued", "queued"), ("running", "running"), ("failed", "failed")):
        Generation.objects.filter(pk=turns[name].left_generation_id).update(status=status)
    Dialogue.objects.filter(pk=turns["finished_dialogue"].dialogue_id).update(status=Dialogue.Status.FINISHED)
    other = make_user("someone-else")
    answered_turn(other, focus="safety", rng=rng)
    return turns


def test_the_next_turn_is_each_ready_one_oldest_first_until_none_is_left(annotator, desk):
    # Not the judged one, not those with a response queued, running or failed, not the one of a
    # finished dialogue, not someone else's: the two ready ones, the older first.
    for expected in ("ready_1", "ready_2"):
        read = selectors.next_turn(annotator=annotator)
        assert read.pk == desk[expected].pk
        same_turn(read, desk[expected])
        judgements.judgement_submit(turn=read, annotator=annotator,
                                    judgement=judgements.Judgement(choice="B", strength="slightly_better"))
    assert selectors.next_turn(annotator=annotator) is None


def test_the_locked_turn_comes_with_its_dialogue_responses_and_overlap_policy(annotator, desk):
    OverlapPolicy.objects.filter(focus="helpfulness").delete()
    for turn in desk.values():
        with transaction.atomic():
            read = selectors.locked_turn(turn.pk)
        same_turn(read, turn)
        assert values(read.dialogue) == values(Dialogue.objects.get(pk=turn.dialogue_id))
        assert read.overlap_policy is None
    OverlapPolicy.objects.create(focus="helpfulness", share=0.25, reviewers=3)
    with transaction.atomic():
        policy = selectors.locked_turn(desk["ready_1"].pk).overlap_policy
    assert (policy.share, policy.reviewers) == (0.25, 3)
    with pytest.raises(Turn.DoesNotExist):
        selectors.locked_turn(max(t.pk for t in desk.values()) + 1000)


def test_the_workspace_reads_only_the_owners_turn_with_its_dialogue_and_responses(annotator, make_user, desk):
    for turn in desk.values():
        read = selectors.own_turn(annotator=annotator, pk=turn.pk)
        same_turn(read, turn)
        assert values(read.dialogue) == values(Dialogue.objects.get(pk=turn.dialogue_id))
    with pytest.raises(NotYours):
        selectors.own_turn(annotator=make_user("stranger"), pk=desk["ready_1"].pk)


def test_the_owner_check_answers_only_the_owner(annotator, make_user, desk):
    judged = selectors.own_turn_bare(annotator=annotator, pk=desk["judged"].pk)
    stored = Turn.objects.get(pk=desk["judged"].pk)
    assert (judged.pk, judged.dialogue_id, judged.submitted_at) == (stored.pk, stored.dialogue_id, stored.submitted_at)
    assert judged.submitted_at.tzinfo is not None
    assert selectors.own_turn_bare(annotator=annotator, pk=desk["ready_1"].pk).submitted_at is None
    with pytest.raises(NotYours):
        selectors.own_turn_bare(annotator=make_user("stranger"), pk=desk["ready_1"].pk)
    with pytest.raises(NotYours):
        selectors.own_turn_bare(annotator=annotator, pk=stored.pk + 1000)


def test_the_next_turn_is_found_through_the_pending_turns_index(annotator, desk):
    """Judged turns pile up and pending ones stay few: the next-turn statement reads the partial
    index of pending turns, not a bitmap of every unjudged row ANDed per dialogue (50 ms at 6,000
    turns on stale statistics, bench/annotate_load.py)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's query plan (make test-all and CI run this on PostgreSQL)")
    with connection.cursor() as cursor:  # the test's transaction: tiny tables would be scanned whole
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + hot_path._statements()["next"], [annotator.pk, "active", "done"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "turn_pending" in plan, plan


def test_an_id_beyond_the_databases_integers_is_no_turn(annotator, desk, client):
    """The fuzzer's ids (tests of the API schema): the ORM answers no row for them, and so do these
    statements, on SQLite too, where the number cannot even be sent."""
    huge = 263906777696604193124515840
    with pytest.raises(NotYours):
        selectors.own_turn_bare(annotator=annotator, pk=huge)
    with pytest.raises(NotYours):
        selectors.own_turn(annotator=annotator, pk=huge)
    with pytest.raises(Turn.DoesNotExist):
        selectors.locked_turn(huge)
    client.force_login(annotator)
    assert client.get(f"/annotate/turns/{huge}/", HTTP_HX_REQUEST="true").status_code == 404
    assert client.post(f"/annotate/turns/{huge}/judgement/", {"point": "3"}).status_code == 404

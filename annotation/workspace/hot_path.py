"""The judgement path's reads, written by hand, behind the selectors of selectors.py (nothing else
imports this module): the next turn, the owner check and the locked turn
of a submission run for every judgement an annotator makes, and the workspace's turn partial is
polled while a pair streams in.

Through the ORM, compiling them (a turn with its dialogue, pair, batch and chosen response, the
pair's responses prefetched, the anti-join on unfinished responses) cost more CPU than anything
else on the path (``bench/annotate_load.py --profile-requests``, docs/performance.md). Here each
is one statement, written once per process from the models' metadata, the same on PostgreSQL and
SQLite: a turn comes with its two responses (and its dialogue) in one round trip, except the
locked one, whose responses are read once its lock is held. Each column is converted as the ORM
converts it; what the path does not read stays deferred and is read if something asks for it (a
response's request as sent, the turn's frozen snapshot).
"""

from __future__ import annotations

import functools

from django.db import connection

from core.sql import id_fits
from modelserving.models import Generation

from ..models import Dialogue, OverlapPolicy, Turn

# Left out of the rows read here (deferred): the request sent for a response (its context can be
# long) and a turn's snapshot (written when its batch freezes).
_DEFERRED = {Generation: {"messages", "request_body"}, Turn: {"snapshot"}, Dialogue: set(), OverlapPolicy: set()}


class _Shape:
    """A model's columns in a hand-written SELECT under ``alias``, and the instance back from them."""

    def __init__(self, model, alias: str, names: tuple[str, ...] = ()):
        q = connection.ops.quote_name
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields
                       if (f.name in names if names else f.name not in _DEFERRED[model])]
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f"{alias}.{q(f.column)}" for f in self.fields)
        self.cols = [f.get_col(alias) for f in self.fields]
        # What the ORM's compiler applies to each column it reads (the backend's, then the field's).
        self.converters = [connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                           for col in self.cols]

    def __len__(self):
        return len(self.fields)

    def build(self, values):
        converted = []
        for value, converters, col in zip(values, self.converters, self.cols, strict=True):
            for convert in converters:
                value = convert(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.attnames, converted)


@functools.cache
def _statements():
    q = connection.ops.quote_name
    turn, dialogue, generation = _Shape(Turn, "t"), _Shape(Dialogue, "d"), _Shape(Generation, "g")
    owned = _Shape(Turn, "t", names=("id", "dialogue", "submitted_at"))
    policy = _Shape(OverlapPolicy, "op", names=("id", "share", "reviewers"))
    turns, dialogues, generations = (q(m._meta.db_table) for m in (Turn, Dialogue, Generation))
    lock = " FOR UPDATE OF t, d" if connection.features.has_select_for_update_of else ""
    return {
        "shapes": (turn, dialogue, generation),
        "policy": policy,
        "owned": owned,
        # The oldest pending turn of the annotator's active dialogues whose two responses are done
        # (found through the pending-turns index, turn_pending), with them.
        "next": (
            f"SELECT {turn.sql}, {generation.sql} FROM {turns} t JOIN {generations} g ON g.pair_id = t.pair_id "
            f"WHERE t.id = (SELECT p.id FROM {turns} p JOIN {dialogues} pd ON pd.id = p.dialogue_id "
            f"WHERE pd.annotator_id = %s AND pd.status = %s AND p.submitted_at IS NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {generations} pg WHERE pg.pair_id = p.pair_id AND pg.status <> %s) "
            f"ORDER BY p.created_at, p.id LIMIT 1) ORDER BY g.position"),
        # The turn and its dialogue locked, with the overlap policy of the dialogue's focus (none: no
        # overlap review), which a new judgement consults. Its responses are read by the next
        # statement, once the lock is held: under READ COMMITTED, rows joined here would be those
        # of the snapshot taken before a wait for the lock (a retry that holds the turn requeues a
        # response; the judgement that waited for it must see the response queued again,
        # tests/faults/test_lock_order.py).
        "locked": (
            f"SELECT {turn.sql}, {dialogue.sql}, {policy.sql} FROM {turns} t "
            f"JOIN {dialogues} d ON d.id = t.dialogue_id "
            f"LEFT JOIN {q(OverlapPolicy._meta.db_table)} op ON op.focus = d.focus WHERE t.id = %s{lock}"),
        "responses": f"SELECT {generation.sql} FROM {generations} g WHERE g.pair_id = %s ORDER BY g.position",
        # The annotator's turn with its dialogue and responses (the workspace's turn partial, polled
        # while a pair streams in).
        "mine": (
            f"SELECT {turn.sql}, {dialogue.sql}, {generation.sql} FROM {turns} t "
            f"JOIN {dialogues} d ON d.id = t.dialogue_id JOIN {generations} g ON g.pair_id = t.pair_id "
            f"WHERE t.id = %s AND d.annotator_id = %s ORDER BY g.position"),
        "own": (f"SELECT {owned.sql} FROM {turns} t JOIN {dialogues} d "
                f"ON d.id = t.dialogue_id WHERE t.id = %s AND d.annotator_id = %s"),
    }


def _turn_from(rows, with_dialogue: bool, with_policy: bool = False) -> Turn | None:
    """The turn (with its dialogue, and its focus's overlap policy) from the first row, and its
    responses from the rest of each row, if the statement joined them."""
    if not rows:
        return None
    turn_shape, dialogue_shape, generation_shape = _statements()["shapes"]
    first, end = rows[0], len(turn_shape)
    turn = turn_shape.build(first[:end])
    if with_dialogue:
        turn.dialogue = dialogue_shape.build(first[end:end + len(dialogue_shape)])
        end += len(dialogue_shape)
    if with_policy:
        policy = _statements()["policy"]
        values = first[end:end + len(policy)]
        # Read with the turn for review.overlap_schedule (None: the focus has no policy).
        turn.overlap_policy = policy.build(values) if values[0] is not None else None
        end += len(policy)
    if end < len(first):
        turn.pair_generations = [generation_shape.build(row[end:]) for row in rows]
    return turn


def _rows(statement: str, params: list) -> list:
    with connection.cursor() as cursor:
        cursor.execute(_statements()[statement], params)
        return cursor.fetchall()


def next_turn_for(*, annotator) -> Turn | None:
    """The annotator's oldest turn that waits for a judgement and whose two responses are done, with
    its responses."""
    return _turn_from(_rows("next", [annotator.pk, Dialogue.Status.ACTIVE, Generation.Status.DONE]), False)


def locked_turn(pk: int) -> Turn:
    """Turn ``pk`` and its dialogue, locked until the transaction ends, with its two responses and
    its focus's overlap policy. Call inside a transaction, after any batch lock (the one lock order)."""
    turn = _turn_from(_rows("locked", [pk]), True, with_policy=True) if id_fits(Turn, pk) else None
    if turn is None:
        raise Turn.DoesNotExist(f"No turn {pk}.")
    generation_shape = _statements()["shapes"][2]
    turn.pair_generations = [generation_shape.build(row) for row in _rows("responses", [turn.pair_id])]
    return turn


def own_turn(*, annotator, pk: int) -> Turn | None:
    """The annotator's turn ``pk`` with its dialogue and two responses, or None when it is unknown or
    someone else's."""
    return _turn_from(_rows("mine", [pk, annotator.pk]), True) if id_fits(Turn, pk) else None


def own_turn_bare(*, annotator, pk: int) -> Turn | None:
    """The annotator's turn ``pk`` (its id, dialogue and whether it is judged; the rest deferred), or
    None when it is unknown or someone else's: the owner check before a service reads it locked."""
    rows = _rows("own", [pk, annotator.pk]) if id_fits(Turn, pk) else []
    return _statements()["owned"].build(rows[0]) if rows else None

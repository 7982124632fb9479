"""Run as a script (its own process, on the database in DATABASE_URL, migrated): freeze a batch, then
try to change its rows with raw SQL, as a shell or a bug would. Prints JSON: statement → the
database's refusal, or null when it let the statement through."""

import json
import os
import sys

import django

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
django.setup()

from django.db import DatabaseError, connection, transaction  # noqa: E402

from accounts.services import user_create  # noqa: E402
from annotation.batches.services import batch_freeze  # noqa: E402
from annotation.demonstrations import services as demonstrations  # noqa: E402
from annotation.models import Batch, Turn  # noqa: E402
from annotation.workspace import judgements  # noqa: E402
from modelserving.models import Generation, Pair  # noqa: E402
from tests.faults.seed_judgeable import main as seed  # noqa: E402


def frozen_batch() -> dict:
    """A frozen batch with two judged turns and a demonstration; the ids raw SQL aims at."""
    seed(1, 2)
    annotator = Turn.objects.first().dialogue.annotator
    for turn in Turn.objects.all():
        judgements.judgement_submit(turn=turn, annotator=annotator,
                                  judgement=judgements.Judgement(choice="A", strength="better"))
    demonstration = demonstrations.demonstration_write(annotator=annotator, prompt="Why?", answer="Because.")
    batch = batch_freeze(batch=Batch.objects.get(), admin=user_create(username="adm", password="a-long-password-9",
                                                                      role="admin"), force=True)
    turn = Turn.objects.first()
    spare = Pair.objects.create(messages=[{"role": "user", "content": "Late"}], strategy="two_variants")
    left = turn.left_generation
    # A response of no pair (as a red-team answer is), which raw SQL could try to move into the batch.
    loose = Generation.objects.create(variant=left.variant, model_name="m", messages=left.messages,
                                      temperature=0.5, top_p=0.9, seed=1, max_tokens=8, status="done",
                                      text="An injected answer.", finished_at=left.finished_at)
    return {"batch": batch.pk, "turn": turn.pk, "generation": turn.left_generation_id, "pair": turn.pair_id,
            "demonstration": demonstration.pk, "annotator": annotator.pk, "dialogue": turn.dialogue_id,
            "spare_pair": spare.pk, "loose": loose.pk, "variant": left.variant_id}


STATEMENTS = {
    "update turn": "UPDATE annotation_turn SET strength = 'slightly_better' WHERE id = {turn}",
    "delete turn": "DELETE FROM annotation_turn WHERE id = {turn}",
    "move turn out": "UPDATE annotation_turn SET batch_id = NULL, submitted_at = NULL WHERE id = {turn}",
    # A judged turn written straight into the frozen batch (a late submission that skipped the service).
    "insert turn": ('INSERT INTO annotation_turn (dialogue_id, "index", user_message, pair_id, left_generation_id, '
                    "created_at, submitted_at, batch_id, split, strength, safety_bin, both_unusable, unusable_reason, "
                    "chosen_generation_id) VALUES ({dialogue}, 99, 'late', {spare_pair}, {generation}, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, {batch}, '', 'better', '', FALSE, '', {generation})"),
    "update generation": "UPDATE modelserving_generation SET text = 'rewritten' WHERE id = {generation}",
    "delete generation": "DELETE FROM modelserving_generation WHERE id = {generation}",
    # A third response written straight into a frozen pair, or moved into one, or one moved out.
    "insert generation": ("INSERT INTO modelserving_generation (pair_id, position, variant_id, model_name, messages, "
                          "temperature, top_p, seed, max_tokens, request_body, status, text, finish_reason, attempts, "
                          "recoveries, lapses, error, worker, created_at, updated_at, finished_at) VALUES ({pair}, 3, "
                          "{variant}, 'm', '[]', 0.5, 0.9, 1, 8, '{{}}', 'done', 'injected', 'stop', 1, 0, 0, '', '', "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
    "move generation in": "UPDATE modelserving_generation SET pair_id = {pair}, position = 3 WHERE id = {loose}",
    "move generation out": "UPDATE modelserving_generation SET pair_id = NULL WHERE id = {generation}",
    "update pair": "UPDATE modelserving_pair SET messages = '[]' WHERE id = {pair}",
    "delete pair": "DELETE FROM modelserving_pair WHERE id = {pair}",
    "update turn snapshot": "UPDATE annotation_turn SET snapshot = '{{}}' WHERE id = {turn}",
    "update batch snapshot": "UPDATE annotation_batch SET snapshot = '{{}}' WHERE id = {batch}",
    "update demonstration": "UPDATE annotation_demonstration SET answer = 'changed' WHERE id = {demonstration}",
    "delete demonstration": "DELETE FROM annotation_demonstration WHERE id = {demonstration}",
    "insert demonstration": ("INSERT INTO annotation_demonstration (annotator_id, kind, context, answer, original, "
                             "batch_id, created_at) VALUES ({annotator}, 'written', '[]', 'late', '', {batch}, "
                             "CURRENT_TIMESTAMP)"),
    "update batch": "UPDATE annotation_batch SET summary = '{{}}' WHERE id = {batch}",
    "reopen batch": "UPDATE annotation_batch SET status = 'open' WHERE id = {batch}",
    "delete batch": "DELETE FROM annotation_batch WHERE id = {batch}",
}


def attempt(sql: str) -> str | None:
    """The database's refusal of ``sql``, or None if it ran (then it is rolled back)."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)
            raise _RanThrough
    except _RanThrough:
        return None
    except DatabaseError as error:
        return f"{error.__class__.__name__}: {error}"


class _RanThrough(Exception):
    pass


if __name__ == "__main__":
    ids = frozen_batch()
    print(json.dumps({name: attempt(sql.format(**ids)) for name, sql in STATEMENTS.items()}))

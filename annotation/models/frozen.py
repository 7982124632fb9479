"""Frozen means frozen, in the database: triggers refuse any INSERT into, UPDATE into, within or out
of, and DELETE from a frozen batch, for every table whose rows an export reads.

A frozen batch's turns (with their judgements and snapshots), their pairs, the generations of
those pairs and its demonstrations cannot be added, changed, moved in or out, or deleted, and the
frozen batch row itself cannot change (it holds the snapshot the exports read). Each rule looks at
the row's old values (UPDATE, DELETE) and its new ones (INSERT, UPDATE), so neither a new row
pointing into the batch nor a row moved into or out of it gets through. The application never
tries; the triggers stop raw SQL, a shell or a future bug. PostgreSQL gets them through
django-pgtrigger (declared in the models' Meta, installed by migrations); the SQLite default gets
the same rules as plain SQLite triggers (installed after every migrate and flush by
``sqlite_triggers_install``, since SQLite drops a table's triggers whenever a migration rebuilds
the table). Both answer with an integrity error (SQLSTATE 23000), which Django raises as
``django.db.IntegrityError``.
"""

import pgtrigger

_RETURN = "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW;"
_FROZEN = "SELECT 1 FROM annotation_batch WHERE id = {ref} AND status = 'frozen'"
_PAIR_FROZEN = ("SELECT 1 FROM annotation_turn t JOIN annotation_batch b ON b.id = t.batch_id "
                "WHERE t.pair_id = {ref} AND b.status = 'frozen'")


def _message(what: str) -> str:
    return f"'Refused: % of a frozen batch''s {what} (a frozen batch never changes).'"


def _pg(name: str, operation, condition: str, what: str) -> pgtrigger.Trigger:
    # SQLSTATE 23000: psycopg2 and Django raise it as IntegrityError, as they do SQLite's RAISE(ABORT).
    body = (f"IF {condition} THEN RAISE EXCEPTION {_message(what)}, TG_OP "
            f"USING ERRCODE = 'integrity_constraint_violation'; END IF; {_RETURN}")
    return pgtrigger.Trigger(name=name, when=pgtrigger.Before, operation=operation, func=body)


# --- PostgreSQL (django-pgtrigger) ------------------------------------------------------------

BATCH = _pg("frozen_batch", pgtrigger.Update | pgtrigger.Delete, "OLD.status = 'frozen'", "batch row")
TURN = _pg("frozen_batch_turn", pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
           f"(TG_OP <> 'INSERT' AND EXISTS ({_FROZEN.format(ref='OLD.batch_id')})) OR "
           f"(TG_OP <> 'DELETE' AND EXISTS ({_FROZEN.format(ref='NEW.batch_id')}))", "turns and judgements")
GENERATION = _pg("frozen_batch_generation", pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                 f"(TG_OP <> 'INSERT' AND EXISTS ({_PAIR_FROZEN.format(ref='OLD.pair_id')})) OR "
                 f"(TG_OP <> 'DELETE' AND EXISTS ({_PAIR_FROZEN.format(ref='NEW.pair_id')}))", "generations")
PAIR = _pg("frozen_batch_pair", pgtrigger.Update | pgtrigger.Delete,
           f"EXISTS ({_PAIR_FROZEN.format(ref='OLD.id')}) OR "
           f"(TG_OP = 'UPDATE' AND EXISTS ({_PAIR_FROZEN.format(ref='NEW.id')}))", "pairs")
DEMONSTRATION = _pg("frozen_batch_demonstration", pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                    f"(TG_OP <> 'INSERT' AND EXISTS ({_FROZEN.format(ref='OLD.batch_id')})) OR "
                    f"(TG_OP <> 'DELETE' AND EXISTS ({_FROZEN.format(ref='NEW.batch_id')}))", "demonstrations")


# --- SQLite (the embedded default) ------------------------------------------------------------


def _sqlite(name: str, event: str, table: str, condition: str, what: str) -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, 'Refused: {event} of a frozen batch''s {what} "
            "(a frozen batch never changes).'); END;")


SQLITE_TRIGGERS = {
    "tandem_frozen_batch_update": _sqlite("tandem_frozen_batch_update", "UPDATE", "annotation_batch",
                                          "OLD.status = 'frozen'", "batch row"),
    "tandem_frozen_batch_delete": _sqlite("tandem_frozen_batch_delete", "DELETE", "annotation_batch",
                                          "OLD.status = 'frozen'", "batch row"),
    "tandem_frozen_turn_insert": _sqlite("tandem_frozen_turn_insert", "INSERT", "annotation_turn",
                                         f"EXISTS ({_FROZEN.format(ref='NEW.batch_id')})", "turns and judgements"),
    "tandem_frozen_turn_update": _sqlite(
        "tandem_frozen_turn_update", "UPDATE", "annotation_turn",
        f"EXISTS ({_FROZEN.format(ref='OLD.batch_id')}) OR EXISTS ({_FROZEN.format(ref='NEW.batch_id')})",
        "turns and judgements"),
    "tandem_frozen_turn_delete": _sqlite("tandem_frozen_turn_delete", "DELETE", "annotation_turn",
                                         f"EXISTS ({_FROZEN.format(ref='OLD.batch_id')})", "turns and judgements"),
    "tandem_frozen_generation_insert": _sqlite(
        "tandem_frozen_generation_insert", "INSERT", "modelserving_generation",
        f"EXISTS ({_PAIR_FROZEN.format(ref='NEW.pair_id')})", "generations"),
    "tandem_frozen_generation_update": _sqlite(
        "tandem_frozen_generation_update", "UPDATE", "modelserving_generation",
        f"EXISTS ({_PAIR_FROZEN.format(ref='OLD.pair_id')}) OR EXISTS ({_PAIR_FROZEN.format(ref='NEW.pair_id')})",
        "generations"),
    "tandem_frozen_generation_delete": _sqlite(
        "tandem_frozen_generation_delete", "DELETE", "modelserving_generation",
        f"EXISTS ({_PAIR_FROZEN.format(ref='OLD.pair_id')})", "generations"),
    "tandem_frozen_pair_update": _sqlite(
        "tandem_frozen_pair_update", "UPDATE", "modelserving_pair",
        f"EXISTS ({_PAIR_FROZEN.format(ref='OLD.id')}) OR EXISTS ({_PAIR_FROZEN.format(ref='NEW.id')})", "pairs"),
    "tandem_frozen_pair_delete": _sqlite(
        "tandem_frozen_pair_delete", "DELETE", "modelserving_pair",
        f"EXISTS ({_PAIR_FROZEN.format(ref='OLD.id')})", "pairs"),
    "tandem_frozen_demonstration_insert": _sqlite(
        "tandem_frozen_demonstration_insert", "INSERT", "annotation_demonstration",
        f"EXISTS ({_FROZEN.format(ref='NEW.batch_id')})", "demonstrations"),
    "tandem_frozen_demonstration_update": _sqlite(
        "tandem_frozen_demonstration_update", "UPDATE", "annotation_demonstration",
        f"EXISTS ({_FROZEN.format(ref='OLD.batch_id')}) OR EXISTS ({_FROZEN.format(ref='NEW.batch_id')})",
        "demonstrations"),
    "tandem_frozen_demonstration_delete": _sqlite(
        "tandem_frozen_demonstration_delete", "DELETE", "annotation_demonstration",
        f"EXISTS ({_FROZEN.format(ref='OLD.batch_id')})", "demonstrations"),
}


# The migration that brought the newest of the SQLite rules (each rule's migration creates it and,
# migrated backwards, drops it).
LAST_TRIGGER_MIGRATION = ("annotation", "0010_frozen_rows_in_and_out")


def sqlite_triggers_install(sender=None, using="default", **kwargs) -> None:
    """post_migrate: (re)create the SQLite triggers. A later migration that alters one of these
    tables makes SQLite copy it into a new table, which drops its triggers; a flush may have dropped
    them too. Dropped and created again, so a changed rule replaces the old one."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    from django.db.migrations.recorder import MigrationRecorder

    if LAST_TRIGGER_MIGRATION not in MigrationRecorder(connection).applied_migrations():
        return  # migrated back before the rules (their migrations dropped them): nothing to guard
    with connection.cursor() as cursor:
        for name, sql in SQLITE_TRIGGERS.items():
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(sql)

"""A frozen batch's rows updated or deleted by raw SQL: the database refuses, on PostgreSQL
(django-pgtrigger) and on the SQLite default (its own triggers), whatever the application does."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from bench.processes import ROOT

from .frozen_raw_sql import STATEMENTS, attempt, frozen_batch

pytestmark = pytest.mark.django_db


def test_raw_sql_on_a_frozen_batch_is_refused_by_this_database():
    ids = frozen_batch()
    refusals = {name: attempt(sql.format(**ids)) for name, sql in STATEMENTS.items()}
    assert all(refusals.values()), {name: why for name, why in refusals.items() if not why}
    assert all("IntegrityError" in why and "frozen batch" in why for why in refusals.values()), refusals
    # A turn of an open batch is still written.
    with connection.cursor() as cursor:
        cursor.execute(STATEMENTS["insert turn"].format(**{**ids, "batch": open_batch(ids)}))
    # What is not frozen still changes: a judged turn of an open batch, an open batch, a pair and a
    # response of no frozen turn, a response moved into a pair of no frozen turn.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE annotation_batch SET summary = '{}' WHERE status = 'open'")
        cursor.execute("UPDATE modelserving_generation SET text = 'x' WHERE pair_id IS NULL")
        cursor.execute(f"UPDATE modelserving_pair SET messages = '[]' WHERE id = {ids['spare_pair']}")
        cursor.execute(f"UPDATE modelserving_generation SET pair_id = {ids['spare_pair']} WHERE id = {ids['loose']}")


def open_batch(ids) -> int:
    from annotation.models import Batch

    frozen = Batch.objects.get(pk=ids["batch"])
    return Batch.objects.create(iso_year=frozen.iso_year, iso_week=frozen.iso_week, sequence=1,
                                starts_on=frozen.starts_on).pk


def test_the_sqlite_triggers_outlive_a_migration_that_rebuilds_their_table(tmp_path):
    """SQLite rebuilds a table for most ALTERs, dropping its triggers: migrating forwards past such
    a migration (modelserving 0005 rebuilds the generations table) still ends with every trigger."""
    env = {key: value for key, value in os.environ.items() if key != "TANDEM_TEST_DATABASE_NAME"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.sqlite3'}", DJANGO_SETTINGS_MODULE="config.settings.test",
               CELERY_BROKER_URL="memory://")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True, timeout=180)

    def triggers() -> str:
        listing = subprocess.run([*manage, "shell", "-c", "from django.db import connection; c = connection.cursor(); "
                                  "c.execute(\"SELECT name FROM sqlite_master WHERE type = 'trigger'\"); "
                                  "print(sorted(r[0] for r in c.fetchall()))"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=True)
        return listing.stdout.strip().splitlines()[-1]

    from annotation.models.frozen import SQLITE_TRIGGERS

    assert triggers() == str(sorted(SQLITE_TRIGGERS))
    # Migrated back before the rules, their migrations drop them and the handler leaves them out
    # (a trigger left behind would break the next table rebuild); forwards again, all are back.
    for target, expected in (("0006", "[]"), ("0010", str(sorted(SQLITE_TRIGGERS)))):
        done = subprocess.run([*manage, "migrate", "annotation", target, "-v0"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert triggers() == expected, target


def test_the_sqlite_default_refuses_the_same(tmp_path):
    """The embedded default's own triggers (migration 0007), checked on a fresh SQLite database
    whatever database this suite runs on."""
    env = {key: value for key, value in os.environ.items() if key != "TANDEM_TEST_DATABASE_NAME"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.sqlite3'}", DJANGO_SETTINGS_MODULE="config.settings.test",
               CELERY_BROKER_URL="memory://")
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, cwd=ROOT, check=True,
                   timeout=180)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "faults" / "frozen_raw_sql.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    refusals = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(refusals) == set(STATEMENTS)
    assert all(why and "IntegrityError" in why and "frozen batch" in why for why in refusals.values()), refusals

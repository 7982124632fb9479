"""The `full` JSONL export at a million judged turns, against PostgreSQL's own `\\copy` of the same rows.

Generates N judged turns (default 1,000,000) in a throwaway PostgreSQL database with bulk
`INSERT … SELECT generate_series` (responses of realistic size), freezes their batch, then in the
same run times:
  * `manage.py batch export <batch> --format full` (Tandem's streamed export), with its peak
    resident memory, and
  * `psql \\copy (SELECT json_build_object(…) …) TO file` of the same rows as JSON,
and prints both times, their ratio, rows per second, and the export's peak RSS.

    .venv/bin/python bench/export.py                  # 1,000,000 rows
    .venv/bin/python bench/export.py --rows 100000 --keep
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = "postgres://postgres@127.0.0.1:5432"

GENERATE = """
INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                       date_joined)
SELECT g, '!', false, 'bench-annotator-' || g, '', '', '', false, true, now() FROM generate_series(1, 50) g;
INSERT INTO auth_user_groups (user_id, group_id)
SELECT g, (SELECT id FROM auth_group WHERE name = 'annotator') FROM generate_series(1, 50) g;
INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                       date_joined)
VALUES (1000, '!', false, 'bench-admin', '', '', '', true, true, now());
INSERT INTO auth_user_groups (user_id, group_id) VALUES (1000, (SELECT id FROM auth_group WHERE name = 'admin'));
INSERT INTO modelserving_policyvariant (id, name, base_url, model_name, api_key_env, temperature_min, temperature_max,
       top_p, max_new_tokens, is_active, sampling_weight, notes, created_at, updated_at)
VALUES (1, 'chat-cool', 'http://vllm-cool:8000/v1', 'chat-cool', '', 0.5, 0.8, 0.9, 512, true, 1, '', now(), now()),
       (2, 'chat-warm', 'http://vllm-warm:8000/v1', 'chat-warm', '', 1.0, 1.3, 0.9, 512, true, 1, '', now(), now());
INSERT INTO annotation_batch (id, iso_year, iso_week, sequence, starts_on, created_at, status, frozen_at, frozen_by_id,
                              summary, snapshot)
VALUES (1, 2026, 47, 0, '2026-11-16', now(), 'open', NULL, NULL, '{}', '{}');
INSERT INTO annotation_dialogue (id, annotator_id, focus, system_prompt, guideline_id, risk_category_id,
       attack_vector_id, status, created_at, updated_at, finished_at)
SELECT g, 1 + g % 50, CASE WHEN g % 3 = 0 THEN 'safety' ELSE 'helpfulness' END, '',
       (SELECT id FROM annotation_guideline WHERE focus = CASE WHEN g % 3 = 0 THEN 'safety' ELSE 'helpfulness' END
        AND is_active), NULL, NULL, 'finished', now(), now(), now()
FROM generate_series(1, :rows) g;
INSERT INTO modelserving_pair (id, messages, strategy, pairing, requested_by_id, created_at)
SELECT g, json_build_object('role', 'user',
                           'content', 'Question ' || g || ': ' || repeat('please explain this ', 8))::jsonb
          ::text::jsonb, 'two_variants', '{}', 1 + g % 50, now()
FROM generate_series(1, :rows) g;
UPDATE modelserving_pair SET messages = jsonb_build_array(messages);
INSERT INTO modelserving_generation (id, pair_id, position, variant_id, model_name, messages, temperature, top_p, seed,
       max_tokens, request_body, status, text, finish_reason, prompt_tokens, completion_tokens, first_token_ms,
       latency_ms, attempts, error, lease_token, lease_expires_at, worker, created_at, started_at, finished_at,
       updated_at)
SELECT 2 * p.id - 2 + pos, p.id, pos, pos, CASE pos WHEN 1 THEN 'chat-cool' ELSE 'chat-warm' END, p.messages,
       CASE pos WHEN 1 THEN 0.65 ELSE 1.15 END, 0.9, p.id * 2 + pos, 512, '{}'::jsonb, 'done',
       'Answer ' || p.id || '/' || pos || '. ' || repeat('Here is a careful, helpful paragraph of text. ',
                                                          (6 + (p.id + pos) % 30)::int),
       'stop', 40, 120 + (p.id % 300), 80, 2500, 1, '', NULL, NULL, 'bench', now(), now(), now(), now()
FROM modelserving_pair p CROSS JOIN generate_series(1, 2) pos;
INSERT INTO annotation_turn (id, dialogue_id, index, user_message, pair_id, left_generation_id, created_at,
       chosen_generation_id, strength, chosen_safe, other_safe, safety_bin, both_unusable, unusable_reason,
       time_spent_ms, submitted_at, batch_id, split)
SELECT g, g, 0, 'Question ' || g, g, 2 * g - 1 + (g % 2), now(), 2 * g - 1 + ((g / 2) % 2),
       (ARRAY['significantly_better', 'better', 'slightly_better', 'negligibly_better'])[1 + g % 4],
       CASE WHEN g % 3 = 0 THEN true END, CASE WHEN g % 3 = 0 THEN g % 2 = 0 END,
       CASE WHEN g % 3 = 0 THEN CASE WHEN g % 2 = 0 THEN 'both_safe' ELSE 'chosen_safe_other_unsafe' END ELSE '' END,
       false, '', 15000, now(), 1, ''
FROM generate_series(1, :rows) g;
SELECT setval(pg_get_serial_sequence('auth_user', 'id'), 1000);
SELECT setval(pg_get_serial_sequence('annotation_dialogue', 'id'), :rows);
SELECT setval(pg_get_serial_sequence('modelserving_pair', 'id'), :rows);
SELECT setval(pg_get_serial_sequence('modelserving_generation', 'id'), 2 * :rows);
SELECT setval(pg_get_serial_sequence('annotation_turn', 'id'), :rows);
ANALYZE;
"""

# The same rows, as JSON, straight from PostgreSQL: the floor any exporter is measured against.
COPY = """\\copy (SELECT json_build_object('turn_id', t.id, 'dialogue_id', t.dialogue_id, 'focus', d.focus,
 'context', c.messages, 'chosen', json_build_object('text', c.text, 'variant', cv.name, 'temperature', c.temperature,
 'seed', c.seed, 'completion_tokens', c.completion_tokens, 'latency_ms', c.latency_ms),
 'rejected', json_build_object('text', r.text, 'variant', rv.name, 'temperature', r.temperature, 'seed', r.seed,
 'completion_tokens', r.completion_tokens, 'latency_ms', r.latency_ms),
 'strength', t.strength, 'safety_bin', t.safety_bin, 'chosen_safe', t.chosen_safe, 'rejected_safe', t.other_safe,
 'split', t.split, 'annotator', d.annotator_id, 'submitted_at', t.submitted_at)
 FROM annotation_turn t JOIN annotation_dialogue d ON d.id = t.dialogue_id
 JOIN modelserving_generation c ON c.id = t.chosen_generation_id
 JOIN modelserving_policyvariant cv ON cv.id = c.variant_id
 JOIN modelserving_generation r ON r.pair_id = t.pair_id AND r.id <> t.chosen_generation_id
 JOIN modelserving_policyvariant rv ON rv.id = r.variant_id
 WHERE t.batch_id = 1 ORDER BY t.id) TO '{path}'"""


COPY_LABEL = "psql \\copy of the same rows"
EXPORT_AND_REPORT = """
import resource, sys
import django
django.setup()
from django.core.management import call_command
call_command("batch", "export", "2026-W47", "--admin", "bench-admin", "--format", "full", "--out", sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def psql(database: str, *args: str, **kwargs):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER}/{database}", *args],
                          check=True, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default="tandem_export_bench")
    parser.add_argument("--keep", action="store_true", help="keep the database and the files")
    args = parser.parse_args()

    out = ROOT / "var" / "bench" / "export"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DATABASE_URL=f"{SERVER}/{args.database}", DJANGO_SETTINGS_MODULE="config.settings.local",
               DEBUG="false", LOG_LEVEL="WARNING", EXPORT_DIR=str(out))
    psql("postgres", "-c", f"DROP DATABASE IF EXISTS {args.database}")
    psql("postgres", "-c", f"CREATE DATABASE {args.database}")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)

    started = time.perf_counter()
    psql(args.database, "-v", f"rows={args.rows}", input=GENERATE.encode(), stdout=subprocess.DEVNULL)
    print(f"generated {args.rows:,} judged turns in {time.perf_counter() - started:.0f} s")
    subprocess.run([*manage, "batch", "freeze", "2026-W47", "--admin", "bench-admin"], env=env, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    size = subprocess.run(["psql", "-X", "-At", f"{SERVER}/{args.database}", "-c",
                           "SELECT pg_size_pretty(pg_database_size(current_database()))"],
                          capture_output=True, text=True, check=True).stdout.strip()

    # The export runs in its own process, which reports its own peak resident memory.
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", EXPORT_AND_REPORT, str(out)], env=env, check=True, cwd=ROOT,
                           capture_output=True, text=True)
    tandem_s = time.perf_counter() - started
    peak_kib = int(child.stdout.strip().splitlines()[-1])
    exported = out / "2026-W47.full.jsonl"

    copy_path = out / "psql-copy.jsonl"
    started = time.perf_counter()
    psql(args.database, "-c", COPY.format(path=copy_path).replace("\n", " "))
    copy_s = time.perf_counter() - started

    rows = sum(1 for _ in open(exported, "rb"))
    print(f"database {size}; {rows:,} rows exported")
    print(f"{'':34}{'seconds':>10}{'rows/s':>12}{'file MB':>10}")
    print(f"{'Tandem full JSONL export':34}{tandem_s:>10.1f}{rows / tandem_s:>12,.0f}"
          f"{exported.stat().st_size / 1e6:>10.0f}")
    print(f"{COPY_LABEL:34}{copy_s:>10.1f}{rows / copy_s:>12,.0f}"
          f"{copy_path.stat().st_size / 1e6:>10.0f}")
    print(f"ratio Tandem / psql: {tandem_s / copy_s:.2f}")
    print(f"peak resident memory of the export process: {peak_kib / 1024:.0f} MiB")
    if not args.keep:
        copy_path.unlink()
        exported.unlink()
        psql("postgres", "-c", f"DROP DATABASE {args.database}")


if __name__ == "__main__":
    main()

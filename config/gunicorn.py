"""gunicorn's settings for the web process: `gunicorn config.wsgi -c config/gunicorn.py` (the
Dockerfile's command and CI's schema check).

Workers: threaded (gthread), one process per core with 4 threads each (WEB_CONCURRENCY and
GUNICORN_THREADS override). Measured side by side on a 2-core machine with bench/annotate_load.py
(JSON API, PostgreSQL, clients on the same machine; docs/performance.md): gthread 2 × 4 judged
60.5 / 62.3 per second at 8 / 32 annotators for 19.6–20.0 ms of server CPU each, sync × 4 56.6 /
53.9 for 24.5 ms; submit p95 at 32 annotators 291 against 317 ms. A request spends most of its
time waiting on PostgreSQL, which threads overlap without a process (and its memory) per slot.

gunicorn answers a request line over `limit_request_line` bytes itself, with an HTML 414, before
Django sees it. 8190 is the most it takes (and nginx's default header buffer, 8k, is the same
order): every URL of the API's schema fits well inside it, so Django answers overlong input (JSON
400 or 404, in the schema) and the HTTP server refuses only what no client of the API sends.

The access log goes through core/logging.py, which redacts secrets that travel in URLs."""

import os

from core.logging import gunicorn_logger_class

workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
limit_request_line = 8190
# The access log without the secrets that travel in URLs (an invitation's token; core/logging.py).
logger_class = gunicorn_logger_class()

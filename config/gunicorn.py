"""gunicorn's settings for the web process: `gunicorn config.wsgi -c config/gunicorn.py` (the
Dockerfile's command and CI's schema check).

gunicorn answers a request line over `limit_request_line` bytes itself, with an HTML 414, before
Django sees it. 8190 is the most it takes (and nginx's default header buffer, 8k, is the same
order): every URL of the API's schema fits well inside it, so Django answers overlong input (JSON
400 or 404, in the schema) and the HTTP server refuses only what no client of the API sends."""

limit_request_line = 8190

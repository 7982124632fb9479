"""Secrets that travel in URLs stay out of the logs: an invitation's token is its path
(``/invite/<token>/``), and it would land in every access log line, in Django's "Gone: …" warning
and in the Referer of the next request. Every log Tandem writes goes through ``RedactSecrets``
(settings.LOGGING's handlers) and gunicorn's access log through ``RedactingGunicornLogger``
(config/gunicorn.py)."""

from __future__ import annotations

import logging
import re

# A path segment that is a secret, after the path that announces it.
SECRET_IN_PATH = re.compile(r"(/invite/)[^/\s?#\"']+")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    return SECRET_IN_PATH.sub(REDACTED, text)


def _redacted(value):
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """A handler's filter: the record's message and its arguments, with URL secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted(value) for value in record.args)
        return True


def gunicorn_logger_class():
    """gunicorn's Logger with every atom of the access log (request line, path, query, Referer,
    headers) redacted. Made on demand: gunicorn is not installed everywhere Tandem imports core."""
    from gunicorn.glogging import Logger

    class RedactingGunicornLogger(Logger):
        def atoms(self, resp, req, environ, request_time):
            return {key: _redacted(value) for key, value in super().atoms(resp, req, environ, request_time).items()}

    return RedactingGunicornLogger

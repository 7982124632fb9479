"""The environment, read here and only here (django-environ): every settings module takes ``env``
and the two folders from this one."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file beside manage.py is read when present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("TANDEM_VAR_DIR", default=str(BASE_DIR / "var")))

import functools
import logging
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from kombu import Queue
from kombu.transport import TRANSPORT_ALIASES

# `filesystem://` (the embedded default) is kombu's transport with whole-message writes.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

# Production unless told otherwise: the embedded set-up names config.settings.local itself.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

logger = logging.getLogger("tandem.tasks")


class Task(DjangoTask):
    """Tandem's tasks: sent once the transaction commits, and a broker that cannot take the message
    then does not fail the request that committed. The row the message was about stays queued, and
    the recovery sweep (``RECOVERY``) sends it again once the broker is back."""

    def delay_on_commit(self, *args, **kwargs) -> None:
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, args=None, kwargs=None, **options) -> None:
        from django.db import transaction

        transaction.on_commit(functools.partial(self._send_or_log, args, kwargs, options))

    def _send_or_log(self, args, kwargs, options) -> None:
        try:
            self.apply_async(args, kwargs, **options)
        except Exception as error:  # the broker is down: kombu's OperationalError, a timeout, a reset
            logger.warning("could not send %s%s (%s: %s); the recovery sweep sends it again later",
                           self.name, tuple(args or ()), error.__class__.__name__, error)


app = Celery("tandem", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
# `sampling` runs on CPU boxes next to the web tier, `exports` on a CPU worker of its own (it writes
# the files the web tier serves); `gpu` on the boxes that train.
app.conf.task_queues = (Queue("sampling"), Queue("exports"), Queue("gpu"))
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_filesystem_broker_folders(sender, **kwargs):
    """kombu's filesystem transport expects its folders to exist (the embedded default)."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)

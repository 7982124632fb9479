"""The embedded broker: kombu's filesystem transport, with every message whole before a worker can
see it.

kombu's own `_put` creates the message file in the queue folder and then writes it, so a worker
polling the folder can take the file while it is still empty and die on the JSON (seen: a sampling
worker of `make run` exited with "Expecting value: line 1 column 1", and honcho took the stack
down with it). Here a message is written under a name the readers skip (`….msg.part`) and renamed
into place, which is atomic on one filesystem. A file that is not a message all the same (a
truncated one from before this fix, a disk error) is set aside with a warning instead of killing
the worker; the recovery sweeps send its work again.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # `_get` takes only names ending in `.<queue>.msg`
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        while True:
            try:
                return super()._get(queue)
            except ValueError as error:  # JSON that is not a message; the file is already moved away
                logger.warning("broker: dropped an unreadable message of queue %s (%s); the recovery "
                               "sweeps send its work again", queue, error)


class Transport(filesystem.Transport):
    Channel = Channel

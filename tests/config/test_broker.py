"""The embedded broker (kombu's filesystem transport): a worker never sees half a message, and a
file that is not one does not kill it."""

import json
import os
from queue import Empty

import pytest
from kombu import Connection

from config import broker


@pytest.fixture
def channel(tmp_path):
    folders = {name: str(tmp_path / name) for name in ("queue", "processed", "control")}
    for folder in folders.values():
        os.makedirs(folder)
    connection = Connection("filesystem://", transport_options={
        "data_folder_in": folders["queue"], "data_folder_out": folders["queue"],
        "processed_folder": folders["processed"], "control_folder": folders["control"]})
    assert isinstance(connection.transport, broker.Transport), "filesystem:// is Tandem's transport"
    yield connection.default_channel
    connection.release()


def test_a_message_appears_in_the_queue_folder_only_when_whole(channel, monkeypatch):
    seen = []
    replace = os.replace

    def watching(source, target):
        # At the moment of the rename: nothing under the message's name yet, the whole body written.
        seen.append((os.path.exists(target), json.loads(open(source, "rb").read())))
        replace(source, target)

    monkeypatch.setattr(broker.os, "replace", watching)
    channel._put("sampling", {"body": "x" * 100_000})
    assert seen == [(False, {"body": "x" * 100_000})]
    assert channel._get("sampling") == {"body": "x" * 100_000}
    assert not os.listdir(channel.data_folder_in), "no part file is left behind"


def test_a_file_that_is_not_a_message_is_set_aside_and_the_next_one_read(channel, monkeypatch):
    # What kombu's own writer left visible for a moment: the message's file, created, still empty
    # (named to sort before any real message, as the older file it would be).
    warnings = []
    monkeypatch.setattr(broker.logger, "warning", lambda message, *args: warnings.append(message % args))
    open(os.path.join(channel.data_folder_in, "0_empty.sampling.msg"), "wb").close()
    channel._put("sampling", {"n": 2})
    assert channel._get("sampling") == {"n": 2}
    assert len(warnings) == 1 and "dropped an unreadable message of queue sampling" in warnings[0]
    with pytest.raises(Empty):
        channel._get("sampling")

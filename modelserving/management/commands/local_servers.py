import signal
import threading

from django.core.management.base import BaseCommand

from modelserving.local_servers import engine, local_servers_restore, local_servers_stop_all


class Command(BaseCommand):
    help = ("Local model servers of checkpoints served from the dashboard. `keep` (a process of make run): start "
            "them again for the variants still active, then stop them all when the stack stops. `stop`: stop them "
            "all now.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["keep", "stop"])

    def handle(self, *args, action, **options):
        if action == "stop":
            for server in local_servers_stop_all():
                self.stdout.write(f"stopped {server}")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"local model servers: {engine().why}")
        for line in local_servers_restore():
            self.stdout.write(line)
        self.stdout.flush()
        stop.wait()
        for server in local_servers_stop_all():
            self.stdout.write(f"stopped {server}")

from django.core.management.base import BaseCommand

from annotation.batches.export_jobs import exports_recover
from modelserving.recovery import generations_recover


class Command(BaseCommand):
    help = ("Send stuck work again, as the periodic sweep does: generations and exports queued longer than "
            "RECOVERY_QUEUED_AFTER, or running with a lease that lapsed RECOVERY_LAPSED_AFTER ago. Each goes "
            "through its usual task (a finished one is never produced again); one sent again "
            "RECOVERY_MAX_REQUEUES times ends failed, with the reason.")

    def add_arguments(self, parser):
        parser.add_argument("--queued-after", type=float, default=None, help="Seconds (default: the setting).")
        parser.add_argument("--lapsed-after", type=float, default=None, help="Seconds (default: the setting).")

    def handle(self, *args, queued_after, lapsed_after, **options):
        generations = generations_recover(queued_after=queued_after, lapsed_after=lapsed_after)
        exports = exports_recover(queued_after=queued_after, lapsed_after=lapsed_after)
        self.stdout.write(f"generations sent again: {len(generations.requeued)} {generations.requeued}; "
                          f"failed: {len(generations.failed)} {generations.failed}")
        self.stdout.write(f"exports sent again: {len(exports['requeued'])} {exports['requeued']}; "
                          f"failed: {len(exports['failed'])} {exports['failed']}")

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.batches.export_jobs import export_request, export_run
from annotation.batches.exports import FORMATS, batch_export
from annotation.batches.selectors import batch_by_label
from annotation.batches.services import batch_freeze
from annotation.models import ExportJob


class Command(BaseCommand):
    help = "Weekly batches: list, freeze (immutable, with its held-out split), export."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        freeze = sub.add_parser("freeze", help="Freeze a batch, e.g. 2026-W48.")
        freeze.add_argument("batch")
        freeze.add_argument("--admin", required=True, help="Username of the admin who freezes it.")
        freeze.add_argument("--force", action="store_true",
                            help="Freeze this week's batch early: judgements submitted later this week go to a "
                                 "follow-on batch (e.g. 2026-W49.1).")
        export = sub.add_parser(
            "export", help="Export a frozen batch in this process. Without --out, through its export jobs (the "
                           "files the batches page serves; a job a worker already runs is waited for); with "
                           "--out, straight into that folder.")
        export.add_argument("batch")
        export.add_argument("--admin", required=True)
        export.add_argument("--out", type=Path, default=None, help="Folder to write the files and manifest to.")
        export.add_argument("--format", choices=FORMATS, action="append", help="Default: all.")
        export.add_argument("--timeout", type=float, default=3600.0,
                            help="Seconds to wait for a job another worker runs.")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except (ValidationError, PermissionDenied) as error:
            raise CommandError("; ".join(getattr(error, "messages", [str(error)]))) from error

    def _admin(self, username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def _batch(self, label):
        batch = batch_by_label(label)
        if batch is None:
            raise CommandError(f"No batch {label!r} (labels look like 2026-W48, or 2026-W48.1 for a follow-on).")
        return batch

    def _list(self, **_):
        from annotation.models import Batch

        for batch in Batch.objects.all():
            self.stdout.write(f"{batch}  {batch.status:<6}  {batch.turns.filter(submitted_at__isnull=False).count()} "
                              f"judgements  starts {batch.starts_on}")

    def _freeze(self, batch, admin, force=False, **_):
        frozen = batch_freeze(batch=self._batch(batch), admin=self._admin(admin), force=force)
        self.stdout.write(f"Froze {frozen}: " + json.dumps(frozen.summary, sort_keys=True))

    def _export(self, batch, admin, out=None, format=None, timeout=3600.0, **_):
        batch, admin, formats = self._batch(batch), self._admin(admin), tuple(format or FORMATS)
        if out is not None:
            manifest = batch_export(batch=batch, admin=admin, out_dir=out, formats=formats)
            for name, info in manifest["files"].items():
                self.stdout.write(f"{name}: {info['rows']} rows, sha256 {info['sha256']}")
            return
        for fmt in formats:
            job = export_request(batch=batch, admin=admin, fmt=fmt, enqueue=False)
            deadline = time.monotonic() + timeout
            while job.is_active:
                outcome = export_run(job_id=job.pk, worker="manage.py batch export")
                job.refresh_from_db()
                if outcome.state == "busy":  # a worker writes it: wait for its end
                    if time.monotonic() > deadline:
                        raise CommandError(f"The {fmt} export is still {job.status} after {timeout:g} s.")
                    time.sleep(min(outcome.retry_after or 1.0, 1.0))
            if job.status != ExportJob.Status.DONE:
                raise CommandError(f"The {fmt} export of {batch} failed: {job.error}")
            self.stdout.write(f"{job.file_name}: {job.rows} rows, sha256 {job.sha256}")

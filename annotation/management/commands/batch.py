import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.batches import batch_freeze
from annotation.exports import FORMATS, batch_export
from annotation.selectors import batch_by_label


class Command(BaseCommand):
    help = "Weekly batches: list, freeze (immutable, with its held-out split), export."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        freeze = sub.add_parser("freeze", help="Freeze a batch, e.g. 2026-W48.")
        freeze.add_argument("batch")
        freeze.add_argument("--admin", required=True, help="Username of the admin who freezes it.")
        export = sub.add_parser("export", help="Write a frozen batch's files and manifest.")
        export.add_argument("batch")
        export.add_argument("--admin", required=True)
        export.add_argument("--out", type=Path, default=None, help="Folder (default: EXPORT_DIR/<batch>).")
        export.add_argument("--format", choices=FORMATS, action="append", help="Default: all.")

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
            raise CommandError(f"No batch {label!r} (labels look like 2026-W48).")
        return batch

    def _list(self, **_):
        from annotation.models import Batch

        for batch in Batch.objects.all():
            self.stdout.write(f"{batch}  {batch.status:<6}  {batch.turns.filter(submitted_at__isnull=False).count()} "
                              f"judgements  starts {batch.starts_on}")

    def _freeze(self, batch, admin, **_):
        frozen = batch_freeze(batch=self._batch(batch), admin=self._admin(admin))
        self.stdout.write(f"Froze {frozen}: " + json.dumps(frozen.summary, sort_keys=True))

    def _export(self, batch, admin, out=None, format=None, **_):
        manifest = batch_export(batch=self._batch(batch), admin=self._admin(admin), out_dir=out,
                                formats=tuple(format or FORMATS))
        for name, info in manifest["files"].items():
            self.stdout.write(f"{name}: {info['rows']} rows, sha256 {info['sha256']}")

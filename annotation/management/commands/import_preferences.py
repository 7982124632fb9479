from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.batches.imports import READERS, preferences_import
from annotation.models import Focus


class Command(BaseCommand):
    help = "Import open-source preference data from a local file into a tagged source (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help=".jsonl, .json (an array) or .parquet")
        parser.add_argument("--format", required=True, choices=list(READERS))
        parser.add_argument("--source", required=True, help="Name of the source, e.g. hh-harmless-base.")
        parser.add_argument("--focus", choices=Focus.values, default="")
        parser.add_argument("--admin", required=True, help="Username of the admin importing it.")

    def handle(self, *args, file, format, source, focus, admin, **options):
        user = get_user_model().objects.filter(username=admin).first()
        if user is None:
            raise CommandError(f"No user {admin!r}.")
        if not file.is_file():
            raise CommandError(f"No file {file}.")
        try:
            report = preferences_import(path=file, kind=format, source_name=source, admin=user, focus=focus)
        except (ValidationError, PermissionDenied) as error:
            raise CommandError(f"{file}: " + "; ".join(getattr(error, "messages", [str(error)])) +
                               " — nothing was imported.") from error
        self.stdout.write(f"{source}: {report.imported} imported, {report.duplicates} duplicates skipped"
                          + "".join(f", {n} skipped ({why})" for why, n in report.skipped.items()))

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accounts import services
from accounts.roles import ROLES


class Command(BaseCommand):
    help = "Make a one-time invitation link for a new account in a role."

    def add_arguments(self, parser):
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("--email", default="")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where Tandem is reached.")

    def handle(self, *args, role, email, base_url, **options):
        try:
            _, token = services.invitation_create(role=role, email=email)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        self.stdout.write(base_url.rstrip("/") + reverse("accounts:invitation_accept", args=[token]))

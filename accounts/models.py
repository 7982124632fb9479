import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from .roles import ROLE_LABELS


class Invitation(models.Model):
    """A one-time link an admin sends so that someone can create their own account in a role.

    Only a hash of the token is stored; the link itself is shown once, when it is made.
    """

    email = models.EmailField(blank=True)
    role = models.CharField(max_length=20, choices=list(ROLE_LABELS.items()))
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="invitations_sent"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitation"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(accepted_at__isnull=True) | Q(accepted_by__isnull=False),
                name="invitation_accepted_has_user",
            )
        ]

    def __str__(self):
        return f"{self.get_role_display()} invitation {self.email or self.pk}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class Vendor(models.Model):
    """An annotation company or team. Annotators belong to one; statistics split by vendor."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        """Names are unique whatever their case (Acme and ACME are one company), in the admin as in
        accounts.services.vendor_create."""
        if self.name and Vendor.objects.filter(name__iexact=self.name).exclude(pk=self.pk).exists():
            raise ValidationError({"name": f"A vendor named {self.name!r} exists already."})


class AnnotatorProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="members")

    def __str__(self):
        return f"{self.user} ({self.vendor or 'no vendor'})"


class AuditEntry(models.Model):
    """Who did what to which object, and when: the decisions admins answer for (training runs
    launched, cancelled, relaunched, checkpoints served). Written by the service that does the thing,
    in its transaction; read by admins (the admin site, GET /api/audit/); never changed."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as written: the account may be renamed or deleted later.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=40)
    summary = models.TextField()
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_type} {self.object_id}"

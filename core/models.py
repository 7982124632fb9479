"""Columns that several apps' models share."""

from django.conf import settings
from django.db import models


class LeasedWork(models.Model):
    """A unit of work handed to one person at a time under a lease (core/leases.py), then done:
    overlap reviews and gold serves, safety ratings."""

    class Status(models.TextChoices):
        OPEN = "open"
        DONE = "done"

    status = models.CharField(max_length=5, choices=Status.choices, default=Status.OPEN)
    leased_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

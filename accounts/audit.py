"""The audit trail (accounts.AuditEntry): one call from the service that acts, in its transaction."""

from __future__ import annotations

from .models import AuditEntry


def audit_record(*, actor, action: str, target, summary: str, **detail) -> AuditEntry:
    """Write that ``actor`` did ``action`` (e.g. "training.cancel") to ``target`` (a model instance)."""
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None, actor_name=getattr(actor, "username", "") or "system",
        action=action, object_type=target._meta.label_lower, object_id=str(target.pk), summary=summary,
        detail=detail)

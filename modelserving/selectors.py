from .models import PolicyVariant


def active_variants():
    """What may be sampled: active, and not waiting for an admin's approval of its endpoint."""
    return PolicyVariant.objects.filter(is_active=True, awaiting_approval=False).order_by("name")

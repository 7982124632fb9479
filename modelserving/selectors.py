from .models import PolicyVariant


def active_variants():
    return PolicyVariant.objects.filter(is_active=True).order_by("name")


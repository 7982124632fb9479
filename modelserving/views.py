from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import role_required
from accounts.roles import ADMIN, RESEARCHER

from . import availability
from .models import PolicyVariant


@require_GET
@role_required(ADMIN, RESEARCHER)
def variant_list(request):
    """The variants, with which of them are out of pairing now and why, and the recent outages."""
    variants = list(PolicyVariant.objects.all())
    states = availability.variant_states(variants)
    rows = [{"variant": v, "outage": states[v.id]} for v in variants]
    return render(request, "modelserving/variants.html",
                  {"rows": rows, "outages": availability.recent_outages()})

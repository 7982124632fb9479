from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import role_required
from accounts.roles import ADMIN, RESEARCHER

from .models import PolicyVariant


@require_GET
@role_required(ADMIN, RESEARCHER)
def variant_list(request):
    return render(request, "modelserving/variants.html", {"variants": PolicyVariant.objects.all()})

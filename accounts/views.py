from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from . import services
from .decorators import role_required
from .forms import InvitationAcceptForm, InvitationForm
from .models import Invitation
from .roles import ADMIN, HOME_URL_NAMES, primary_role


@require_GET
@login_required
def home(request):
    role = primary_role(request.user)
    if role is None:
        return render(request, "accounts/no_role.html", status=403)
    return redirect(HOME_URL_NAMES[role])


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def admin_home(request):
    form = InvitationForm(request.POST or None)
    link = None
    if request.method == "POST" and form.is_valid():
        invitation, token = services.invitation_create(
            role=form.cleaned_data["role"], email=form.cleaned_data["email"], created_by=request.user
        )
        link = request.build_absolute_uri(reverse("accounts:invitation_accept", args=[token]))
        form = InvitationForm()
    pending = Invitation.objects.filter(accepted_at__isnull=True).select_related("created_by")[:50]
    return render(request, "accounts/admin_home.html", {"form": form, "link": link, "pending": pending})


@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str):
    try:
        invitation = services.invitation_open(token=token)
    except ValidationError as error:
        return render(request, "accounts/invitation_invalid.html", {"error": error.messages[0]}, status=410)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.invitation_accept(
                token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            login(request, user, backend="accounts.backends.PasswordBackend")
            messages.success(request, "Welcome to Tandem.")
            return redirect("accounts:home")
    return render(request, "accounts/invitation_accept.html", {"form": form, "invitation": invitation})

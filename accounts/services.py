"""Accounts are created by admins (directly, or through an invitation link); no open sign-up."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from .models import AnnotatorProfile, Invitation, Vendor
from .roles import ADMIN, ROLES, ensure_role_groups

User = get_user_model()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.")


@transaction.atomic
def vendor_create(*, name: str, slug: str = "", notes: str = "") -> Vendor:
    """A new vendor (the admin's "Add vendor" saves through this too); its name unique whatever
    its case (Vendor.clean)."""
    vendor = Vendor(name=name, slug=slug or slugify(name), notes=notes)
    vendor.full_clean()
    vendor.save()
    return vendor


def user_vendor_set(*, user: User, vendor: Vendor | None) -> AnnotatorProfile:
    profile, _ = AnnotatorProfile.objects.update_or_create(user=user, defaults={"vendor": vendor})
    return profile


@transaction.atomic
def user_create(*, username: str, password: str, role: str, email: str = "", vendor: Vendor | None = None) -> User:
    _check_role(role)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(f"The username {username!r} is taken.")
    user = User(username=username, email=email, is_staff=(role == ADMIN))
    validate_password(password, user)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    ensure_role_groups()
    user.groups.add(Group.objects.get(name=role))
    if vendor is not None:
        user_vendor_set(user=user, vendor=vendor)
    return user


def invitation_create(*, role: str, created_by=None, email: str = "") -> tuple[Invitation, str]:
    """Returns the invitation and its token; the token is not stored and cannot be shown again."""
    _check_role(role)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        role=role,
        email=email,
        created_by=created_by,
        token_hash=Invitation.hash_token(token),
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
    )
    return invitation, token


def invitation_open(*, token: str) -> Invitation:
    """The pending invitation for ``token``; ValidationError if it is unknown, used or expired."""
    invitation = Invitation.objects.filter(token_hash=Invitation.hash_token(token)).first()
    if invitation is None:
        raise ValidationError("This invitation link is not valid.")
    if invitation.accepted_at is not None:
        raise ValidationError("This invitation has already been used.")
    if invitation.expires_at <= timezone.now():
        raise ValidationError("This invitation has expired; ask an admin for a new one.")
    return invitation


def invitation_accept(*, token: str, username: str, password: str) -> User:
    with transaction.atomic():
        invitation = invitation_open(token=token)
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            raise ValidationError("This invitation has already been used.")
        user = user_create(username=username, password=password, role=invitation.role, email=invitation.email)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    return user

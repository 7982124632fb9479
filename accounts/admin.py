from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from .models import AnnotatorProfile, AuditEntry, Invitation, Vendor
from .roles import ROLES
from .services import vendor_create

admin.site.unregister(User)


@admin.register(User)
class TandemUserAdmin(UserAdmin):
    """Admins manage accounts and their roles; only a superuser makes superusers or hands out
    permissions one by one, and only a superuser changes a superuser's account."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["is_superuser", "user_permissions"]
        return fields

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(name__in=ROLES)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("role", "email", "created_by", "created_at", "expires_at", "accepted_by")
    list_filter = ("role",)
    readonly_fields = ("token_hash", "created_by", "created_at", "accepted_at", "accepted_by")

    def has_add_permission(self, request):
        # Links are made on the admins' page, where the token is shown once.
        return False


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    prepopulated_fields = {"slug": ("name",)}

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # A new vendor goes through the one service that makes vendors (its form checked Vendor.clean).
        saved = vendor_create(name=obj.name, slug=obj.slug, notes=obj.notes)
        obj.pk, obj.created_at = saved.pk, saved.created_at


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "vendor")
    list_filter = ("vendor",)
    autocomplete_fields = ("user",)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read only: the trail is written by the services that act, never edited."""

    list_display = ("at", "actor_name", "action", "object_type", "object_id", "summary")
    list_filter = ("action", "object_type")
    search_fields = ("actor_name", "object_id", "summary")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

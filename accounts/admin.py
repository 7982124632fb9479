from django.contrib import admin

from .models import AnnotatorProfile, Invitation, Vendor


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


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "vendor")
    list_filter = ("vendor",)
    autocomplete_fields = ("user",)

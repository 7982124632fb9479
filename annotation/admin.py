from django.contrib import admin

from .models import AttackVector, Batch, Dialogue, Guideline, RiskCategory, Turn


@admin.register(RiskCategory, AttackVector)
class TaggedListAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "position")
    list_editable = ("is_active", "position")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Guideline)
class GuidelineAdmin(admin.ModelAdmin):
    list_display = ("focus", "version", "title", "is_active", "created_at")
    list_filter = ("focus", "is_active")


class TurnInline(admin.TabularInline):
    model = Turn
    fields = ("index", "user_message", "strength", "safety_bin", "both_unusable", "submitted_at", "batch")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Dialogue)
class DialogueAdmin(admin.ModelAdmin):
    list_display = ("id", "annotator", "focus", "status", "risk_category", "attack_vector", "created_at")
    list_filter = ("focus", "status")
    list_select_related = ("annotator", "risk_category", "attack_vector")
    readonly_fields = ("annotator", "focus", "system_prompt", "guideline", "risk_category", "attack_vector",
                       "created_at", "finished_at")
    inlines = [TurnInline]

    def has_delete_permission(self, request, obj=None):
        # Deleting a dialogue would take its turns with it: never once one sits in a frozen batch.
        if obj is not None and obj.turns.filter(batch__status="frozen").exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Batches change only through their services (freeze); the admin shows them."""

    list_display = ("__str__", "starts_on", "status", "frozen_at", "frozen_by")
    list_filter = ("status",)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

from django.contrib import admin

from modelserving.admin import GenerationAdmin
from modelserving.models import Generation

from .models import AnswerTemplate, AttackVector, Batch, Dialogue, Guideline, RiskCategory, Turn


class FrozenRowsProtected:
    """The admin's delete page and its "delete selected" action refuse rows that a frozen batch
    holds (the database's triggers would refuse them anyway, as a server error): they are listed as
    protected, the way Django lists rows a PROTECT foreign key keeps, and nothing is deleted."""

    def frozen_among(self, objs) -> list:
        raise NotImplementedError

    def get_deleted_objects(self, objs, request):
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        frozen = [f"{obj} (in a frozen batch; a frozen batch never changes)" for obj in self.frozen_among(objs)]
        return to_delete, model_count, perms_needed, [*protected, *frozen]


@admin.register(RiskCategory, AttackVector)
class TaggedListAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "position")
    list_editable = ("is_active", "position")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Guideline)
class GuidelineAdmin(admin.ModelAdmin):
    list_display = ("focus", "version", "title", "is_active", "created_at")
    list_filter = ("focus", "is_active")


@admin.register(AnswerTemplate)
class AnswerTemplateAdmin(admin.ModelAdmin):
    """Answer templates for safety context distillation, versioned per risk category: write a new
    version and make it the active one; runs record the versions they used."""

    list_display = ("risk_category", "version", "is_active", "created_at")
    list_filter = ("risk_category", "is_active")

    def get_readonly_fields(self, request, obj=None):
        # A saved version never changes its words (runs record versions, not texts): write a new one.
        return ("risk_category", "version", "text", "created_at") if obj else ("created_at",)


class TurnInline(admin.TabularInline):
    model = Turn
    fields = ("index", "user_message", "strength", "safety_bin", "both_unusable", "submitted_at", "batch")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Dialogue)
class DialogueAdmin(FrozenRowsProtected, admin.ModelAdmin):
    list_display = ("id", "annotator", "focus", "status", "risk_category", "attack_vector", "created_at")
    list_filter = ("focus", "status")
    list_select_related = ("annotator", "risk_category", "attack_vector")
    readonly_fields = ("annotator", "focus", "system_prompt", "guideline", "risk_category", "attack_vector",
                       "created_at", "finished_at")
    inlines = [TurnInline]

    def frozen_among(self, objs) -> list:
        # Deleting a dialogue would take its turns with it: never once one sits in a frozen batch.
        ids = [obj.pk for obj in objs]
        return list(Dialogue.objects.filter(pk__in=ids, turns__batch__status=Batch.Status.FROZEN).distinct())


admin.site.unregister(Generation)


@admin.register(Generation)
class FrozenAwareGenerationAdmin(FrozenRowsProtected, GenerationAdmin):
    """modelserving's generation admin, told which generations a frozen batch holds (batches are
    annotation's, one floor up)."""

    def frozen_among(self, objs) -> list:
        ids = [obj.pk for obj in objs]
        return list(Generation.objects.filter(pk__in=ids, pair__turn__batch__status=Batch.Status.FROZEN))


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Batches change only through their services (freeze); the admin shows them."""

    list_display = ("__str__", "starts_on", "status", "frozen_at", "frozen_by")
    list_filter = ("status",)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

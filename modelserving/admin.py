from django.contrib import admin

from .models import Generation, Pair, PolicyVariant, VariantOutage


@admin.register(PolicyVariant)
class PolicyVariantAdmin(admin.ModelAdmin):
    list_display = ("name", "model_name", "base_url", "temperature_min", "temperature_max", "top_p",
                    "max_new_tokens", "sampling_weight", "is_active", "awaiting_approval")
    list_filter = ("is_active", "awaiting_approval")
    actions = ["approve_endpoints"]

    @admin.action(description="Approve the endpoints of the selected variants")
    def approve_endpoints(self, request, queryset):
        from django.core.exceptions import PermissionDenied, ValidationError

        from .services import variant_approve

        for variant in queryset.filter(awaiting_approval=True):
            try:
                variant_approve(variant=variant, admin=request.user)
            except (ValidationError, PermissionDenied) as error:
                self.message_user(request, f"{variant}: {'; '.join(getattr(error, 'messages', [str(error)]))}",
                                  level="error")
            else:
                self.message_user(request, f"{variant}: endpoint approved.")
    list_editable = ("is_active", "sampling_weight")
    search_fields = ("name", "model_name", "notes")


class GenerationInline(admin.TabularInline):
    model = Generation
    fields = ("position", "variant", "temperature", "seed", "status", "attempts", "latency_ms", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ("id", "strategy", "requested_by", "created_at")
    readonly_fields = ("messages", "strategy", "pairing", "requested_by", "created_at")
    inlines = [GenerationInline]


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("id", "pair", "variant", "temperature", "status", "attempts", "completion_tokens",
                    "latency_ms", "created_at")
    list_filter = ("status", "variant")
    list_select_related = ("variant",)
    readonly_fields = [f.name for f in Generation._meta.fields]
    search_fields = ("=id",)
    search_help_text = "A generation's id, or the reference an annotator quotes (G-123)."

    def get_search_results(self, request, queryset, search_term):
        # Annotators see "reference G-123" instead of the error: staff paste it here.
        search_term = search_term.strip().removeprefix("G-").removeprefix("g-")
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False


@admin.register(VariantOutage)
class VariantOutageAdmin(admin.ModelAdmin):
    """When variants left pairing and why (modelserving/availability.py): written by the checks only."""

    list_display = ("variant", "cause", "started_at", "ended_at", "probes", "next_probe_at")
    list_filter = ("cause", "variant")
    list_select_related = ("variant",)
    readonly_fields = [f.name for f in VariantOutage._meta.fields]

    def has_add_permission(self, request):
        return False

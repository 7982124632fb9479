from .models import Generation, Pair, PolicyVariant


def active_variants():
    return PolicyVariant.objects.filter(is_active=True).order_by("name")


def pair_with_generations(*, pair_id: int) -> Pair:
    return Pair.objects.prefetch_related("generations__variant").get(pk=pair_id)


def generation_get(*, generation_id: int) -> Generation:
    return Generation.objects.select_related("variant").get(pk=generation_id)

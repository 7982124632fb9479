"""System checks: an active variant whose endpoint breaks VARIANT_ALLOWED_HOSTS (the setting changed
after it was saved, or a row was written past the model's validation) is never sampled: say so."""

from django.core.checks import Warning, register
from django.db import DatabaseError


@register("modelserving")
def variants_on_allowed_hosts(app_configs=None, **kwargs):
    from .endpoints import API_KEY_ENV_RE, endpoint_allowed
    from .models import PolicyVariant

    try:
        variants = list(PolicyVariant.objects.filter(is_active=True).only("name", "base_url", "api_key_env"))
    except DatabaseError:  # no database yet, or not migrated
        return []
    problems = []
    for variant in variants:
        if not endpoint_allowed(variant.base_url):
            problems.append(Warning(
                f"Active variant {variant.name!r} points at {variant.base_url}, whose host is not in "
                "VARIANT_ALLOWED_HOSTS: it is never sampled.",
                hint="Add the host to VARIANT_ALLOWED_HOSTS, or change or deactivate the variant.",
                obj=variant, id="modelserving.W001"))
        if variant.api_key_env and not API_KEY_ENV_RE.match(variant.api_key_env):
            problems.append(Warning(
                f"Active variant {variant.name!r} reads its key from {variant.api_key_env}, not a "
                "TANDEM_VARIANT_KEY_* variable: no key is sent.", obj=variant, id="modelserving.W002"))
    return problems

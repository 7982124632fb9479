"""System checks (`manage.py check`, run at every start of runserver and by deploy checks): the
sampling timeouts, the generation lease and the recovery thresholds must fit together, or the
recovery sweep sends again work that is still running, or takes a retry's wait for a lost message;
and an active variant whose endpoint breaks VARIANT_ALLOWED_HOSTS (the setting changed after it was
saved, or a row was written past the model's validation) is never sampled: say so."""

from django.conf import settings
from django.core.checks import Warning, register
from django.db import DatabaseError


@register()
def recovery_settings_check(app_configs=None, **kwargs) -> list:
    sampling, recovery = settings.SAMPLING, settings.RECOVERY
    problems = []
    # A request may wait CONNECT_TIMEOUT + READ_TIMEOUT for its first (or next) bytes without the
    # lease being renewed; the sweep takes the generation over LAPSED_AFTER after the lease ends.
    longest_silence = sampling["CONNECT_TIMEOUT"] + sampling["READ_TIMEOUT"]
    takeover = sampling["LEASE_SECONDS"] + recovery["LAPSED_AFTER"]
    if takeover < longest_silence:
        problems.append(Warning(
            f"A running generation is taken for abandoned after SAMPLING_LEASE_SECONDS + RECOVERY_LAPSED_AFTER "
            f"= {takeover:g} s without news, but a request may legitimately wait SAMPLING_CONNECT_TIMEOUT + "
            f"SAMPLING_READ_TIMEOUT = {longest_silence:g} s for the model server: the recovery sweep would send "
            "again generations that are still running.",
            hint="Raise RECOVERY_LAPSED_AFTER (or SAMPLING_LEASE_SECONDS) so that their sum is at least the "
                 "connect plus read timeout.",
            id="modelserving.W001"))
    if recovery["QUEUED_AFTER"] <= sampling["BACKOFF_MAX"]:
        problems.append(Warning(
            f"RECOVERY_QUEUED_AFTER ({recovery['QUEUED_AFTER']:g} s) is not above SAMPLING_BACKOFF_MAX "
            f"({sampling['BACKOFF_MAX']:g} s): a generation waiting for its next try would be taken for one "
            "whose message was lost and sent again.",
            hint="Keep RECOVERY_QUEUED_AFTER above SAMPLING_BACKOFF_MAX.", id="modelserving.W002"))
    return problems


@register("modelserving")
def variants_on_allowed_hosts(app_configs=None, **kwargs) -> list:
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
                obj=variant, id="modelserving.W003"))
        if variant.api_key_env and not API_KEY_ENV_RE.match(variant.api_key_env):
            problems.append(Warning(
                f"Active variant {variant.name!r} reads its key from {variant.api_key_env}, not a "
                "TANDEM_VARIANT_KEY_* variable: no key is sent.", obj=variant, id="modelserving.W004"))
    return problems

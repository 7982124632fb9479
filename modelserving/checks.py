"""System checks (`manage.py check`, run at every start of runserver and by deploy checks): the
sampling timeouts, the generation lease and the recovery thresholds must fit together, or the
recovery sweep sends again work that is still running, or takes a retry's wait for a lost message."""

from django.conf import settings
from django.core.checks import Warning, register


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

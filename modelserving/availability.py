"""Which variants may be paired now: a variant that cannot answer leaves pairing by itself.

Two signals, both read the way sampling meets them:
- a **probe**: ``GET /models`` through the client the sampler builds (modelserving/client.py), so a
  client the installed SDK refuses, an endpoint that is down or serves another model all fail it;
- the **failure share**: of the variant's generations that finished in the last
  ``VARIANT_HEALTH["FAILURE_WINDOW"]`` seconds (and since it last came back), the share that
  failed, once at least ``FAILURE_MIN`` finished.

The periodic check (``variants_check``, celery beat every ``CHECK_EVERY`` seconds) probes every
active variant and opens an outage (``VariantOutage``) for one that fails either; a generation that
ends failed looks at its variant's share at once (``after_failure``). While an outage is open no
new pair uses the variant. It is half-open at ``next_probe_at``: one probe, and the outage ends when
it answers, or the next probe waits twice as long (up to ``RETRY_MAX``). The state lives in the
database, so the web tier, every worker and every check agree on it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import client
from .endpoints import variant_endpoint
from .models import Generation, PolicyVariant, VariantOutage
from .pairing import NoActiveVariant, VariantSpec, pairing_refusal
from .selectors import active_variants

logger = logging.getLogger(__name__)


def _health(name: str):
    return settings.VARIANT_HEALTH[name]


def spec_of(variant: PolicyVariant) -> VariantSpec:
    return VariantSpec(variant.id, variant.name, variant.temperature_min, variant.temperature_max,
                       variant.sampling_weight)


def open_outages():
    return VariantOutage.objects.filter(ended_at__isnull=True)


def pairable_or_refuse() -> list[PolicyVariant]:
    """The variants a new pair may use, or NoActiveVariant (503) with the reason in words an
    annotator may read: none set up, or fewer than two answering where two or more are."""
    active = list(active_variants())
    out = set(open_outages().filter(variant__in=active).values_list("variant_id", flat=True))
    pairable = [v for v in active if v.id not in out]
    refusal = pairing_refusal([spec_of(v) for v in active], [spec_of(v) for v in pairable])
    if refusal:
        raise NoActiveVariant(refusal, code="unavailable")
    return pairable


# --- The two signals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureShare:
    failed: int
    finished: int

    @property
    def share(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    @property
    def too_high(self) -> bool:
        return self.finished >= _health("FAILURE_MIN") and self.failed / self.finished >= _health("FAILURE_SHARE")

    def describe(self) -> str:
        return (f"{self.failed} of its last {self.finished} generations failed "
                f"(within {_health('FAILURE_WINDOW'):g} s)")


def failure_shares(variant_ids: list[int], *, now: datetime | None = None) -> dict[int, FailureShare]:
    """Per variant: its generations finished within the window and since its last outage ended, and
    how many of those failed. One query."""
    now = now or timezone.now()
    since = now - timedelta(seconds=_health("FAILURE_WINDOW"))
    last_back = dict(VariantOutage.objects.filter(variant_id__in=variant_ids, ended_at__gt=since)
                     .order_by("ended_at").values_list("variant_id", "ended_at"))
    rows = (Generation.objects.filter(variant_id__in=variant_ids, finished_at__gt=since)
            .values("variant_id", "finished_at", "status"))
    counts = {vid: [0, 0] for vid in variant_ids}
    for row in rows.iterator():
        back = last_back.get(row["variant_id"])
        if back is not None and row["finished_at"] <= back:
            continue
        counts[row["variant_id"]][1] += 1
        counts[row["variant_id"]][0] += row["status"] == Generation.Status.FAILED
    return {vid: FailureShare(failed, finished) for vid, (failed, finished) in counts.items()}


def probe(variant: PolicyVariant) -> dict:
    """One probe through the sampler's own client: ``{"ok", "error"?, "models"?, "latency_ms"}``."""
    timeout = settings.HEALTH_PROBE_TIMEOUT
    try:
        endpoint = variant_endpoint(variant, connect_timeout=timeout, read_timeout=timeout)
    except client.EndpointError as error:
        return {"ok": False, "error": str(error), "latency_ms": 0}
    return client.probe(endpoint, model=variant.model_name, timeout=timeout)


def probe_all(variants: list[PolicyVariant]) -> dict[int, dict]:
    if not variants:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(variants))) as pool:
        return dict(zip([v.id for v in variants], pool.map(probe, variants)))


# --- Outages ------------------------------------------------------------------------------------


def _backoff(failed_probes: int) -> timedelta:
    return timedelta(seconds=min(_health("RETRY_MAX"), _health("RETRY_AFTER") * 2 ** max(0, failed_probes - 1)))


def outage_open(*, variant: PolicyVariant, cause: str, reason: str,
                now: datetime | None = None) -> VariantOutage | None:
    """Take ``variant`` out of pairing (None when it already is)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            outage = VariantOutage.objects.create(variant=variant, cause=cause, reason=reason, started_at=now,
                                                  probes=1, next_probe_at=now + _backoff(1))
    except IntegrityError:  # another check opened it first
        return None
    logger.warning("variant %s left pairing: %s", variant.name, reason)
    return outage


def _half_open(outage: VariantOutage, result: dict, now: datetime) -> str:
    if result["ok"]:
        VariantOutage.objects.filter(pk=outage.pk, ended_at__isnull=True).update(ended_at=now)
        logger.warning("variant %s is back in pairing after %.0f s", outage.variant.name,
                       (now - outage.started_at).total_seconds())
        return "back"
    probes = outage.probes + 1
    VariantOutage.objects.filter(pk=outage.pk).update(probes=probes, next_probe_at=now + _backoff(probes),
                                                      last_probe_error=result.get("error", ""))
    return "still_out"


def variants_check(*, now: datetime | None = None) -> dict[str, str]:
    """Probe every active variant (those out of pairing only once their back-off is over), open an
    outage for each that fails, end the outage of each that answers again. Returns name → what
    happened: in, out (just now), still_out, waiting (back-off not over), back."""
    now = now or timezone.now()
    variants = list(active_variants())
    outages = {o.variant_id: o for o in open_outages().filter(variant__in=variants).select_related("variant")}
    due = [v for v in variants if v.id not in outages or outages[v.id].next_probe_at <= now]
    results = probe_all(due)
    shares = failure_shares([v.id for v in variants if v.id not in outages], now=now)
    outcome = {}
    for variant in variants:
        outage = outages.get(variant.id)
        if outage is not None:
            outcome[variant.name] = _half_open(outage, results[variant.id], now) if variant.id in results else "waiting"
            continue
        result, share = results[variant.id], shares[variant.id]
        if not result["ok"]:
            opened = outage_open(variant=variant, cause=VariantOutage.Cause.PROBE, now=now,
                                 reason=f"Its probe failed: {result.get('error', '')}")
        elif share.too_high:
            opened = outage_open(variant=variant, cause=VariantOutage.Cause.FAILURES, now=now,
                                 reason=f"{share.describe()}.")
        else:
            outcome[variant.name] = "in"
            continue
        outcome[variant.name] = "out" if opened else "still_out"
    return outcome


def after_failure(*, variant_id: int) -> None:
    """A generation of this variant just ended failed: take the variant out now if most of its
    recent generations did, rather than at the next check."""
    if open_outages().filter(variant_id=variant_id).exists():
        return
    share = failure_shares([variant_id])[variant_id]
    if share.too_high:
        variant = PolicyVariant.objects.filter(pk=variant_id).first()
        if variant is not None:
            outage_open(variant=variant, cause=VariantOutage.Cause.FAILURES, reason=f"{share.describe()}.")


def variant_states(variants: list[PolicyVariant]) -> dict[int, VariantOutage | None]:
    """Per variant, its open outage (None: in pairing)."""
    outages = {o.variant_id: o for o in open_outages().filter(variant__in=variants)}
    return {v.id: outages.get(v.id) for v in variants}


def recent_outages(limit: int = 20):
    return VariantOutage.objects.select_related("variant").order_by("-started_at")[:limit]

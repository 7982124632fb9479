"""/health: the database, the broker, the cache, and whether sampling can work.

Sampling is judged the way the worker meets it: each active variant is probed through the
sampler's own client (modelserving/client.py), and the share of its recent generations that failed
is read from the database. Anyone gets ``ok`` (200) or ``unavailable`` (503: a part is down, or no
pair could be sampled from the variants that answer), computed at most once per
HEALTH_CACHE_SECONDS however many requests arrive together, and kept in the cache, so the public
door cannot be used to hammer the model servers; a cache that cannot be reached is itself a 503.
Admins and researchers get the details, computed afresh, with each variant's place in pairing.
"""

import logging
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.roles import ADMIN, RESEARCHER, has_role
from modelserving import availability, local_servers
from modelserving.pairing import pairing_refusal
from modelserving.selectors import active_variants


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any failure is the report
        return {"ok": False, "error": str(error), "vendor": connection.vendor}
    return {"ok": True, "vendor": connection.vendor}


def _broker() -> dict:
    from config.celery import app

    url = settings.CELERY_BROKER_URL
    transport = url.split("://", 1)[0]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_PROBE_TIMEOUT)
            if transport.startswith("redis"):
                conn.default_channel.client.ping()
    except Exception as error:
        return {"ok": False, "transport": transport, "error": str(error)}
    return {"ok": True, "transport": transport}


logger = logging.getLogger(__name__)
PUBLIC_KEY = "health:public"
COMPUTING_KEY = "health:public:computing"


def _cache() -> dict:
    key = f"health:probe:{uuid.uuid4().hex}"
    try:
        cache.set(key, 1, timeout=5)
        ok = cache.get(key) == 1
        cache.delete(key)
    except Exception as error:  # a Redis that is down: ConnectionError, a timeout
        return {"ok": False, "backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
                "error": str(error)}
    return {"ok": ok, "backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]}


def _variants() -> tuple[list[dict], str | None]:
    """Each active variant: a probe through the sampler's own client, the share of its recent
    generations that failed, and whether it is in pairing (with why and since when, if not). Then
    whether a pair could be sampled from those that answer (None) or why not."""
    variants = list(active_variants())
    probes = availability.probe_all(variants)
    shares = availability.failure_shares([v.id for v in variants])
    outages = availability.variant_states(variants)
    rows, answering = [], []
    for variant in variants:
        probe, share, outage = probes[variant.id], shares[variant.id], outages[variant.id]
        row = {"name": variant.name, "base_url": variant.base_url, "model": variant.model_name, **probe,
               "failures": {"failed": share.failed, "finished": share.finished, "share": share.share,
                            "window_s": settings.VARIANT_HEALTH["FAILURE_WINDOW"], "too_high": share.too_high},
               "in_pairing": outage is None}
        if outage is not None:
            row["out_of_pairing"] = {"since": outage.started_at.isoformat(), "reason": outage.reason,
                                     "next_probe_at": outage.next_probe_at.isoformat()}
        if probe["ok"] and share.too_high:
            row = {**row, "ok": False, "error": share.describe()}
        rows.append(row)
        # A variant out of pairing samples nothing until the check brings it back, even once its
        # probe here answers: green means a dialogue started now gets its pairs.
        if row["ok"] and outage is None:
            answering.append(variant)
    refusal = pairing_refusal([availability.spec_of(v) for v in variants],
                              [availability.spec_of(v) for v in answering])
    return rows, refusal


def _local_servers() -> dict:
    """The engine of this machine's model servers (make run's variants, checkpoints served from the
    dashboard): vLLM's CPU build, or `transformers serve` and why not vLLM."""
    try:
        chosen = local_servers.engine()
    except ValueError as error:  # LOCAL_MODEL_ENGINE=vllm where vLLM cannot run
        return {"engine": None, "why": str(error)}
    return {"engine": chosen.name, "why": chosen.why}


def report() -> dict:
    variants, refusal = _variants()
    checks = {"database": _database(), "broker": _broker(), "cache": _cache()}
    ok = all(check["ok"] for check in checks.values()) and refusal is None
    return {"ok": ok, **checks, "variants": variants, "sampling": {"ok": refusal is None, "refusal": refusal},
            "local_model_servers": _local_servers(), "problems": [refusal] if refusal else []}


_computing = threading.Lock()


def public_ok() -> bool:
    """The last answer, if it is younger than HEALTH_CACHE_SECONDS; else a fresh one, kept.

    Computed once however many requests arrive together: the threads of this process wait on a
    lock, and other processes on a short lease in the cache (``cache.add``) while the one holding it
    probes; they read its answer when it lands."""
    try:
        ok = cache.get(PUBLIC_KEY)
        if ok is not None:
            return bool(ok)
        with _computing:
            ok = cache.get(PUBLIC_KEY)
            if ok is None:
                ok = _compute_once()
    except Exception as error:
        logger.error("health: the cache cannot be reached (%s: %s)", error.__class__.__name__, error)
        return False
    return bool(ok)


def _compute_once() -> bool:
    lease = 2 * settings.HEALTH_PROBE_TIMEOUT + 5
    if cache.add(COMPUTING_KEY, 1, timeout=lease):
        try:
            ok = report()["ok"]
            cache.set(PUBLIC_KEY, ok, timeout=settings.HEALTH_CACHE_SECONDS)
            return ok
        finally:
            cache.delete(COMPUTING_KEY)
    deadline = time.monotonic() + lease
    while time.monotonic() < deadline:  # another process is probing: its answer, when it lands
        time.sleep(0.05)
        ok = cache.get(PUBLIC_KEY)
        if ok is not None:
            return ok
    return False  # it never answered: that is an answer too


@never_cache
@require_GET
def health(request):
    if not has_role(request.user, ADMIN, RESEARCHER):
        ok = public_ok()
        return HttpResponse("ok\n" if ok else "unavailable\n", status=200 if ok else 503,
                            content_type="text/plain; charset=utf-8")
    data = report()
    status = 200 if data["ok"] else 503
    wants_json = request.GET.get("format") == "json" or (
        "application/json" in request.headers.get("Accept", "") and "text/html" not in request.headers.get("Accept", "")
    )
    if wants_json:
        return JsonResponse(data, status=status)
    return render(request, "health.html", {"report": data,
                                           "failure_window": settings.VARIANT_HEALTH["FAILURE_WINDOW"]}, status=status)

"""/health: the database, the broker, the cache and every active policy variant's endpoint.

Anyone gets ``ok`` (200) or ``unavailable`` (503), computed at most once per HEALTH_CACHE_SECONDS and
kept in the cache, so the public door cannot be used to hammer the model servers; a cache that
cannot be reached is itself a 503. Admins and researchers get the details, computed afresh.
"""

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.roles import ADMIN, RESEARCHER, has_role
from modelserving.client import probe
from modelserving.endpoints import api_key_of, endpoint_allowed
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


def _variants() -> list[dict]:
    variants = list(active_variants())

    def check(variant):
        if not endpoint_allowed(variant.base_url):
            return {"name": variant.name, "base_url": variant.base_url, "model": variant.model_name, "ok": False,
                    "error": "the endpoint's host is not in VARIANT_ALLOWED_HOSTS (not probed)"}
        # Keyed endpoints refuse an unkeyed probe: the key is read here, from the variable named.
        result = probe(variant.base_url, timeout=settings.HEALTH_PROBE_TIMEOUT, api_key=api_key_of(variant.api_key_env))
        if result["ok"] and variant.model_name not in result["models"]:
            result = {**result, "ok": False,
                      "error": f"the endpoint does not serve {variant.model_name!r}"}
        return {"name": variant.name, "base_url": variant.base_url, "model": variant.model_name, **result}

    if not variants:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(variants))) as pool:
        return list(pool.map(check, variants))


def report() -> dict:
    variants = _variants()
    checks = {"database": _database(), "broker": _broker(), "cache": _cache()}
    ok = all(check["ok"] for check in checks.values()) and bool(variants) and all(v["ok"] for v in variants)
    return {"ok": ok, **checks, "variants": variants,
            "problems": ([] if variants else ["no active policy variant"])}


def public_ok() -> bool:
    """The last answer, if it is younger than HEALTH_CACHE_SECONDS; else a fresh one, kept."""
    try:
        ok = cache.get(PUBLIC_KEY)
        if ok is None:
            ok = report()["ok"]
            cache.set(PUBLIC_KEY, ok, timeout=settings.HEALTH_CACHE_SECONDS)
    except Exception as error:
        logger.error("health: the cache cannot be reached (%s: %s)", error.__class__.__name__, error)
        return False
    return bool(ok)


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
    return render(request, "health.html", {"report": data}, status=status)

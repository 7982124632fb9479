"""/health: the database, the broker and every active policy variant's endpoint."""

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.roles import ADMIN, RESEARCHER, has_role
from modelserving.client import probe
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


def _variants() -> list[dict]:
    variants = list(active_variants())

    def check(variant):
        result = probe(variant.base_url, timeout=settings.HEALTH_PROBE_TIMEOUT)
        if result["ok"] and variant.model_name not in result["models"]:
            result = {**result, "ok": False,
                      "error": f"the endpoint does not serve {variant.model_name!r}"}
        return {"name": variant.name, "base_url": variant.base_url, "model": variant.model_name, **result}

    if not variants:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(variants))) as pool:
        return list(pool.map(check, variants))


def redacted(data: dict) -> dict:
    """What anyone may see: which parts are up. Endpoint URLs, model names and error texts are
    for admins and researchers only."""
    return {
        "ok": data["ok"],
        "database": {"ok": data["database"]["ok"]},
        "broker": {"ok": data["broker"]["ok"]},
        "variants": [{"ok": v["ok"]} for v in data["variants"]],
        "problems": data["problems"],
    }


def report() -> dict:
    variants = _variants()
    checks = {"database": _database(), "broker": _broker()}
    ok = all(check["ok"] for check in checks.values()) and bool(variants) and all(v["ok"] for v in variants)
    return {"ok": ok, **checks, "variants": variants,
            "problems": ([] if variants else ["no active policy variant"])}


@never_cache
@require_GET
def health(request):
    data = report()
    status = 200 if data["ok"] else 503
    if not has_role(request.user, ADMIN, RESEARCHER):
        data = redacted(data)
    wants_json = request.GET.get("format") == "json" or (
        "application/json" in request.headers.get("Accept", "") and "text/html" not in request.headers.get("Accept", "")
    )
    if wants_json:
        return JsonResponse(data, status=status)
    return render(request, "health.html", {"report": data}, status=status)

"""Operations on policy variants, pairs and generations.

Sampling a generation is safe to repeat and safe to run from a redelivered message: a worker
first *claims* the generation with a lease (a token and an expiry, renewed while text streams in),
and every write it makes afterwards is conditional on still holding that lease. A finished
generation is never produced again; a second delivery while the first still runs waits for the
lease to lapse; a worker killed mid-stream leaves a lease that lapses, and the redelivered
message takes over.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.exceptions import TooMany

from . import availability, client
from .endpoints import variant_endpoint
from .models import Generation, Pair, PolicyVariant
from .pairing import NoActiveVariant, plan_pair

logger = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant"}
MAX_CONTEXT_CHARS = 200_000

__all__ = [
    "NoActiveVariant",
    "TooManyInFlight",
    "SampleOutcome",
    "generation_requeue",
    "generation_sample",
    "pair_request",
    "sampling_check",
    "variant_create",
    "variant_update",
]


def _sampling(name: str):
    return settings.SAMPLING[name]


# --- Variants -------------------------------------------------------------------------------

VARIANT_FIELDS = {
    "base_url", "model_name", "api_key_env", "temperature_min", "temperature_max", "top_p",
    "max_new_tokens", "is_active", "sampling_weight", "notes", "awaiting_approval",
}


def variant_create(*, name: str, **fields) -> PolicyVariant:
    unknown = set(fields) - VARIANT_FIELDS
    if unknown:
        raise ValidationError(f"Unknown variant fields: {', '.join(sorted(unknown))}")
    variant = PolicyVariant(name=name, **fields)
    variant.full_clean()
    variant.save()
    return variant


def variant_update(*, variant: PolicyVariant, **fields) -> PolicyVariant:
    unknown = set(fields) - VARIANT_FIELDS
    if unknown:
        raise ValidationError(f"Unknown variant fields: {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(variant, key, value)
    variant.full_clean()
    variant.save()
    return variant


def variant_approve(*, variant: PolicyVariant, admin) -> PolicyVariant:
    """An admin accepts the endpoint a researcher filed: from now on it is sampled like any other."""
    from django.core.exceptions import PermissionDenied

    from accounts.roles import ADMIN, has_role

    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins approve an endpoint.")
    variant.full_clean()  # its host must be allowed now, too
    PolicyVariant.objects.filter(pk=variant.pk).update(awaiting_approval=False)
    variant.awaiting_approval = False
    logger.info("variant %s: endpoint %s approved by %s", variant.name, variant.base_url, admin)
    return variant


# --- Pairs ----------------------------------------------------------------------------------


class TooManyInFlight(TooMany):
    """The person already has MAX_IN_FLIGHT_PER_USER pairs (or single responses) being written."""


def _check_in_flight(user) -> None:
    """Refuse more sampling for ``user`` while MAX_IN_FLIGHT_PER_USER of their pairs, red-team
    responses or retries are queued or running. Call inside the transaction that stores the new
    generations: the user's row lock orders two requests of the same person."""
    if user is None:
        return
    from django.contrib.auth import get_user_model

    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    rows = Generation.objects.filter(
        requested_by=user, status__in=(Generation.Status.QUEUED, Generation.Status.RUNNING)
    ).values_list("pair_id", "id")
    in_flight = {("pair", pair) if pair else ("one", one) for pair, one in rows}
    limit = settings.MAX_IN_FLIGHT_PER_USER
    if len(in_flight) >= limit:
        raise TooManyInFlight(
            f"{len(in_flight)} of your requests are still being answered (at most {limit} at a time): "
            "wait for them to finish.", code="in_flight")


def _validate_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValidationError("The dialogue context must be a non-empty list of messages.")
    cleaned = []
    total = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ValidationError(f"Message {index} must have exactly a role and a content.")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValidationError(f"Message {index} has role {role!r}; use system, user or assistant.")
        if role == "system" and index != 0:
            raise ValidationError("Only the first message may be a system message.")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError(f"Message {index} has no text.")
        total += len(content)
        cleaned.append({"role": role, "content": content})
    if cleaned[-1]["role"] != "user":
        raise ValidationError("The last message of the context must be the user's.")
    if total > MAX_CONTEXT_CHARS:
        raise ValidationError(f"The dialogue context is longer than {MAX_CONTEXT_CHARS} characters.")
    return cleaned


def sampling_check() -> None:
    """NoActiveVariant (503, with the reason in words an annotator may read) when no pair could be
    sampled now: nothing active, or fewer than two variants answering where two or more are set up."""
    availability.pairable_or_refuse()


def pair_request(*, messages: list[dict], requested_by=None, rng: random.Random | None = None) -> Pair:
    """Store a pair of generations for ``messages`` and enqueue both once the transaction commits.

    Only variants in pairing are drawn (modelserving/availability.py). Raises ValidationError for a
    malformed context and NoActiveVariant (503) when nothing is active, or fewer than two variants
    answer where two or more are set up.
    """
    from . import tasks

    context = _validate_messages(messages)
    variants = {v.id: v for v in availability.pairable_or_refuse()}
    rng = rng or random.SystemRandom()
    plan = plan_pair([availability.spec_of(v) for v in variants.values()], rng=rng,
                     min_gap=_sampling("MIN_TEMPERATURE_GAP"))
    # The weighted draw picks the heavier variant first more often: stored in draw order, the lower
    # generation id (or position) would say which variant wrote it. Stored in a shuffled order instead.
    order = [0, 1]
    rng.shuffle(order)
    record = {**plan.record, "stored_order": order}
    with transaction.atomic():
        _check_in_flight(requested_by)
        pair = Pair.objects.create(
            messages=context, strategy=plan.strategy, pairing=record, requested_by=requested_by
        )
        for position, choice in enumerate((plan.choices[i] for i in order), start=1):
            variant = variants[choice.variant_id]
            body = client.chat_request_body(
                model=variant.model_name, messages=context, temperature=choice.temperature,
                top_p=variant.top_p, seed=choice.seed, max_tokens=variant.max_new_tokens,
            )
            generation = Generation.objects.create(
                pair=pair, position=position, variant=variant, requested_by=requested_by,
                model_name=variant.model_name,
                messages=context, temperature=choice.temperature, top_p=variant.top_p, seed=choice.seed,
                max_tokens=variant.max_new_tokens, request_body=body,
            )
            tasks.generation_sample.delay_on_commit(generation.id)
    return pair


def generation_request(*, variant: PolicyVariant, messages: list[dict], temperature: float | None = None,
                       rng: random.Random | None = None, requested_by=None) -> Generation:
    """One response from one chosen variant (evaluations, red teaming): no pair, no pairing draw.
    The temperature defaults to the middle of the variant's range; enqueued once committed."""
    from . import tasks

    context = _validate_messages(messages)
    if not variant.is_active or variant.awaiting_approval:
        # Red teamers read this: it must not name the variant.
        raise ValidationError("This model is not available any more.", code="inactive")
    if temperature is None:
        temperature = round((variant.temperature_min + variant.temperature_max) / 2, 3)
    seed = (rng or random.SystemRandom()).randrange(2**31)
    body = client.chat_request_body(model=variant.model_name, messages=context, temperature=temperature,
                                    top_p=variant.top_p, seed=seed, max_tokens=variant.max_new_tokens)
    with transaction.atomic():
        _check_in_flight(requested_by)
        generation = Generation.objects.create(
            variant=variant, requested_by=requested_by, model_name=variant.model_name, messages=context,
            temperature=temperature, top_p=variant.top_p, seed=seed, max_tokens=variant.max_new_tokens,
            request_body=body)
        tasks.generation_sample.delay_on_commit(generation.id)
    return generation


# --- Sampling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleOutcome:
    state: str  # done | failed | retry | busy | skipped | lost | missing
    retry_after: float | None = None


class _LeaseLost(Exception):
    pass


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of base·2^(attempt−1), capped."""
    ceiling = min(_sampling("BACKOFF_MAX"), _sampling("BACKOFF_BASE") * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _claim(generation_id: int, worker: str) -> tuple[Generation | None, SampleOutcome | None]:
    now = timezone.now()
    with transaction.atomic():
        generation = (
            Generation.objects.select_for_update().select_related("variant").filter(pk=generation_id).first()
        )
        if generation is None:
            return None, SampleOutcome("missing")
        if generation.is_finished:
            return None, SampleOutcome("skipped")
        if generation.status == Generation.Status.RUNNING and generation.lease_expires_at > now:
            # Another delivery of the same task holds it; come back when its lease could have lapsed.
            wait = (generation.lease_expires_at - now).total_seconds()
            return None, SampleOutcome("busy", retry_after=wait + random.uniform(0.1, 1.0))
        if generation.attempts >= _sampling("MAX_ATTEMPTS"):
            # Only reachable when workers died holding it, try after try.
            generation.status = Generation.Status.FAILED
            generation.error = (
                f"Gave up after {generation.attempts} tries: the worker running it stopped before it finished."
                + (f" Last error: {generation.error}" if generation.error else "")
            )
            generation.finished_at = now
            generation.lease_token = None
            generation.save(update_fields=["status", "error", "finished_at", "lease_token", "updated_at"])
            return None, SampleOutcome("failed")
        generation.status = Generation.Status.RUNNING
        generation.attempts += 1
        generation.lease_token = Generation.new_lease_token()
        generation.lease_expires_at = now + timedelta(seconds=_sampling("LEASE_SECONDS"))
        generation.worker = worker
        generation.started_at = now
        generation.text = ""
        generation.save(
            update_fields=["status", "attempts", "lease_token", "lease_expires_at", "worker", "started_at",
                           "text", "updated_at"]
        )
    return generation, None


def _held(generation: Generation):
    return Generation.objects.filter(
        pk=generation.pk, lease_token=generation.lease_token, status=Generation.Status.RUNNING
    )


def generation_sample(*, generation_id: int, worker: str = "") -> SampleOutcome:
    """Produce one generation, or say when to try again. Safe to call any number of times."""
    generation, outcome = _claim(generation_id, worker)
    if outcome is not None:
        return outcome
    assert generation is not None
    lease = timedelta(seconds=_sampling("LEASE_SECONDS"))
    interval = _sampling("FLUSH_INTERVAL")
    last_flush, last_text = 0.0, ""

    def flush(text: str) -> None:
        """Write the partial text at most every `interval` seconds, and only when it changed (or the
        lease is half spent: the write renews it)."""
        nonlocal last_flush, last_text
        since = time.monotonic() - last_flush
        if since < interval or (text == last_text and since < lease.total_seconds() / 2):
            return
        last_flush, last_text = time.monotonic(), text
        now = timezone.now()
        if not _held(generation).update(text=text, lease_expires_at=now + lease, updated_at=now):
            raise _LeaseLost

    try:
        completion = client.stream_chat(variant_endpoint(generation.variant), generation.request_body,
                                        on_text=flush)
    except _LeaseLost:
        logger.warning("generation %s: lease lost mid-stream; another worker took it over", generation.pk)
        return SampleOutcome("lost")
    except client.EndpointError as error:
        return _after_error(generation, str(error), transient=error.transient)
    except SoftTimeLimitExceeded:
        return _after_error(generation, "The response took longer than the task's time limit.", transient=True)
    except Exception as error:  # nothing may leave a generation running with no one behind it
        logger.exception("generation %s: unexpected error while sampling", generation.pk)
        return _after_error(generation, f"Sampling failed unexpectedly ({error.__class__.__name__}).",
                            transient=False)

    now = timezone.now()
    stored = _held(generation).update(
        status=Generation.Status.DONE,
        text=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        first_token_ms=completion.first_token_ms,
        latency_ms=completion.latency_ms,
        error="",
        lease_token=None,
        lease_expires_at=None,
        finished_at=now,
        updated_at=now,
    )
    return SampleOutcome("done" if stored else "lost")


def _after_error(generation: Generation, message: str, *, transient: bool) -> SampleOutcome:
    now = timezone.now()
    if transient and generation.attempts < _sampling("MAX_ATTEMPTS"):
        delay = _backoff(generation.attempts)
        updated = _held(generation).update(
            status=Generation.Status.QUEUED, error=message, lease_token=None, lease_expires_at=None, updated_at=now
        )
        logger.info("generation %s: try %s failed (%s); again in %.1f s", generation.pk, generation.attempts,
                    message, delay)
        return SampleOutcome("retry", retry_after=delay) if updated else SampleOutcome("lost")
    reason = f"Gave up after {generation.attempts} tries. {message}" if transient else message
    updated = _held(generation).update(
        status=Generation.Status.FAILED, error=reason, lease_token=None, lease_expires_at=None,
        finished_at=now, updated_at=now,
    )
    logger.warning("generation %s failed: %s", generation.pk, reason)
    if updated:
        try:
            availability.after_failure(variant_id=generation.variant_id)
        except Exception:  # the failure is stored; the periodic check looks again
            logger.exception("generation %s: its variant's failure share could not be checked", generation.pk)
    return SampleOutcome("failed" if updated else "lost")


def generation_requeue(*, generation: Generation) -> Generation:
    """Give a failed generation a fresh set of tries (the annotator's retry button)."""
    from . import tasks

    with transaction.atomic():
        generation = Generation.objects.select_for_update().get(pk=generation.pk)
        if generation.status != Generation.Status.FAILED:
            raise ValidationError("Only a failed response can be retried.")
        _check_in_flight(generation.requested_by)
        generation.status = Generation.Status.QUEUED
        generation.attempts = 0
        generation.recoveries = 0
        generation.lapses = 0
        generation.error = ""
        generation.text = ""
        generation.finished_at = None
        generation.save(update_fields=["status", "attempts", "recoveries", "lapses", "error", "text", "finished_at",
                                       "updated_at"])
        tasks.generation_sample.delay_on_commit(generation.id)
    return generation

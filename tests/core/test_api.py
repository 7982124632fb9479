"""core.api.exception_handler: the one place where a service's refusal becomes HTTP."""

from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.exceptions import NotAuthenticated, NotFound

from core.api import exception_handler
from core.exceptions import Conflict, NotYours, Unavailable
from core.leases import LeaseLost
from modelserving.pairing import NoActiveVariant


def answer(exc):
    response = exception_handler(exc, {})
    return response.status_code, response.data


def test_a_broken_rule_is_400_with_the_messages_per_field_or_as_detail():
    assert answer(ValidationError({"minutes": ["Too long."]})) == (400, {"minutes": ["Too long."]})
    assert answer(ValidationError(["One.", "Two."])) == (400, {"detail": ["One.", "Two."]})


def test_a_refused_permission_is_403_with_its_reason():
    status, data = answer(PermissionDenied("Only admins freeze batches."))
    assert status == 403 and str(data["detail"]) == "Only admins freeze batches."


def test_conflicts_are_409_lost_leases_and_second_judgements_among_them():
    from annotation.workspace.judgements import JudgementConflict

    for refusal in (Conflict("Moved on."), LeaseLost("Moved on."), JudgementConflict("Moved on.")):
        assert answer(refusal) == (409, {"detail": "Moved on."})


def test_nothing_to_sample_from_is_503():
    assert answer(NoActiveVariant("No active policy variant.")) == (503, {"detail": "No active policy variant."})
    assert answer(Unavailable("Later."))[0] == 503


def test_someone_elses_id_is_404_with_the_answer_of_an_unknown_id():
    assert answer(NotYours()) == (404, {"detail": "Not found."})
    assert answer(NotFound())[0] == 404 and str(answer(NotFound())[1]["detail"]) == "Not found."


def test_too_much_in_flight_is_429_with_its_reason():
    from modelserving.services import TooManyInFlight

    status, data = answer(TooManyInFlight("Three pairs are being written for you."))
    assert status == 429 and str(data["detail"]) == "Three pairs are being written for you."


def test_drf_s_own_exceptions_keep_drf_s_answer():
    assert answer(NotAuthenticated())[0] == 401

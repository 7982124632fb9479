"""OpenAPI post-processing: the refusals every endpoint can answer with, in the schema.

Each operation documents what its view returns on success; the answers that the exception handling
gives anywhere (400 bad input, 401/403 authentication and roles, 404 unknown or someone else's
ids, 409 a conflict, 415 a body in a media type it does not read, 429 a throttle or the in-flight
cap) are added here once, with the shape DRF gives them, so clients and schema checks know them.
503 is documented only where it can be answered: the operations that sample a pair declare
``SAMPLING_UNAVAILABLE`` among their responses."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

ERROR = {"type": "object", "description": "`detail`, or a list of problems per field.",
         "additionalProperties": True}
REFUSALS = {
    "400": "The input was refused: the problems, per field.",
    "401": "No or bad credentials.",
    "403": "The role does not allow this.",
    "404": "Unknown, or someone else's.",
    "409": "A conflict with the current state (a different judgement of the same turn, a lost lease).",
    "414": "The URL is longer than the server takes.",
    "429": "Too many requests (a throttle, or too many pairs in flight).",
}
# What an operation that samples a pair answers when it cannot: its reason, in words an annotator
# may read (it names no variant), in `detail`.
SAMPLING_UNAVAILABLE = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description="No pair can be sampled now: no policy variant is active, or fewer than two of those set "
                "up are answering (a variant that cannot answer leaves pairing by itself until it answers "
                "again). `detail` says which, naming no variant; nothing was stored. Try again later.")
# No value in Tandem may hold a NUL character, and a query string with one is refused 400 before any
# view (core.middleware.RefuseNulCharacters): every free-text query parameter says so in its schema.
NO_NUL = "^[^\\x00]*$"
# Only where there is a body to read.
BODY_REFUSALS = {"415": "The body's media type is not one this operation reads (see its request body)."}


def add_refusals(result, generator, request, public):
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            refusals = {**REFUSALS, **(BODY_REFUSALS if "requestBody" in operation else {})}
            for code, description in refusals.items():
                responses.setdefault(code, {"description": description,
                                            "content": {"application/json": {"schema": ERROR}}})
    return result


def forbid_nul_in_query(result, generator, request, public):
    """Each free-text string query parameter (no format, enum or pattern of its own) states that it
    holds no NUL character, so that a client and a schema check know the 400 that answers one."""
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if (parameter.get("in") == "query" and schema.get("type") == "string"
                        and not {"format", "enum", "pattern"} & schema.keys()):
                    schema["pattern"] = NO_NUL
    return result

"""OpenAPI post-processing: the refusals every endpoint can answer with, in the schema.

Each operation documents what its view returns on success; the answers that the exception handling
gives anywhere (400 bad input, 401/403 authentication and roles, 404 unknown or someone else's
ids, 409 a conflict, 415 a body in a media type it does not read, 429 a throttle or the in-flight
cap, 503 nothing to sample from) are added here once, with the shape DRF gives them, so clients and
schema checks know them."""

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
    "503": "Unavailable (no active policy variant, a broker that is down).",
}
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

"""Red-team sessions over HTTP: annotators start a session, post attempts, mark responses and finish
(the same services as the pages); admins and researchers read the robustness and coverage figures.

Every session and attempt an annotator reaches is their own: another's ids answer 404 with an
empty body, as in annotation/workspace/api.py.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AnnotatorOnly, StaffRole
from annotation.models import AttackVector, RiskCategory
from core import fields as strict
from core.pagination import list_schema, paginated
from modelserving.models import PolicyVariant

from . import redteam

# --- Serializers (shape only; the rules are safety.redteam's) ---------------------------------


class SessionStartSerializer(serializers.Serializer):
    model = strict.CharField(max_length=20, help_text='An alias the red teamer was offered ("Model 1"); '
                                  "see GET sessions/models/.")
    minutes = strict.IntegerField(min_value=redteam.MIN_MINUTES, max_value=redteam.MAX_MINUTES)


class AttemptPostSerializer(serializers.Serializer):
    prompt = strict.CharField(trim_whitespace=False, allow_blank=True, max_length=redteam.MAX_PROMPT_CHARS)
    risk_category = serializers.SlugRelatedField(slug_field="slug", queryset=RiskCategory.objects.all(),
                                                 required=False, allow_null=True, default=None)
    attack_vector = serializers.SlugRelatedField(slug_field="slug", queryset=AttackVector.objects.all(),
                                                 required=False, allow_null=True, default=None)


class MarkSerializer(serializers.Serializer):
    violating = strict.BooleanField()
    note = strict.CharField(required=False, allow_blank=True, default="", trim_whitespace=False,
                                 max_length=redteam.MAX_NOTE_CHARS)


class ResponseSerializer(serializers.Serializer):
    status = strict.CharField()
    text = strict.CharField()
    error = serializers.SerializerMethodField(help_text="Generic, with a reference; empty unless failed.")

    def get_error(self, generation) -> str:
        return generation.annotator_error()


class AttemptSerializer(serializers.Serializer):
    id = strict.IntegerField()
    session = strict.IntegerField(source="session_id")
    prompt = strict.CharField()
    risk_category = strict.CharField(source="risk_category.slug")
    attack_vector = strict.CharField(source="attack_vector.slug")
    response = ResponseSerializer(source="generation")
    violating = strict.BooleanField(allow_null=True)
    note = strict.CharField()
    created_at = serializers.DateTimeField()
    marked_at = serializers.DateTimeField(allow_null=True)


class SessionSerializer(serializers.Serializer):
    id = strict.IntegerField()
    model = strict.CharField(source="alias", help_text="The alias of the variant attacked, never its name.")
    minutes = strict.IntegerField()
    started_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    state = serializers.SerializerMethodField(help_text="running, ended (time up, not finished) or finished")
    seconds_left = serializers.SerializerMethodField()

    def get_state(self, session) -> str:
        return redteam.session_state(session)

    def get_seconds_left(self, session) -> int:
        return redteam.seconds_left(session)


class SessionDetailSerializer(SessionSerializer):
    attempts = serializers.SerializerMethodField()

    def get_attempts(self, session) -> list[dict]:
        return AttemptSerializer(redteam.session_attempts(session=session), many=True).data


# --- Annotators -----------------------------------------------------------------------------


class RedTeamAPIView(APIView):
    permission_classes = [AnnotatorOnly]

    def own_session(self, pk: int):
        return redteam.own_session(annotator=self.request.user, pk=pk)

    def own_attempt(self, pk: int):
        return redteam.own_attempt(annotator=self.request.user, pk=pk)


class SessionListCreate(RedTeamAPIView):
    @list_schema(SessionSerializer, name="PaginatedRedTeamSessionList", operation_id="safety_red_team_sessions_list")
    def get(self, request):
        return paginated(request, self, redteam.sessions_for(annotator=request.user), SessionSerializer)

    @extend_schema(request=SessionStartSerializer, responses={201: SessionSerializer},
                   description="Start a timed session on one active variant (one running session per "
                               "person).")
    def post(self, request):
        incoming = SessionStartSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        session = redteam.session_start(annotator=request.user, alias=incoming.validated_data["model"],
                                        minutes=incoming.validated_data["minutes"])
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)


class ModelList(RedTeamAPIView):
    @extend_schema(responses=inline_serializer("RedTeamModel", {"model": strict.CharField()}, many=True),
                   description="The models this red teamer may attack, by alias.")
    def get(self, request):
        return Response([{"model": alias} for alias in redteam.variant_aliases(annotator=request.user)])


class SessionDetail(RedTeamAPIView):
    @extend_schema(responses=SessionDetailSerializer)
    def get(self, request, pk: int):
        return Response(SessionDetailSerializer(self.own_session(pk)).data)


class SessionAttempts(RedTeamAPIView):
    @extend_schema(request=AttemptPostSerializer, responses={201: AttemptSerializer},
                   description="Send an adversarial prompt; its response is sampled asynchronously "
                               "(poll the attempt until response.status is done or failed).")
    def post(self, request, pk: int):
        session = self.own_session(pk)
        incoming = AttemptPostSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        attempt = redteam.attempt_post(session=session, annotator=request.user,
                                       **incoming.validated_data)
        return Response(AttemptSerializer(self.own_attempt(attempt.pk)).data, status=status.HTTP_201_CREATED)


class SessionFinish(RedTeamAPIView):
    @extend_schema(request=None, responses=SessionSerializer)
    def post(self, request, pk: int):
        session = redteam.session_finish(session=self.own_session(pk), annotator=request.user)
        return Response(SessionSerializer(self.own_session(session.pk)).data)


class AttemptDetail(RedTeamAPIView):
    @extend_schema(responses=AttemptSerializer)
    def get(self, request, pk: int):
        return Response(AttemptSerializer(self.own_attempt(pk)).data)


class AttemptMark(RedTeamAPIView):
    @extend_schema(request=MarkSerializer, responses=AttemptSerializer,
                   description="Mark a finished response violating or not; changeable until the session is "
                               "finished.")
    def post(self, request, pk: int):
        attempt = self.own_attempt(pk)
        incoming = MarkSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        redteam.attempt_mark(attempt=attempt, annotator=request.user, **incoming.validated_data)
        return Response(AttemptSerializer(self.own_attempt(pk)).data)


# --- Admins and researchers -------------------------------------------------------------------


class Results(APIView):
    permission_classes = [StaffRole]

    @extend_schema(
        parameters=[OpenApiParameter("variant", str, description="A variant's name"),
                    OpenApiParameter("vendor", str, description="A vendor's slug, or none"),
                    OpenApiParameter("since", OpenApiTypes.DATE,
                                     description="Sessions started at or after this ISO date (an ISO "
                                                 "date-time is taken too)")],
        responses=OpenApiResponse(description=(
            "robustness: per variant sessions, people, person_hours, attempts, violating, robustness_factor "
            "(violating / person-hours); coverage: risk category × attack vector counts and violations.")))
    def get(self, request):
        variant = None
        if name := request.query_params.get("variant"):
            variant = PolicyVariant.objects.filter(name=name).first()
            if variant is None:
                raise NotFound(f"No variant {name}.")
        since = redteam.since_from(request.query_params["since"]) if "since" in request.query_params else None
        vendor = request.query_params.get("vendor") or None
        return Response({
            "definition": ("robustness_factor = violating attempts / person-hours; person-hours = sum over "
                           "sessions of (min(finished_at or now, ends_at) - started_at) in hours"),
            "robustness": redteam.robustness(variant=variant, since=since, vendor=vendor),
            "coverage": redteam.coverage(variant=variant, since=since, vendor=vendor),
        })

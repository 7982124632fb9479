"""Every list endpoint answers in pages: ``?page=N``, PAGE_SIZE items unless ``page_size`` (up to 200)
says otherwise, with ``count``, ``next``, ``previous`` and ``results``."""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request, paginator):
        if len(request.query_params.getlist(self.page_query_param)) > 1:
            raise ValidationError({self.page_query_param: "One page number."})
        # The schema says integer: an empty or wordy page is refused, not read as the first one.
        given = request.query_params.get(self.page_query_param)
        if given is not None and not given.isdigit():
            raise ValidationError({self.page_query_param: "A page number."})
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view):
        """DRF's page parameters, with what the server checks: a page number counts from 1."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
        return parameters

    def get_page_size(self, request):
        # A page_size that is not a whole number is refused, not quietly ignored (0 or less: the default).
        if len(request.query_params.getlist(self.page_size_query_param)) > 1:
            raise ValidationError({self.page_size_query_param: "One page size."})
        given = request.query_params.get(self.page_size_query_param)
        if given is not None and not given.lstrip("-").isdigit():
            raise ValidationError({self.page_size_query_param: "A whole number."})
        return super().get_page_size(request)


def page_of(serializer_class, name: str | None = None):
    """The schema of one page of ``serializer_class`` items (for ``extend_schema(responses=...)``)."""
    return inline_serializer(name or f"Paginated{serializer_class.__name__.removesuffix('Serializer')}List", {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer_class(many=True),
    })


def paginated(request, view, items, serializer_class, **serializer_kwargs) -> Response:
    """One page of ``items`` (a queryset in a stable order, or a list), serialized."""
    paginator = Pagination()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, **serializer_kwargs).data)


def list_schema(serializer_class, *, operation_id: str, name: str | None = None, parameters=(), **kwargs):
    """``extend_schema`` for a list endpoint of an APIView: one page, and its query parameters."""
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import OpenApiParameter, extend_schema

    return extend_schema(
        operation_id=operation_id, responses=page_of(serializer_class, name),
        parameters=[OpenApiParameter("page", {"type": "integer", "minimum": 1}, description="A page number (from 1)."),
                    OpenApiParameter("page_size", OpenApiTypes.INT, required=False,
                                     description=f"Items per page, at most {Pagination.max_page_size}."),
                    *parameters],
        **kwargs)

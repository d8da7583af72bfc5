"""URLconf of the Django app used by the middleware tests (ROOT_URLCONF)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return JsonResponse({"pk": pk})


def article(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(year)


def withdraw(request: HttpRequest, account_id: int) -> HttpResponse:
    tools = request.META.get("interlock") or request.scope["interlock"]  # type: ignore[attr-defined]
    return JsonResponse({"lease": tools.lease is not None, "request_id": tools.request_id})


def product(request: HttpRequest, product_id: int) -> HttpResponse:
    return JsonResponse({"product": product_id})


api = [path("items/<int:pk>/", item), re_path(r"^articles/(?P<year>[0-9]{4})/$", article)]

urlpatterns = [
    path("api/v1/", include(api)),
    path("accounts/<int:account_id>/withdraw", withdraw),
    path("products/<int:product_id>", product),
]

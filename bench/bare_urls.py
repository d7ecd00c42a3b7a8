"""The project's URLs plus `/bench/bare`: a plain Django view doing one INSERT.

It is the ceiling `bench/send.py` compares the send API against: same server, same
database, same middleware, no DRF, no authentication, no business logic.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def bare_insert(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_bare (body) VALUES (%s) RETURNING id", [request.POST.get("msg", "")])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id})


urlpatterns = [*project_urlpatterns, path("bench/bare", bare_insert)]

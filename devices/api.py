"""The phones' own HTTP endpoint: enrolment with a list's PIN.

Its answers are plain JSON as docs/device-protocol.md shows them (not the send-API envelope); errors
are `{"error": "<sentence>"}`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.response import Response

from accounts import errors
from accounts.api import ApiRequest, ApiView
from devices import services


class EnrolDeviceApi(ApiView):
    """POST /api/device/v1/enroll: `pin`, `name`, optional `model`, `sims` → the device's
    id and secret token, its list and where to connect."""

    class InputSerializer(serializers.Serializer[Any]):
        pin = serializers.CharField(max_length=32, trim_whitespace=True)
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="Phone")
        model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        sims = serializers.ListField(child=serializers.JSONField(), required=False, max_length=8, default=list)

    def post(self, request: ApiRequest) -> Response:
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            field, problems = next(iter(data.errors.items()))
            return Response({"error": f"{field}: {problems[0]}"}, status=status.HTTP_400_BAD_REQUEST)
        values: dict[str, Any] = data.validated_data
        try:
            device, token = services.enrol_device(
                pin=values["pin"],
                name=values["name"],
                model=values["model"],
                sims=values["sims"],
                client_ip=request.client_ip,
            )
        except errors.WrongPin as exc:
            return Response({"error": exc.message}, status=status.HTTP_403_FORBIDDEN)
        except errors.RateLimited as exc:
            return Response(
                {"error": exc.message, "retry_after": exc.retry_after},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(exc.retry_after)},
            )
        return Response(
            {
                "device_id": device.public_id,
                "device_token": token,
                "list": device.phone_list.token,
                "ws_url": "/ws/device/",
            }
        )

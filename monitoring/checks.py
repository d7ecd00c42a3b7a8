"""System check: several processes with per-process counters would each show a part."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def metrics_are_shared_between_processes(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.REDIS_URL and not settings.PROMETHEUS_MULTIPROC_DIR:
        return [
            Warning(
                "REDIS_URL is set (several processes) but PROMETHEUS_MULTIPROC_DIR is not: the counters "
                "on /metrics will be those of whichever process answers the scrape.",
                hint="Set PROMETHEUS_MULTIPROC_DIR to a folder every Phonefleet process of this host can "
                "write (docs/deploy.md, 'Health and metrics').",
                id="monitoring.W001",
            )
        ]
    return []

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class MessagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messaging"

    def ready(self) -> None:
        # Modules that use models load once the app registry is ready (Django's rule for ready()).
        from messaging import openapi, selectors  # noqa: F401 (openapi registers its schema extension)

        # The send path caches list lookups; any change to a list drops its entry.
        for signal, uid in ((post_save, "messaging-forget-list"), (post_delete, "messaging-forget-list-del")):
            signal.connect(selectors.forget_list_on_change, sender="devices.PhoneList", dispatch_uid=uid)

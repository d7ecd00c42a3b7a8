from django.apps import AppConfig


class MessagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messaging"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from devices.models import PhoneList
        from messaging import openapi, selectors  # noqa: F401 (openapi registers its schema extension)

        # The send path caches list lookups; any change to a list drops its entry.
        post_save.connect(selectors.forget_list_on_change, sender=PhoneList, dispatch_uid="messaging-forget-list")
        post_delete.connect(selectors.forget_list_on_change, sender=PhoneList, dispatch_uid="messaging-forget-list-del")

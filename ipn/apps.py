from django.apps import AppConfig


class IpnConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ipn"

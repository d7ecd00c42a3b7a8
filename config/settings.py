"""Phonefleet settings: one file, driven by the environment, safe with none.

With no configuration the project runs embedded: a SQLite file, the in-memory
channel layer, a local-memory cache and the worker inside the server process.
`DATABASE_URL` and `REDIS_URL` switch it to PostgreSQL and Redis.
"""

import os
import secrets
import sys
import tempfile
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Django's generic classes (`admin.ModelAdmin[Account]`, …) take type arguments at run
# time as well, for mypy's strict checks of the apps.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core --------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
# This machine's own names only (the README's table); tests add Django's `testserver`.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# The one rule for "production": DEBUG is off and the server answers to a name other than
# this machine's own. Others then hold keys and tokens whose digests depend on SECRET_KEY,
# so it must be given, the same to every process; a key generated into var/ would differ
# between hosts and containers and be lost with them.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", "testserver"})
PUBLIC_HOSTS = [host for host in ALLOWED_HOSTS if host not in LOCAL_HOSTS]
PRODUCTION = not DEBUG and bool(PUBLIC_HOSTS)
NEW_KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"


def _secret_key() -> str:
    """SECRET_KEY from the environment; outside production, a key generated once into
    `var/secret_key`. Production refuses to start without a real one."""
    key: str = env.str("SECRET_KEY", default="")
    why = f"this is a production deployment (ALLOWED_HOSTS names {', '.join(PUBLIC_HOSTS)} and DEBUG is off)"
    if PRODUCTION and not key:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set, and {why}: set SECRET_KEY to the same long random value for every "
            f"process, for example the output of {NEW_KEY_COMMAND}."
        )
    if PRODUCTION and (len(key) < 32 or "change-me" in key.lower() or key.startswith("django-insecure")):
        raise ImproperlyConfigured(
            f"SECRET_KEY is a placeholder or shorter than 32 characters, and {why}: "
            f"set it to a long random value, for example the output of {NEW_KEY_COMMAND}."
        )
    if key:
        return key
    path = BASE_DIR / "var" / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="")

# --- Apps --------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "devices",
    "messaging",
    "ipn",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "accounts.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "accounts.middleware.ClientIpMiddleware",
    "accounts.middleware.InputErrorMiddleware",
    "accounts.middleware.ApiCorsMiddleware",
    # Django's session, CSRF, user and message middlewares, not run on the public API's paths.
    "accounts.middleware.PanelSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "accounts.middleware.PanelCsrfMiddleware",
    "accounts.middleware.PanelAuthenticationMiddleware",
    "accounts.middleware.PanelMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Checked where a person chooses a password (the reset form, `changepassword`).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
APPEND_SLASH = True

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: SQLite file unless DATABASE_URL -------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'phonefleet.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # WAL + IMMEDIATE transactions: concurrent writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file (one per test run) so servers started by tests can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"phonefleet-test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Behind a pooler in transaction mode (PgBouncer's pool_mode = transaction) every
    # transaction may run on another server connection, so nothing may outlive one on the
    # server: no prepared statements and no cursors held between transactions
    # (docs/deploy.md, "PgBouncer").
    DATABASE_TRANSACTION_POOLING = env.bool("DATABASE_TRANSACTION_POOLING", default=False)
    _prepared = env.bool("DATABASE_PREPARED_STATEMENTS", default=not DATABASE_TRANSACTION_POOLING)
    DATABASES["default"]["OPTIONS"] = {
        # Parameters travel apart from the SQL (psycopg escapes nothing into the text), and a
        # statement run 5 times on a connection is prepared once: the send API's statements
        # cost the server and the client less (docs/benchmarks.md).
        "server_side_binding": True,
        "prepare_threshold": 5 if _prepared else None,
    }
    # `.iterator()` would DECLARE a cursor WITH HOLD and FETCH from it in later transactions.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_TRANSACTION_POOLING
    if env.bool("DATABASE_POOL", default=False):
        # psycopg pool: for ASGI servers, where persistent connections do not apply.
        DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 2, "max_size": env.int("DATABASE_POOL_SIZE", default=20)}
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # Django's backend, whose check before each request asks the server only when the
        # connection's socket says something happened (config/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "config.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and cache: in-memory unless REDIS_URL --------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Groups live in each server process; Redis pub/sub carries each message to every
    # process once (devices/lib/channel_layer.py says why not channels_redis). Only hints
    # travel this way: a message lost while a process reconnects costs a tick's delay.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "devices.lib.channel_layer.FanoutChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    # django-redis keeps one client per process and thread (Django's own Redis backend builds
    # a client object on every call) and runs the API-key check's one-round-trip script.
    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Health and metrics (docs/deploy.md, "Health and metrics") ------------------
# A folder this host's processes share: the counts of every gunicorn worker, Daphne and
# worker add up there, so /metrics gives the host's totals whichever process answers.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    from monitoring.lib.multiprocess import share_metrics_between_processes

    try:
        share_metrics_between_processes(PROMETHEUS_MULTIPROC_DIR)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR} is not a folder this process can write ({exc})."
        ) from None
# Set: /metrics requires `Authorization: Bearer <token>`. Unset: it answers loopback callers only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# /health/ready fails when no worker has written its heartbeat for this many seconds.
WORKER_HEARTBEAT_MAX_AGE = env.float("WORKER_HEARTBEAT_MAX_AGE", default=60.0)
if WORKER_HEARTBEAT_MAX_AGE <= 0:
    raise ImproperlyConfigured("WORKER_HEARTBEAT_MAX_AGE must be a number of seconds above 0.")

# The worker runs inside the server process when there is no Redis (one process).
# Not under pytest: tests call the step functions themselves, or start real servers.
EMBEDDED_WORKER = env.bool("EMBEDDED_WORKER", default=not REDIS_URL and "pytest" not in sys.modules)

# --- Security and client IP ---------------------------------------------------
# Number of reverse proxies in front of us that append to X-Forwarded-For.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Alternatively, the CIDRs of trusted proxies (walked from the right).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if (TRUSTED_PROXY_COUNT or TRUSTED_PROXIES) else None
# The largest request body, refused with 413 by the servers before it is read (config/asgi.py,
# config/wsgi.py); the bulk send's JSON or CSV upload may be larger, once its key is checked.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_BODY_BYTES", default=5 * 1024 * 1024)
BULK_MAX_BODY_BYTES = env.int("BULK_MAX_BODY_BYTES", default=20 * 1024 * 1024)
if BULK_MAX_BODY_BYTES < DATA_UPLOAD_MAX_MEMORY_SIZE:
    raise ImproperlyConfigured("BULK_MAX_BODY_BYTES must be at least MAX_BODY_BYTES.")
# HTML pages: scripts, styles, images and connections (fetch, the virtual phone's
# WebSocket) only from this server; no inline code, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# --- Product ------------------------------------------------------------------
DEFAULT_COUNTRY = env.str("DEFAULT_COUNTRY", default="IT")
DEFAULT_PRICE_PER_PART = env.int("DEFAULT_PRICE_PER_PART", default=1)
DEMO_CREDIT = env.int("DEMO_CREDIT", default=1000)
IPN_ALLOW_PRIVATE_NETWORKS = env.bool("IPN_ALLOW_PRIVATE_NETWORKS", default=False)
# Seconds an IPN receiver has to answer (docs/ipn.md: 10).
IPN_TIMEOUT_SECONDS = env.float("IPN_TIMEOUT_SECONDS", default=10.0)
# SMSGate Android phones: seconds between keep-alive comments on their event stream.
SMSGATE_SSE_KEEPALIVE_SECONDS = env.float("SMSGATE_SSE_KEEPALIVE_SECONDS", default=15.0)
# Phone WebSockets: seconds between the process's checks of its phones (open work, presence,
# disabled; devices/fleet.py), seconds of silence after which a phone is disconnected (close
# code 4408), and handshakes a process takes on per second (the rest: "try later", 4503).
DEVICE_TICK_SECONDS = env.float("DEVICE_TICK_SECONDS", default=15.0)
DEVICE_IDLE_SECONDS = env.float("DEVICE_IDLE_SECONDS", default=90.0)
DEVICE_ACCEPT_RATE = env.float("DEVICE_ACCEPT_RATE", default=300.0)
# A process holding phones runs its own full garbage collections (devices/lib/gc_policy.py).
DEVICE_GC_FREEZE = env.bool("DEVICE_GC_FREEZE", default=True)
if DEVICE_ACCEPT_RATE <= 0:
    raise ImproperlyConfigured("DEVICE_ACCEPT_RATE must be a positive number of handshakes per second.")
API_KEY_SECRET = env.str("API_KEY_SECRET", default=SECRET_KEY)
# Keys the verification codes' digests and the sealed text of their SMS (messaging/lib/otp.py).
# Changing it makes pending verifications fail their checks (start them again).
VERIFY_SECRET = env.str("VERIFY_SECRET", default=SECRET_KEY)

# --- Email (password resets): printed to the console unless an SMTP URL is given ----
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="phonefleet@localhost")

# --- REST framework and OpenAPI -----------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "accounts.envelope.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "accounts.parsers.JsonParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "messaging.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Phonefleet API",
    "DESCRIPTION": "Send SMS through your own fleet of phones.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets are served from our own static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several fields named `status` use different choices: each set gets a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "VerificationStatusEnum": "messaging.models.Verification.Status",
        "CheckOutcomeEnum": "messaging.models.VerificationCheck.Outcome",
        "SmsGateHealthStatusEnum": "monitoring.views.SMSGATE_STATUS_ORDER",
    },
    # SMSGate's client API is documented at /3rdparty/v1/ only (its aliases are the same operations).
    "PREPROCESSING_HOOKS": ["messaging.openapi.skip_aliases"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "messaging.openapi.add_envelope",
    ],
}

# --- Static files and i18n ------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing (before collectstatic)
STATICFILES_DIRS = [BASE_DIR / "static"]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: credentials are redacted by the filter on every handler ----------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "accounts.logging.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

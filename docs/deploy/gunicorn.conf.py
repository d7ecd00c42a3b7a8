"""gunicorn settings for Phonefleet's WSGI side (`/api/` and the panel).

gunicorn -c docs/deploy/gunicorn.conf.py config.wsgi:application
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# docs/benchmarks.md: gthread workers with persistent database connections (CONN_MAX_AGE).
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", 2))
keepalive = 5
# A send never takes long; a bulk of 10,000 rows takes a few seconds.
timeout = 60
graceful_timeout = 30
max_requests = 5000
max_requests_jitter = 500
# No credentials in logs: no access log here (nginx writes one without query strings). If you enable it,
# keep %(U)s (path) and never %(r)s or %(q)s, which carry `?api_key=…`.
accesslog = None
errorlog = "-"
loglevel = "warning"

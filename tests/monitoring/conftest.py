"""The production stack's fixtures (processes, raw phones) and the local IPN receiver."""

from __future__ import annotations

from tests.ipn.conftest import private_ok, receiver  # noqa: F401
from tests.production.conftest import raw_phones, redis_only, stack  # noqa: F401

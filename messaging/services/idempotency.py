"""`Idempotency-Key` handling with Stripe's semantics.

A key is scoped to (API key, endpoint) and kept at least 24 h. The first request with a
key inserts a row (committed at once, so concurrent retries see it); its final answer
is stored on that row and replayed for every later request with the same key and the
same parameters. The row's unique constraint decides which of several concurrent
requests runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import errors
from messaging.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]


def request_fingerprint(params: dict[str, Any]) -> str:
    """A stable digest of a request's parameters (key order does not matter)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    """The key, or InvalidParameter (400) when it is empty or longer than 255 characters."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise errors.InvalidParameter(f"`Idempotency-Key` must be 1 to {MAX_KEY_LENGTH} characters.")
    return key


def begin_request(*, api_key_id: int, endpoint: str, key: str, fingerprint: str) -> IdempotencyRecord | StoredAnswer:
    """Reserves the key: returns the new record (run the request, then `finish_request`),
    or the stored answer to replay. Raises IdempotencyMismatch (422) for other
    parameters and IdempotencyInProgress (409) while the first request still runs."""
    check_key(key)
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    api_key_id=api_key_id, endpoint=endpoint, key=key, request_hash=fingerprint
                )
        except IntegrityError:
            pass  # the key was used before (or is being used right now)
        found = IdempotencyRecord.objects.filter(api_key_id=api_key_id, endpoint=endpoint, key=key).first()
        if found is None:
            continue  # the first request failed before executing and let the key go
        if found.created_at < timezone.now() - RETENTION:
            # Past retention the key is free again; the conditional delete lets one caller take it.
            IdempotencyRecord.objects.filter(pk=found.pk, created_at=found.created_at).delete()
            continue
        if found.request_hash != fingerprint:
            raise errors.IdempotencyMismatch()
        if found.response_status is None:
            raise errors.IdempotencyInProgress()
        return StoredAnswer(found.response_status, found.response_body or {})
    raise errors.IdempotencyInProgress()


def finish_request(*, record: IdempotencyRecord, status: int, body: dict[str, Any]) -> None:
    """Stores the answer to replay for this key."""
    record.response_status, record.response_body = status, body
    record.save(update_fields=["response_status", "response_body"])


def release_request(*, record: IdempotencyRecord) -> None:
    """Frees the key of a request that failed validation before executing: nothing is stored."""
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


def purge_idempotency_records(*, batch: int = 1000) -> bool:
    """Worker step: deletes up to `batch` records past retention; True if more may remain."""
    cutoff = timezone.now() - RETENTION
    ids = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch])
    if ids:
        IdempotencyRecord.objects.filter(pk__in=ids).delete()
    return len(ids) == batch

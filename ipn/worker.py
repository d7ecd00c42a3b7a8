"""The background worker loop (filled in by the IPN work)."""


def start_embedded_worker() -> None:
    return None

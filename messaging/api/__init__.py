"""The public messaging API: send (one and bulk), read, cancel, lists, devices, inbox,
list subscribers and broadcasts, and verifications (one-time codes).

Every view derives from `ApiKeyView` (key → code 3, IP → code 4, per-key rate limit,
the envelope). Views validate input, call a service or selector, and render output.

The operations live by sub-domain: `send` (send, bulk, GenioSms's `tools/api.pl`),
`messages` (read, cancel, list; lists, devices, inbox), `subscribers` (subscribers,
broadcast) and `verify` (start, check, read); `common` holds what they share.
"""

from messaging.api.messages import (
    CancelMessageApi,
    DeviceListApi,
    InboxApi,
    ListListApi,
    MessageDetailApi,
    MessageListApi,
)
from messaging.api.send import GenioSmsSendApi, SendBulkApi, SendMessageApi
from messaging.api.subscribers import (
    BroadcastApi,
    SubscriberDetailApi,
    SubscriberExportApi,
    SubscriberListApi,
)
from messaging.api.verify import VerifyCheckApi, VerifyDetailApi, VerifyStartApi

__all__ = [
    "BroadcastApi",
    "CancelMessageApi",
    "DeviceListApi",
    "GenioSmsSendApi",
    "InboxApi",
    "ListListApi",
    "MessageDetailApi",
    "MessageListApi",
    "SendBulkApi",
    "SendMessageApi",
    "SubscriberDetailApi",
    "SubscriberExportApi",
    "SubscriberListApi",
    "VerifyCheckApi",
    "VerifyDetailApi",
    "VerifyStartApi",
]

"""SMSGate's third-party (client) API at `/3rdparty/v1/` and `/api/3rdparty/v1/`, so SMSGate's
official client libraries work against Phonefleet unmodified (docs/smsgate-clients.md).

The app's side of SMSGate (`/api/mobile/v1`) is the devices app's (`devices/smsgate/`).
"""

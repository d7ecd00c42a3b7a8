"""Phonefleet reference phone agent: enrols with a list's PIN, keeps the device WebSocket
open, claims offers, sends through a pluggable backend and reports (docs/device-protocol.md).

Django-free on purpose: it runs on a phone (Termux) with only `websockets` installed.
"""

"""What the API's handlers find on the application (``app[KEY]``)."""

from __future__ import annotations

from aiohttp import web

from streams.ledger.store import Ledger
from streams.settings import Settings

LEDGER = web.AppKey("ledger", Ledger)
#: the worker's settings: the mutating endpoints open Kafka and platform clients with them
SETTINGS = web.AppKey("settings", Settings)

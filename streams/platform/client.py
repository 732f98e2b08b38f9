"""The client side of the tax-platform contract (``specs/tax-platform-api.md``).

Each method is exactly one signed HTTP request; retrying belongs to the processor,
which reads ``retryable`` and ``retry_after`` off the errors raised here. 201/202
and a 409 whose echo matches succeed; 422, a REJECTED receipt and a 409 whose echo
differs are ``PlatformRejectedError``; 401/429/503/5xx map as in ``streams.errors``;
a failure before the request went out is ``PlatformConnectError``, after it
``PlatformInDoubtError``; any other answer is ``PlatformProtocolError``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Self
from urllib.parse import quote, urlencode

import orjson
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    BuilderError,
    ClientClosedError,
    DetailedPyreqwestError,
    PoolTimeoutError,
    PyreqwestError,
)
from yarl import URL

from streams.errors import (
    ConfigurationError,
    PlatformConnectError,
    PlatformError,
    PlatformInDoubtError,
    PlatformProtocolError,
    PlatformRejectedError,
)
from streams.platform.results import (
    Accepted,
    Answer,
    ListedInvoice,
    Payload,
    Processing,
    StoredInvoice,
    invoice_key_of,
    key_figures,
)
from streams.platform.signing import signed_headers
from streams.settings import Settings

API = "/api/v1"

#: failures that leave no doubt: the request never left this process
_NEVER_SENT = (BuilderError, ClientClosedError, PoolTimeoutError)
#: hyper's word for a failure while connecting, among an error's causes
_CONNECTING = "client error (Connect)"


class PlatformClient:
    """One pooled HTTP client to the platform; ``start()`` before use.

    The transport is pyreqwest (Rust's reqwest and hyper): it spends half the CPU
    per request of aiohttp's client (0.17 against 0.34 ms in back-to-back loops
    against the sandbox), and one POST per invoice is the largest cost a worker has.
    """

    def __init__(
        self,
        base_url: str,
        app_id: str,
        app_secret: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError("platform URL must look like http(s)://host[:port][/prefix]")
        if url.raw_query_string or url.raw_fragment:
            raise ConfigurationError("platform URL must not carry a query or fragment")
        if timeout <= 0 or max_connections < 1:
            raise ConfigurationError("platform timeout and max_connections must be positive")
        # origin() drops any user:password, so neither reaches the repr or a message.
        self._origin = str(url.origin())
        self._prefix = url.raw_path.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._timeout = timedelta(seconds=timeout)
        self._max_connections = max_connections
        self._session: Client | None = None
        #: called with (route template, status or "timeout"/"error", seconds) per request
        self.observe: Callable[[str, str, float], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformClient:
        return cls(
            settings.platform_url,
            settings.platform_app_id,
            settings.platform_app_secret.get_secret_value(),
            timeout=settings.platform_timeout,
            max_connections=settings.platform_connections,
        )

    def __repr__(self) -> str:
        return f"PlatformClient(base_url={self._origin + self._prefix!r}, app_id={self._app_id!r})"

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = (
            ClientBuilder()
            .max_connections(self._max_connections)
            # The timeout covers a request from the wait for a connection to the last
            # byte of its answer, as one deadline.
            .timeout(self._timeout)
            .pool_timeout(self._timeout)
            .connect_timeout(self._timeout)
            .follow_redirects(False)  # a redirected request would carry a stale signature
            .no_proxy()  # as aiohttp did: HTTP(S)_PROXY in the environment is not ours to take
            .build()
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def submit(
        self,
        invoice: Mapping[str, Any],
        body: bytes | None = None,
        *,
        body_sha256: str | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Accepted | Processing:
        """POST one invoice; ``body`` is its raw JSON, sent unchanged when given, and
        ``body_sha256`` that body's hex SHA-256 when the caller has it (the processor's
        content hash is taken over the same bytes), so it is not hashed twice.
        ``on_sent`` is called once the platform has answered, before the answer is
        taken (fault injection: the platform holds an invoice we have not heard of)."""
        key = invoice_key_of(invoice)
        if body is None:
            body, body_sha256 = orjson.dumps(dict(invoice)), None
        answer = await self._call("POST", "/invoices", body=body, body_sha256=body_sha256,
                                  invoice_key=key, on_sent=on_sent)  # fmt: skip
        if answer.status == 201:
            return answer.json().accepted()
        if answer.status == 202:
            return Processing(answer.json().text("receipt_id"))
        if answer.status == 409:
            return _settle_duplicate(invoice, answer.json())
        if answer.status == 422:
            raise answer.json().rejection(422)
        raise answer.unexpected()

    async def receipt(self, receipt_id: str) -> Accepted | Processing:
        answer = await self._call("GET", f"/receipts/{quote(receipt_id, safe='')}")
        if answer.status == 404:
            answer.not_found()
            raise PlatformProtocolError(
                f"the platform does not know receipt {receipt_id!r}",
                status=404,
                platform_code="NOT_FOUND",
            )
        if answer.status != 200:
            raise answer.unexpected()
        payload = answer.json()
        state = payload.text("status")
        if state == "PROCESSING":
            return Processing(receipt_id)
        if state == "ACCEPTED":
            return payload.accepted()
        if state == "REJECTED":
            raise payload.rejection(200)  # the exchange succeeded; the verdict is the body
        raise payload.fail(f"unknown receipt status {state!r}")

    async def get_invoice(self, seller_tax_id: str, invoice_number: str) -> StoredInvoice | None:
        key = f"{seller_tax_id}:{invoice_number}"
        path = f"/invoices/{quote(seller_tax_id, safe='')}/{quote(invoice_number, safe='')}"
        answer = await self._call("GET", path, invoice_key=key)
        if answer.status == 404:
            answer.not_found()
            return None
        if answer.status != 200:
            raise answer.unexpected()
        payload = answer.json()
        accepted = payload.accepted()
        return StoredInvoice(accepted.platform_ref, accepted.accepted_at, payload.obj("invoice"))

    async def list_invoices(
        self, seller_tax_id: str, date_from: date, date_to: date, *, page_size: int = 1000
    ) -> AsyncIterator[ListedInvoice]:
        """Every invoice the platform holds for the seller, issued in the inclusive range."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        query = [("seller_tax_id", seller_tax_id), ("from", date_from.isoformat())]
        query += [("to", date_to.isoformat()), ("page_size", str(page_size))]
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = [*query, ("page_token", token)] if token is not None else query
            answer = await self._call("GET", "/invoices", query=page)
            if answer.status != 200:
                raise answer.unexpected()
            payload = answer.json()
            items = payload.data.get("items")
            if not isinstance(items, list):
                raise payload.fail("'items' must be a list")
            for number, item in enumerate(items):
                yield payload.item(item, f"items[{number}]").listed()
            token = payload.optional_text("next_page_token")
            if token is None:
                return
            if token in seen:
                # A server that hands back an old token would keep us paging for ever.
                raise payload.fail(f"next_page_token {token!r} repeats an earlier page")
            seen.add(token)

    async def health(self) -> bool:
        """Whether the platform takes uploads now; unreachable or garbled counts as no."""
        try:
            answer = await self._call("GET", "/health", signed=False)
            healthy = answer.status == 200 and answer.json().data.get("status") == "ok"
        except PlatformError:
            return False
        return healthy

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        body_sha256: str | None = None,
        signed: bool = True,
        invoice_key: str | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request and raise for the answers every endpoint shares."""
        if self._session is None:
            raise RuntimeError("PlatformClient.start() must be awaited before use")
        # Built by hand and already quoted: the signature covers the path exactly as
        # it goes on the wire, and an already quoted URL is sent as it is.
        path_qs = f"{self._prefix}{API}{path}"
        if query:
            path_qs += "?" + urlencode(query, quote_via=quote)
        headers = {"Accept": "application/json"}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        if signed:
            headers.update(
                signed_headers(self._app_id, self._app_secret, method, path_qs, body, body_sha256)
            )
        request = f"{method} {path_qs}"
        started = time.perf_counter()
        status = "error"
        try:
            sending = self._session.request(method, self._origin + path_qs).headers(headers)
            if method == "POST":
                sending = sending.body_bytes(body)
            response = await sending.build().send()
            # The platform has answered, and we have not taken the answer yet.
            if on_sent is not None:
                on_sent()
            raw = (await response.bytes()).to_bytes()
            status = str(response.status)
            answer = Answer(request, response.status, response.headers, raw, invoice_key)
        except PyreqwestError as exc:
            status = "timeout" if isinstance(exc, TimeoutError) else "error"
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if _never_sent(exc):
                raise PlatformConnectError(
                    f"{request}: never reached the platform ({reason})", invoice_key=invoice_key
                ) from exc
            raise PlatformInDoubtError(
                f"{request}: no complete answer ({reason}); it may have been stored",
                invoice_key=invoice_key,
            ) from exc
        finally:
            if self.observe is not None:
                self.observe(_route_of(path), status, time.perf_counter() - started)
        answer.raise_shared()
        return answer


def _settle_duplicate(invoice: Mapping[str, Any], payload: Payload) -> Accepted:
    """A 409 confirms our invoice only if the stored one has the same key figures."""
    accepted = payload.accepted()
    echoed = {
        "total_with_tax": payload.money("total_with_tax"),
        "issue_date": payload.day("issue_date"),
        "buyer.tax_id": payload.optional_text("buyer_tax_id") or None,
    }
    submitted = key_figures(invoice)
    differ = [name for name in echoed if echoed[name] != submitted[name]]
    if not differ:
        return accepted
    details = ", ".join(f"{n} {echoed[n]} (submitted {submitted[n]})" for n in differ)
    raise PlatformRejectedError(
        f"the platform already stores a different invoice under this number "
        f"({accepted.platform_ref}): {details}",
        platform_code="DUPLICATE_CONFLICT",
        field=differ[0],
        status=409,
        invoice_key=invoice_key_of(invoice),
    )


def _never_sent(exc: PyreqwestError) -> bool:
    """Whether a failure happened before the request could reach the platform.

    pyreqwest's classes do not say: a connection closed after the request was
    written is a ConnectError, and a deadline that passed while the platform worked
    on a request it had received is a ConnectTimeoutError. hyper's causes do, so
    anything they do not place in the connect phase counts as in doubt.
    """
    if isinstance(exc, _NEVER_SENT):
        return True
    if not isinstance(exc, DetailedPyreqwestError):
        return False
    causes = exc.details.get("causes") or ()
    return any(cause.get("message") == _CONNECTING for cause in causes)


def _route_of(path: str) -> str:
    """The route template of a request path: metric labels must not carry ids."""
    if path.startswith("/receipts/"):
        return "/receipts/{id}"
    if path.startswith("/invoices/"):
        return "/invoices/{seller}/{number}"
    return path

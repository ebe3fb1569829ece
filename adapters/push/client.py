"""The registry client: OAuth2 client-credentials tokens (cached, refreshed), transaction Bundles, and the sorting of
every answer into "done", "try again later" and "will never succeed" (docs/design.md §3: it talks to the registry only
over HTTP and takes an ``httpx.Client``, so tests may hand it any transport)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from adapters.config import RegistrySection
from adapters.errors import RegistryRejectedError, RegistryUnavailableError

FHIR_JSON = "application/fhir+json"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def outcome_text(body: bytes) -> tuple[str, set[str]]:
    """A readable summary of an OperationOutcome (or the raw text) and its issue codes."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip() or "(empty body)", set()
    if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome":
        issues = [i for i in doc.get("issue") or [] if isinstance(i, dict)]
        codes = {str(i.get("code")) for i in issues}
        texts = []
        for i in issues:
            where = ", ".join(i.get("expression") or [])
            text = i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code")
            texts.append(f"{text} [{where}]" if where else str(text))
        return "; ".join(texts) or "OperationOutcome without issues", codes
    if isinstance(doc, dict) and "error" in doc:  # OAuth2 error response
        return f"{doc.get('error')}: {doc.get('error_description', '')}".strip(), set()
    return body[:500].decode("utf-8", "replace"), set()


class RegistryClient:
    def __init__(
        self,
        section: RegistrySection,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self.http = http or httpx.Client(timeout=section.timeout_seconds, verify=section.verify_tls)
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------------------------------------ tokens
    def token(self, *, force: bool = False) -> str:
        with self._lock:
            if self._token is not None and not force and self.clock() < self._expires:
                return self._token
            try:
                r = self.http.post(
                    f"{self.section.url}/auth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.section.client_id, self.section.client_secret),
                )
            except httpx.HTTPError as exc:
                raise RegistryUnavailableError(f"cannot reach the registry at {self.section.url}: {exc}") from None
            if r.status_code in RETRYABLE:
                raise RegistryUnavailableError(f"token endpoint answered {r.status_code}", retry_after=_retry_after(r))
            if r.status_code != 200:
                text, _ = outcome_text(r.content)
                # Wrong credentials are a configuration problem: keep the messages and keep trying (slowly).
                raise RegistryUnavailableError(
                    f"the registry refused the client credentials ({r.status_code}: {text})", retry_after=60
                )
            doc = r.json()
            self._token = str(doc["access_token"])
            self._expires = self.clock() + max(30.0, float(doc.get("expires_in", 300)) - 60)
            return self._token

    # ------------------------------------------------------------------------------------------------ calls
    def _call(self, method: str, path: str, *, content: bytes | None = None) -> httpx.Response:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token(force=attempt == 2)}", "Accept": FHIR_JSON}
            if content is not None:
                headers["Content-Type"] = FHIR_JSON
            try:
                r = self.http.request(method, f"{self.section.url}/fhir{path}", content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise RegistryUnavailableError(f"cannot reach the registry at {self.section.url}: {exc}") from None
            if r.status_code != 401:
                return r
        raise RegistryUnavailableError("the registry refused a fresh token (401)", retry_after=60)

    def transaction(self, bundle: bytes) -> dict[str, Any]:
        """POST a transaction Bundle; the transaction-response on success."""
        r = self._call("POST", "", content=bundle)
        if 200 <= r.status_code < 300:
            try:
                doc = orjson.loads(r.content)
            except orjson.JSONDecodeError:
                raise RegistryUnavailableError(
                    f"the registry answered {r.status_code} with a body that is not JSON"
                ) from None
            if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
                raise RegistryUnavailableError(f"the registry answered {r.status_code} without a Bundle")
            return doc
        text, codes = outcome_text(r.content)
        if r.status_code in RETRYABLE:
            raise RegistryUnavailableError(f"HTTP {r.status_code}: {text}", retry_after=_retry_after(r))
        if r.status_code == 409:
            raise RegistryUnavailableError(f"HTTP 409: {text}", conflict=True)
        if r.status_code in (404, 412, 422) and "not-found" in codes:
            # The patient or study this message refers to is not in the registry yet (images before the ADT, a
            # report before its study): worth waiting for.
            raise RegistryUnavailableError(f"HTTP {r.status_code}: {text}", waiting=True)
        raise RegistryRejectedError(r.status_code, text)

    def read(self, path: str) -> httpx.Response:
        return self._call("GET", path)


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

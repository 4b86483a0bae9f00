"""Delivery channels behind one small interface: e-mail over SMTP (aiosmtplib), SMS and push
through HTTP providers (httpx). An adapter never raises for a provider problem: it returns a
:class:`Delivery` saying whether the hand-over worked and, if not, whether trying again can help.

Every call carries the message's dedupe key as its idempotency key (``Idempotency-Key`` header,
``Message-ID`` of the e-mail), so a provider that deduplicates can drop the copy sent when a
sender died between the hand-over and recording it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx

from services.notify.domain import Channel, Message


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    provider_id: str | None = None
    error: str = ""
    permanent: bool = False


class Adapter(Protocol):
    async def open(self) -> None: ...

    async def send(self, message: Message, push_tokens: list[str]) -> Delivery: ...

    async def close(self) -> None: ...


def _http_outcome(response: httpx.Response) -> Delivery:
    if response.is_success:
        try:
            body: Any = response.json()
        except ValueError:
            body = {}
        provider_id = body.get("id") if isinstance(body, dict) else None
        return Delivery(True, provider_id=str(provider_id) if provider_id else None)
    # 4xx means the request itself is refused (unknown token, invalid number): retrying the
    # same request cannot help. 408/429 and 5xx are the provider's temporary trouble.
    transient = response.status_code >= 500 or response.status_code in (408, 429)
    return Delivery(False, error=f"http_{response.status_code}", permanent=not transient)


class HttpProvider:
    """SMS or push through an HTTP provider: POST JSON, 2xx = accepted."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.client: httpx.AsyncClient | None = None
        # Built once: a fresh TLS context per sender pass (loading the CA bundle) was 8-10 %
        # of notify's samples in the city bench's profile.
        self.tls = httpx.create_ssl_context()

    async def open(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout_s, verify=self.tls)

    async def _post(self, message: Message, payload: dict[str, Any]) -> Delivery:
        assert self.client is not None, "adapter used outside `async with channels`"
        try:
            response = await self.client.post(
                self.url, json=payload, headers={"Idempotency-Key": message.dedupe_key})
        except httpx.HTTPError as exc:
            return Delivery(False, error=f"{type(exc).__name__}")
        return _http_outcome(response)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


class SmsProvider(HttpProvider):
    async def send(self, message: Message, push_tokens: list[str]) -> Delivery:
        return await self._post(message, {"message_id": message.dedupe_key,
                                          "to": message.address, "text": message.body})


class PushProvider(HttpProvider):
    async def send(self, message: Message, push_tokens: list[str]) -> Delivery:
        if not push_tokens:
            # The app was uninstalled since routing chose push: dead at once, so the SMS
            # fallback takes over.
            return Delivery(False, error="no_push_token", permanent=True)
        return await self._post(message, {"message_id": message.dedupe_key,
                                          "account_id": message.address,
                                          "tokens": push_tokens, "title": message.subject,
                                          "body": message.body, "kind": message.kind.value})


class SmtpMailer:
    def __init__(self, *, host: str, port: int, sender: str, timeout_s: float,
                 start_tls: bool = False, username: str = "", password: str = "") -> None:
        self.host, self.port, self.sender = host, port, sender
        self.timeout_s, self.start_tls = timeout_s, start_tls
        self.username, self.password = username or None, password or None

    async def send(self, message: Message, push_tokens: list[str]) -> Delivery:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.address
        email["Subject"] = message.subject
        digest = hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:32]
        email["Message-ID"] = f"<{digest}@schoolcard.notify>"
        email["X-SchoolCard-Kind"] = message.kind.value
        email.set_content(message.body)
        try:
            await aiosmtplib.send(email, hostname=self.host, port=self.port,
                                  timeout=self.timeout_s, start_tls=self.start_tls,
                                  username=self.username, password=self.password)
        except aiosmtplib.SMTPRecipientsRefused:
            return Delivery(False, error="smtp_recipient_refused", permanent=True)
        except aiosmtplib.SMTPResponseException as exc:
            return Delivery(False, error=f"smtp_{exc.code}", permanent=500 <= exc.code < 600)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Delivery(False, error=type(exc).__name__)
        return Delivery(True, provider_id=digest)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Channels:
    """The adapters by channel, opened for one sender pass (``async with channels``) so no
    connection pool outlives the pass that used it."""

    def __init__(self, adapters: dict[Channel, Adapter]) -> None:
        self.adapters = adapters

    async def __aenter__(self) -> Channels:
        for adapter in self.adapters.values():
            await adapter.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for adapter in self.adapters.values():
            await adapter.close()

    async def send(self, message: Message, push_tokens: list[str]) -> Delivery:
        return await self.adapters[message.channel].send(message, push_tokens)


def from_settings(settings: Any) -> Channels:
    timeout = settings.provider_timeout_s
    return Channels({
        Channel.EMAIL: SmtpMailer(host=settings.smtp_host, port=settings.smtp_port,
                                  sender=settings.mail_from, timeout_s=timeout,
                                  start_tls=settings.smtp_tls, username=settings.smtp_username,
                                  password=settings.smtp_password),
        Channel.SMS: SmsProvider(settings.sms_url, timeout),
        Channel.PUSH: PushProvider(settings.push_url, timeout),
    })

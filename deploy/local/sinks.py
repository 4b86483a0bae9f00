"""Local delivery sinks for the embedded stack: what notify's providers would be in production.

- SMTP (aiosmtpd): every mail received is stored under ``DIR/mail/`` as ``<n>.eml`` (the raw
  message) and ``<n>.json`` (envelope sender, recipients, subject, message id, body text).
- HTTP (uvicorn + a bare ASGI app): every POST (``/sms``, ``/push``, any path) is appended to
  ``DIR/http.jsonl`` as one JSON line ``{"n", "path", "at", "status", "idempotency_key",
  "body"}``. ``--fail-first N`` answers the first N requests with 503 (recorded with that
  status) to exercise the senders' retries.

``python -m deploy.local.sinks --dir DIR --smtp-port P --http-port Q [--fail-first N]``, or from
code: ``sinks = await start_sinks(dir, smtp_port=0, http_port=0)`` ... ``await sinks.stop()``
(port 0 picks a free port; the chosen ports are on the returned object).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailStore:
    """aiosmtpd handler: keeps every accepted message as .eml + .json."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "mail"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.directory.glob("*.eml")))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        self.count += 1
        name = f"{self.count:06d}"
        parsed = message_from_bytes(raw, policy=policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
        (self.directory / f"{name}.eml").write_bytes(raw)
        (self.directory / f"{name}.json").write_text(json.dumps({
            "n": self.count,
            "at": datetime.now(UTC).isoformat(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(parsed.get("Subject", "")),
            "message_id": str(parsed.get("Message-ID", "")),
            "kind": str(parsed.get("X-SchoolCard-Kind", "")),
            "text": body.get_content() if body is not None else "",
        }, ensure_ascii=False, indent=1))
        return "250 Message accepted for delivery"


@dataclass
class HttpSink:
    """A bare ASGI app recording each request; fails the first ``fail_first`` with 503."""

    path: Path
    fail_first: int = 0
    fail_per_key: int = 0
    count: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _per_key: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        async with self._lock:
            self.count += 1
            n = self.count
            key = headers.get("idempotency-key") or ""
            self._per_key[key] = self._per_key.get(key, 0) + 1
            failing = n <= self.fail_first or self._per_key[key] <= self.fail_per_key
            status = 503 if failing else 200
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            line = {"n": n, "path": scope["path"], "method": scope["method"],
                    "at": datetime.now(UTC).isoformat(), "status": status,
                    "idempotency_key": headers.get("idempotency-key"), "body": body}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        answer = ({"id": f"sink-{n}"} if status == 200 else {"error": "unavailable"})
        payload = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the host process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Sinks:
    directory: Path
    smtp_port: int
    http_port: int
    mail: MailStore
    http: HttpSink
    _smtp_server: asyncio.AbstractServer
    _http_server: _EmbeddedServer
    _http_task: asyncio.Task[None]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        """The notify settings that point at these sinks."""
        return {"NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(self.smtp_port),
                "NOTIFY_SMS_URL": f"{self.http_url}/sms",
                "NOTIFY_PUSH_URL": f"{self.http_url}/push"}

    async def stop(self) -> None:
        self._http_server.should_exit = True
        await self._http_task
        self._smtp_server.close()
        await self._smtp_server.wait_closed()


async def start_sinks(directory: Path | str, *, smtp_port: int = 0, http_port: int = 0,
                      fail_first: int = 0, fail_per_key: int = 0,
                      host: str = "127.0.0.1") -> Sinks:
    """Start both sinks in the running event loop."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    smtp_port = smtp_port or _free_port()
    http_port = http_port or _free_port()
    mail = MailStore(directory)
    loop = asyncio.get_running_loop()
    smtp_server = await loop.create_server(
        lambda: SMTP(mail, hostname="schoolcard-sink", loop=loop), host, smtp_port)
    http = HttpSink(directory / "http.jsonl", fail_first, fail_per_key)
    config = uvicorn.Config(http, host=host, port=http_port, log_level="warning",
                            lifespan="off", access_log=False)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="http-sink")
    while not server.started:
        if task.done():
            await task  # raises the start-up error
            raise RuntimeError("HTTP sink stopped during start")
        await asyncio.sleep(0.02)
    return Sinks(directory, smtp_port, http_port, mail, http, smtp_server, server, task)


def read_http(directory: Path | str) -> list[dict[str, Any]]:
    """The recorded SMS/push requests (for tests and reports)."""
    path = Path(directory) / "http.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_mail(directory: Path | str) -> list[dict[str, Any]]:
    """The recorded e-mails (their .json summaries)."""
    folder = Path(directory) / "mail"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


async def _serve(args: argparse.Namespace) -> None:
    sinks = await start_sinks(args.dir, smtp_port=args.smtp_port, http_port=args.http_port,
                              fail_first=args.fail_first, fail_per_key=args.fail_per_key,
                              host=args.host)
    print(f"smtp sink on {args.host}:{sinks.smtp_port}, http sink on {sinks.http_url}, "
          f"storing under {Path(args.dir).resolve()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sinks.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.sinks",
                                     description="Local SMTP and HTTP (SMS/push) sinks.")
    parser.add_argument("--dir", required=True, help="where mails and requests are stored")
    parser.add_argument("--smtp-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer the first N HTTP requests with 503")
    parser.add_argument("--fail-per-key", type=int, default=0,
                        help="answer the first N requests of every idempotency key with 503")
    parser.add_argument("--host", default="127.0.0.1")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Launch the ``nx-27017`` MongoDB-wire server with two fixes its transactions need to be
usable as a stand-in for a MongoDB replica set in development and tests.

nx-27017 shares one SQLite connection per database between all client sessions, so:
1. a second session's "transaction" becomes a SAVEPOINT nested inside the first one's — an
   abort of the first silently undoes the second's committed work ("abort due to ROLLBACK");
2. a client that dies mid-transaction (kill -9) leaves its transaction open, and its partial
   writes become visible to everybody and are committed later by someone else.

Here every command runs alone on its database, an open transaction admits only its own
session's commands until it ends (the others wait, as SQLite itself would), a transaction is
aborted when the client connection that carried it closes, and one older than 60 s is aborted
(MongoDB's transactionLifetimeLimitSeconds).
Production runs real MongoDB; none of this is needed there.

Usage: ``python -m deploy.local.mongo_server <nx-27017 arguments>`` (runs the threaded
server: one thread per connection, so waiting for the lock never starves a worker pool).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
import threading
import time
from typing import Any

from neosqlite.client_session import ClientSession
from neosqlite.collection import Collection
from nx_27017 import nx_27017 as cli
from nx_27017.handler import NeoSQLiteHandler

LOCK_WAIT_S = 30.0
TTL_PURGE_EVERY_S = 1.0
TXN_LIFETIME_S = 60.0

_cond = threading.Condition()
_owner: dict[str, Any] = {}  # database -> session id (lsid) whose transaction is open
_session: dict[str, ClientSession] = {}  # database -> that transaction's session object
_since: dict[str, float] = {}
_owner_conn: dict[str, Any] = {}
_command_locks: dict[str, threading.Lock] = {}
_waiting: dict[str, set[int]] = {}  # database -> arrival tickets of commands waiting
_arrivals = itertools.count()
_current = threading.local()

_orig_start = ClientSession.start_transaction
_orig_commit = ClientSession.commit_transaction
_orig_abort = ClientSession.abort_transaction


def _command_lock(db: str) -> threading.Lock:
    with _cond:
        return _command_locks.setdefault(db, threading.Lock())


def _release_db(db: str) -> None:
    with _cond:
        for table in (_owner, _session, _since, _owner_conn):
            table.pop(db, None)
        _cond.notify_all()


def start_transaction(self: ClientSession, write_concern: Any = None) -> Any:
    db = getattr(_current, "db", None)
    ctx = _orig_start(self, write_concern)
    if db is not None:
        self._sc_db = db  # type: ignore[attr-defined]
        with _cond:
            _session[db] = self
    return ctx


def commit_transaction(self: ClientSession) -> None:
    try:
        _orig_commit(self)
    finally:
        db = getattr(self, "_sc_db", None)
        if db is not None and not self._in_transaction:
            _release_db(db)


def abort_transaction(self: ClientSession) -> None:
    try:
        _orig_abort(self)
    finally:
        db = getattr(self, "_sc_db", None)
        if db is not None:
            _release_db(db)


def _abort(db: str) -> None:
    """Abort the open transaction on ``db`` (its client is gone or it ran too long)."""
    lock = _command_lock(db)
    with lock:
        with _cond:
            session = _session.get(db)
        try:
            if session is not None and session._in_transaction:
                session.abort_transaction()
        finally:
            _release_db(db)


class _Profile:
    """Commands per database, name and collection with their time in the server, written to
    a file every 5 s (``MONGO_SERVER_PROFILE=<path>``): where a service's database time goes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts: dict[tuple[str, str, str], list[float]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._dump, daemon=True, name="profile").start()

    def note(self, db: str, msg: dict[str, Any], seconds: float) -> None:
        body = next((doc for kind, doc in msg.get("sections", ()) if kind == "body"), {})
        name = next(iter(body), "?") if isinstance(body, dict) else "?"
        target = body.get(name) if isinstance(body, dict) else None
        shape = body.get("filter") or body.get("query") or {}
        if name == "update" and body.get("updates"):
            shape = body["updates"][0].get("q", {})
        fields = ",".join(sorted(shape)) if isinstance(shape, dict) else ""
        key = (db, name, f"{target if isinstance(target, str) else ''}{{{fields}}}")
        with self.lock:
            entry = self.counts.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    def _dump(self) -> None:
        while True:
            time.sleep(5)
            with self.lock:
                rows = sorted(self.counts.items(), key=lambda kv: -kv[1][1])
            with open(self.path, "w") as out:
                for (db, name, coll), (n, t) in rows:
                    out.write(f"{t:9.3f}s {int(n):8d} {db:12s} {name:16s} {coll}\n")


_PROFILE = _Profile(os.environ["MONGO_SERVER_PROFILE"]) if os.environ.get(
    "MONGO_SERVER_PROFILE") else None


def _command_context(msg: dict[str, Any]) -> tuple[str | None, Any, bool]:
    for kind, doc in msg.get("sections", ()):
        if kind == "body" and isinstance(doc, dict):
            lsid = doc.get("lsid")
            lsid_id = lsid.get("id") if isinstance(lsid, dict) else None
            return doc.get("$db"), lsid_id, bool(doc.get("startTransaction"))
    return None, None, False


def _serialised(method: Any) -> Any:
    """Run each command alone on its database, and let nobody but the owner of an open
    transaction in until that transaction ends."""

    @functools.wraps(method)
    def wrapper(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(msg, dict) or getattr(_current, "depth", 0) > 0:
            return method(self, msg, *args, **kwargs)
        db, lsid, starts = _command_context(msg)
        if db is None:
            return method(self, msg, *args, **kwargs)
        deadline = time.monotonic() + LOCK_WAIT_S
        ticket = next(_arrivals)
        with _cond:
            waiting = _waiting.setdefault(db, set())
            waiting.add(ticket)
            try:
                # Fairness: a new transaction may start only when every command that has been
                # waiting longer got its turn, so a busy consumer cannot starve the relay.
                while not (_owner.get(db) in (None, lsid) and not (
                        starts and _owner.get(db) is None and ticket != min(waiting))):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not _cond.wait(remaining):
                        raise RuntimeError(
                            "WriteConflict: another transaction holds the database")
                if starts and _owner.get(db) is None:
                    _owner[db] = lsid
                    _since[db] = time.monotonic()
                    _owner_conn[db] = msg.get("_conn_id")
            finally:
                waiting.discard(ticket)
                _cond.notify_all()
        _current.db, _current.depth = db, 1
        started = None
        try:
            with _command_lock(db):
                started = time.perf_counter()
                return method(self, msg, *args, **kwargs)
        finally:
            _current.depth = 0
            if _PROFILE is not None and started is not None:
                _PROFILE.note(db, msg, time.perf_counter() - started)
            with _cond:
                claimed_but_idle = _owner.get(db) == lsid and db not in _session
            if starts and claimed_but_idle:
                _release_db(db)  # the transaction never began (the command failed)

    return wrapper


_last_purge: dict[tuple[int, str], float] = {}


def _purge_ttl_now_and_then(original: Any) -> Any:
    """neosqlite deletes a collection's expired documents before *every* read of it (two
    range deletes per TTL index), which made a read of a large collection with a TTL index
    (inboxes, outboxes, journals) cost 1-5 ms instead of 0.4. MongoDB's TTL monitor runs once
    a minute; here a collection is purged at most once per ``TTL_PURGE_EVERY_S``."""

    @functools.wraps(original)
    def purge(self: Any) -> None:
        key = (id(self.database), self.name)
        now = time.monotonic()
        if now - _last_purge.get(key, float("-inf")) < TTL_PURGE_EVERY_S:
            return
        _last_purge[key] = now
        original(self)

    return purge


def _patch() -> None:
    Collection._auto_purge_ttl = _purge_ttl_now_and_then(  # type: ignore[method-assign]
        Collection._auto_purge_ttl)
    ClientSession.start_transaction = start_transaction  # type: ignore[method-assign]
    ClientSession.commit_transaction = commit_transaction  # type: ignore[method-assign]
    ClientSession.abort_transaction = abort_transaction  # type: ignore[method-assign]
    for name in dir(NeoSQLiteHandler):
        if name.startswith("handle_"):
            setattr(NeoSQLiteHandler, name, _serialised(getattr(NeoSQLiteHandler, name)))
    original_close = NeoSQLiteHandler.close_streams_for_connection

    def close_streams_for_connection(self: Any, conn_id: Any) -> None:
        with _cond:
            doomed = [db for db, conn in _owner_conn.items() if conn == conn_id]
        for db in doomed:
            _abort(db)
        original_close(self, conn_id)

    NeoSQLiteHandler.close_streams_for_connection = close_streams_for_connection  # type: ignore[method-assign]

    def watchdog() -> None:
        while True:
            time.sleep(5)
            now = time.monotonic()
            with _cond:
                doomed = [db for db, t0 in _since.items() if now - t0 > TXN_LIFETIME_S]
            for db in doomed:
                _abort(db)

    threading.Thread(target=watchdog, daemon=True, name="txn-watchdog").start()


def main() -> None:
    # Every command is logged at INFO by default: that alone halves throughput.
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _patch()
    if "--threaded" not in sys.argv:
        sys.argv.append("--threaded")
    cli.main()


if __name__ == "__main__":
    main()

"""Launch the ``nx-27017`` MongoDB-wire server with two fixes its transactions need to be
usable as a stand-in for a MongoDB replica set in development and tests.

nx-27017 shares one SQLite connection per database between all client sessions, so:
1. a second session's "transaction" becomes a SAVEPOINT nested inside the first one's — an
   abort of the first silently undoes the second's committed work ("abort due to ROLLBACK");
2. a client that dies mid-transaction (kill -9) leaves its transaction open, and its partial
   writes become visible to everybody and are committed later by someone else.

Here transactions on one database are serialised (one open transaction at a time, the others
wait, as SQLite itself would), a transaction is aborted when the client connection that
carried it closes, and one older than 60 s is aborted (MongoDB's transactionLifetimeLimit).
Production runs real MongoDB; none of this is needed there.

Usage: ``python -m deploy.local.mongo_server <nx-27017 arguments>`` (runs the threaded
server: one thread per connection, so waiting for the lock never starves a worker pool).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from typing import Any

from neosqlite.client_session import ClientSession
from nx_27017 import nx_27017 as cli
from nx_27017.handler import NeoSQLiteHandler

LOCK_WAIT_S = 30.0
TXN_LIFETIME_S = 60.0

_cond = threading.Condition()
_owners: dict[str, ClientSession] = {}  # database -> the session whose transaction is open
_current = threading.local()  # connection, database and session id of the running command

_orig_start = ClientSession.start_transaction
_orig_commit = ClientSession.commit_transaction
_orig_abort = ClientSession.abort_transaction


def _wait_for_turn(db: str, lsid: Any, *, claim: ClientSession | None = None) -> None:
    """Block while another session holds an open transaction on ``db`` (so its work is never
    mixed with anybody else's); with ``claim``, take the database for that session."""
    deadline = time.monotonic() + LOCK_WAIT_S
    with _cond:
        while True:
            owner = _owners.get(db)
            if owner is None or owner is claim or (
                    claim is None and getattr(owner, "_sc_lsid", None) == lsid):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _cond.wait(remaining):
                raise RuntimeError("WriteConflict: another transaction holds the database")
        if claim is not None:
            _owners[db] = claim


def _release(session: ClientSession) -> None:
    with _cond:
        db = getattr(session, "_sc_db", None)
        if db is not None and _owners.get(db) is session:
            del _owners[db]
            _cond.notify_all()


def start_transaction(self: ClientSession, write_concern: Any = None) -> Any:
    self._sc_db = getattr(_current, "db", "?")  # type: ignore[attr-defined]
    self._sc_lsid = getattr(_current, "lsid", None)  # type: ignore[attr-defined]
    self._sc_conn = getattr(_current, "conn", None)  # type: ignore[attr-defined]
    self._sc_t0 = time.monotonic()  # type: ignore[attr-defined]
    _wait_for_turn(self._sc_db, self._sc_lsid, claim=self)
    try:
        return _orig_start(self, write_concern)
    except BaseException:
        _release(self)
        raise


def commit_transaction(self: ClientSession) -> None:
    try:
        _orig_commit(self)
    finally:
        if not self._in_transaction:
            _release(self)


def abort_transaction(self: ClientSession) -> None:
    try:
        _orig_abort(self)
    finally:
        _release(self)


def _abort_where(predicate: Any) -> None:
    with _cond:
        doomed = [s for s in _owners.values() if predicate(s)]
    for session in doomed:
        try:
            if session._in_transaction:
                session.abort_transaction()
            else:
                _release(session)
        except Exception:  # it may have finished meanwhile
            _release(session)


def _command_context(msg: dict[str, Any]) -> tuple[str | None, Any]:
    for kind, doc in msg.get("sections", ()):
        if kind == "body" and isinstance(doc, dict):
            lsid = doc.get("lsid")
            return doc.get("$db"), (lsid or {}).get("id") if isinstance(lsid, dict) else None
    return None, None


def _serialised(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(msg, dict) and getattr(_current, "depth", 0) == 0:
            db, lsid = _command_context(msg)
            _current.conn, _current.db, _current.lsid = msg.get("_conn_id"), db, lsid
            if db is not None:
                _wait_for_turn(db, lsid)
        _current.depth = getattr(_current, "depth", 0) + 1
        try:
            return method(self, msg, *args, **kwargs)
        finally:
            _current.depth -= 1

    return wrapper


def _too_old(session: ClientSession) -> bool:
    now = time.monotonic()
    return now - getattr(session, "_sc_t0", now) > TXN_LIFETIME_S


def _patch() -> None:
    ClientSession.start_transaction = start_transaction  # type: ignore[method-assign]
    ClientSession.commit_transaction = commit_transaction  # type: ignore[method-assign]
    ClientSession.abort_transaction = abort_transaction  # type: ignore[method-assign]
    for name in dir(NeoSQLiteHandler):
        if name.startswith("handle_"):
            setattr(NeoSQLiteHandler, name, _serialised(getattr(NeoSQLiteHandler, name)))
    original_close = NeoSQLiteHandler.close_streams_for_connection

    def close_streams_for_connection(self: Any, conn_id: Any) -> None:
        _abort_where(lambda s: getattr(s, "_sc_conn", None) == conn_id)
        original_close(self, conn_id)

    NeoSQLiteHandler.close_streams_for_connection = close_streams_for_connection  # type: ignore[method-assign]

    def watchdog() -> None:
        while True:
            time.sleep(5)
            _abort_where(_too_old)

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

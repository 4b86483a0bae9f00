"""The devices a guardian pushes to, as the guardian sees them: never a token, only a short
fingerprint and a stable id, both from a hash of the token (the store keys tokens by it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .clock import require_aware
from .errors import NotifyError, NotifyRejection


def token_id_of(token_hash: str) -> str:
    """The id a guardian names a device by: 96 bits of the token's SHA-256 (hex)."""
    return f"pt_{token_hash[:24]}"


def fingerprint_of(token_hash: str) -> str:
    """Eight hex digits of the token's hash, to tell two devices apart at a glance."""
    head = token_hash[:8].upper()
    return f"{head[:4]}-{head[4:]}"


@dataclass(frozen=True, slots=True)
class PushDevice:
    token_hash: str
    platform: str
    registered_at: datetime
    last_used_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.registered_at, "registered_at")
        require_aware(self.last_used_at, "last_used_at")

    @property
    def token_id(self) -> str:
        return token_id_of(self.token_hash)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.token_hash)


def devices_in_use_order(devices: Iterable[PushDevice]) -> list[PushDevice]:
    """Most recently used first; ties by id, so the list is stable."""
    ordered = sorted(devices, key=lambda d: d.token_id)
    return sorted(ordered, key=lambda d: d.last_used_at, reverse=True)


def device_to_remove(devices: Mapping[str, PushDevice], token_id: str) -> tuple[str, bool]:
    """Of an account's devices (store key -> device), the store key of the one ``token_id``
    names, and whether another device is left (``unknown_push_token`` when none is named:
    a second removal of the same device is refused, not applied twice)."""
    for key, device in devices.items():
        if device.token_id == token_id:
            return key, len(devices) > 1
    raise NotifyError(NotifyRejection.UNKNOWN_PUSH_TOKEN,
                      "no push token of this account has that id")


def plan_removal(done_before: str | None, devices: Mapping[str, PushDevice],
                 token_id: str) -> tuple[str | None, bool]:
    """What a ``RemovePushToken`` does: the store key to delete (None: nothing, this request
    id removed this device before — a retry is answered the same) and whether a device is
    left. ``done_before`` is the device the request id removed earlier, if any; another
    device under the same request id is ``idempotency_conflict``."""
    if done_before is not None:
        if done_before != token_id:
            raise NotifyError(NotifyRejection.IDEMPOTENCY_CONFLICT,
                              "this request_id removed another device")
        return None, bool(devices)
    return device_to_remove(devices, token_id)

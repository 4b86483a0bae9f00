"""Trusted devices: the devices an account logged in from, each known by a random device
token that auth issues at its first successful login (stored only as a hash) and the client
sends back with later logins (the app's storage, or the gateway's cookie).

A login presenting the token of one of the account's trusted devices is a *known device*: it
passes the account's hourly failure ceiling (``LoginThrottle``: strangers spread over many
addresses cannot lock the owner out of their own phone), and its success raises no "new
login" alert. A device name and address prove nothing (anyone can send them), so they never
make a device known. The owner lists, renames and revokes trusted devices; a revoked token
is a stranger's again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.auth.domain.common import AuthRejected, Reason, dt_from_doc, require_aware

TRUSTED_DEVICES_KEPT = 20
"""At most this many trusted devices per account: the one seen longest ago goes first."""
DEVICE_NAME_MAX = 120


@dataclass(frozen=True)
class DeviceProof:
    """What a login brings about its device: the hash of the device token it presented
    (None: none), and the id and token hash to trust the device under if it is new."""

    presented_hash: str | None
    new_device_id: str
    new_token_hash: str


@dataclass
class TrustedDevice:
    device_id: str
    token_hash: str = field(repr=False)
    name: str
    first_seen_at: datetime
    last_seen_at: datetime

    def to_doc(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "token_hash": self.token_hash, "name": self.name,
                "first_seen_at": self.first_seen_at, "last_seen_at": self.last_seen_at}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TrustedDevice:
        return cls(str(doc["device_id"]), str(doc["token_hash"]), str(doc["name"]),
                   dt_from_doc(doc["first_seen_at"]), dt_from_doc(doc["last_seen_at"]))


@dataclass
class TrustedDevices:
    devices: list[TrustedDevice] = field(default_factory=list)

    def find(self, token_hash: str | None) -> TrustedDevice | None:
        if not token_hash:
            return None
        return next((d for d in self.devices if d.token_hash == token_hash), None)

    def is_trusted(self, proof: DeviceProof | None) -> bool:
        return proof is not None and self.find(proof.presented_hash) is not None

    def seen(self, proof: DeviceProof, *, name: str, now: datetime) -> tuple[TrustedDevice, bool]:
        """A successful login from the device of ``proof``: the trusted device it presented
        (last seen now), or a new one trusted under ``proof``'s new id and token; and whether
        it is new."""
        now = require_aware(now)
        known = self.find(proof.presented_hash)
        if known is not None:
            known.last_seen_at = now
            return known, False
        device = TrustedDevice(proof.new_device_id, proof.new_token_hash,
                               name.strip()[:DEVICE_NAME_MAX] or "—", now, now)
        self.devices.append(device)
        if len(self.devices) > TRUSTED_DEVICES_KEPT:
            self.devices.sort(key=lambda d: d.last_seen_at)
            del self.devices[: len(self.devices) - TRUSTED_DEVICES_KEPT]
        return device, True

    def rename(self, device_id: str, name: str) -> None:
        """A new name for the owner's list (1-120 characters after trimming); renaming to the
        same name again is a no-op."""
        clean = name.strip()
        if not clean or len(clean) > DEVICE_NAME_MAX:
            raise AuthRejected(Reason.DEVICE_NAME_INVALID)
        self._require(device_id).name = clean

    def revoke(self, device_id: str) -> None:
        """The device is no longer trusted: its token is a stranger's from now on."""
        self.devices.remove(self._require(device_id))

    def listed(self) -> list[TrustedDevice]:
        """Most recently seen first."""
        return sorted(self.devices, key=lambda d: d.last_seen_at, reverse=True)

    def names(self) -> dict[str, str]:
        """Each trusted device's name by its id."""
        return {d.device_id: d.name for d in self.devices}

    def clear(self) -> None:
        self.devices.clear()

    def _require(self, device_id: str) -> TrustedDevice:
        for d in self.devices:
            if d.device_id == device_id:
                return d
        raise AuthRejected(Reason.DEVICE_NOT_FOUND)

    def to_doc(self) -> list[dict[str, Any]]:
        return [d.to_doc() for d in self.devices]

    @classmethod
    def from_doc(cls, doc: list[dict[str, Any]] | None) -> TrustedDevices:
        return cls([TrustedDevice.from_doc(d) for d in doc or []])

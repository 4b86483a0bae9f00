"""Contracts owned by notify: one-time code requests (the only topic that carries codes),
preferences, delivery status, the journal query and the journey-to-school timeline."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.money import Kopecks
from contracts.types import (
    AccountId,
    ContractNumber,
    Identifier,
    LocalDate,
    Locale,
    LocalTime,
    Phone,
    Secret,
    ShortSecret,
    TimeZoneName,
    UtcDatetime,
)

NotificationKind = Annotated[str, StringConstraints(max_length=64)]


class Channel(StrEnum):
    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"
    IN_APP = "in_app"
    """Shown in the parents' cabinet and app: delivered as an InAppMessage on
    notify.in-app.v1 the moment notify stores it (the gateway streams it to open pages)."""


class OneTimeCodeRequested(Event):
    """Auth asks notify to send a code by SMS. The code appears nowhere else: not in logs, not
    in the journal (which shows it masked), not in any other topic."""

    request_id: Identifier
    phone: Phone
    code: ShortSecret = Field(description="6 digits.", examples=["493817"])
    purpose: str = Field(max_length=32, description="registration | password_reset | login",
                         examples=["registration"])
    locale: Locale = Field(default=Locale.RU, description="Language of the SMS text: ru or en.",
                           examples=["ru"])
    expires_at: UtcDatetime


class SetPreferences(Command):
    request_id: Identifier
    account_id: AccountId
    channels: dict[NotificationKind, list[Channel]] | None = Field(
        default=None, description="Per notification kind, the channels wanted.",
        examples=[{"canteen_purchase": ["push"], "top_up": ["push", "email"]}])
    quiet_from: LocalTime | None = Field(default=None, description="Start of quiet hours in "
                                         "the guardian's time zone (codes and security "
                                         "messages excepted); None: unchanged.",
                                         examples=["22:00"])
    quiet_to: LocalTime | None = Field(default=None, description="End of quiet hours in the "
                                       "guardian's time zone; None: unchanged.",
                                       examples=["07:00"])
    daily_digest: bool | None = Field(default=None, description="True: fold non-urgent "
                                      "notifications into one daily digest; None: unchanged.",
                                      examples=[True])


class RegisterPushToken(Command):
    request_id: Identifier
    account_id: AccountId
    token: Secret = Field(description="The device's push token (FCM registration token or "
                          "APNs device token); never logged.")
    platform: str = Field(default="android", max_length=16, examples=["ios"],
                          description="Push platform of the token: android or ios.")


class NotificationDelivered(Event):
    """Delivery status on notify.deliveries.v1 (key: guardian account)."""

    notification_id: Identifier = Field(description="Stable: event id + guardian + channel.")
    account_id: AccountId | None = Field(description="The guardian account addressed; None "
                                         "for a one-time code sent to a bare phone.",
                                         examples=["acc_7f3a9c2e1b4d"])
    channel: Channel = Field(description="Channel used: push, sms, email or in_app.",
                             examples=["push"])
    kind: str = Field(max_length=64, description="What the notification is about (snake_case "
                      "kind).", examples=["canteen_purchase"])
    status: str = Field(max_length=16, description="sent | failed | dead | deferred")
    attempts: int = Field(description="Delivery attempts made so far on this channel, "
                          "counting the first.", examples=[1])
    at: UtcDatetime


class InAppMessage(Event):
    """A notification shown in the parents' cabinet and app: the in_app channel's delivery, on
    notify.in-app.v1 (key: guardian account). Personal data (the child's name, places, amounts):
    read by the gateway alone, which streams it to the guardian's open pages; kept a day."""

    notification_id: Identifier = Field(description="Stable: the id the notification's "
                                        "delivery statuses carry (event + guardian + channel).",
                                        examples=["5b7f3c1e-8a51-5a55-bb0e-4b7e2f3d9a20"])
    account_id: AccountId = Field(description="The guardian account it is for.",
                                  examples=["acc_7f3a9c2e1b4d"])
    contract: ContractNumber | None = Field(default=None, description="The child it is "
                                            "about; None for account news (a new login).",
                                            examples=["40012345"])
    kind: NotificationKind = Field(description="What it is about (snake_case kind).",
                                   examples=["child_entered"])
    title: str = Field(max_length=200, description="A short title in the guardian's locale.",
                       examples=["Вход в школу"])
    text: str = Field(max_length=2000, description="The text in the guardian's locale, as on "
                      "the other channels.", examples=["Маша вошла в школу в 08:05."])
    at: UtcDatetime = Field(description="When it happened (the tap, the sale, the payment).")


class GetJournal(Query):
    account_id: AccountId
    limit: int = Field(default=50, ge=1, le=500, description="Most lines in one reply, most "
                       "recent first; page with cursor for older ones.", examples=[50])
    cursor: str | None = Field(default=None, max_length=512, description="Where the page "
                               "starts: the next_cursor of the previous reply for the same "
                               "account; None for the most recent lines. Opaque.")


class JournalLine(Part):
    at: UtcDatetime
    kind: str = Field(max_length=64, description="What the notification is about (snake_case "
                      "kind).", examples=["top_up"])
    channel: Channel = Field(description="Channel used: push, sms, email or in_app.",
                             examples=["sms"])
    status: str = Field(max_length=16, description="sent | failed | dead | deferred",
                        examples=["sent"])
    text: str = Field(max_length=2000, description="The text as sent, in the guardian's locale; "
                      "one-time codes masked.",
                      examples=["Пополнение 500,00 ₽ по договору 40012345."])


class JournalReply(Reply):
    lines: list[JournalLine] = Field(
        default_factory=list, description="The guardian's notifications, most recent first, "
        "at most the requested limit.",
        examples=[[{"at": "2026-09-01T05:12:30Z", "kind": "top_up", "channel": "push",
                    "status": "sent", "text": "Пополнение 500,00 ₽ по договору 40012345."}]])
    next_cursor: str | None = Field(default=None, max_length=512, description="Pass it back as "
                                    "cursor, with the same query, for the older lines; None when "
                                    "this page is the last. Lines are in a stable order, so lines "
                                    "recorded meanwhile neither repeat nor shift a page.")


class GetJourney(Query):
    """A child's journey to school on one school-local day: one timeline joining transit
    rides, turnstile entry and exit and canteen purchases (a guardian of the child, or
    support)."""

    contract: ContractNumber
    date: LocalDate | None = Field(default=None, description="The school-local day; None: "
                                   "today in the school's time zone.", examples=["2026-09-01"])


class JourneyStep(Part):
    at: UtcDatetime
    kind: str = Field(max_length=16, description="ride | entry | exit | purchase",
                      examples=["ride"])
    place: str | None = Field(default=None, max_length=128, description="The route of a ride, the "
                              "school of a gate passage, the terminal of a purchase.",
                              examples=["29"])
    amount: Kopecks | None = Field(default=None, description="The fare of a ride or the "
                                   "total of a purchase, kopecks.", examples=[3_500])
    detail: str | None = Field(default=None, max_length=200, description="The fare rule of a ride, "
                               "the reason of a manual entry.", examples=["transfer"])


class JourneyReply(Reply):
    contract: ContractNumber
    date: LocalDate = Field(description="The school-local day answered (today's when the "
                            "query named none).", examples=["2026-09-01"])
    today: LocalDate | None = Field(default=None, description="Today in the school's time "
                                    "zone, as the school counts days.", examples=["2026-09-01"])
    time_zone: TimeZoneName | None = Field(default=None, description="The school's IANA time "
                                           "zone the days are counted in.",
                                           examples=["Europe/Samara"])
    steps: list[JourneyStep] = Field(
        default_factory=list, description="The day in time order; empty when nothing is known.",
        examples=[[{"at": "2026-09-01T03:52:00Z", "kind": "ride", "place": "29",
                    "amount": 3_500, "detail": "full"}]])
    arrived_at: UtcDatetime | None = Field(default=None, description="The first entry of the "
                                           "day; None when the child has not entered.",
                                           examples=["2026-09-01T04:12:40Z"])
    not_arrived_alert_at: UtcDatetime | None = Field(
        default=None, description="When the \"rode but did not arrive\" alert was raised; "
        "None when it was not.", examples=[None])

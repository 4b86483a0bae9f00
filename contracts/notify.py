"""Contracts owned by notify: one-time code requests (the only topic that carries codes),
preferences, delivery status, the journal query and the journey-to-school timeline."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.money import Kopecks
from contracts.types import (
    AccountId,
    ContractNumber,
    Email,
    Identifier,
    LocalDate,
    Locale,
    LocalTime,
    Phone,
    SchoolId,
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
    """Auth asks notify to send a code by SMS to ``phone``, or by e-mail to ``email`` (exactly
    one of them). The code appears nowhere else: not in logs, not in the journal (which shows
    it masked), not in any other topic."""

    request_id: Identifier
    phone: Phone | None = Field(default=None, description="Where the SMS goes; None when the "
                                "code goes by e-mail.", examples=["+79121234567"])
    email: Email | None = Field(default=None, description="Where the e-mail goes (a new "
                                "address being confirmed); None when the code goes by SMS.",
                                examples=["parent@example.ru"])
    code: ShortSecret = Field(description="6 digits.", examples=["493817"])
    purpose: str = Field(max_length=32, description="registration | password_reset | login | "
                         "phone_confirmation | email_confirmation",
                         examples=["registration"])
    locale: Locale = Field(default=Locale.RU, description="Language of the text: ru or en.",
                           examples=["ru"])
    expires_at: UtcDatetime

    @model_validator(mode="after")
    def _one_address(self) -> OneTimeCodeRequested:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of phone and email")
        return self

    @property
    def address(self) -> str:
        """The phone or the e-mail the code goes to."""
        return self.phone or self.email or ""


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
    sms_informer: bool | None = Field(default=None, description="The SMS informer service "
                                      "switch: False stops every SMS about the children "
                                      "(security alerts to the owner still go); None: "
                                      "unchanged.", examples=[False])
    push: bool | None = Field(default=None, description="The push service switch: False "
                              "stops every push about the children (security alerts still "
                              "go); None: unchanged.", examples=[True])


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


class JournalStatus(StrEnum):
    """What became of a journal line: sent, failed (retrying), dead (given up), deferred
    (held by quiet hours or for the digest), digested (folded into a digest), pending."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    DEFERRED = "deferred"
    DIGESTED = "digested"


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
    kinds: list[NotificationKind] | None = Field(
        default=None, max_length=32, description="Only lines of these kinds (snake_case); "
        "None or empty: every kind. An unknown kind is refused (invalid_filter).",
        examples=[["top_up", "canteen_purchase"]])
    channel: Channel | None = Field(default=None, description="Only lines sent on this "
                                    "channel; None: every channel.", examples=["push"])
    status: JournalStatus | None = Field(default=None, description="Only lines in this "
                                         "status; None: every status.", examples=["sent"])
    contract: ContractNumber | None = Field(default=None, description="Only lines about this "
                                            "child; None: every child and the account's own "
                                            "alerts.", examples=["40012345"])
    since: UtcDatetime | None = Field(default=None, description="Only lines at or after this "
                                      "instant (inclusive); None: from the oldest kept.",
                                      examples=["2026-09-01T00:00:00Z"])
    until: UtcDatetime | None = Field(default=None, description="Only lines before this "
                                      "instant (exclusive, so consecutive windows never show a "
                                      "line twice); None: up to now.",
                                      examples=["2026-10-01T00:00:00Z"])


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


# -- preferences read back ---------------------------------------------------------------------

class GetPreferences(Query):
    """The guardian's notification settings as notify applies them (the guardian, or
    support)."""

    account_id: AccountId


class PreferencesReply(Reply):
    account_id: AccountId
    channels: dict[NotificationKind, list[Channel]] = Field(
        default_factory=dict, description="Per notification kind a guardian can receive, the "
        "channels it goes on now (defaults and the guardian's changes together; the service "
        "switches below apply on top).",
        examples=[{"canteen_purchase": ["push"], "top_up": ["push", "sms"]}])
    always_on: list[NotificationKind] = Field(
        default_factory=list, max_length=64, description="Security kinds: they cannot be "
        "muted on push and SMS, whatever channels and switches say.",
        examples=[["new_login", "password_changed"]])
    quiet_from: LocalTime | None = Field(default=None, description="Start of quiet hours, the "
                                         "guardian's time zone; None: no quiet hours.",
                                         examples=["22:00"])
    quiet_to: LocalTime | None = Field(default=None, description="End of quiet hours; None: "
                                       "no quiet hours.", examples=["07:00"])
    time_zone: str = Field(max_length=64, description="The IANA time zone quiet hours and the "
                           "digest are read in.", examples=["Europe/Samara"])
    daily_digest: bool = Field(description="Routine news folded into one daily digest.",
                               examples=[False])
    digest_at: LocalTime = Field(description="When the daily digest goes, local time.",
                                 examples=["20:00"])
    digest_kinds: list[NotificationKind] = Field(
        default_factory=list, max_length=64, description="The kinds the digest folds in.",
        examples=[["child_left", "top_up"]])
    sms_informer: bool = Field(description="The SMS informer service switch.",
                               examples=[True])
    push: bool = Field(description="The push service switch.", examples=[True])


# -- push tokens listed and removed --------------------------------------------------------------

class ListPushTokens(Query):
    """The guardian's registered devices (the guardian only): never the tokens themselves."""

    account_id: AccountId


class PushTokenInfo(Part):
    token_id: Identifier = Field(description="Stable id of the device's token (from a hash of "
                                 "it): what RemovePushToken names.",
                                 examples=["pt_3f9a0c1d2e4b5a6978e1d2c3"])
    fingerprint: str = Field(max_length=16, description="A short fingerprint to tell devices "
                             "apart (from a hash of the token, never its characters).",
                             examples=["3F9A-0C1D"])
    platform: str = Field(max_length=16, description="android or ios.", examples=["ios"])
    registered_at: UtcDatetime = Field(description="First registered.")
    last_used_at: UtcDatetime = Field(description="Last registered again by the app (it "
                                      "registers at every start) — the device was in use then.")


class PushTokensReply(Reply):
    account_id: AccountId
    tokens: list[PushTokenInfo] = Field(
        default_factory=list, description="Most recently used first.",
        examples=[[{"token_id": "pt_3f9a0c1d2e4b5a6978e1d2c3", "fingerprint": "3F9A-0C1D",
                    "platform": "ios", "registered_at": "2026-09-01T05:00:00Z",
                    "last_used_at": "2026-09-03T06:10:00Z"}]])


class RemovePushToken(Command):
    """Stop pushing to one device (the guardian only); without a device left the guardian
    gets SMS or e-mail as the preferences allow. An unknown id is refused
    (unknown_push_token)."""

    request_id: Identifier
    account_id: AccountId
    token_id: Identifier = Field(description="From ListPushTokens.",
                                 examples=["pt_3f9a0c1d2e4b5a6978e1d2c3"])


# -- support requests ----------------------------------------------------------------------------

class SupportTopic(StrEnum):
    """What a support request is about (the themes parents write to support with)."""

    LOGIN = "login"
    BALANCE = "balance"
    TOP_UP = "top_up"
    CARD = "card"
    CANTEEN = "canteen"
    TRANSIT = "transit"
    SCHOOL_ACCESS = "school_access"
    NOTIFICATIONS = "notifications"
    OTHER = "other"


class SupportStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


SupportText = Annotated[str, StringConstraints(min_length=1, max_length=2000,
                                               strip_whitespace=True)]


class OpenSupportRequest(Command):
    """A parent writes to support; answered with the request (SupportRequestReply), whose
    ``ticket_id`` follows from the request_id (a retry opens nothing new)."""

    request_id: Identifier
    account_id: AccountId
    topic: SupportTopic = Field(description="What it is about.", examples=["top_up"])
    text: SupportText = Field(description="The parent's question (personal data: never "
                              "logged).", examples=["Пополнение через терминал не дошло."])
    contract: ContractNumber | None = Field(default=None, description="The child it is about; "
                                            "None: the account itself.",
                                            examples=["40012345"])
    school_id: SchoolId | None = Field(default=None, description="The child's school, so the "
                                       "school admin can answer too; None: support only.",
                                       examples=["izh-school-42"])


class AnswerSupportRequest(Command):
    """Support (or the school admin of the request's school) answers; the parent is
    notified (support_answered). ``close``: the answer also closes the request."""

    request_id: Identifier
    ticket_id: Identifier = Field(description="The request answered.",
                                  examples=["sup_5b1c9e0a7d3f2468"])
    text: SupportText = Field(description="The answer.",
                              examples=["Платёж зачислен, проверьте баланс."])
    close: bool = Field(default=False, description="Close the request with this answer.",
                        examples=[False])


class CloseSupportRequest(Command):
    """The parent (or staff who may answer it) closes a request; closing again is a no-op."""

    request_id: Identifier
    ticket_id: Identifier = Field(description="The request closed.",
                                  examples=["sup_5b1c9e0a7d3f2468"])


class GetSupportRequest(Query):
    """One request and its thread (its parent, or staff who may answer it)."""

    ticket_id: Identifier = Field(description="The request.",
                                  examples=["sup_5b1c9e0a7d3f2468"])


class GetSupportRequests(Query):
    """A parent's requests (``account_id``: the caller's own), or, for staff, the queue
    (``account_id`` None: support sees every school, a school admin their school's)."""

    account_id: AccountId | None = Field(default=None, description="The parent whose "
                                         "requests; None: staff's queue.",
                                         examples=["acc_7f3a9c2e1b4d"])
    status: SupportStatus | None = Field(default=None, description="Only requests in this "
                                         "status; None: all.", examples=["open"])
    limit: int = Field(default=50, ge=1, le=200, description="Most requests, the most "
                       "recently changed first.", examples=[50])


class SupportMessage(Part):
    at: UtcDatetime
    author: str = Field(max_length=16, description="parent | support | school_admin",
                        examples=["parent"])
    text: str = Field(max_length=2000, description="The message.",
                      examples=["Пополнение через терминал не дошло."])


class SupportRequestSummary(Part):
    ticket_id: Identifier = Field(description="The request.",
                                  examples=["sup_5b1c9e0a7d3f2468"])
    account_id: AccountId
    topic: SupportTopic = Field(description="What it is about.", examples=["top_up"])
    status: SupportStatus = Field(description="open | answered | closed", examples=["open"])
    contract: ContractNumber | None = Field(default=None, description="The child it is about.",
                                            examples=["40012345"])
    school_id: SchoolId | None = Field(default=None, description="The child's school.",
                                       examples=["izh-school-42"])
    opened_at: UtcDatetime
    updated_at: UtcDatetime


class SupportRequestReply(Reply):
    request: SupportRequestSummary = Field(description="The request.")
    thread: list[SupportMessage] = Field(
        default_factory=list, description="The question and the answers, oldest first.",
        examples=[[{"at": "2026-09-01T05:00:00Z", "author": "parent",
                    "text": "Пополнение через терминал не дошло."}]])


class SupportRequestsReply(Reply):
    requests: list[SupportRequestSummary] = Field(
        default_factory=list, description="The most recently changed first.",
        examples=[[{"ticket_id": "sup_5b1c9e0a7d3f2468", "account_id": "acc_7f3a9c2e1b4d",
                    "topic": "top_up", "status": "answered", "contract": "40012345",
                    "school_id": "izh-school-42", "opened_at": "2026-09-01T05:00:00Z",
                    "updated_at": "2026-09-01T07:30:00Z"}]])

"""The topic catalog, as data: every topic, its key, partitions, retention, producer, consumers
and the message types it carries. Topic provisioning, the AsyncAPI document, the consumers'
type checks and the operator CLI all read it from here.

Naming: ``<owner>.<name>.v<major>``; integrators own ``integrations.*``. A breaking change of a
payload is a new ``.v2`` topic published alongside the old one until every consumer moved.
Dead letters: every consuming service has ``<service>.dead-letter.v1``; a record there is the
original key, value and headers plus ``dlq_*`` headers (reason, error code, source topic,
partition, offset, consumer group, time). Secret fields of the value (passwords, codes,
tokens: contracts.redaction) are masked in the copy, and ``dlq_masked`` names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from contracts import access, auth, integrations, notify, transit, wallet
from contracts.envelope import CommandAccepted, ContractModel, ErrorReply

DAY_MS = 24 * 3600 * 1000
SERVICES = ("auth", "wallet", "access", "transit", "notify")

DLQ_REASON = "dlq_reason"
DLQ_CODE = "dlq_code"
DLQ_TOPIC = "dlq_source_topic"
DLQ_PARTITION = "dlq_source_partition"
DLQ_OFFSET = "dlq_source_offset"
DLQ_GROUP = "dlq_consumer_group"
DLQ_FAILED_AT = "dlq_failed_at"
DLQ_ATTEMPTS = "dlq_attempts"
DLQ_MASKED = "dlq_masked"
"""Set when the dead-letter copy masked secret fields of the value (comma-separated paths):
the copy is then not the original bytes, and is not replayed."""


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producer: str
    consumers: tuple[str, ...]
    messages: tuple[type[ContractModel], ...]
    description: str
    partitions: int = 6
    retention_ms: int | None = 7 * DAY_MS
    compacted: bool = False
    personal_data: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)
    signed: tuple[type[ContractModel], ...] = ()
    """Message types that must carry the producer's signature (``contracts.signing``): those
    that create money or change whose card a balance is on. Consumers dead-letter them
    ``unauthenticated`` unless the producing integrator signed them."""

    @cached_property  # read for every record consumed
    def type_names(self) -> frozenset[str]:
        return frozenset(m.TYPE for m in self.messages)

    @cached_property
    def signed_type_names(self) -> frozenset[str]:
        return frozenset(m.TYPE for m in self.signed)

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None and not self.compacted:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra_config)
        return cfg


def dead_letter_topic(service: str) -> str:
    return f"{service}.dead-letter.v1"


def _models(module: object, *names: str) -> tuple[type[ContractModel], ...]:
    return tuple(getattr(module, n) for n in names)


APP_REPLIES = "apps.replies.v1"

CLIENT_REPLIES_PATTERN = r"apps\.replies\.[a-z0-9][a-z0-9-]{1,47}\.v1"
"""A client's own reply topic, ``apps.replies.<client-id>.v1`` (client id: 2-48 lower-case
letters, digits and hyphens): created by the client before it names it in ``ce_replyto``; a
reply topic that does not exist is refused like one the pattern does not allow."""

_CLIENT_REPLIES = re.compile(CLIENT_REPLIES_PATTERN)


CLIENT_REPLIES_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(3600 * 1000)}
"""How a client creates its own reply topic: answers are read within seconds; an hour is
plenty, and secrets in it do not outlive that."""


APPS_PARTY = "apps"
"""The catalog's name for "every app" as a producer or consumer of a topic; the broker knows
no such user: ``contracts.acl`` grants its rights to each app of ``APPS`` separately."""


@dataclass(frozen=True)
class App:
    """A client application with its own Kafka principal (``User:schoolcard-<name>``, Strimzi
    ``KafkaUser`` ``schoolcard-<name>``). Its private reply topics are
    ``apps.replies.<client_prefix><instance>.v1``: it alone creates and reads them, so no
    other app can read the session tokens and TOTP secrets answered there."""

    name: str
    client_prefix: str
    """Start of the client id of each of its reply topics; no app's prefix starts another's."""
    description: str
    streams: tuple[str, ...] = ()
    """Topics consumed by ``apps`` that this app reads besides the shared ``apps.replies.v1``."""

    @property
    def reply_prefix(self) -> str:
        return f"apps.replies.{self.client_prefix}"

    def reply_topic(self, instance: str) -> str:
        """The reply topic of one running instance (``instance``: lower-case letters, digits,
        hyphens; the whole client id fits ``CLIENT_REPLIES_PATTERN``)."""
        return f"{self.reply_prefix}{instance}.v1"


APPS: tuple[App, ...] = (
    App("gateway", "gw-", "The HTTP gateway of the cabinets and the mobile app (one reply topic "
        "per instance, GATEWAY_INSTANCE_ID).", streams=("notify.deliveries.v1",)),
    App("partner", "partner-", "A partner application (kiosk, school back office) that sends "
        "commands and queries with a user's token and reads its own replies only."),
)


def app(name: str) -> App:
    return next(a for a in APPS if a.name == name)


def reply_topic_problem(name: str, *, private: bool = False) -> str | None:
    """Why replies may not go to ``name`` (None: they may). Only ``apps.replies.v1`` and the
    per-client pattern are reply topics: a request naming anything else (another service's
    topic, a name the broker refuses) is answered nowhere and dead-lettered
    ``reply_topic_not_allowed``. A request whose answer carries session secrets
    (``private``: Login, RefreshSession, StartTotpEnrolment) must name the requester's own
    topic: every app reads the shared one."""
    if private and name == APP_REPLIES:
        return ("the answer carries session secrets: name your own reply topic "
                f"apps.replies.<client-id>.v1 in ce_replyto, not {APP_REPLIES}")
    if name == APP_REPLIES or _CLIENT_REPLIES.fullmatch(name):
        return None
    return (f"ce_replyto must be {APP_REPLIES} or match {CLIENT_REPLIES_PATTERN} "
            f"(got {len(name)} characters)")

TOPICS: tuple[Topic, ...] = (
    # --- integrators -> platform ---
    Topic("integrations.card-issuance.v1", "contract", "integrator:card-issuer",
          ("auth", "wallet", "access", "transit"),
          _models(integrations, "CardIssued", "CardReissued", "VirtualCardIssued"),
          "Cards issued and reissued by the card issuing system.", retention_ms=30 * DAY_MS,
          signed=_models(integrations, "CardIssued", "CardReissued", "VirtualCardIssued")),
    Topic("integrations.topups.v1", "contract", "integrator:payments", ("wallet",),
          _models(integrations, "TopUpReceived", "AutoTopUpCollectionFailed"),
          "Top-ups from banks, terminals, ATMs, cashiers and planned payments.",
          retention_ms=30 * DAY_MS,
          # a collection failure re-arms auto top-up and changes what wallet will charge next
          signed=_models(integrations, "TopUpReceived", "AutoTopUpCollectionFailed")),
    Topic("integrations.canteen-sales.v1", "card_uid", "integrator:canteen-till", ("wallet",),
          _models(integrations, "CanteenSaleRequested"),
          "Sales with line items from canteen tills; answered on wallet.sale-decisions.v1."),
    Topic("integrations.gate-taps.v1", "card_uid", "integrator:turnstile", ("access",),
          _models(integrations, "GateTapped"),
          "Turnstile taps; answered on access.gate-decisions.v1.", partitions=12),
    Topic("integrations.validator-taps.v1", "card_uid", "integrator:validator", ("transit",),
          _models(integrations, "ValidatorTapped"),
          "Transport validator taps, online or uploaded late from offline validators.",
          partitions=12),
    # --- auth ---
    Topic("auth.commands.v1", "phone or account id", "apps", ("auth",),
          _models(auth, "StartRegistration", "ConfirmRegistration", "ResendCode", "Login",
                  "RefreshSession", "Logout", "RequestPasswordReset", "ConfirmPasswordReset",
                  "ChangePassword", "LinkChild", "InviteGuardian", "RemoveGuardian",
                  "CreateStaffAccount", "CloseAccount", "ListSessions", "GetLoginHistory",
                  "StartTotpEnrolment", "ConfirmTotpEnrolment", "DisableTotp",
                  "ResetSecondFactor", "UnlockAccount", "AcceptInvitation",
                  "RevokeInvitation", "ChangeGuardianRole", "ListGuardians", "ListInvitations",
                  "EndSession", "SetCodeWord", "StartPhoneChange", "ConfirmPhoneChange",
                  "StartEmailChange", "ConfirmEmailChange",
                  "UpdateProfile", "SetChildName", "GetProfile", "ListTrustedDevices",
                  "RenameTrustedDevice", "RevokeTrustedDevice"),
          "Cabinet commands and queries for auth; carry secrets, retained 1 day.",
          retention_ms=DAY_MS, personal_data=True),
    Topic("auth.events.v1", "account id", "auth", ("notify",),
          _models(auth, "ParentRegistered", "LoginSucceeded", "PasswordChanged",
                  "GuardianLinked", "GuardianRemoved", "AccountClosed",
                  "SecondFactorDisabled", "RegistrationAttemptedForExistingAccount",
                  "RefreshTokenReused", "ChildLinkRefused", "SessionEnded", "AccountLocked",
                  "AccountUnlocked", "GuardianInvited"),
          "Account, session and guardianship facts, and security alerts for notify.",
          retention_ms=30 * DAY_MS),
    Topic("auth.guardian-contacts.v1", "account id", "auth", ("notify",),
          _models(auth, "GuardianContacts"),
          "Latest contacts and locale per guardian (personal data, for notify only).",
          compacted=True, personal_data=True),
    # --- wallet ---
    Topic("wallet.commands.v1", "contract or school id", "apps", ("wallet",),
          _models(wallet, "SetControls", "SetAutoTopUp", "BlockCard", "UnblockCard",
                  "MoveMoney", "OpenDispute", "ResolveDispute", "SetGraceMeal", "GetBalance",
                  "GetStatement", "RefundSaleLine", "GetSalesReport", "TagStatementLine",
                  "SaveTopUpTemplate", "DeleteTopUpTemplate", "GetTopUpTemplates", "GetControls")
          + _models(wallet, "SetScheduledTopUp", "ChangeScheduledTopUp", "SetServices",
                    "GetPaymentSettings", "SubmitApplication", "HandleApplication",
                    "GetApplications")
          + _models(wallet, "GetCards"),
          "Parent controls, staff actions and queries for wallet."),
    Topic("wallet.events.v1", "contract", "wallet", ("transit", "access", "notify"),
          _models(wallet, "AccountOpened", "TopUpApplied", "TopUpRejected", "SalePosted",
                  "SaleDeclined", "FareDebited", "FareDeclined", "FareRefunded", "DebtSettled",
                  "LowBalanceReached", "CardBlocked", "CardUnblocked", "ControlsChanged",
                  "MoneyMoved", "DisputeOpened", "DisputeResolved", "BonusExpired",
                  "AccountReissued", "GraceMealGranted", "SaleLineRefunded",
                  "AutoTopUpFailed")
          + _models(wallet, "ApplicationStatusChanged", "TransitPaymentsSwitched"),
          "Every account fact in order per contract.", retention_ms=30 * DAY_MS),
    Topic("wallet.receipts.v1", "contract", "wallet", ("notify",), _models(wallet, "ReceiptIssued"),
          "E-mail receipts for top-ups (carries the e-mail address).", personal_data=True),
    Topic("wallet.sale-decisions.v1", "terminal id", "wallet", ("integrator:canteen-till",),
          _models(wallet, "SaleDecision"), "Approve/decline answers to canteen tills."),
    Topic("wallet.auto-topup-requests.v1", "contract", "wallet", ("integrator:payments",),
          _models(wallet, "AutoTopUpRequested", "AutoTopUpCancelled"),
          "Planned payments asked of the integrator, and their withdrawal."),
    # --- access ---
    Topic("access.commands.v1", "school id", "apps", ("access",),
          _models(access, "SetSchoolSchedule", "RecordManualEntry", "GetClassRegister",
                  "GetStudentStats", "GetEntryLog"),
          "School schedules, guards' manual entries and attendance queries."),
    Topic("access.gate-decisions.v1", "gate id", "access", ("integrator:turnstile",),
          _models(access, "GateDecision"), "Allow/deny answers to turnstiles.", partitions=12),
    Topic("access.allow-list.v1", "card uid", "access", ("integrator:turnstile",),
          _models(access, "AllowListEntry"),
          "Latest allow/deny state per card for the gates' cache.", compacted=True),
    Topic("access.events.v1", "contract", "access", ("notify",),
          _models(access, "StudentEntered", "StudentLeft", "ManualEntryRecorded",
                  "LateArrivalDetected", "NotInSchoolAtLessonStart", "AbsenceDetected",
                  "AttendanceDayClosed"),
          "Attendance facts.", retention_ms=30 * DAY_MS),
    # --- transit ---
    Topic("transit.commands.v1", "operator id or contract", "apps", ("transit",),
          _models(transit, "SetFareRules", "SetConcession", "GetRides"),
          "Fare rules, concessions and ride queries."),
    Topic("transit.events.v1", "contract", "transit", ("wallet", "notify"),
          _models(transit, "RideRecorded", "FareAssessed", "FareCorrected",
                  "ConcessionExpiring"),
          "Rides, fares to debit and corrections to refund.", partitions=12,
          retention_ms=30 * DAY_MS),
    Topic("transit.deny-list.v1", "card uid", "transit", ("integrator:validator",),
          _models(transit, "DenyListEntry"), "Cards validators must refuse.", compacted=True),
    # --- notify ---
    Topic("notify.otp-requests.v1", "phone", "auth", ("notify",),
          _models(notify, "OneTimeCodeRequested"),
          "One-time codes to send by SMS: the only topic carrying codes; retained 1 hour.",
          retention_ms=3600 * 1000, personal_data=True),
    Topic("notify.commands.v1", "account id, contract or support ticket id", "apps", ("notify",),
          _models(notify, "SetPreferences", "RegisterPushToken", "GetJournal", "GetJourney",
                  "GetPreferences", "ListPushTokens", "RemovePushToken", "OpenSupportRequest",
                  "AnswerSupportRequest", "CloseSupportRequest", "GetSupportRequest",
                  "GetSupportRequests"),
          "Guardian preferences, push tokens, the journal and journey queries, support "
          "requests.",
          personal_data=True),
    Topic("notify.deliveries.v1", "account id", "notify", ("apps",),
          _models(notify, "NotificationDelivered"), "Delivery status of every message."),
    Topic("notify.in-app.v1", "account id", "notify", ("apps",),
          _models(notify, "InAppMessage"),
          "The in-app channel: each guardian's notifications with their text, for the gateway "
          "to stream to the guardian's open pages (personal data; the journal keeps them).",
          retention_ms=DAY_MS, personal_data=True),
    # --- replies and dead letters ---
    Topic(APP_REPLIES, "correlation id", "auth, wallet, access, transit, notify", ("apps",),
          _models(auth, "RegistrationStarted", "SessionTokens", "SessionsReply",
                  "LoginHistoryReply", "CommandCompleted", "TotpEnrolmentStarted",
                  "GuardiansReply", "InvitationsReply", "ProfileReply",
                  "TrustedDevicesReply")
          + _models(wallet, "BalanceReply", "StatementReply", "SalesReportReply",
                                    "TopUpTemplatesReply", "ControlsReply")
          + _models(wallet, "PaymentSettingsReply", "ApplicationsReply")
          + _models(wallet, "CardsReply")
          + _models(access, "ClassRegisterReply", "StudentStatsReply", "EntryLogReply")
          + _models(transit, "RidesReply") + _models(notify, "JournalReply", "JourneyReply",
                                                    "PreferencesReply", "PushTokensReply",
                                                    "SupportRequestReply",
                                                    "SupportRequestsReply")
          + (CommandAccepted, ErrorReply),
          "Default reply topic for apps (every app reads it: balances and statements are "
          "personal data, secrets never go here); a requester may name its own reply topic "
          "apps.replies.<client-id>.v1 (created beforehand, retention one hour), and must "
          "for Login, RefreshSession and StartTotpEnrolment, whose answers carry session "
          "secrets (SessionTokens, TotpEnrolmentStarted). Any other ce_replyto is refused: "
          "the request is dead-lettered reply_topic_not_allowed.",
          retention_ms=3600 * 1000, personal_data=True),
    *(
        Topic(dead_letter_topic(s), "original key", s, ("operators",), (),
              f"Messages {s} could not process: original bytes and headers plus dlq_* headers "
              "with the reason.", partitions=1,
              # auth's inbound commands carry passwords and codes: keep their dead letters
              # only as long as the commands themselves
              retention_ms=DAY_MS if s == "auth" else 30 * DAY_MS, personal_data=s == "auth")
        for s in SERVICES
    ),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}


def topic(name: str) -> Topic:
    return BY_NAME[name]


def consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in TOPICS if service in t.consumers)


def produced_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in TOPICS if service in t.producer.split(", ") or t.producer == service)


def required_signer(topic_name: str, type_name: str) -> str | None:
    """The integrator whose signature a message of ``type_name`` on ``topic_name`` must carry
    (None: it needs none)."""
    t = BY_NAME.get(topic_name)
    if t is None or type_name not in t.signed_type_names:
        return None
    return t.producer


def signing_integrators() -> tuple[str, ...]:
    """Every integrator that must sign some message type."""
    return tuple(sorted({t.producer for t in TOPICS if t.signed}))


def integrators() -> tuple[str, ...]:
    """Every integrator the catalog names as a producer (the dev stack gives each a key)."""
    return tuple(sorted({t.producer for t in TOPICS if t.producer.startswith("integrator:")}))


def topic_for(model: type[ContractModel]) -> Topic:
    """The topic a message type is published on (replies excluded: they go to ce_replyto)."""
    for t in TOPICS:
        if model in t.messages and t.name != APP_REPLIES:
            return t
    raise KeyError(f"{model.__name__} is on no topic")

"""Pure domain of the auth service (no I/O): see the modules for the rules.

``common`` reason codes, rejections, throttles, idempotency · ``passwords`` policy ·
``codes`` one-time codes · ``accounts`` the Account aggregate · ``sessions`` sessions and
refresh-token rotation · ``flows`` unauthenticated flows without user enumeration ·
``guardians`` children, guardians and permissions · ``events`` domain events.
"""

from .accounts import (
    Account,
    AccountKind,
    AccountStatus,
    FactorReset,
    LoginOutcome,
    LoginRecord,
    LoginReply,
    Outcome,
    create_staff_account,
    invitee,
    require_live_session,
    tombstone,
)
from .codes import CODE_MAX_ATTEMPTS, CODE_RESEND_COOLDOWN, CODE_TTL, CodePurpose, OneTimeCode
from .common import (
    LIFETIME_FAILURE_LIMIT,
    AuthRejected,
    DomainEvent,
    FailureWindow,
    Gate,
    IdempotencyLog,
    LoginThrottle,
    Reason,
)
from .flows import (
    CardRegistration,
    CodeSentReply,
    FlowResult,
    RegistrationEffect,
    confirm_registration,
    log_in,
    login_gate_for_identifier,
    login_gate_for_unknown,
    login_unknown,
    public_code_reply,
    register_card,
    request_password_reset,
    require_served_phone,
    resend_registration_code,
    reset_password,
    start_registration,
)
from .guardians import (
    BIRTH_DATE_PROOF_BUDGET,
    ActivationCodeProof,
    Child,
    ContractProof,
    GuardianRole,
    Invitation,
    LinkOutcome,
    activation_code_digest,
    activation_code_mac,
    child_to_link,
    guarded_child,
)
from .passwords import PasswordContext, check_password, require_acceptable_password
from .sessions import (
    ABSOLUTE_LIFETIME,
    IDLE_TIMEOUT,
    REFRESH_REUSE_GRACE,
    RefreshResult,
    Session,
    SessionView,
    active_sessions,
)

__all__ = [
    "ABSOLUTE_LIFETIME", "BIRTH_DATE_PROOF_BUDGET", "CODE_MAX_ATTEMPTS",
    "LIFETIME_FAILURE_LIMIT", "CODE_RESEND_COOLDOWN", "CODE_TTL", "IDLE_TIMEOUT",
    "REFRESH_REUSE_GRACE",
    "Account", "AccountKind", "AccountStatus", "ActivationCodeProof", "AuthRejected",
    "CardRegistration", "Child", "CodePurpose", "CodeSentReply", "ContractProof", "DomainEvent",
    "FactorReset", "FailureWindow",
    "FlowResult", "Gate", "GuardianRole", "IdempotencyLog", "Invitation", "LinkOutcome",
    "LoginOutcome", "LoginRecord", "LoginReply", "LoginThrottle", "OneTimeCode", "Outcome", "PasswordContext",
    "Reason", "RefreshResult", "RegistrationEffect", "Session", "SessionView",
    "activation_code_digest", "activation_code_mac", "active_sessions", "check_password", "child_to_link",
    "confirm_registration", "create_staff_account", "guarded_child", "invitee",
    "log_in", "login_gate_for_identifier", "login_gate_for_unknown", "login_unknown",
    "public_code_reply", "register_card", "request_password_reset",
    "require_acceptable_password", "require_live_session", "require_served_phone",
    "resend_registration_code",
    "reset_password", "start_registration", "tombstone",
]

"""auth: the topic -> handler table. Published outbox records (codes, TOTP secrets) are
deleted by the runtime's relay (``outbox_carries_secrets``, on by default for auth)."""

from __future__ import annotations

from contracts import auth as cmd
from contracts.integrations import CardIssued, CardReissued, VirtualCardIssued
from services.auth import store
from services.auth.handlers import Handlers
from services.auth.settings import Settings
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, Tick, main


async def wire(rt: Runtime) -> Routes:
    settings: Settings = rt.settings  # type: ignore[assignment]
    await store.ensure_indexes(rt.db, session_retention_days=settings.session_retention_days,
                               login_throttle_retention_days=settings.login_throttle_retention_days)
    h = Handlers(rt)
    rt.ticks.append(Tick(every_s=settings.session_sweep_interval_s,
                         run=h.sweep_expired_sessions, name="session-expiry-sweep"))
    return {
        # integrations.card-issuance.v1
        CardIssued: h.on_card_issued,
        CardReissued: h.on_card_reissued,
        VirtualCardIssued: h.on_virtual_card_issued,
        # auth.commands.v1
        cmd.StartRegistration: h.on_start_registration,
        cmd.ConfirmRegistration: h.on_confirm_registration,
        cmd.ResendCode: h.on_resend_code,
        cmd.Login: h.on_login,
        cmd.RefreshSession: h.on_refresh_session,
        cmd.Logout: h.on_logout,
        cmd.RequestPasswordReset: h.on_request_password_reset,
        cmd.ConfirmPasswordReset: h.on_confirm_password_reset,
        cmd.ChangePassword: h.on_change_password,
        cmd.StartTotpEnrolment: h.on_start_totp_enrolment,
        cmd.ConfirmTotpEnrolment: h.on_confirm_totp_enrolment,
        cmd.DisableTotp: h.on_disable_totp,
        cmd.ResetSecondFactor: h.on_reset_second_factor,
        cmd.UnlockAccount: h.on_unlock_account,
        cmd.LinkChild: h.on_link_child,
        cmd.InviteGuardian: h.on_invite_guardian,
        cmd.RemoveGuardian: h.on_remove_guardian,
        cmd.CreateStaffAccount: h.on_create_staff_account,
        cmd.CloseAccount: h.on_close_account,
        cmd.ListSessions: h.on_list_sessions,
        cmd.GetLoginHistory: h.on_get_login_history,
        cmd.EndSession: h.on_end_session,
        cmd.AcceptInvitation: h.on_accept_invitation,
        cmd.RevokeInvitation: h.on_revoke_invitation,
        cmd.ChangeGuardianRole: h.on_change_guardian_role,
        cmd.ListGuardians: h.on_list_guardians,
        cmd.ListInvitations: h.on_list_invitations,
        cmd.SetCodeWord: h.on_set_code_word,
        cmd.StartPhoneChange: h.on_start_phone_change,
        cmd.ConfirmPhoneChange: h.on_confirm_phone_change,
        cmd.StartEmailChange: h.on_start_email_change,
        cmd.ConfirmEmailChange: h.on_confirm_email_change,
        cmd.UpdateProfile: h.on_update_profile,
        cmd.SetChildName: h.on_set_child_name,
        cmd.GetProfile: h.on_get_profile,
        cmd.ListTrustedDevices: h.on_list_trusted_devices,
        cmd.RenameTrustedDevice: h.on_rename_trusted_device,
        cmd.RevokeTrustedDevice: h.on_revoke_trusted_device,
    }


def run() -> None:
    main("auth", Settings, wire)

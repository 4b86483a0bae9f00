"""The parents' web cabinet end to end: the five services and the gateway as processes, Debian's
chromium driven by Playwright (one browser, one page), an integrator publishing the card,
top-ups and canteen sales as outside systems do. Every step is asserted on the page."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.integrations import CanteenSaleRequested, SaleItem, TopUpReceived
from contracts.types import SubBalance
from tests.support import Integrator, TopicReader, eventually, uid
from tests.system.test_gateway import (
    BIRTH,
    GATEWAY_ENV,
    SCHOOL,
    Stack,
    balance_of,
    gateway_stack,
    http,
    key,
    log_in,
    new_card,
    new_phone,
    sms_code,
)

pytestmark = pytest.mark.system

CHROMIUM = os.environ.get("SCHOOLCARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("SCHOOLCARD_SCREENSHOTS", "")) if os.environ.get(
    "SCHOOLCARD_SCREENSHOTS") else None
STEP = 30_000  # ms: the longest wait for one thing to show on the page

playwright_api = pytest.importorskip("playwright.async_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing: `make install` installs Debian's chromium as root",
                allow_module_level=True)
expect = playwright_api.expect


@pytest.fixture(scope="module")
def stack(infra: dict[str, str], run_dir: Any) -> Iterator[Stack]:
    # One browser registers, resets a password and logs in three times from 127.0.0.1.
    yield from gateway_stack(infra, run_dir, "web", {**GATEWAY_ENV,
                                                      "GATEWAY_RATE_LIMIT_BURST": "10"})


@pytest.fixture
async def page(run_dir: Path) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_ARGS)
        # A browser far from the school (its date is not the school's): "today" on the page
        # must still be the school's day (Europe/Samara, the card's school).
        context = await browser.new_context(locale="ru-RU", timezone_id=_far_zone(),
                                            accept_downloads=True,
                                            viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy"
                in m.text else None)
        try:
            yield page
        finally:
            await context.close()
            await browser.close()
        assert not blocked, f"the page broke its own Content-Security-Policy: {blocked}"


async def shot(page: Any, run_dir: Path, name: str) -> None:
    path = run_dir / f"cabinet-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def lunch(sale_id: str, card_uid: str) -> CanteenSaleRequested:
    return CanteenSaleRequested(
        sale_id=sale_id, terminal_id="izh-42-till-1", school_id=SCHOOL, card_uid=card_uid,
        sold_at=datetime.now(UTC),
        items=[SaleItem(sku="soup-pea", name="Суп гороховый", category="soup", qty=1,
                        unit_price=60_00),
               SaleItem(sku="cutlet", name="Котлета с пюре", category="hot_meal", qty=1,
                        unit_price=70_00),
               SaleItem(sku="kompot", name="Компот", category="drink", qty=1,
                        unit_price=20_00)])


async def test_a_parent_registers_and_follows_and_controls_the_card_in_the_web_cabinet(
        stack: Stack, bootstrap: str, page: Any, run_dir: Path) -> None:
    card = new_card()
    phone = new_phone()
    password = f"heron {uid('pw')} wades"
    new_password = f"crane {uid('pw')} stands"
    first_lunch = uid("sale")
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as decisions, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp:
        await integrator.publish(card, card.contract)

        # --- the page, its security headers ----------------------------------------------------
        response = await page.goto(stack.url + "/")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        await expect(page.locator("#login-view")).to_be_visible()

        # --- registration: phone (as people type it), contract, password, consent; the SMS code
        await page.click("#to-register")
        await page.fill("#reg-phone", f"8 ({phone[2:5]}) {phone[5:8]}-{phone[8:10]}-{phone[10:]}")
        await page.fill("#reg-contract", card.contract)
        await page.fill("#reg-password", password)
        await page.click("#reg-submit")
        await expect(page.locator("#reg-error")).to_have_text(
            "Нужно согласие с условиями.", timeout=STEP)  # the page asks, then auth would
        await page.check("#reg-consent")
        await page.click("#reg-submit")
        await expect(page.locator("#reg-code-sent")).to_contain_text(f"Код отправлен на {phone}",
                                                                     timeout=STEP)
        await page.fill("#reg-code", await sms_code(otp, phone))
        await page.click("#reg-code-submit")

        # --- logged in without a child: linking by contract and birth date ---------------------
        await expect(page.locator("#app-view")).to_be_visible(timeout=STEP)
        await expect(page.locator("#link-form")).to_be_visible()
        await expect(page.locator("[data-tab=balance]")).to_be_hidden()
        await page.fill("#link-contract", card.contract)
        await page.fill("#link-birth", BIRTH.isoformat())

        async def linked() -> bool:
            # auth's projection of the card may still be on its way: the parent tries again
            await page.click("#link-submit")
            try:
                await expect(page.locator("#link-form")).to_be_hidden(timeout=2_000)
            except AssertionError:
                return False
            return True

        await eventually(linked, timeout=60, interval=0.5, what="the child linked on the page")
        await expect(page.locator("#contract")).to_have_text(card.contract, timeout=STEP)
        await expect(page.locator("#bal-canteen")).to_have_text("0,00 ₽")
        await expect(page.locator("#lunch-days")).to_have_text(
            "прогноз появится после первых обедов")
        await shot(page, run_dir, "registered")

        # --- password reset: log out, the SMS code and a new password ---------------------------
        await page.click("#logout")
        await expect(page.locator("#login-view")).to_be_visible(timeout=STEP)
        await page.click("#to-reset")
        await page.fill("#reset-phone", phone)
        await page.click("#reset-submit")
        await expect(page.locator("#reset-code-sent")).to_contain_text(phone, timeout=STEP)
        await page.fill("#reset-code", await sms_code(otp, phone, "password_reset"))
        await page.fill("#reset-password", new_password)
        await page.click("#reset-code-submit")
        await expect(page.locator("#login-message")).to_have_text(
            "Пароль изменён. Войдите с новым паролем.", timeout=STEP)
        await expect(page.locator("#login")).to_have_value(phone)

        # Yesterday's money and today's lunch, before the parent logs in again.
        async def with_push_token() -> str | None:
            # A session opened in the very second the reset ended every session counts as
            # ended for notify (whole seconds): it registers no push token (401 session_ended);
            # the next one does.
            token = await log_in(stack, "198.51.100.1", phone, new_password)
            async with http(stack.url, "198.51.100.1", token) as parent:
                r = await parent.post("/v1/push-tokens", headers={"Idempotency-Key": key()},
                                      json={"token": uid("push"), "platform": "android"})
            assert r.status_code == 200 or (r.status_code == 401 and r.json()["code"] ==
                                            "session_ended"), r.text
            return token if r.status_code == 200 else None

        token = await eventually(with_push_token, timeout=30, interval=0.5,
                                 what="a push token registered after the reset")
        async with http(stack.url, "198.51.100.1", token) as parent:
            quiet_off = await parent.patch("/v1/notifications/preferences",
                                           headers={"Idempotency-Key": key()},
                                           json={"quiet_from": "00:00", "quiet_to": "00:00"})
            assert quiet_off.status_code == 200, quiet_off.text
            total = await parent.patch(f"/v1/children/{card.contract}/controls",
                                       headers={"Idempotency-Key": key()},
                                       json={"daily_limits": {"total": 1000_00}})
            assert total.status_code == 200, total.text
            await integrator.publish(TopUpReceived(
                payment_id=uid("pay"), contract=card.contract, amount=500_00,
                sub_balance=SubBalance.CANTEEN, channel="bank_card", paid_at=datetime.now(UTC)),
                card.contract)
            await eventually(lambda: _canteen_is(parent, card.contract, 500_00), timeout=60,
                             what="the first top-up")
            await integrator.publish(lunch(first_lunch, card.card_uid), card.card_uid)
            [decision] = await decisions.wait_for(
                lambda r: r.json()["sale_id"] == first_lunch, timeout=60)
            assert decision.json()["approved"] is True

            async def purchase_in_journey() -> bool:
                r = await parent.get(f"/v1/children/{card.contract}/journey")
                today = r.json()  # no date: today as the school counts days
                assert (today["date"], today["today"], today["time_zone"]) == (
                    _school_today(), _school_today(), "Europe/Samara")
                return any(s["kind"] == "purchase" for s in today["steps"])

            await eventually(purchase_in_journey, timeout=60, interval=0.5,
                             what="the lunch in the journey")

        # --- the old password no longer works, the new one does --------------------------------
        await page.fill("#password", password)
        await page.click("#login-submit")
        await expect(page.locator("#login-error")).to_have_text("Неверный телефон или пароль.",
                                                                timeout=STEP)
        await page.fill("#password", new_password)
        await page.click("#login-submit")

        # --- «Баланс»: the child, the balances, the days of lunches ---------------------------
        await expect(page.locator("#app-view")).to_be_visible(timeout=STEP)
        await expect(page.locator("#child-select")).to_have_value(card.contract)
        await expect(page.locator("#contract")).to_have_text(card.contract, timeout=STEP)
        await expect(page.locator("#bal-canteen")).to_have_text("350,00 ₽")
        await expect(page.locator("#lunch-days")).to_have_text("≈2 дня обедов")  # 350 / 150
        await expect(page.locator("#card-state")).to_have_text("Карта активна")
        assert await page.evaluate("Object.keys(localStorage).length") == 0
        assert await page.evaluate("sessionStorage.getItem('schoolcard.session')") is not None

        # --- «События»: today's journey with the dishes; a top-up arrives live ----------------
        await page.click("[data-tab=events]")
        school_day = ".".join(reversed(_school_today().split("-")))
        assert await page.evaluate("new Date().toLocaleDateString('ru-RU')") != school_day
        await expect(page.locator("#journey-day")).to_have_text(
            f"{school_day}, время школы (Europe/Samara)")
        assert await page.locator("#gate-date").input_value() == _school_today()
        purchase = page.locator("#journey li[data-kind=purchase]")
        await expect(purchase).to_contain_text("Покупка в столовой")
        await expect(purchase).to_contain_text("Суп гороховый — 60,00 ₽")
        await expect(purchase).to_contain_text("Компот — 20,00 ₽")
        await expect(page.locator("#live")).to_have_attribute("data-state", "open",
                                                              timeout=STEP)
        await page.evaluate("window.notReloaded = true")
        await integrator.publish(TopUpReceived(
            payment_id=uid("pay"), contract=card.contract, amount=200_00,
            sub_balance=SubBalance.CANTEEN, channel="terminal", paid_at=datetime.now(UTC)),
            card.contract)
        # the in-app message's text, straight from the event stream
        await expect(page.locator("#toast")).to_contain_text("200,00 ₽", timeout=60_000)
        live_top_up = page.locator("#journal li[data-kind=top_up]").first
        await expect(live_top_up).to_contain_text("200,00 ₽", timeout=60_000)
        await expect(page.locator("#bal-canteen")).to_have_text("550,00 ₽", timeout=STEP)
        await expect(page.locator("#lunch-days")).to_have_text("≈3 дня обедов")
        assert await page.evaluate("window.notReloaded") is True
        await shot(page, run_dir, "events")

        # --- «Настройки»: the limits as they stand, then a canteen limit and a blocked category
        await page.click("[data-tab=settings]")
        await expect(page.locator("#controls-current")).to_have_text(
            "Сейчас: дневной лимит 1 000,00 ₽; автопополнение выключено.")
        await expect(page.locator("#limit-total")).to_have_value("1000")
        await expect(page.locator("#limit-canteen")).to_have_value("")
        await page.fill("#limit-canteen", "100")
        await page.check("#categories input[value=sweets]")
        await page.click("#controls-save")
        await expect(page.locator("#controls-result")).to_have_text(
            "Сохранено: дневной лимит 1 000,00 ₽; в столовой 100,00 ₽; запрещено: Сладости.",
            timeout=STEP)
        await expect(page.locator("#controls-current")).to_have_text(
            "Сейчас: дневной лимит 1 000,00 ₽; в столовой 100,00 ₽; запрещено: Сладости; "
            "автопополнение выключено.", timeout=STEP)
        await shot(page, run_dir, "settings")

        # a second lunch today goes over the limit: declined at the till, shown in «Питание»
        second_lunch = uid("sale")
        await integrator.publish(lunch(second_lunch, card.card_uid), card.card_uid)
        [declined] = await decisions.wait_for(
            lambda r: r.json()["sale_id"] == second_lunch, timeout=60)
        assert declined.json()["reason"] == "daily_limit"
        await page.click("[data-tab=food]")
        refused = page.locator(f"#food li[data-operation='{second_lunch}']")
        await expect(refused).to_contain_text("Отклонено: превышен дневной лимит",
                                              timeout=60_000)
        await expect(refused).to_contain_text("Котлета с пюре (Горячее) — 70,00 ₽")
        await expect(refused).to_have_class("declined")
        paid = page.locator(f"#food li[data-operation='{first_lunch}']")
        await expect(paid).to_contain_text("Оплачено")
        await shot(page, run_dir, "food")

        # --- blocking the lost card --------------------------------------------------------
        await page.click("[data-tab=settings]")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#block")
        await expect(page.locator("#block-result")).to_have_text(
            "Карта заблокирована. Баланс сохранён.", timeout=STEP)
        await expect(page.locator("#block-state")).to_have_text("карта заблокирована",
                                                                timeout=STEP)
        # what was saved is what the page shows after a reload (read back from wallet)
        await page.reload()
        await expect(page.locator("#app-view")).to_be_visible(timeout=STEP)
        await page.click("[data-tab=settings]")
        await expect(page.locator("#limit-canteen")).to_have_value("100", timeout=STEP)
        await expect(page.locator("#limit-total")).to_have_value("1000")
        await expect(page.locator("#categories input[value=sweets]")).to_be_checked()
        await expect(page.locator("#categories input[value=soup]")).not_to_be_checked()
        await page.click("[data-tab=balance]")
        await expect(page.locator("#card-state")).to_have_text("Карта заблокирована")
        await expect(page.locator("#bal-canteen")).to_have_text("550,00 ₽")

        # --- the statement: filters, then the CSV download ----------------------------------
        rows = page.locator("#statement-body tr")
        await expect(rows).to_have_count(4, timeout=STEP)  # two top-ups, two sales
        await page.select_option("#st-status", "declined")
        await page.click("#statement-filters button[type=submit]")
        await expect(rows).to_have_count(1, timeout=STEP)
        await expect(rows.first).to_contain_text("отклонено: превышен дневной лимит")
        await page.select_option("#st-status", "")
        await page.select_option("#st-kind", "topup")
        await page.click("#statement-filters button[type=submit]")
        await expect(rows).to_have_count(2, timeout=STEP)
        await expect(rows.first).to_contain_text("200,00 ₽")  # the newest first
        await shot(page, run_dir, "statement")
        await page.select_option("#st-kind", "")
        await page.click("#statement-filters button[type=submit]")
        await expect(rows).to_have_count(4, timeout=STEP)
        async with page.expect_download(timeout=STEP) as download_info:
            await page.click("#st-csv")
        download = await download_info.value
        assert download.suggested_filename == f"statement-{card.contract}.csv"
        text = Path(await download.path()).read_text(encoding="utf-8")
        table = list(csv.DictReader(io.StringIO(text)))
        assert sorted((r["kind"], r["status"], r["amount_rub"]) for r in table) == [
            ("purchase", "completed", "-150.00"), ("purchase", "declined", "0.00"),
            ("top_up", "completed", "200.00"), ("top_up", "completed", "500.00")]
        assert {r["operation_id"] for r in table} >= {first_lunch, second_lunch}
        lunch_row = next(r for r in table if r["operation_id"] == first_lunch)
        assert "Суп гороховый" in lunch_row["items"] and lunch_row["amount_rub"] == "-150.00"

        # --- 20 minutes idle (two seconds here) end the session --------------------------------
        async with http(stack.url, "198.51.100.1", token) as parent:
            before = await _sessions(parent)  # the test's own session(s) and the page's
            await page.goto(stack.url + "/?idle=2")
            await expect(page.locator("#login-view")).to_be_visible(timeout=STEP)
            await expect(page.locator("#login-message")).to_have_text(
                "Сеанс завершён из-за бездействия. Войдите снова.")
            await expect(page.locator("#app-view")).to_be_hidden()
            assert await page.evaluate("sessionStorage.length") == 0
            await shot(page, run_dir, "idle-logout")
            # the page ended its session at auth, not only on the screen
            await eventually(lambda: _when_equal(_sessions(parent), before - 1),
                             timeout=STEP / 1000,
                             what="the page's session ended at auth")


def _far_zone() -> str:
    """A time zone whose date differs from Europe/Samara's now (UTC+14 from 10:00 to 20:00
    UTC, else UTC-11)."""
    return "Pacific/Kiritimati" if 10 <= datetime.now(UTC).hour < 20 else "Pacific/Pago_Pago"


def _school_today() -> str:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Samara")).date().isoformat()


async def _canteen_is(client: httpx.AsyncClient, contract: str, amount: int) -> bool:
    found = await balance_of(client, contract)
    return found is not None and found["balances"]["canteen"] == amount


async def _sessions(client: httpx.AsyncClient) -> int:
    r = await client.get("/v1/sessions")
    assert r.status_code == 200, r.text
    return len(r.json()["sessions"])


async def _when_equal(value: Any, expected: Any) -> bool:
    return bool(await value == expected)

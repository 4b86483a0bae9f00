// The parents' cabinet: one page over the gateway's HTTP API (/v1/...), no framework, no build.
// Tokens live in sessionStorage only (gone with the tab); the access token is renewed through
// POST /v1/sessions/refresh before it expires; 20 minutes without user activity end the
// session (GATEWAY_WEB_IDLE_TIMEOUT_S, or a shorter ?idle=<seconds> for tests and kiosks).
// Live events: GET /v1/events read with fetch() (EventSource cannot send Authorization).
"use strict";

(() => {
  const STORE = "schoolcard.session";
  const ACTIVITY = "schoolcard.activity";
  const LUNCH_WINDOW_DAYS = 28;
  const KINDS = {topup: "Пополнение", sale: "Покупка", fare: "Проезд", refund: "Возврат",
    transfer: "Перевод между балансами", bonus: "Бонусы", reissue: "Перевыпуск карты"};
  const STATUSES = {posted: "проведено", declined: "отклонено", disputed: "оспаривается",
    partially_refunded: "частично возвращено", refunded: "возвращено"};
  const REASONS = {insufficient_funds: "недостаточно средств", daily_limit: "превышен дневной лимит",
    blocked_category: "запрещённая категория", blocked_item: "запрещённый товар",
    allergen: "аллерген", card_blocked: "карта заблокирована", unknown_card: "неизвестная карта",
    account_closed: "счёт закрыт"};
  const CATEGORIES = {hot_meal: "Горячее", soup: "Супы", salad: "Салаты", bakery: "Выпечка",
    drink: "Напитки", sweets: "Сладости", fast_food: "Фастфуд", fruit: "Фрукты",
    dairy: "Молочное"};
  const SUB_BALANCES = {general: "Финансы", canteen: "Столовая", transit: "Проезд"};
  const CHANNELS = {bank_card: "банковская карта", terminal: "терминал", atm: "банкомат",
    cashier: "касса банка", cabinet: "личный кабинет", auto: "автоплатёж"};
  const STEPS = {ride: "Поездка", entry: "Вход в школу", exit: "Выход из школы",
    purchase: "Покупка в столовой"};
  const MODES = {bus: "автобус", tram: "трамвай", trolleybus: "троллейбус", minibus: "маршрутка",
    metro: "метро"};
  const FARES = {full_fare: "полный тариф", concession: "льготный", transfer_free: "пересадка, бесплатно",
    capped: "лимит поездок, бесплатно", partially_capped: "лимит поездок, частично",
    corrected_late_upload: "пересчитано после поздней выгрузки"};
  const NOTIFICATION_KINDS = {top_up: "Пополнение", canteen_purchase: "Покупка в столовой",
    payment_declined: "Платёж отклонён", card_blocked: "Карта заблокирована",
    child_entered: "Вход в школу", child_left: "Выход из школы", low_balance: "Мало денег",
    ride: "Поездка", new_login: "Новый вход", arrived_safely: "Пришёл в школу",
    not_arrived_alert: "Не пришёл в школу", late: "Опоздание", absent: "Отсутствие",
    password_changed: "Пароль изменён", refund: "Возврат", grace_meal: "Обед в долг",
    auto_top_up_failed: "Автопополнение не прошло", manual_entry: "Вход по журналу охраны",
    receipt: "Чек", second_factor_disabled: "Второй фактор отключён",
    account_locked: "Вход заблокирован", account_unlocked: "Вход разблокирован",
    dispute_opened: "Спор открыт", dispute_resolved: "Спор решён",
    debt_settled: "Долг погашен", top_up_rejected: "Пополнение отклонено",
    concession_expiring: "Льгота заканчивается", registration_attempt: "Попытка регистрации",
    session_revoked: "Сеанс завершён", child_link_refused: "Отказ в привязке ребёнка",
    daily_digest: "Итоги дня", support_answered: "Ответ поддержки",
    guardian_invited: "Приглашение в семью", application_status: "Заявление"};

  const $ = (id) => document.getElementById(id);
  const state = {session: null, children: [], contract: null, child: null, statementCursor: null,
    refreshTimer: null, refreshing: null, stream: null, idleMs: 20 * 60 * 1000,
    reloadTimer: null, lastActivity: Date.now(), controlsDirty: false, toastTimer: null,
    zone: null, today: null};

  // --- formatting ----------------------------------------------------------------------------

  function money(kopecks) {
    const sign = kopecks < 0 ? "−" : "";
    const abs = Math.abs(kopecks);
    const rub = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, " ");
    return `${sign}${rub},${String(abs % 100).padStart(2, "0")} ₽`;
  }

  function plural(n, one, few, many) {
    const d10 = n % 10, d100 = n % 100;
    if (d10 === 1 && d100 !== 11) return one;
    if (d10 >= 2 && d10 <= 4 && (d100 < 12 || d100 > 14)) return few;
    return many;
  }

  // Days and clock times are the school's (its time zone comes with the journey), not the
  // browser's: "today" is the school's day wherever the parent is.
  function inZone(d) {
    let format;
    try {
      format = new Intl.DateTimeFormat("en-GB", {timeZone: state.zone || undefined,
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        hourCycle: "h23"});
    } catch (e) {  // a zone this browser does not know: its own
      format = new Intl.DateTimeFormat("en-GB", {year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    }
    const p = {};
    for (const part of format.formatToParts(d)) p[part.type] = part.value;
    return p;
  }
  const localDay = (d) => { const p = inZone(d); return `${p.year}-${p.month}-${p.day}`; };
  const time = (iso) => { const p = inZone(new Date(iso)); return `${p.hour}:${p.minute}`; };
  const dateTime = (iso) => { const p = inZone(new Date(iso)); return `${p.day}.${p.month}.${p.year} ${p.hour}:${p.minute}`; };
  const dayText = (day) => day.split("-").reverse().join(".");
  const schoolToday = () => state.today || localDay(new Date());
  const daysAgo = (n) => {
    const d = new Date(`${schoolToday()}T12:00:00Z`);
    d.setUTCDate(d.getUTCDate() - n);
    return d.toISOString().slice(0, 10);
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function show(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  // --- session ---------------------------------------------------------------------------------

  function claims(token) {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - part.length % 4) % 4)));
  }

  function keep(tokens) {
    state.session = {access: tokens.access_token, refresh: tokens.refresh_token,
      exp: claims(tokens.access_token).exp};
    sessionStorage.setItem(STORE, JSON.stringify(state.session));
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    const inMs = Math.max(5000, (state.session.exp * 1000 - Date.now()) - 60000);
    state.refreshTimer = setTimeout(() => refresh().catch(() => {}), inMs);
  }

  function refresh() {
    // One renewal at a time: the refresh token rotates, a second use would be a reuse.
    if (!state.refreshing) {
      state.refreshing = (async () => {
        const r = await fetch("/v1/sessions/refresh", {method: "POST",
          headers: {"Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID()},
          body: JSON.stringify({refresh_token: state.session.refresh})});
        if (!r.ok) {
          await endSession("Сеанс истёк. Войдите снова.", false);
          throw new Error("session ended");
        }
        keep(await r.json());
      })().finally(() => { state.refreshing = null; });
    }
    return state.refreshing;
  }

  class Problem extends Error {
    constructor(status, doc) {
      super(doc.detail || doc.title || `HTTP ${status}`);
      this.status = status;
      this.code = doc.code || "";
    }
  }

  // A call to the gateway with the bearer token; a change carries an Idempotency-Key, reused
  // if the call is repeated after a token renewal.
  async function api(path, {method = "GET", body, raw = false} = {}) {
    const key = method === "GET" ? null : crypto.randomUUID();
    for (let attempt = 0; ; attempt++) {
      if (!state.session) throw new Error("not logged in");
      if (state.session.exp * 1000 - Date.now() < 10000) await refresh();
      const headers = {Authorization: `Bearer ${state.session.access}`};
      if (key) headers["Idempotency-Key"] = key;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const r = await fetch(path, {method, headers,
        body: body === undefined ? undefined : JSON.stringify(body)});
      if (r.ok) return raw ? r : r.json();
      const doc = await r.json().catch(() => ({}));
      if (r.status === 401 && attempt === 0 && ["token_expired", "invalid_token"].includes(doc.code)) {
        await refresh();
        continue;
      }
      if (r.status === 401 && ["session_revoked", "session_ended", "session_idle_expired",
                               "session_lifetime_expired"].includes(doc.code)) {
        // Ended elsewhere (this device revoked, logged out everywhere, a password reset).
        await endSession("Сеанс завершён. Войдите снова.", false);
      }
      throw new Problem(r.status, doc);
    }
  }

  // What auth's refusals mean to a parent (the codes of the problem documents).
  const AUTH_ERRORS = {invalid_credentials: "Неверный телефон или пароль.",
    password_change_required: "Сначала смените пароль (он совпадает с датой рождения).",
    rate_limited: "Слишком много попыток. Попробуйте позже.",
    login_rate_limited: "Слишком много попыток входа. Попробуйте позже.",
    login_delayed: "Слишком много попыток входа. Подождите немного.",
    login_locked: "Вход временно заблокирован. Восстановите пароль.",
    code_rate_limited: "Код уже отправлен. Новый можно запросить чуть позже.",
    code_invalid: "Неверный код.", code_expired: "Срок действия кода истёк. Запросите новый.",
    code_used: "Код уже использован.", code_attempts_exhausted: "Слишком много неверных кодов. Запросите новый.",
    consent_required: "Нужно согласие с условиями.", invalid_phone: "Проверьте номер телефона.",
    phone_country_not_served: "Номера этой страны не обслуживаются.",
    contract_unknown: "Договор с таким номером не найден.", invalid_contract_number: "Номер договора — 8 цифр.",
    contract_in_use: "К этому договору уже привязана другая учётная запись.",
    password_too_short: "Пароль слишком короткий: нужно не меньше 8 символов.",
    password_too_long: "Пароль слишком длинный.", password_common: "Слишком простой пароль: он есть в списках утёкших.",
    password_repetitive: "Пароль из повторяющихся символов слишком простой.",
    password_contains_phone: "Пароль не должен содержать номер телефона.",
    password_contains_contract: "Пароль не должен содержать номер договора.",
    password_contains_birth_date: "Пароль не должен содержать дату рождения.",
    password_unchanged: "Новый пароль совпадает со старым.",
    account_not_found: "Учётная запись с таким телефоном не найдена.",
    child_proof_invalid: "Дата рождения или код активации не подходят к договору.",
    child_proof_rate_limited: "Слишком много попыток. Попробуйте позже.",
    already_guardian: "Этот ребёнок уже привязан к вашей учётной записи.",
    guardian_invite_required: "У ребёнка уже есть основной представитель: попросите у него приглашение.",
    validation_error: "Проверьте заполнение полей."};

  function authError(e, fallback) {
    if (!(e instanceof Problem)) return "Нет связи с сервером.";
    return AUTH_ERRORS[e.code] || e.message || fallback;
  }

  // "+7 (912) 123-45-67" and "8 912 123 45 67" -> "+79121234567"; anything else as typed.
  function normalisePhone(text) {
    if (text.includes("@")) return text;
    const digits = text.replace(/[\s()-]/g, "");
    if (/^8\d{10}$/.test(digits)) return `+7${digits.slice(1)}`;
    if (/^7\d{10}$/.test(digits)) return `+${digits}`;
    return digits;
  }

  // A call made before a session exists (login, registration, codes, reset).
  async function publicCall(path, body) {
    const r = await fetch(path, {method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID()},
      body: JSON.stringify(body)});
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Problem(r.status, doc);
    return doc;
  }

  async function signIn(loginName, password) {
    keep(await publicCall("/v1/sessions", {login: loginName, password}));
    touch();
    await enter();
  }

  async function busy(button, errorNode, fallback, work) {
    show(errorNode, "");
    button.disabled = true;
    try {
      await work();
    } catch (e) {
      show(errorNode, authError(e, fallback));
    } finally {
      button.disabled = false;
    }
  }

  function login(event) {
    event.preventDefault();
    return busy($("login-submit"), $("login-error"), "Войти не удалось.", async () => {
      await signIn(normalisePhone($("login").value.trim()), $("password").value);
      $("password").value = "";
    });
  }

  function showView(name) {
    for (const view of ["login", "register", "reset"]) $(`${view}-view`).hidden = view !== name;
    show($("login-message"), "");
  }

  // --- registration: phone + contract + password + consent, then the SMS code ------------------

  const pending = {phone: "", password: ""};

  function codeSent(node, reply) {
    const wait = reply && reply.resend_after_s ? ` Новый код можно запросить через ${reply.resend_after_s} с.` : "";
    node.textContent = `Код отправлен на ${pending.phone}.${wait}`;
  }

  function register(event) {
    event.preventDefault();
    return busy($("reg-submit"), $("reg-error"), "Зарегистрироваться не удалось.", async () => {
      pending.phone = normalisePhone($("reg-phone").value.trim());
      pending.password = $("reg-password").value;
      const reply = await publicCall("/v1/registrations", {phone: pending.phone,
        contract: $("reg-contract").value.trim(), password: pending.password,
        consent: $("reg-consent").checked});
      codeSent($("reg-code-sent"), reply);
      $("register-form").hidden = true;
      $("reg-code-form").hidden = false;
      $("reg-code").focus();
    });
  }

  function confirmRegistration(event) {
    event.preventDefault();
    return busy($("reg-code-submit"), $("reg-code-error"), "Подтвердить не удалось.", async () => {
      await publicCall("/v1/registrations/confirm", {phone: pending.phone,
        code: $("reg-code").value.trim()});
      const {phone, password} = pending;
      pending.password = "";
      for (const id of ["reg-password", "reg-code"]) $(id).value = "";
      $("register-form").hidden = false;
      $("reg-code-form").hidden = true;
      $("login").value = phone;
      await signIn(phone, password);
    });
  }

  function resendCode(purpose, node, errorNode) {
    return busy($("reg-resend"), errorNode, "Отправить код не удалось.", async () => {
      codeSent(node, await publicCall("/v1/codes/resend", {phone: pending.phone, purpose}));
    });
  }

  // --- password reset: the phone, then the SMS code and a new password ----------------------

  function requestReset(event) {
    event.preventDefault();
    return busy($("reset-submit"), $("reset-error"), "Отправить код не удалось.", async () => {
      pending.phone = normalisePhone($("reset-phone").value.trim());
      codeSent($("reset-code-sent"), await publicCall("/v1/password-resets", {phone: pending.phone}));
      $("reset-form").hidden = true;
      $("reset-code-form").hidden = false;
      $("reset-code").focus();
    });
  }

  function confirmReset(event) {
    event.preventDefault();
    return busy($("reset-code-submit"), $("reset-code-error"), "Сменить пароль не удалось.", async () => {
      await publicCall("/v1/password-resets/confirm", {phone: pending.phone,
        code: $("reset-code").value.trim(), new_password: $("reset-password").value});
      for (const id of ["reset-code", "reset-password"]) $(id).value = "";
      $("reset-form").hidden = false;
      $("reset-code-form").hidden = true;
      $("login").value = pending.phone;
      showView("login");
      show($("login-message"), "Пароль изменён. Войдите с новым паролем.");
    });
  }

  // --- linking a child: contract + birth date or activation code ----------------------------

  function linkChild(event) {
    event.preventDefault();
    return busy($("link-submit"), $("link-error"), "Привязать не удалось.", async () => {
      const contract = $("link-contract").value.trim();
      const body = {contract};
      if ($("link-code").value.trim()) body.activation_code = $("link-code").value.trim();
      else body.birth_date = $("link-birth").value;
      // The reply is a new token pair whose access token names the child too.
      keep(await api("/v1/children", {method: "POST", body}));
      for (const id of ["link-contract", "link-birth", "link-code"]) $(id).value = "";
      $("link-form").hidden = true;
      state.contract = contract;
      await enter();
    });
  }

  async function endSession(message, tellServer = true) {
    const session = state.session;
    state.session = null;
    clearTimeout(state.refreshTimer);
    clearTimeout(state.reloadTimer);
    if (state.stream) state.stream.abort();
    state.stream = null;
    sessionStorage.removeItem(STORE);
    sessionStorage.removeItem(ACTIVITY);
    $("live").dataset.state = "closed";
    $("app-view").hidden = true;
    $("session-bar").hidden = true;
    showView("login");
    show($("login-message"), message || "");
    if (tellServer && session) {
      await fetch("/v1/sessions/current", {method: "DELETE", headers: {
        Authorization: `Bearer ${session.access}`, "Idempotency-Key": crypto.randomUUID()}})
        .catch(() => {});
    }
  }

  // --- idle timeout ----------------------------------------------------------------------------

  function touch() {
    state.lastActivity = Date.now();
    sessionStorage.setItem(ACTIVITY, String(state.lastActivity));
  }

  function watchIdle() {
    for (const type of ["pointerdown", "keydown", "wheel", "touchstart", "mousemove", "scroll"]) {
      window.addEventListener(type, () => { if (state.session) touch(); }, {passive: true});
    }
    setInterval(() => {
      if (state.session && Date.now() - state.lastActivity >= state.idleMs) {
        const minutes = Math.round(state.idleMs / 60000);
        endSession(minutes >= 1
          ? `Сеанс завершён: ${minutes} мин без действий. Войдите снова.`
          : "Сеанс завершён из-за бездействия. Войдите снова.");
      }
    }, 500);
  }

  async function idleTimeout() {
    let seconds = 1200;
    try {
      const r = await fetch("/cabinet-config.json");
      if (r.ok) seconds = (await r.json()).idle_timeout_s || seconds;
    } catch (e) { /* the default stands */ }
    // A page may ask for a shorter timeout (a shared computer, a test), never a longer one.
    const asked = Number(new URLSearchParams(location.search).get("idle"));
    if (asked > 0) seconds = Math.min(seconds, asked);
    state.idleMs = seconds * 1000;
    $("idle-minutes").textContent = seconds >= 60 ? String(Math.round(seconds / 60))
      : (seconds / 60).toFixed(1).replace(".", ",");
  }

  // --- live events -----------------------------------------------------------------------------

  async function openStream() {
    if (state.stream) state.stream.abort();
    const controller = new AbortController();
    state.stream = controller;
    let delay = 1000;
    while (state.session && state.stream === controller) {
      let reason = "";
      try {
        if (state.session.exp * 1000 - Date.now() < 15000) await refresh();
        const r = await fetch("/v1/events", {signal: controller.signal,
          headers: {Authorization: `Bearer ${state.session.access}`, Accept: "text/event-stream"}});
        if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
        $("live").dataset.state = "open";
        delay = 1000;
        reason = await readEvents(r.body, onEvent);
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      $("live").dataset.state = "closed";
      if (reason === "token_expired") { await refresh().catch(() => {}); continue; }
      // What went out while the stream was down is in the journal: read it again.
      await new Promise((ok) => setTimeout(ok, delay));
      delay = Math.min(delay * 2, 30000);
      if (state.session) scheduleReload();
    }
  }

  // Server-Sent Events over a byte stream: lines, blank line ends an event. Returns the reason
  // of the closing `end` event ('' when the connection just closed).
  async function readEvents(body, handler) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", name = "", data = [];
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return "";
      buffer += value;
      let at;
      while ((at = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + (buffer.startsWith("\r\n", at) ? 2 : 1));
        if (line === "") {
          if (data.length) {
            const payload = JSON.parse(data.join("\n"));
            if ((name || "message") === "end") { reader.cancel().catch(() => {}); return payload.reason || "end"; }
            handler(name || "message", payload);
          }
          name = ""; data = [];
        } else if (line.startsWith(":")) {
          continue;
        } else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") name = val; else if (field === "data") data.push(val);
        }
      }
    }
  }

  function onEvent(name, payload) {
    if (name === "message") showMessage(payload);
    if (name === "notification" || name === "message") scheduleReload();
  }

  // An in-app message: its text at the top of the journal and in the toast, at once (the
  // re-read that follows brings the rest of the child's data).
  function showMessage(m) {
    if (m.contract && m.contract !== state.contract) return;
    const line = journalItem({at: m.at, kind: m.kind, text: m.text});
    line.dataset.live = "true";
    $("journal").prepend(line);
    $("journal-empty").hidden = true;
    show($("toast"), `${m.title}: ${m.text}`);
    clearTimeout(state.toastTimer);
    state.toastTimer = setTimeout(() => show($("toast"), ""), 10000);
  }

  function scheduleReload() {
    // Deliveries come in bursts (one per channel): read the child's data once per burst.
    clearTimeout(state.reloadTimer);
    state.reloadTimer = setTimeout(() => loadChild().catch(report), 300);
  }

  // --- the child's data ------------------------------------------------------------------------

  function report(e) {
    if (!state.session) return;
    show($("app-error"), e && e.message ? `Ошибка: ${e.message}` : "Ошибка связи с сервером.");
  }

  async function enter() {
    for (const view of ["login", "register", "reset"]) $(`${view}-view`).hidden = true;
    $("app-view").hidden = false;
    $("session-bar").hidden = false;
    show($("login-message"), "");
    const {children} = await api("/v1/children");
    state.children = children;
    const select = $("child-select");
    select.replaceChildren(...children.map((c) => el("option", {value: c.contract},
      `Договор ${c.contract}`)));
    $("app-view").dataset.children = children.length ? "some" : "none";
    if (!children.length) {
      $("link-form").hidden = false;
      $("link-cancel").hidden = true;
      openStream();
      return;
    }
    $("link-cancel").hidden = false;
    const remembered = children.find((c) => c.contract === state.contract);
    state.contract = remembered ? remembered.contract : children[0].contract;
    select.value = state.contract;
    openStream();
    await loadChild();
  }

  async function loadChild() {
    const contract = state.contract;
    if (!contract || !state.session) return;
    show($("app-error"), "");
    // Today's journey first: it says which day "today" is at the school, and in which zone.
    const journey = await api(`/v1/children/${contract}/journey`);
    state.zone = journey.time_zone || null;
    state.today = journey.today || journey.date;
    if (!$("gate-date").value || $("gate-date").dataset.auto === "true") {
      $("gate-date").value = state.today;
      $("gate-date").dataset.auto = "true";
    }
    const [balance, recent, journal, controls] = await Promise.all([
      api(`/v1/children/${contract}/balance`),
      api(`/v1/children/${contract}/statement?date_from=${daysAgo(LUNCH_WINDOW_DAYS)}&limit=500`),
      api("/v1/notifications?limit=30"),
      api(`/v1/children/${contract}/controls`),
    ]);
    if (contract !== state.contract) return;
    state.child = balance;
    renderControls(controls);
    renderBalance(balance, recent.lines);
    renderJourney(journey, recent.lines);
    renderJournal(journal.lines);
    renderFood(recent.lines);
    await Promise.all([loadStatement(), loadGate(), loadRides()]);
  }

  // «≈N дней обедов»: the canteen balance divided by the average canteen spend per day with
  // purchases (a school day) over the last four weeks.
  function lunchDays(canteen, lines) {
    const perDay = new Map();
    for (const l of lines) {
      if (l.kind !== "sale" || l.status === "declined" || l.amount >= 0) continue;
      const day = localDay(new Date(l.at));
      perDay.set(day, (perDay.get(day) || 0) - l.amount);
    }
    if (!perDay.size) return null;
    const average = [...perDay.values()].reduce((a, b) => a + b, 0) / perDay.size;
    return Math.max(0, Math.floor(canteen / average));
  }

  function renderBalance(reply, lines) {
    const b = reply.balances;
    $("contract").textContent = reply.contract;
    $("bal-canteen").textContent = money(b.canteen);
    $("bal-general").textContent = money(b.general);
    $("bal-transit").textContent = money(b.transit);
    $("bal-bonus").textContent = `${b.bonus_points} ${plural(b.bonus_points, "балл", "балла", "баллов")}`;
    const days = lunchDays(b.canteen, lines);
    $("lunch-days").textContent = days === null ? "прогноз появится после первых обедов"
      : `≈${days} ${plural(days, "день", "дня", "дней")} обедов`;
    const blocked = reply.blocked;
    const badge = $("card-state");
    badge.textContent = blocked ? "Карта заблокирована" : "Карта активна";
    badge.className = blocked ? "badge bad" : "badge good";
    $("block-state").textContent = blocked ? "карта заблокирована" : "карта активна";
    $("block").hidden = blocked;
    $("unblock").hidden = !blocked || state.children.find((c) => c.contract === reply.contract)?.role !== "primary";
  }

  function lineDetails(l) {
    if (l.items && l.items.length) {
      return l.items.map((i) => `${i.name}${i.qty > 1 ? ` ×${i.qty}` : ""}`).join(", ");
    }
    if (l.kind === "topup") {
      const [channel, target] = l.description.split(" -> ");
      return `${CHANNELS[channel] || channel} → ${SUB_BALANCES[target] || target || ""}`;
    }
    return l.description;
  }

  function declineReason(l) {
    const code = (l.description || "").split(" ")[0];
    return REASONS[code] || l.description;
  }

  const itemsTotal = (l) => (l.items || []).reduce((s, i) => s + i.qty * i.unit_price, 0);

  function statementRow(l) {
    const declined = l.status === "declined";
    const status = declined ? `отклонено: ${declineReason(l)}` : (STATUSES[l.status] || l.status);
    const amount = declined ? money(itemsTotal(l)) : money(l.amount);
    return el("tr", {class: declined ? "declined" : "", "data-operation": l.operation_id},
      el("td", {}, dateTime(l.at)), el("td", {}, KINDS[l.kind] || l.kind),
      el("td", {}, lineDetails(l)), el("td", {}, status),
      el("td", {class: `num money ${l.amount > 0 ? "plus" : ""}`}, amount));
  }

  function statementQuery(extra) {
    const q = new URLSearchParams();
    if ($("st-from").value) q.set("date_from", $("st-from").value);
    if ($("st-to").value) q.set("date_to", $("st-to").value);
    if ($("st-kind").value) q.set("kinds", $("st-kind").value);
    if ($("st-status").value) q.set("status", $("st-status").value);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    return q;
  }

  async function loadStatement(more = false) {
    const q = statementQuery({limit: "50"});
    if (more && state.statementCursor) q.set("cursor", state.statementCursor);
    const reply = await api(`/v1/children/${state.contract}/statement?${q}`);
    const rows = [...reply.lines].sort((a, b) => b.at.localeCompare(a.at)).map(statementRow);
    if (more) $("statement-body").append(...rows); else $("statement-body").replaceChildren(...rows);
    state.statementCursor = reply.next_cursor;
    $("st-more").hidden = !reply.next_cursor;
    $("statement-empty").hidden = $("statement-body").children.length > 0;
  }

  async function downloadCsv() {
    const r = await api(`/v1/children/${state.contract}/statement?${statementQuery({format: "csv", limit: "500"})}`,
      {raw: true});
    const blob = await r.blob();
    const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1]
      || `statement-${state.contract}.csv`;
    const url = URL.createObjectURL(blob);
    const link = el("a", {href: url, download: name});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function renderJourney(reply, lines) {
    const sales = lines.filter((l) => l.kind === "sale" && l.status !== "declined");
    const steps = reply.steps.map((s) => {
      const title = STEPS[s.kind] || s.kind;
      let detail = s.place || "";
      if (s.kind === "ride") {
        detail = `маршрут ${s.place || "?"}${s.detail ? `, ${FARES[s.detail] || s.detail}` : ""}`;
      } else if (s.kind === "purchase") {
        // The statement line of the same instant has the dishes with their prices.
        const sale = sales.find((l) => Math.abs(new Date(l.at) - new Date(s.at)) < 1000);
        detail = sale ? sale.items.map((i) => `${i.name}${i.qty > 1 ? ` ×${i.qty}` : ""} — ${money(i.qty * i.unit_price)}`).join("; ")
          : (s.detail || "");
      } else if (s.detail) {
        detail = `${detail} (${s.detail})`;
      }
      return el("li", {class: `step ${s.kind}`, "data-kind": s.kind},
        el("span", {class: "time"}, time(s.at)), el("span", {class: "what"}, title),
        el("span", {class: "detail"}, detail),
        s.amount ? el("span", {class: "money"}, money(s.amount)) : null);
    });
    $("journey").replaceChildren(...steps);
    $("journey-day").textContent = `${dayText(reply.date)}${reply.time_zone ? `, время школы (${reply.time_zone})` : ""}`;
    $("journey-empty").hidden = steps.length > 0;
    show($("arrived"), reply.arrived_at ? `Пришёл в школу в ${time(reply.arrived_at)}` : "");
  }

  function journalItem(l) {
    return el("li", {"data-kind": l.kind},
      el("span", {class: "time"}, dateTime(l.at)),
      el("span", {class: "what"}, NOTIFICATION_KINDS[l.kind] || l.kind),
      el("span", {class: "detail"}, l.text));
  }

  function renderJournal(lines) {
    // One line per notification: its push, SMS and in-app copies carry the same text.
    const seen = new Set();
    const unique = lines.filter((l) => {
      const key = `${l.kind}|${l.text}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    const items = unique.map(journalItem);
    $("journal").replaceChildren(...items);
    $("journal-empty").hidden = items.length > 0;
  }

  function renderFood(lines) {
    const sales = lines.filter((l) => l.kind === "sale").sort((a, b) => b.at.localeCompare(a.at));
    $("food").replaceChildren(...sales.map((l) => {
      const declined = l.status === "declined";
      return el("li", {class: declined ? "declined" : "", "data-operation": l.operation_id},
        el("span", {class: "time"}, dateTime(l.at)),
        el("span", {class: "what"}, declined ? `Отклонено: ${declineReason(l)}` : "Оплачено"),
        el("span", {class: "detail"}, l.items.map((i) =>
          `${i.name} (${CATEGORIES[i.category] || i.category})${i.qty > 1 ? ` ×${i.qty}` : ""} — ${money(i.qty * i.unit_price)}`).join("; ")),
        el("span", {class: "money"}, money(declined ? itemsTotal(l) : -l.amount)));
    }));
    $("food-empty").hidden = sales.length > 0;
  }

  async function loadGate() {
    const day = $("gate-date").value || schoolToday();
    const reply = await api(`/v1/children/${state.contract}/journey?date=${day}`);
    const rows = reply.steps.filter((s) => s.kind === "entry" || s.kind === "exit").map((s) =>
      el("tr", {}, el("td", {}, time(s.at)), el("td", {}, STEPS[s.kind]),
        el("td", {}, `${s.place || ""}${s.detail ? ` (${s.detail})` : ""}`)));
    $("gate-body").replaceChildren(...rows);
    $("gate-empty").hidden = rows.length > 0;
  }

  async function loadRides() {
    const reply = await api(`/v1/children/${state.contract}/rides?date_from=${daysAgo(LUNCH_WINDOW_DAYS)}`);
    const rows = [...reply.rides].sort((a, b) => b.tapped_at.localeCompare(a.tapped_at)).map((r) =>
      el("tr", {}, el("td", {}, dateTime(r.tapped_at)),
        el("td", {}, `${MODES[r.mode] || r.mode} № ${r.route}`),
        el("td", {}, FARES[r.explanation] || r.explanation),
        el("td", {class: "num money"}, money(r.fare))));
    $("rides-body").replaceChildren(...rows);
    $("rides-empty").hidden = rows.length > 0;
  }

  // --- parent controls -------------------------------------------------------------------------

  const kopecksToRubles = (k) => (k === null || k === undefined ? "" : String(k / 100));

  // The controls as wallet has them. A form the parent is editing is left alone (a live event
  // re-reads the child's data); the summary line is always current.
  function renderControls(c) {
    const limits = c.daily_limits || {};
    const parts = [];
    if (limits.total !== null && limits.total !== undefined) parts.push(`дневной лимит ${money(limits.total)}`);
    if (limits.canteen !== null && limits.canteen !== undefined) parts.push(`в столовой ${money(limits.canteen)}`);
    if (limits.general !== null && limits.general !== undefined) parts.push(`с баланса «Финансы» ${money(limits.general)}`);
    if (!parts.length) parts.push("без дневных лимитов");
    if (c.blocked_categories.length) parts.push(`запрещено: ${c.blocked_categories.map((k) => CATEGORIES[k] || k).join(", ")}`);
    if (c.blocked_items.length) parts.push(`запрещённых товаров: ${c.blocked_items.length}`);
    if (c.allergens.length) parts.push(`аллергены: ${c.allergens.join(", ")}`);
    if (c.low_balance_threshold !== null && c.low_balance_threshold !== undefined) {
      parts.push(`предупреждать, если меньше ${money(c.low_balance_threshold)}`);
    }
    const auto = c.auto_top_up;
    parts.push(auto && auto.enabled
      ? `автопополнение ${money(auto.amount)} при балансе ниже ${money(auto.threshold)} (${SUB_BALANCES[auto.sub_balance] || auto.sub_balance})`
      : "автопополнение выключено");
    $("controls-current").textContent = `Сейчас: ${parts.join("; ")}.`;
    if (state.controlsDirty) return;
    $("limit-total").value = kopecksToRubles(limits.total);
    $("limit-canteen").value = kopecksToRubles(limits.canteen);
    const blocked = new Set(c.blocked_categories);
    for (const box of document.querySelectorAll("#categories input")) box.checked = blocked.has(box.value);
  }

  function rublesToKopecks(value) {
    if (value === "") return null;
    return Math.round(Number(value.replace(",", ".")) * 100);
  }

  async function saveControls(event) {
    event.preventDefault();
    show($("controls-result"), "");
    const blocked = [...document.querySelectorAll("#categories input:checked")].map((i) => i.value);
    try {
      await api(`/v1/children/${state.contract}/controls`, {method: "PATCH", body: {
        daily_limits: {total: rublesToKopecks($("limit-total").value),
          canteen: rublesToKopecks($("limit-canteen").value)},
        blocked_categories: blocked}});
      const parts = [];
      if ($("limit-total").value) parts.push(`дневной лимит ${money(rublesToKopecks($("limit-total").value))}`);
      if ($("limit-canteen").value) parts.push(`в столовой ${money(rublesToKopecks($("limit-canteen").value))}`);
      if (blocked.length) parts.push(`запрещено: ${blocked.map((c) => CATEGORIES[c]).join(", ")}`);
      show($("controls-result"), `Сохранено${parts.length ? ": " + parts.join("; ") : ""}.`);
      state.controlsDirty = false;
      renderControls(await api(`/v1/children/${state.contract}/controls`));
    } catch (e) {
      show($("controls-result"), e.code === "forbidden" || e.code === "not_permitted"
        ? "Менять лимиты может только основной представитель." : `Не сохранено: ${e.message}`);
    }
  }

  async function setBlocked(block) {
    if (block && !window.confirm("Заблокировать карту? Покупки и проход по ней прекратятся, деньги сохранятся.")) return;
    show($("block-result"), "");
    try {
      await api(`/v1/children/${state.contract}/${block ? "block" : "unblock"}`,
        {method: "POST", body: block ? {reason: "lost"} : undefined});
      show($("block-result"), block ? "Карта заблокирована. Баланс сохранён." : "Карта разблокирована.");
      await loadChild();
    } catch (e) {
      show($("block-result"), `Не выполнено: ${e.message}`);
    }
  }

  // --- wiring ----------------------------------------------------------------------------------

  function selectTab(name) {
    for (const b of document.querySelectorAll("[role=tab]")) {
      b.setAttribute("aria-selected", String(b.dataset.tab === name));
    }
    for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
  }

  async function start() {
    $("categories").replaceChildren(...Object.entries(CATEGORIES).map(([value, label]) =>
      el("label", {class: "check"}, el("input", {type: "checkbox", value, name: "blocked"}), label)));
    $("login-form").addEventListener("submit", login);
    $("to-register").addEventListener("click", () => showView("register"));
    $("to-reset").addEventListener("click", () => showView("reset"));
    for (const b of document.querySelectorAll(".to-login")) b.addEventListener("click", () => showView("login"));
    $("register-form").addEventListener("submit", register);
    $("reg-code-form").addEventListener("submit", confirmRegistration);
    $("reg-resend").addEventListener("click", () => resendCode("registration", $("reg-code-sent"), $("reg-code-error")));
    $("reset-form").addEventListener("submit", requestReset);
    $("reset-code-form").addEventListener("submit", confirmReset);
    $("link-form").addEventListener("submit", linkChild);
    $("add-child").addEventListener("click", () => { $("link-form").hidden = false; $("link-contract").focus(); });
    $("link-cancel").addEventListener("click", () => { $("link-form").hidden = true; });
    $("logout").addEventListener("click", () => endSession("Вы вышли из кабинета."));
    for (const b of document.querySelectorAll("[role=tab]")) {
      b.addEventListener("click", () => selectTab(b.dataset.tab));
    }
    $("child-select").addEventListener("change", (e) => {
      state.contract = e.target.value;
      state.statementCursor = null;
      state.controlsDirty = false;
      loadChild().catch(report);
    });
    $("statement-filters").addEventListener("submit", (e) => { e.preventDefault(); loadStatement().catch(report); });
    $("st-more").addEventListener("click", () => loadStatement(true).catch(report));
    $("st-csv").addEventListener("click", () => downloadCsv().catch(report));
    $("gate-date").addEventListener("change", () => { $("gate-date").dataset.auto = "false"; });
    $("gate-form").addEventListener("submit", (e) => { e.preventDefault(); loadGate().catch(report); });
    $("controls-form").addEventListener("submit", saveControls);
    $("controls-form").addEventListener("input", () => { state.controlsDirty = true; });
    $("block").addEventListener("click", () => setBlocked(true));
    $("unblock").addEventListener("click", () => setBlocked(false));

    await idleTimeout();
    watchIdle();
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    const active = Number(sessionStorage.getItem(ACTIVITY) || 0);
    if (saved && Date.now() - active < state.idleMs) {
      state.session = saved;
      state.lastActivity = active;
      scheduleRefresh();
      enter().catch(report);
    } else if (saved) {
      state.session = saved;
      endSession("Сеанс завершён из-за бездействия. Войдите снова.");
    }
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", () => { start(); });
})();

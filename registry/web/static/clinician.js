// The order screen a hospital EHR embeds. It uses only the registry's public interfaces: FHIR search for the
// patient and the catalog CodeSystem, CDS Hooks 2.0 order-select / order-sign / patient-view, and CDS Hooks feedback
// for every decision. The bearer token comes from the signed-in session (POST /clinician/token).
"use strict";
(function () {
  const app = document.getElementById("app");
  const csrf = app.dataset.csrf;
  const org = app.dataset.org;
  const zh = app.dataset.lang !== "en";
  const reasons = JSON.parse(document.getElementById("reasons").textContent);
  const words = JSON.parse(document.getElementById("words").textContent);
  const REASON_SYSTEM = "https://hr-registry.org.cn/fhir/CodeSystem/nonrecognition-reasons";
  const state = { token: null, expires: 0, patient: null, orders: [], catalog: null, seq: 0 };
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $("status").textContent = text; $("status").classList.toggle("error", !!error); };
  const T = (zhText, enText) => (zh ? zhText : enText);

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  async function token() {
    if (!state.token || Date.now() > state.expires - 30000) {
      const r = await fetch("/clinician/token", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
      if (r.status === 401) { location.href = "/clinician/login?next=/clinician"; throw new Error("signed out"); }
      if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
      const j = await r.json();
      state.token = j.access_token;
      state.expires = Date.now() + j.expires_in * 1000;
    }
    return state.token;
  }

  async function call(method, path, body) {
    // the cards come in the page's language (the CDS services read Accept-Language)
    const headers = { Authorization: `Bearer ${await token()}`, Accept: "application/fhir+json, application/json", "Accept-Language": zh ? "zh-CN" : "en" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      const issue = (j.issue || [])[0] || {};
      throw new Error(issue.diagnostics || `HTTP ${r.status}`);
    }
    return j;
  }

  // ------------------------------------------------------------------------------------------------ Markdown (cards)
  // The card detail is CDS Hooks GitHub-flavoured Markdown; the registry's cards use bold, lists, tables and links.
  // Data in a card is backslash-escaped (CommonMark: an escaped ASCII punctuation character stands for itself).
  const literal = (t) => t.replace(/\\([!-\/:-@\[-`{-~])/g, "$1");
  function inline(text) {
    const out = document.createDocumentFragment();
    const re = /\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      out.append(literal(text.slice(last, m.index)));
      if (m[1] !== undefined) out.append(el("strong", { text: literal(m[1]) }));
      else if (/^https?:\/\//.test(m[3]) || m[3].startsWith("/")) out.append(el("a", { href: m[3], text: literal(m[2]) }));
      else out.append(literal(m[2]));
      last = re.lastIndex;
    }
    out.append(literal(text.slice(last)));
    return out;
  }
  const cells = (line) => line.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
  function markdown(text) {
    const root = el("div", { class: "md" });
    const lines = (text || "").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (!line.trim()) continue;
      if (line.startsWith("|") && (lines[i + 1] || "").match(/^\|?\s*-{3}/)) {
        const table = el("table", { class: "compact" });
        table.append(el("thead", {}, el("tr", {}, ...cells(line).map((c) => el("th", { scope: "col" }, inline(c))))));
        const body = el("tbody");
        i += 2;
        for (; i < lines.length && lines[i].startsWith("|"); i++) body.append(el("tr", {}, ...cells(lines[i]).map((c) => el("td", {}, inline(c)))));
        i--;
        table.append(body);
        root.append(table);
      } else if (line.startsWith("- ")) {
        const ul = el("ul");
        for (; i < lines.length && lines[i].startsWith("- "); i++) ul.append(el("li", {}, inline(lines[i].slice(2))));
        i--;
        root.append(ul);
      } else root.append(el("p", {}, inline(line)));
    }
    return root;
  }

  // ------------------------------------------------------------------------------------------------ patient
  function hookBody(hook, extra) {
    return {
      hook, hookInstance: uuid(), fhirServer: `${location.origin}/fhir`,
      context: { userId: `Practitioner/${app.dataset.user}`, patientId: state.patient.id, ...extra },
      prefetch: { patient: state.patient },
    };
  }

  $("find-patient").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const mrn = $("mrn").value.trim();
    if (!mrn) return;
    status(T("正在查找患者…", "Looking up the patient…"));
    try {
      const bundle = await call("GET", `/fhir/Patient?identifier=${encodeURIComponent(mrn)}&_count=20`);
      const found = (bundle.entry || []).map((e) => e.resource);
      const mine = found.find((p) => ((p.managingOrganization || {}).reference || "") === `Organization/${org}`) || found[0];
      if (!mine) { status(T(`本院没有就诊号为 ${mrn} 的患者。`, `No patient with MRN ${mrn} at this hospital.`), true); return; }
      selectPatient(mine);
    } catch (e) { status(e.message, true); }
  });

  async function selectPatient(p) {
    state.patient = p;
    state.orders = [];
    renderOrders();
    const name = (p.name || [])[0] || {};
    const nid = (p.identifier || []).find((i) => String(i.value || "").includes("*"));
    const banner = $("patient");
    banner.replaceChildren(
      el("strong", { text: name.text || `${name.family || ""}${(name.given || []).join("")}` }),
      el("span", { text: ` ${p.gender === "male" ? T("男", "male") : p.gender === "female" ? T("女", "female") : ""} ${p.birthDate || ""}` }),
      nid ? el("span", { class: "chip", text: nid.value }) : null,
    );
    banner.hidden = false;
    $("orders-section").hidden = false;
    $("history").replaceChildren();
    status(T("已选择患者。", "Patient selected."));
    try {
      const r = await call("POST", "/cds-services/hr-patient-view", hookBody("patient-view", {}));
      for (const card of r.cards || []) $("history").append(cardView(card, null));
    } catch (e) { status(e.message, true); }
  }

  // ------------------------------------------------------------------------------------------------ catalog search
  async function catalog() {
    if (!state.catalog) {
      const cs = await call("GET", "/fhir/CodeSystem/recognized-items");
      state.catalog = (cs.concept || []).map((c) => {
        const props = c.property || [];
        const get = (code) => props.filter((p) => p.code === code);
        const codings = get("code").map((p) => p.valueCoding);
        const regional = (get("regional-code")[0] || {}).valueCoding;
        const en = ((c.designation || [])[0] || {}).value || "";
        const abbr = get("abbreviation").map((p) => p.valueString);
        const kind = (get("kind")[0] || {}).valueCode;
        const words = [c.code, c.display, en, ...abbr, ...codings.map((x) => x.code), regional ? regional.code : ""];
        return { id: c.code, display: c.display, en, abbr, kind, codings, regional, haystack: words.join(" ").toLowerCase() };
      });
    }
    return state.catalog;
  }

  let searchTimer = null;
  $("order-search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 120); });
  $("order-search").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); const first = $("order-results").querySelector("button"); if (first) first.click(); }
    if (ev.key === "ArrowDown") { const first = $("order-results").querySelector("button"); if (first) { ev.preventDefault(); first.focus(); } }
  });
  $("order-results").addEventListener("keydown", (ev) => {
    const items = Array.from($("order-results").querySelectorAll("button"));
    const i = items.indexOf(document.activeElement);
    if (ev.key === "ArrowDown" && i < items.length - 1) { ev.preventDefault(); items[i + 1].focus(); }
    if (ev.key === "ArrowUp") { ev.preventDefault(); (i > 0 ? items[i - 1] : $("order-search")).focus(); }
  });

  async function search() {
    const q = $("order-search").value.trim().toLowerCase();
    const list = $("order-results");
    list.replaceChildren();
    if (!q) return;
    try {
      const items = await catalog();
      const exact = items.filter((c) => c.id.toLowerCase() === q || c.abbr.some((a) => a.toLowerCase() === q) || c.codings.some((x) => x.code.toLowerCase() === q));
      const rest = items.filter((c) => !exact.includes(c) && c.haystack.includes(q));
      for (const c of [...exact, ...rest].slice(0, 12)) {
        list.append(el("li", {}, el("button", { type: "button", class: "result", "data-item": c.id, onclick: () => addOrder(c) },
          el("strong", { text: zh ? c.display : c.en || c.display }),
          el("span", { class: "muted", text: ` ${c.id}${c.abbr.length ? " · " + c.abbr.join(", ") : ""}${c.codings.length ? " · LOINC " + c.codings[0].code : ""}` }))));
      }
      if (!list.children.length) list.append(el("li", { class: "muted", text: T("没有匹配的项目。", "No matching item.") }));
    } catch (e) { status(e.message, true); }
  }

  // ------------------------------------------------------------------------------------------------ orders
  async function addOrder(item) {
    state.seq += 1;
    const sr = {
      resourceType: "ServiceRequest", id: `draft-${Date.now().toString(36)}-${state.seq}`, status: "draft", intent: "order",
      subject: { reference: `Patient/${state.patient.id}` },
      code: { coding: [...(item.regional ? [item.regional] : []), ...item.codings], text: item.display },
    };
    const order = { sr, item, state: "draft", card: null, decision: null };
    state.orders.push(order);
    $("order-search").value = "";
    $("order-results").replaceChildren();
    renderOrders();
    status(T(`已添加：${item.display}，正在核对互认结果…`, `Added ${item.en || item.display}; checking for recognizable results…`));
    try {
      const r = await call("POST", "/cds-services/hr-order-select", hookBody("order-select", {
        selections: [`ServiceRequest/${sr.id}`], draftOrders: draftBundle(),
      }));
      order.card = (r.cards || [])[0] || null;
      // a notice without override reasons ("患者已限制共享": the patient paused sharing) has nothing to decide on
      order.state = !order.card ? "clear" : order.card.overrideReasons ? "advised" : "restricted";
      renderOrders();
      status(order.card ? order.card.summary : T(`${item.display}：无可互认结果。`, `${item.en || item.display}: nothing to recognize.`));
    } catch (e) { order.state = "error"; renderOrders(); status(e.message, true); }
  }

  function draftBundle() {
    return { resourceType: "Bundle", type: "collection", entry: state.orders.filter((o) => o.state !== "withdrawn").map((o) => ({ resource: o.sr })) };
  }

  async function feedback(card, outcome, extra) {
    const service = card._service || "hr-order-select";
    await call("POST", `/cds-services/${service}/feedback`, {
      feedback: [{ card: card.uuid, outcome, outcomeTimestamp: new Date().toISOString(), ...extra }],
    });
  }

  function cardView(card, order) {
    const box = el("article", { class: `cds-card ${card.indicator || "info"}`, "data-testid": "card", "aria-label": card.summary });
    box.append(el("p", { class: "summary" }, el("strong", { text: card.summary })));
    box.append(markdown(card.detail));
    for (const link of card.links || []) box.append(el("p", {}, el("a", { href: link.url, target: "_blank", rel: "noopener", text: `${link.label} ↗` })));
    if (!order || order.decision || !card.overrideReasons) return box;
    const suggestion = (card.suggestions || [])[0];
    const actions = el("div", { class: "card-actions" });
    const accept = el("button", { type: "button", class: "primary", "data-testid": "accept", text: words.accept, onclick: async () => {
      try {
        await feedback(card, "accepted", suggestion ? { acceptedSuggestions: [{ id: suggestion.uuid }] } : {});
        order.decision = { outcome: "accepted" };
        order.state = "withdrawn"; // the suggestion's action: delete the draft order
        renderOrders();
        status(T(`已互认：${order.item.display} 已撤销。`, `Recognized: ${order.item.en || order.item.display} withdrawn.`));
      } catch (e) { status(e.message, true); }
    } });
    const decline = el("button", { type: "button", "data-testid": "decline", text: words.decline, "aria-expanded": "false" });
    const form = el("form", { class: "decline", hidden: true });
    const selId = `reason-${order.sr.id}`, comId = `comment-${order.sr.id}`;
    const select = el("select", { id: selId, required: true, "data-testid": "reason" }, el("option", { value: "", text: "—" }),
      ...(card.overrideReasons || reasons.map((r) => ({ code: r.code, display: r.display, system: REASON_SYSTEM }))).map((r) => {
        const known = reasons.find((x) => x.code === r.code) || {};
        const display = known.display || r.display;
        return el("option", { value: r.code, text: `${r.code} ${display}${known.counts === false ? T(`（${words.not_counted}）`, ` (${words.not_counted})`) : ""}` });
      }));
    const comment = el("input", { id: comId, maxlength: "500", "data-testid": "comment" });
    form.append(el("label", { for: selId, text: words.reason }), select, el("label", { for: comId, text: words.comment }), comment,
      el("button", { type: "submit", "data-testid": "confirm-decline", text: words.confirm }));
    decline.addEventListener("click", () => { form.hidden = !form.hidden; decline.setAttribute("aria-expanded", String(!form.hidden)); if (!form.hidden) select.focus(); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const code = select.value;
      const reason = (card.overrideReasons || []).find((r) => r.code === code) || { system: REASON_SYSTEM, code };
      const known = reasons.find((x) => x.code === code) || {};
      if (known.comment && !comment.value.trim()) { status(T("此原因需要填写说明。", "This reason needs a comment."), true); comment.focus(); return; }
      try {
        await feedback(card, "overridden", { overrideReason: { reason, userComment: comment.value.trim() || undefined } });
        order.decision = { outcome: "overridden", reason };
        order.state = "declined";
        renderOrders();
        status(T(`不互认（${reason.code} ${reason.display || ""}），保留开单。`, `Not recognized (${reason.code} ${reason.display || ""}); the order stays.`));
      } catch (e) { status(e.message, true); }
    });
    actions.append(accept, decline);
    box.append(actions, form);
    return box;
  }

  function renderOrders() {
    const list = $("orders");
    list.replaceChildren();
    for (const o of state.orders) {
      const label = zh ? o.item.display : o.item.en || o.item.display;
      const li = el("li", { class: `order ${o.state}`, "data-testid": "order", "data-item": o.item.id, "data-state": o.state });
      const head = el("div", { class: "order-head" }, el("span", { class: "order-name", text: label }));
      const badge = {
        draft: T("核对中…", "checking…"), clear: T("无可互认结果", "nothing to recognize"), advised: T("有可互认结果", "recognizable result"),
        withdrawn: T("已互认，开单已撤销", "recognized — order withdrawn"), error: T("核对失败", "check failed"),
        declined: o.decision && o.decision.reason ? T(`不互认：${o.decision.reason.code} ${o.decision.reason.display || ""}`, `not recognized: ${o.decision.reason.code} ${o.decision.reason.display || ""}`) : "",
        signed: T("已签署", "signed"), restricted: T("患者已限制共享", "the patient has restricted sharing"),
      }[o.state];
      head.append(el("span", { class: "badge", "data-testid": "order-state", text: badge }));
      if (!o.decision && o.state !== "signed") head.append(el("button", { type: "button", class: "link", text: words.remove, onclick: () => { state.orders = state.orders.filter((x) => x !== o); renderOrders(); } }));
      li.append(head);
      if (o.card && o.state !== "withdrawn") li.append(cardView(o.card, o));
      list.append(li);
    }
    $("no-orders").hidden = state.orders.length > 0;
    $("sign").disabled = !state.orders.some((o) => ["clear", "declined", "advised", "restricted"].includes(o.state));
  }

  $("sign").addEventListener("click", async () => {
    const pending = state.orders.filter((o) => ["clear", "declined", "advised", "restricted"].includes(o.state));
    status(T("签署前核对…", "Checking before signing…"));
    try {
      const r = await call("POST", "/cds-services/hr-order-sign", hookBody("order-sign", {
        draftOrders: { resourceType: "Bundle", type: "collection", entry: pending.map((o) => ({ resource: o.sr })) },
      }));
      // a card for an order nobody has decided on yet stops the signing until the clinician decides
      let open = 0;
      for (const card of r.cards || []) {
        const target = (((card.suggestions || [])[0] || {}).actions || [{}])[0].resourceId;
        const o = pending.find((x) => `ServiceRequest/${x.sr.id}` === target);
        if (o && !o.decision) { card._service = "hr-order-sign"; o.card = card; o.state = "advised"; open += 1; }
      }
      if (open) { renderOrders(); status(T(`还有 ${open} 项可互认结果需要决定。`, `${open} recognizable result(s) still need a decision.`), true); return; }
      for (const o of pending) o.state = "signed";
      renderOrders();
      status(T(`已签署 ${pending.length} 项医嘱。`, `${pending.length} order(s) signed.`));
    } catch (e) { status(e.message, true); }
  });
})();

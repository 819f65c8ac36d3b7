// The shoptalk console: one page, five tabs about the chosen project, every call
// through the typed API client.

import { api, errorMessage, getKey, openAuthorized, openQueued, setKey, upload, type Schemas } from "./api";
import { field, h, notice } from "./dom";
import { currentLang, setLang, t, type Key } from "./i18n";
import { currentProject, loadProjects, newProjectForm, projectSwitcher, servedProject, type Projects } from "./projects";

type Tab = "project" | "build" | "scorecard" | "playground" | "keys";

function pct(value: number | undefined): string {
  return value === undefined ? "–" : value.toFixed(3);
}

// --- state

let tab: Tab = "project";
let canEdit = true;
let isAdmin = false;
let buildTimer: number | undefined;
let projects: Projects | null = null;
let creating = false;
const main = h("main");

// --- sign in

async function signIn(key: string): Promise<boolean> {
  setKey(key);
  projects = await loadProjects();
  if (!projects) {
    setKey(null);
    return false;
  }
  // Scopes are learned by trying: the server is the only judge of a key.
  isAdmin = !(await api.GET("/v1/admin/keys")).error;
  canEdit = isAdmin || !(await api.GET("/v1/fine_tuning/jobs")).error;
  return true;
}

function signInView(): HTMLElement {
  const input = h("input", { type: "password", autocomplete: "off", size: 50 }) as HTMLInputElement;
  const message = h("div");
  const submit = async (event: Event) => {
    event.preventDefault();
    if (await signIn(input.value.trim())) render();
    else message.replaceChildren(notice(t("badKey"), "error"));
  };
  return h(
    "form",
    { class: "card signin", onsubmit: submit },
    h("h2", {}, t("signIn")),
    field("keyLabel", input),
    h("p", { class: "help" }, t("keyHelp")),
    h("button", { type: "submit" }, t("signIn")),
    message,
  );
}

// --- project: settings, sources, data check

async function projectView(): Promise<HTMLElement> {
  const { data, error } = await api.GET("/v1/project");
  if (error || !data) return notice(errorMessage(error), "error");
  const name = h("input", { value: data.name, disabled: !canEdit }) as HTMLInputElement;
  const prompt = h("textarea", { rows: 3, disabled: !canEdit }, data.system_prompt) as HTMLTextAreaElement;
  const saved = h("span");
  const save = async () => {
    const result = await api.PATCH("/v1/project", {
      body: { name: name.value, system_prompt: prompt.value },
    });
    saved.replaceChildren(result.error ? notice(errorMessage(result.error), "error") : notice(t("saved")));
  };
  const sources = h(
    "table",
    {},
    h("tr", {}, h("th", {}, t("kind")), h("th", {}, t("file")), h("th", {}, t("bytes"))),
    ...data.sources.map((s) => h("tr", {}, h("td", {}, t(s.kind as Key)), h("td", {}, s.path), h("td", { class: "num" }, String(s.bytes)))),
  );
  return h(
    "div",
    {},
    !canEdit && notice(t("readOnly")),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("project")),
      field("name", name),
      field("systemPrompt", prompt),
      canEdit && h("button", { onclick: save }, t("save")),
      saved,
    ),
    h("section", { class: "card" }, h("h2", {}, t("sources")), canEdit && dropZone(), sources),
    h("section", { class: "card" }, h("h2", {}, t("dataCheck")), checkPanel()),
  );
}

function dropZone(): HTMLElement {
  const kind = h(
    "select",
    {},
    ...(["docs", "faq", "conversations"] as const).map((k) => h("option", { value: k }, t(k))),
  ) as HTMLSelectElement;
  const status = h("ul", { class: "uploads" });
  const send = async (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      const form = new FormData();
      form.append("file", file);
      form.append("kind", kind.value);
      const response = await upload("/v1/project/sources", form);
      const body = await response.json();
      status.append(h("li", {}, response.ok ? `${t("uploaded")}: ${body.path}` : `${t("error")}: ${errorMessage(body)}`));
    }
  };
  const picker = h("input", { type: "file", multiple: true, hidden: true, onchange: () => send(picker.files) }) as HTMLInputElement;
  const zone = h(
    "div",
    {
      class: "dropzone",
      tabindex: 0,
      onclick: () => picker.click(),
      ondragover: (e: DragEvent) => {
        e.preventDefault();
        zone.classList.add("over");
      },
      ondragleave: () => zone.classList.remove("over"),
      ondrop: (e: DragEvent) => {
        e.preventDefault();
        zone.classList.remove("over");
        send(e.dataTransfer?.files ?? null);
      },
    },
    t("dropHere"),
  );
  return h("div", {}, field("kind", kind), zone, picker, status);
}

function checkPanel(): HTMLElement {
  const out = h("div");
  const run = async () => {
    const { data, error } = await api.GET("/v1/project/check");
    if (error || !data) return out.replaceChildren(notice(errorMessage(error), "error"));
    const counts = Object.entries(data.counts).map(([k, v]) => `${v} ${k}`).join(" · ");
    out.replaceChildren(
      h("p", {}, counts),
      data.problems.length === 0
        ? notice(t("noProblems"))
        : h(
            "div",
            {},
            notice(`${data.problems.length} ${t("problems")}`, "error"),
            h("ul", {}, ...data.problems.map((p) => h("li", {}, h("code", {}, p.where), " ", p.message))),
          ),
    );
  };
  return h(
    "div",
    {},
    h("button", { onclick: run }, t("runCheck")),
    " ",
    h("button", { class: "link", onclick: () => openQueued("/v1/project/report").catch((e) => out.replaceChildren(notice(String(e), "error"))) }, t("dataReport")),
    out,
  );
}

// --- build: start, watch (stage, loss curve, ETA), cancel/pause/resume

async function buildView(): Promise<HTMLElement> {
  const box = h("div");
  const refresh = async () => {
    const { data: builds } = await api.GET("/v1/project/builds");
    const latest = builds?.[0];
    if (!latest) return box.replaceChildren(notice(t("noBuilds")));
    const { data } = await api.GET("/v1/project/builds/{build_id}", { params: { path: { build_id: latest.id } } });
    if (data) box.replaceChildren(buildPanel(data));
    const active = ["queued", "running", "validating_files"].includes(latest.status);
    window.clearTimeout(buildTimer);
    if (active && tab === "build") buildTimer = window.setTimeout(refresh, 2000);
  };
  const start = async () => {
    const { error } = await api.POST("/v1/project/builds");
    if (error) box.prepend(notice(errorMessage(error), "error"));
    await refresh();
  };
  const planBox = h("div");
  // Planning builds the dataset and loads the model: the worker runs it; we poll its result.
  const showPlan = async () => {
    const { data, error, response } = await api.GET("/v1/project/plan");
    if (response.status === 202 && tab === "build") return void window.setTimeout(showPlan, 1000);
    if (error || !data) return planBox.replaceChildren(notice(errorMessage(error), "error"));
    planBox.replaceChildren(
      data.plan ? h("pre", { class: "plan" }, data.plan.text) : notice(String(data.error?.message ?? data.status), "error"),
    );
  };
  const estimate = async () => {
    planBox.replaceChildren(h("p", { class: "help" }, "…"));
    const { error } = await api.POST("/v1/project/plan");
    if (error) return planBox.replaceChildren(notice(errorMessage(error), "error"));
    await showPlan();
  };
  await refresh();
  return h(
    "section",
    { class: "card" },
    h("h2", {}, t("build")),
    canEdit && h("button", { class: "link", onclick: estimate }, t("estimate")),
    canEdit && h("button", { onclick: start }, t("startBuild")),
    planBox,
    box,
  );
}

function buildPanel(build: Schemas["BuildInfo"]): HTMLElement {
  const act = (action: "cancel" | "pause" | "resume") => async () => {
    await api.POST("/v1/project/builds/{build_id}/{action}", { params: { path: { build_id: build.id, action } } });
    render();
  };
  const running = build.status === "running" || build.status === "queued";
  const eta = build.eta_seconds == null ? "–" : `${Math.round(build.eta_seconds / 60)} min`;
  return h(
    "div",
    {},
    h("p", {}, `${t("status")}: `, h("strong", { class: `status ${build.status}` }, build.status), ` · ${t("stage")}: ${build.stage ?? "–"} · ${t("eta")}: ${eta}`),
    canEdit && running && h("button", { onclick: act("pause") }, t("pause")),
    canEdit && running && h("button", { onclick: act("cancel") }, t("cancel")),
    canEdit && build.status === "paused" && h("button", { onclick: act("resume") }, t("resume")),
    build.error && notice(String(build.error.message ?? ""), "error"),
    lossChart((build.metrics ?? []) as Array<Record<string, number>>),
    h("h3", {}, t("events")),
    h("ol", { class: "events" }, ...(build.events ?? []).map((e) => h("li", { class: String(e.level) }, String(e.message)))),
  );
}

function lossChart(metrics: Array<Record<string, number>>): HTMLElement | null {
  if (metrics.length < 2) return null;
  const width = 560;
  const height = 200;
  const pad = 32;
  const steps = metrics.map((m) => m.step);
  const values = metrics.flatMap((m) => [m.loss, m.val_loss].filter((v) => v !== undefined));
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...values), Math.max(...values)];
  const x = (s: number) => pad + ((s - x0) / Math.max(1, x1 - x0)) * (width - 2 * pad);
  const y = (v: number) => height - pad - ((v - y0) / Math.max(1e-9, y1 - y0)) * (height - 2 * pad);
  const line = (key: string) =>
    metrics
      .filter((m) => m[key] !== undefined)
      .map((m, i) => `${i ? "L" : "M"}${x(m.step).toFixed(1)},${y(m[key]).toFixed(1)}`)
      .join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("loss"));
  svg.innerHTML =
    `<path d="${line("loss")}" class="train"/><path d="${line("val_loss")}" class="val"/>` +
    `<text x="${pad}" y="14">${t("loss")} ${y1.toFixed(2)} → ${metrics[metrics.length - 1].loss.toFixed(2)}</text>` +
    `<text x="${width - pad}" y="${height - 8}" text-anchor="end">${t("step")} ${x1}</text>`;
  return svg as unknown as HTMLElement;
}

// --- scorecard

type SuiteScores = { n: number; kind: string; base: Record<string, number>; tuned: Record<string, number>; diff: Record<string, number[]> };
type QuestionRow = { suite: string; prompt: string; reference?: string | null; base_answer: string; tuned_answer: string; base_score: number; tuned_score: number };

async function scorecardView(): Promise<HTMLElement> {
  const { data, error } = await api.GET("/v1/project/scorecard");
  if (error || !data) return h("section", { class: "card" }, notice(t("noScorecard")));
  const card = data as { promoted: boolean; suites: Record<string, SuiteScores>; questions: QuestionRow[] };
  const rows: HTMLElement[] = [];
  for (const [suite, scores] of Object.entries(card.suites)) {
    for (const metric of Object.keys(scores.diff)) {
      const [mean, low, high] = scores.diff[metric];
      const cls = low > 0 ? "up" : high < 0 ? "down" : "";
      rows.push(
        h(
          "tr",
          {},
          h("td", {}, `${suite} (n=${scores.n})`),
          h("td", {}, metric),
          h("td", { class: "num" }, pct(scores.base[metric])),
          h("td", { class: "num" }, pct(scores.tuned[metric])),
          h("td", { class: `num ${cls}` }, `${mean >= 0 ? "+" : ""}${mean.toFixed(3)} [${low.toFixed(3)}, ${high.toFixed(3)}]`),
        ),
      );
    }
  }
  const questions = card.questions.map((q) =>
    h(
      "tr",
      {},
      h("td", {}, q.suite),
      h("td", {}, q.prompt),
      h("td", {}, q.reference ?? ""),
      h("td", { class: q.base_score >= 1 ? "up" : "" }, q.base_answer),
      h("td", { class: q.tuned_score >= 1 ? "up" : "" }, q.tuned_answer),
    ),
  );
  return h(
    "section",
    { class: "card" },
    h("h2", {}, t("scorecard")),
    notice(card.promoted ? t("gatePassed") : t("gateFailed"), card.promoted ? "ok" : "error"),
    // The full report quotes every question and answer, so only the owner's scope
    // (admin) may open it: no button the server would answer with a 403.
    isAdmin && h("button", { class: "link", onclick: () => openAuthorized("/v1/project/scorecard/report") }, t("fullReport")),
    h("table", {}, h("tr", {}, ...(["suite", "metric", "base", "tuned", "change"] as Key[]).map((k) => h("th", {}, t(k)))), ...rows),
    h("h3", {}, t("questions")),
    h("table", { class: "questions" }, h("tr", {}, ...(["suite", "question", "reference", "base", "tuned"] as Key[]).map((k) => h("th", {}, t(k)))), ...questions),
  );
}

// --- playground with feedback

function playgroundView(): HTMLElement {
  const question = h("textarea", { rows: 2 }) as HTMLTextAreaElement;
  const rag = h("input", { type: "checkbox" }) as HTMLInputElement;
  const out = h("div", { class: "answers" });
  const askIt = async () => {
    out.replaceChildren(h("p", { class: "help" }, "…"));
    const { data, error } = await api.POST("/v1/project/playground", { body: { question: question.value, rag: rag.checked, max_tokens: 128 } });
    if (error || !data) return out.replaceChildren(notice(errorMessage(error), "error"));
    out.replaceChildren(answerCard(t("base"), question.value, data.base), data.tuned ? answerCard(t("tuned"), question.value, data.tuned) : notice(t("notTrained")));
  };
  // The server's catalog holds another project's models only on the served base model.
  const served = projects && servedProject(projects);
  const elsewhere = projects && !currentProject(projects).served;
  return h(
    "div",
    {},
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("playground")),
      elsewhere && served && h("p", { class: "help" }, `${t("chatApiServes")} ${served.name}`),
      field("question", question),
      h("label", { class: "inline" }, rag, " ", t("useRag")),
      h("button", { onclick: askIt }, t("ask")),
      out,
    ),
    canEdit && reviewQueue(),
  );
}

// Ratings from chat keys train nothing until an editor accepts them.
function reviewQueue(): HTMLElement {
  const list = h("div");
  const decide = (id: string, decision: "accept" | "reject") => async () => {
    const { error } = await api.POST("/v1/project/feedback/{feedback_id}/{decision}", { params: { path: { feedback_id: id, decision } } });
    if (error) return list.prepend(notice(errorMessage(error), "error"));
    await load();
  };
  const load = async () => {
    const { data, error } = await api.GET("/v1/project/feedback/pending");
    if (error || !data) return list.replaceChildren(notice(errorMessage(error), "error"));
    if (data.data.length === 0) return list.replaceChildren(h("p", { class: "help" }, t("nothingToReview")));
    list.replaceChildren(
      ...data.data.map((f) =>
        h(
          "div",
          { class: "answer" },
          h("h3", {}, `${f.rating === "up" ? "👍" : "👎"} ${f.prompt[0]?.content ?? ""}`),
          h("p", {}, f.correction ?? f.answer),
          h("button", { onclick: decide(f.id, "accept") }, t("accept")),
          h("button", { onclick: decide(f.id, "reject") }, t("reject")),
        ),
      ),
    );
  };
  void load();
  return h("section", { class: "card" }, h("h2", {}, t("review")), list);
}

function answerCard(title: string, question: string, answer: Schemas["PlaygroundAnswer"]): HTMLElement {
  const correction = h("textarea", { rows: 2, placeholder: t("correction") }) as HTMLTextAreaElement;
  const status = h("span");
  // The cited passages go with the rating: it then carries their groups, and trains only
  // models built for them (an admin's grounded answer may quote restricted documents).
  const sources = (answer.citations ?? []).map((c) => String(c.source ?? "")).filter(Boolean);
  const rate = (rating: "up" | "down") => async () => {
    const { data, error } = await api.POST("/v1/project/feedback", {
      body: { question, answer: answer.answer, rating, correction: correction.value || null, model: answer.model, sources },
    });
    status.replaceChildren(error || !data ? notice(errorMessage(error), "error") : notice(t(data.pending_review ? "thanksPending" : "thanks")));
  };
  const citations = answer.citations ?? [];
  return h(
    "div",
    { class: "answer" },
    h("h3", {}, title),
    h("p", {}, answer.answer),
    citations.length > 0 &&
      h("details", { open: true }, h("summary", {}, t("citations")), h("ol", {}, ...citations.map((c) => h("li", {}, h("code", {}, String(c.source ?? "")), " ", String(c.quote ?? c.span ?? ""))))),
    h("button", { onclick: rate("up"), title: t("good") }, "👍"),
    h("button", { onclick: rate("down"), title: t("bad") }, "👎"),
    correction,
    h("button", { onclick: rate("down") }, t("sendFeedback")),
    status,
  );
}

// --- keys and usage (admin)

async function keysView(): Promise<HTMLElement> {
  if (!isAdmin) return notice(t("readOnly"));
  const { data } = await api.GET("/v1/admin/keys");
  const created = h("div");
  const name = h("input") as HTMLInputElement;
  const scopes = h("input", { value: "chat,embeddings" }) as HTMLInputElement;
  const models = h("input") as HTMLInputElement;
  const rpm = h("input", { type: "number", min: 1 }) as HTMLInputElement;
  const tpm = h("input", { type: "number", min: 1 }) as HTMLInputElement;
  const perDay = h("input", { type: "number", min: 1 }) as HTMLInputElement;
  const num = (input: HTMLInputElement) => (input.value ? Number(input.value) : null);
  const create = async () => {
    const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
    const result = await api.POST("/v1/admin/keys", {
      body: { name: name.value, scopes: list(scopes.value), models: list(models.value).length ? list(models.value) : null, rpm: num(rpm), tpm: num(tpm), tokens_per_day: num(perDay) },
    });
    if (result.error || !result.data) return created.replaceChildren(notice(errorMessage(result.error), "error"));
    created.replaceChildren(notice(t("secretOnce")), h("code", { class: "secret" }, result.data.secret));
  };
  const revoke = (id: string) => async () => {
    await api.POST("/v1/admin/keys/{key_id}/revoke", { params: { path: { key_id: id } } });
    render();
  };
  const rows = (data?.data ?? []).map((k) =>
    h(
      "tr",
      {},
      h("td", {}, k.name),
      h("td", {}, h("code", {}, `${k.prefix}…`)),
      h("td", {}, k.scopes.join(", ")),
      h("td", {}, k.last_used_at ?? t("never")),
      h("td", {}, k.revoked_at ? "revoked" : h("button", { onclick: revoke(k.id) }, t("revoke"))),
    ),
  );
  return h(
    "div",
    {},
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("keys")),
      h("table", {}, h("tr", {}, ...(["name", "keys", "scopes", "lastUsed", "status"] as Key[]).map((k) => h("th", {}, t(k)))), ...rows),
      h("h3", {}, t("createKey")),
      field("name", name),
      field("scopes", scopes),
      field("models", models),
      field("rpm", rpm),
      field("tpm", tpm),
      field("perDay", perDay),
      h("button", { onclick: create }, t("createKey")),
      created,
    ),
    await usageCard(),
  );
}

type Total = { name: string; requests: number; prompt_tokens: number; completion_tokens: number };

async function usageCard(): Promise<HTMLElement> {
  const { data } = await api.GET("/v1/admin/usage", { params: { query: {} } });
  const usage = (data ?? { by_key: [], by_model: [] }) as { by_key: Total[]; by_model: Total[] };
  return h("section", { class: "card" }, h("h2", {}, t("usage")), h("h3", {}, t("byKey")), bars(usage.by_key), h("h3", {}, t("byModel")), bars(usage.by_model));
}

function bars(totals: Total[]): HTMLElement {
  const max = Math.max(1, ...totals.map((x) => x.prompt_tokens + x.completion_tokens));
  return h(
    "div",
    { class: "bars" },
    ...totals.map((x) => {
      const tokens = x.prompt_tokens + x.completion_tokens;
      return h(
        "div",
        { class: "bar-row" },
        h("span", { class: "bar-label" }, x.name),
        h("span", { class: "bar", style: `width:${(100 * tokens) / max}%` }),
        h("span", { class: "num" }, `${tokens} ${t("tokens")} · ${x.requests} ${t("requests")}`),
      );
    }),
  );
}

// --- the page

const views: Record<Tab, () => Promise<HTMLElement> | HTMLElement> = {
  project: projectView,
  build: buildView,
  scorecard: scorecardView,
  playground: playgroundView,
  keys: keysView,
};

async function render(): Promise<void> {
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  const langButton = h("button", { class: "link", onclick: () => { setLang(currentLang() === "en" ? "zh" : "en"); render(); } }, currentLang() === "en" ? "中文" : "English");
  const header = h("header", {}, h("h1", {}, t("title")), langButton);
  if (!getKey()) {
    main.replaceChildren(signInView());
    document.body.replaceChildren(header, main);
    return;
  }
  projects = (await loadProjects()) ?? projects;
  if (projects) {
    const switched = () => { creating = false; render(); };
    const create = () => { creating = true; render(); };
    header.insertBefore(projectSwitcher(projects, canEdit, switched, create), langButton);
  }
  const nav = h(
    "nav",
    {},
    ...(Object.keys(views) as Tab[]).map((name) =>
      h("button", { class: name === tab ? "active" : "", "aria-current": name === tab ? "page" : false, onclick: () => { creating = false; tab = name; render(); } }, t(name)),
    ),
    h("button", { class: "link", onclick: () => { setKey(null); render(); } }, t("signOut")),
  );
  header.append(nav);
  document.body.replaceChildren(header, main);
  if (creating && projects) {
    const done = () => { creating = false; tab = "project"; render(); };
    main.replaceChildren(newProjectForm(projects, done, done));
    return;
  }
  try {
    main.replaceChildren(await views[tab]());
  } catch (error) {
    main.replaceChildren(notice(`${t("error")}: ${String(error)}`, "error"));
  }
}

async function start(): Promise<void> {
  const key = getKey();
  if (key && !(await signIn(key))) setKey(null);
  await render();
}

start();

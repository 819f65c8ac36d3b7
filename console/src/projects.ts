// The project switcher and the "New project" form. The console works on the served
// project or on one made here; api.ts sends the choice along with every call.

import { api, errorMessage, getProject, setProject, type Schemas } from "./api";
import { field, h, notice } from "./dom";
import { t } from "./i18n";

export type Projects = Schemas["ProjectList"];
export type ProjectSummary = Schemas["ProjectSummary"];

// The server's projects; a remembered choice it no longer has falls back to the served one.
export async function loadProjects(): Promise<Projects | null> {
  const { data } = await api.GET("/v1/projects");
  if (data && !data.data.some((p) => !p.served && p.slug === getProject())) setProject(null);
  return data ?? null;
}

export function currentProject(projects: Projects): ProjectSummary {
  return projects.data.find((p) => p.slug === getProject()) ?? projects.data[0];
}

export function servedProject(projects: Projects): ProjectSummary {
  return projects.data.find((p) => p.served) ?? projects.data[0];
}

export function projectSwitcher(projects: Projects, canEdit: boolean, changed: () => void, create: () => void): HTMLElement {
  const current = currentProject(projects);
  const choose = () => {
    const chosen = projects.data.find((p) => p.slug === select.value);
    setProject(chosen && !chosen.served ? chosen.slug : null);
    changed();
  };
  const select = h(
    "select",
    { class: "project-switch", "aria-label": t("workingOn"), onchange: choose },
    ...projects.data.map((p) =>
      h("option", { value: p.slug, selected: p.slug === current.slug }, p.served ? `${p.name} (${t("served")})` : p.name),
    ),
  ) as HTMLSelectElement;
  return h(
    "div",
    { class: "projects" },
    h("label", { class: "inline" }, t("workingOn"), " ", select),
    canEdit && h("button", { class: "link new-project", onclick: create }, `+ ${t("newProject")}`),
  );
}

export function newProjectForm(projects: Projects, created: () => void, cancel: () => void): HTMLElement {
  const name = h("input", { name: "name", required: true, maxlength: 200 }) as HTMLInputElement;
  const slug = h("input", { name: "slug", pattern: "[a-z0-9][a-z0-9_\\-]{0,62}", placeholder: "bakery-nord" }) as HTMLInputElement;
  const model = h("select", { name: "base_model" }, ...projects.base_models.map((m) => h("option", { value: m }, m))) as HTMLSelectElement;
  const prompt = h("textarea", { name: "system_prompt", rows: 3, placeholder: t("promptDefault") }) as HTMLTextAreaElement;
  const message = h("div");
  const submit = async (event: Event) => {
    event.preventDefault();
    const { data, error } = await api.POST("/v1/projects", {
      body: { name: name.value.trim(), slug: slug.value || null, base_model: model.value, system_prompt: prompt.value.trim() || null },
    });
    if (error || !data) return message.replaceChildren(notice(errorMessage(error), "error"));
    setProject(data.slug);
    created();
  };
  return h(
    "form",
    { class: "card new-project", onsubmit: submit },
    h("h2", {}, t("newProject")),
    h("p", { class: "help" }, t("newProjectHelp")),
    field("name", name),
    field("slug", slug),
    field("baseModel", model),
    field("systemPrompt", prompt),
    h("button", { type: "submit" }, t("create")),
    h("button", { type: "button", class: "link", onclick: cancel }, t("cancel")),
    message,
  );
}

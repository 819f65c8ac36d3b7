// Tiny DOM helpers for the console's views (text always goes in as text, never as HTML).

import { t, type Key } from "./i18n";

export type Child = Node | string | null | undefined | false;

export function h(tag: string, attrs: Record<string, unknown> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value as EventListener);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (value !== false && value != null) {
      el.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child) el.append(child);
  }
  return el;
}

export function field(label: Key, input: HTMLElement): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, t(label)), input);
}

export function notice(text: string, kind: "ok" | "error" = "ok"): HTMLElement {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

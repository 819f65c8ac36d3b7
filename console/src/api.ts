// The console's API client, typed from the server's OpenAPI schema
// (src/schema.d.ts is generated from openapi.json by `npm run schema`).

import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const KEY = "shoptalk.key";
const PROJECT = "shoptalk.project";
// The server reads the project a call is about from this header; none = the served project.
const PROJECT_HEADER = "X-Shoptalk-Project";

export function getKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setKey(value: string | null): void {
  if (value === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, value);
}

// The project the console works on: a slug from GET /v1/projects, or null for the served one.
export function getProject(): string | null {
  return sessionStorage.getItem(PROJECT);
}

export function setProject(slug: string | null): void {
  if (slug === null) sessionStorage.removeItem(PROJECT);
  else sessionStorage.setItem(PROJECT, slug);
}

// The key and the selected project, for every call (typed or not).
function headers(): Record<string, string> {
  const out: Record<string, string> = {};
  const key = getKey();
  const project = getProject();
  if (key) out.Authorization = `Bearer ${key}`;
  if (project) out[PROJECT_HEADER] = project;
  return out;
}

const auth: Middleware = {
  onRequest({ request }) {
    for (const [name, value] of Object.entries(headers())) request.headers.set(name, value);
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

// The server answers errors in OpenAI's envelope.
export function errorMessage(error: unknown): string {
  const body = error as { error?: { message?: string } } | undefined;
  return body?.error?.message ?? String(error);
}

// Files served behind a key (HTML reports) are fetched and opened as blobs.
export async function openAuthorized(path: string): Promise<void> {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw new Error((await response.json()).error?.message ?? response.statusText);
  const url = URL.createObjectURL(await response.blob());
  window.open(url, "_blank");
}

// Pipeline work the worker does (the data report): queue it, wait while it answers 202, open it.
export async function openQueued(path: string): Promise<void> {
  const queued = await fetch(path, { method: "POST", headers: headers() });
  if (!queued.ok) throw new Error((await queued.json()).error?.message ?? queued.statusText);
  while ((await fetch(path, { headers: headers() })).status === 202) {
    await new Promise((done) => window.setTimeout(done, 1000));
  }
  await openAuthorized(path);
}

export async function upload(path: string, form: FormData): Promise<Response> {
  return fetch(path, { method: "POST", body: form, headers: headers() });
}

// The console's API client, typed from the server's OpenAPI schema
// (src/schema.d.ts is generated from openapi.json by `npm run schema`).

import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const KEY = "shoptalk.key";

export function getKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setKey(value: string | null): void {
  if (value === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, value);
}

const auth: Middleware = {
  onRequest({ request }) {
    const key = getKey();
    if (key) request.headers.set("Authorization", `Bearer ${key}`);
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
  const response = await fetch(path, { headers: { Authorization: `Bearer ${getKey()}` } });
  if (!response.ok) throw new Error((await response.json()).error?.message ?? response.statusText);
  const url = URL.createObjectURL(await response.blob());
  window.open(url, "_blank");
}

export async function upload(path: string, form: FormData): Promise<Response> {
  return fetch(path, { method: "POST", body: form, headers: { Authorization: `Bearer ${getKey()}` } });
}

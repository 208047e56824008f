// The API client of the page: every call carries the project token as a Bearer header (never in
// the URL) and every refusal becomes an ApiError holding the server's {"error","detail"}.

const TOKEN_KEY = 'palisade.token';
const PROJECT_KEY = 'palisade.project';

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail ? `${error}: ${detail}` : error);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get project() { return sessionStorage.getItem(PROJECT_KEY); },
  save(token, project) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(PROJECT_KEY, project);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(PROJECT_KEY);
  },
};

/** Calls `path` (below /v1/projects/{project}) and answers the parsed JSON. */
export async function call(method, path, { query, body } = {}) {
  const project = session.project;
  let url = `/v1/projects/${encodeURIComponent(project)}${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '' && value !== false) {
        params.set(name, String(value));
      }
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const init = {
    method,
    headers: { Authorization: `Bearer ${session.token}` },
    credentials: 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (failure) {
    throw new ApiError(0, 'network_error', String(failure && failure.message || failure));
  }
  const text = await response.text();
  let value = null;
  try {
    value = text ? JSON.parse(text) : null;
  } catch {
    value = null;
  }
  if (!response.ok) {
    const error = value && typeof value.error === 'string' ? value.error : `http_${response.status}`;
    const detail = value && typeof value.detail === 'string' ? value.detail : text.slice(0, 200);
    throw new ApiError(response.status, error, detail);
  }
  return value;
}

export const fp = (fingerprint) => encodeURIComponent(fingerprint);

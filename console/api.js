// The erasure API, called with the signed-in user's Cognito access token (JWT authorizer on AWS).

export class ApiError extends Error {
  constructor(status, message, errors = []) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
}

export class SignInNeeded extends Error {}

export class Api {
  constructor(base, auth) {
    this.base = base || "";
    this.auth = auth;
  }

  async call(method, path, body, accept = "application/json") {
    const token = await this.auth.token();
    if (!token) throw new SignInNeeded("sign in first");
    const headers = { Authorization: `Bearer ${token}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch {
      throw new ApiError(0, "Cannot reach the erasure API; check your connection and retry.");
    }
    if (res.status === 401) {
      this.auth.clear();
      throw new SignInNeeded("your session has ended: sign in again");
    }
    const kind = res.headers.get("Content-Type") || "";
    const data = kind.includes("json") ? await res.json().catch(() => ({})) : await res.text();
    if (!res.ok) {
      const message = (data && data.message) || `The API answered ${res.status}.`;
      throw new ApiError(res.status, message, (data && data.errors) || []);
    }
    return data;
  }

  list(limit, next) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (next) q.set("next", next);
    return this.call("GET", `/erasure-requests?${q}`);
  }

  get(id) {
    return this.call("GET", `/erasure-requests/${encodeURIComponent(id)}`);
  }

  file(body) {
    return this.call("POST", "/erasure-requests", body);
  }

  startRun() {
    return this.call("POST", "/erasure-runs", {});
  }

  cancel(id) {
    return this.call("POST", `/erasure-requests/${encodeURIComponent(id)}/cancel`, {});
  }

  approve(id) {
    return this.call("POST", `/erasure-requests/${encodeURIComponent(id)}/approve`, {});
  }

  certificate(id, format = "json") {
    const suffix = format === "md" ? "?format=md" : "";
    const accept = format === "md" ? "text/markdown" : "application/json";
    return this.call("GET", `/erasure-requests/${encodeURIComponent(id)}/certificate${suffix}`, undefined, accept);
  }
}

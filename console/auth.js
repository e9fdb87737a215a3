// Sign-in against the Cognito user pool (USER_PASSWORD_AUTH over TLS, no client secret, no SDK).
// Cognito's JSON API answers browsers directly; the password goes to Cognito only, and the console
// keeps the access token for the API. Tokens stay in this tab: access/id token in sessionStorage (so a
// reload keeps the session for the token's hour), the refresh token in memory only. No crypto here:
// the API's JWT authorizer verifies tokens; the page only reads their claims to show who is signed in.

const KEY = "etl-console-session";

export class AuthError extends Error {}

function claimsOf(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
  return JSON.parse(decodeURIComponent(Array.from(text, (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join("")));
}

const FRIENDLY = {
  NotAuthorizedException: "Incorrect user name or password (or the account is disabled).",
  UserNotFoundException: "Incorrect user name or password (or the account is disabled).",
  PasswordResetRequiredException: "Your password must be reset: ask your console administrator.",
  InvalidPasswordException: "That password does not meet the policy (at least 12 characters, upper and lower case, a digit).",
  CodeMismatchException: "That code is not right; try the current one from your authenticator.",
  ExpiredCodeException: "That code has expired; try the current one.",
  TooManyRequestsException: "Too many attempts; wait a minute and try again.",
  LimitExceededException: "Too many attempts; wait a minute and try again.",
};

export class Auth {
  constructor(config) {
    this.config = config;
    this.refreshToken = null;
    this.session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    this.onSignedOut = () => {};
  }

  async cognito(action, body) {
    let res;
    try {
      res = await fetch(this.config.cognitoEndpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": `AWSCognitoIdentityProviderService.${action}`,
        },
        body: JSON.stringify(body),
      });
    } catch {
      throw new AuthError("Cannot reach the sign-in service; check your connection.");
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const type = String(data.__type || "").split("#").pop();
      throw new AuthError(FRIENDLY[type] || data.message || `Sign-in failed (${res.status}).`);
    }
    return data;
  }

  // Returns null when signed in, or {challenge, session, username} when Cognito asks for more.
  async signIn(username, password) {
    const data = await this.cognito("InitiateAuth", {
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: this.config.clientId,
      AuthParameters: { USERNAME: username, PASSWORD: password },
    });
    return this.accept(data, username);
  }

  async answer(step, answers) {
    const data = await this.cognito("RespondToAuthChallenge", {
      ClientId: this.config.clientId,
      ChallengeName: step.challenge,
      Session: step.session,
      ChallengeResponses: { USERNAME: step.username, ...answers },
    });
    return this.accept(data, step.username);
  }

  accept(data, username) {
    if (data.ChallengeName) {
      return { challenge: data.ChallengeName, session: data.Session, username };
    }
    const r = data.AuthenticationResult;
    if (r.RefreshToken) this.refreshToken = r.RefreshToken;
    this.session = { access: r.AccessToken, id: r.IdToken || (this.session && this.session.id) };
    sessionStorage.setItem(KEY, JSON.stringify(this.session));
    return null;
  }

  claims() {
    return this.session ? claimsOf(this.session.access) : null;
  }

  user() {
    const c = this.claims();
    return c ? { name: c.username || c["cognito:username"] || c.sub, groups: c["cognito:groups"] || [] } : null;
  }

  can(group) {
    const u = this.user();
    return Boolean(u && u.groups.includes(group));
  }

  // A valid access token, refreshed shortly before expiry; null means "sign in again".
  async token() {
    if (!this.session) return null;
    const exp = this.claims().exp * 1000;
    if (exp - Date.now() > 60_000) return this.session.access;
    if (this.refreshToken) {
      try {
        const data = await this.cognito("InitiateAuth", {
          AuthFlow: "REFRESH_TOKEN_AUTH",
          ClientId: this.config.clientId,
          AuthParameters: { REFRESH_TOKEN: this.refreshToken },
        });
        this.accept(data, this.user().name);
        return this.session.access;
      } catch {
        /* fall through: sign in again */
      }
    }
    if (exp > Date.now()) return this.session.access;
    this.clear();
    return null;
  }

  clear() {
    this.session = null;
    this.refreshToken = null;
    sessionStorage.removeItem(KEY);
    this.onSignedOut();
  }

  async signOut() {
    const access = this.session && this.session.access;
    this.clear();
    if (access) {
      await this.cognito("GlobalSignOut", { AccessToken: access }).catch(() => {});
    }
  }
}

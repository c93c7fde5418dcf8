/**
 * The session and socket lifecycle of a symphainy web client, as one plain ES module.
 *
 * Usable by any frontend: create a `SymphainyClient`, listen with `on(...)`, call `start()` (to
 * resume a stored session) or `login(...)`. What it guarantees:
 *
 * - It never makes up a session id and never opens a socket without a token the server issued
 *   (`POST /api/auth/login`). The token travels as the subprotocol pair
 *   `["symphainy.v1", "bearer.<token>"]`, never in the URL.
 * - Reconnects use full-jitter exponential backoff (0.5 s base, 20 s cap); the attempt counter
 *   resets only after a connection stayed open for `stableAfterMs`.
 * - Close codes decide what happens next (see `closeAction`): 4400, 4401, 4403, 4404 end the
 *   session here and go back to login; 4408 refreshes the token once over HTTP and reconnects;
 *   everything else (4429, 4503, 1001, 1006, ...) backs off and retries.
 * - The token is refreshed before it expires (HTTP, then an in-band `refresh` frame on the open
 *   socket). Tabs sharing a session coordinate with a Web Lock per session, so one refresh runs
 *   at a time, and a BroadcastChannel, so the other tabs adopt the new token.
 *
 * Every outside dependency (clock, random, WebSocket, fetch, storage, locks, BroadcastChannel)
 * can be injected, which is how the unit tests in tests/js pin this policy down.
 */

export const SUBPROTOCOL = "symphainy.v1";
export const BEARER_PREFIX = "bearer.";
export const AGENT_PATH = "/api/runtime/agent";
export const STORAGE_KEY = "symphainy.session";
export const CHANNEL_NAME = "symphainy.sessions";
export const REFRESH_LOCK_PREFIX = "symphainy.refresh.";

/** Reconnect policy: full jitter over `min(capMs, baseMs * 2 ** attempt)`. */
export const BACKOFF = Object.freeze({ baseMs: 500, capMs: 20_000, stableAfterMs: 10_000 });

/** Refresh about this long before the token expires (at most a fifth of its lifetime). */
export const REFRESH_LEAD_MS = 60_000;

/** How long a tab waits for another tab's refreshed token before refreshing itself. */
export const ADOPT_WAIT_MS = 5_000;

/** Socket states, as shown by a status indicator. */
export const State = Object.freeze({
  LOGGED_OUT: "logged-out",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

/** What the client does after a socket closes. */
export const Action = Object.freeze({ LOGIN: "login", REFRESH: "refresh", RETRY: "retry" });

const LOGIN_CODES = new Map([
  [4400, "malformed"],
  [4401, "unauthorized"],
  [4403, "origin_forbidden"],
  [4404, "session_gone"],
]);
const EXPIRED = 4408;

/** The action for a close code: the contract's table; unknown codes count as transient. */
export function closeAction(code) {
  if (LOGIN_CODES.has(code)) return Action.LOGIN;
  if (code === EXPIRED) return Action.REFRESH;
  return Action.RETRY;
}

/** Full-jitter delay (ms) before reconnect attempt `attempt` (0-based): uniform in [0, ceiling). */
export function backoffDelay(attempt, random = Math.random, policy = BACKOFF) {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 32));
  return Math.floor(random() * ceiling);
}

/** An HTTP call that failed: `status` 0 means the server could not be reached. */
/**
 * What the server put in this page's fragment after a login through an OpenID provider:
 * `#handover=<one-time code>` or `#login_error=<error code>`; nulls when neither is there.
 */
export function readLoginFragment(hash) {
  const params = new URLSearchParams(String(hash ?? "").replace(/^#/, ""));
  return { handover: params.get("handover"), loginError: params.get("login_error") };
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Worth trying again later (network, rate limit, runtime unavailable), not a refusal. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

const systemClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle),
};

function pick(value, fallback) {
  return value === undefined ? fallback : value;
}

/** The session/socket lifecycle of one tab. Events: state, session, frame, close, retry, loggedout. */
export class SymphainyClient {
  #session = null;
  #ws = null;
  #state = State.LOGGED_OUT;
  #attempt = 0;
  #refreshAttempt = 0;
  #expiredRefreshUsed = false;
  #reconnectTimer = null;
  #stableTimer = null;
  #refreshTimer = null;
  #localLock = Promise.resolve();
  #listeners = new Map();
  #channel = null;

  constructor(options = {}) {
    const g = globalThis;
    this.baseUrl = pick(options.baseUrl, g.location ? g.location.origin : "");
    this.fetch = pick(options.fetch, g.fetch ? g.fetch.bind(g) : null);
    this.WebSocket = pick(options.WebSocket, g.WebSocket);
    // sessionStorage, not localStorage: the token survives a reload of this tab but is gone when
    // the tab closes and is never shared with new tabs (each gets its own, separately revocable,
    // session). It is not a cookie, so the browser never attaches it to requests by itself (no
    // CSRF). Script on the page can read it either way; its short lifetime limits the damage.
    this.storage = pick(options.storage, g.sessionStorage ?? null);
    this.clock = pick(options.clock, systemClock);
    this.random = pick(options.random, Math.random);
    this.locks = pick(options.locks, g.navigator?.locks ?? null);
    this.newId = pick(options.newId, () => g.crypto.randomUUID());
    this.backoff = { ...BACKOFF, ...options.backoff };
    this.refreshLeadMs = pick(options.refreshLeadMs, REFRESH_LEAD_MS);
    this.adoptWaitMs = pick(options.adoptWaitMs, ADOPT_WAIT_MS);
    const Channel = pick(options.BroadcastChannel, g.BroadcastChannel ?? null);
    if (Channel) {
      this.#channel = new Channel(CHANNEL_NAME);
      this.#channel.onmessage = (event) => this.#onBroadcast(event.data);
    }
  }

  /** The current state (see `State`). */
  get state() {
    return this.#state;
  }

  /** The session as the server issued it: {session_id, session_token, expires_at, user}. */
  get session() {
    return this.#session ? { ...this.#session } : null;
  }

  /** Whether a reconnect attempt is waiting on its backoff timer. */
  get reconnectScheduled() {
    return this.#reconnectTimer !== null;
  }

  /** Listen for `type`; returns a function that stops listening. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type).delete(listener);
  }

  /** Resume the session stored for this tab, if any; returns whether there was one. */
  start() {
    let stored = null;
    try {
      stored = JSON.parse(this.storage?.getItem(STORAGE_KEY) ?? "null");
    } catch {
      stored = null;
    }
    if (!stored?.session_id || !stored?.session_token) return false;
    this.#setSession(stored, { broadcast: false });
    if (Date.parse(stored.expires_at) <= this.clock.now()) {
      this.#setState(State.CONNECTING);
      this.#recoverExpired();
    } else {
      this.#open();
    }
    return true;
  }

  /** Log in: the server creates the session; then the socket opens. Throws `ApiError`. */
  async login(username, password) {
    const body = await this.#request("POST", "/api/auth/login", { body: { username, password } });
    return this.#begin(body, null);
  }

  /**
   * Finish a login through an OpenID provider: trade the one-time code the server put in this
   * page's `#handover=` for the session (once; the page removes it from the address bar first).
   * `provider` is kept with the session, so logging out can offer the provider's logout too.
   */
  async loginWithHandover(code, provider = "default") {
    const body = await this.#request("POST", "/api/auth/oidc/exchange", { body: { code } });
    return this.#begin(body, provider);
  }

  /** Whether the server offers a login through an OpenID provider: `{enabled, name, login_url}`. */
  async oidcConfig() {
    try {
      return await this.#request("GET", "/api/auth/oidc/config");
    } catch {
      return { enabled: false };
    }
  }

  #begin(body, provider) {
    this.#closeSocket();
    this.#clearTimers();
    this.#attempt = 0;
    this.#expiredRefreshUsed = false;
    const session = {
      session_id: body.session_id,
      session_token: body.session_token,
      expires_at: body.expires_at,
      user: body.user,
    };
    if (provider) session.provider = provider;
    this.#setSession(session, { broadcast: false });
    this.#open();
    return this.session;
  }

  /** Revoke this session on the server and forget it here (and in tabs sharing it). */
  async logout() {
    const session = this.#session;
    if (!session) return;
    this.#channel?.postMessage({ type: "logout", session_id: session.session_id });
    this.#end("logout");
    try {
      await this.#request("POST", "/api/auth/logout", { token: session.session_token });
    } catch {
      // Gone already or unreachable: either way this tab no longer holds the session.
    }
  }

  /** A new token for the same session, one refresh at a time across tabs. Throws `ApiError`. */
  async refresh() {
    const before = this.#session;
    if (!before) throw new ApiError(401, "not_logged_in", "not logged in");
    const name = REFRESH_LOCK_PREFIX + before.session_id;
    const run = async () => {
      const current = this.#session;
      // Logged out, or someone refreshed while we waited for the lock: nothing left to do.
      if (!current || current.session_id !== before.session_id) return this.session;
      if (current.session_token !== before.session_token) return this.session;
      const body = await this.#request("POST", "/api/session/refresh", {
        token: current.session_token,
      });
      this.#setSession(
        { ...current, session_token: body.session_token, expires_at: body.expires_at },
        { broadcast: true },
      );
      this.#sendRefreshFrame();
      return this.session;
    };
    if (!this.locks) {
      // No Web Locks (an insecure origin, an old browser): serialise within this tab at least.
      const queued = this.#localLock.then(run);
      this.#localLock = queued.catch(() => {});
      return queued;
    }
    const outcome = await this.locks.request(name, { ifAvailable: true }, async (lock) =>
      lock ? { session: await run() } : null,
    );
    if (outcome) return outcome.session;
    // Another tab (or this one) holds the lock: it is refreshing this very session right now.
    // Adopt its token when the broadcast arrives; take the lock ourselves only if none comes.
    await this.#tokenChange(before.session_token, this.adoptWaitMs);
    return this.locks.request(name, run);
  }

  /** Send an agent intent on the open socket; returns its client id. */
  sendIntent(intent, payload = {}) {
    if (this.#state !== State.OPEN || !this.#ws) throw new Error("the socket is not open");
    const id = this.newId();
    this.#ws.send(JSON.stringify({ type: "intent", id, intent, payload }));
    return id;
  }

  /** The caller's live sessions (`GET /api/sessions`). */
  listSessions() {
    return this.#authed("GET", "/api/sessions");
  }

  /** Revoke one of the caller's sessions; revoking this tab's own ends it here too. */
  async revokeSession(sessionId) {
    await this.#authed("DELETE", `/api/session/${encodeURIComponent(sessionId)}`);
    if (sessionId === this.#session?.session_id) this.#end("revoked", 4404);
  }

  /** Revoke every other session of the caller; returns how many were revoked. */
  async revokeOthers() {
    const sessions = await this.listSessions();
    let revoked = 0;
    for (const other of sessions.filter((s) => !s.current)) {
      try {
        await this.#authed("DELETE", `/api/session/${encodeURIComponent(other.session_id)}`);
        revoked += 1;
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
    }
    return revoked;
  }

  /** Close the socket on purpose and stop reconnecting; the session stays. */
  disconnect() {
    this.#clearReconnect();
    this.#closeSocket();
    if (this.#session) this.#setState(State.CLOSED);
  }

  /** Stop everything this client runs (timers, socket, channel), e.g. when a page unloads. */
  dispose() {
    this.#clearTimers();
    this.#closeSocket();
    this.#channel?.close();
    this.#channel = null;
  }

  #emit(type, detail) {
    for (const listener of this.#listeners.get(type) ?? []) listener(detail);
  }

  #setState(state, detail = {}) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", { state, ...detail });
  }

  #setSession(session, { broadcast }) {
    const previous = this.#session;
    this.#session = session;
    this.storage?.setItem(STORAGE_KEY, JSON.stringify(session));
    // A refresh that no longer extends the expiry (the session's lifetime is up) is not repeated:
    // the socket closes with 4408 at the end and the refresh then fails into a login.
    const extended =
      !previous ||
      previous.session_id !== session.session_id ||
      Date.parse(session.expires_at) > Date.parse(previous.expires_at);
    if (extended) this.#scheduleRefresh();
    if (broadcast) {
      this.#channel?.postMessage({
        type: "token",
        session_id: session.session_id,
        session_token: session.session_token,
        expires_at: session.expires_at,
      });
    }
    this.#emit("session", this.session);
  }

  #socketUrl() {
    const url = new URL(AGENT_PATH, this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  #open() {
    this.#reconnectTimer = null;
    if (!this.#session) return; // the whole point: no token, no socket
    this.#closeSocket();
    this.#setState(this.#state === State.RECONNECTING ? State.RECONNECTING : State.CONNECTING);
    let ws;
    try {
      ws = new this.WebSocket(this.#socketUrl(), [
        SUBPROTOCOL,
        BEARER_PREFIX + this.#session.session_token,
      ]);
    } catch {
      // The browser refused the URL or the token as a subprotocol: nothing a retry would fix.
      this.#end("malformed", 4400);
      return;
    }
    this.#ws = ws;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#setState(State.OPEN);
      this.#stableTimer = this.clock.setTimeout(() => {
        this.#stableTimer = null;
        this.#attempt = 0;
        this.#expiredRefreshUsed = false;
      }, this.backoff.stableAfterMs);
    };
    ws.onmessage = (event) => {
      if (ws !== this.#ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.#emit("frame", frame);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      this.#ws = null;
      this.#clearStable();
      this.#onClose(event.code, event.reason ?? "");
    };
  }

  #onClose(code, reason) {
    const action = closeAction(code);
    this.#emit("close", { code, reason, action });
    if (action === Action.LOGIN) {
      this.#end(LOGIN_CODES.get(code), code);
    } else if (action === Action.REFRESH) {
      if (this.#expiredRefreshUsed) {
        this.#end("expired", code);
        return;
      }
      this.#expiredRefreshUsed = true;
      this.#setState(State.RECONNECTING, { code });
      this.#recoverExpired();
    } else {
      this.#scheduleReconnect(code);
    }
  }

  #scheduleReconnect(code) {
    this.#clearReconnect();
    const delay = backoffDelay(this.#attempt, this.random, this.backoff);
    this.#attempt += 1;
    this.#setState(State.RECONNECTING, { code });
    this.#emit("retry", { attempt: this.#attempt, delay, code });
    this.#reconnectTimer = this.clock.setTimeout(() => this.#open(), delay);
  }

  async #recoverExpired() {
    try {
      await this.refresh();
    } catch (err) {
      if (!this.#session) return; // the refresh was refused and ended the session
      if (err instanceof ApiError && !err.transient) {
        this.#end("expired", EXPIRED);
        return;
      }
      const delay = backoffDelay(this.#attempt, this.random, this.backoff);
      this.#attempt += 1;
      this.#emit("retry", { attempt: this.#attempt, delay, code: EXPIRED });
      this.#reconnectTimer = this.clock.setTimeout(() => {
        this.#reconnectTimer = null;
        this.#recoverExpired();
      }, delay);
      return;
    }
    if (this.#session && !this.#ws) this.#open();
  }

  #scheduleRefresh() {
    this.#clearRefresh();
    const expires = Date.parse(this.#session.expires_at);
    const now = this.clock.now();
    const lead = Math.min(this.refreshLeadMs, Math.max(0, expires - now) / 5);
    // Tabs sharing a session would all fire together: spread them over half a lead, earlier
    // rather than later, so the first one's broadcast usually reaches the others in time.
    const delay = Math.max(0, expires - lead * (1 + this.random() / 2) - now);
    this.#refreshTimer = this.clock.setTimeout(() => this.#proactiveRefresh(), delay);
  }

  async #proactiveRefresh() {
    this.#refreshTimer = null;
    try {
      await this.refresh();
      this.#refreshAttempt = 0;
    } catch (err) {
      if (!this.#session || !(err instanceof ApiError) || !err.transient) return;
      const delay = backoffDelay(this.#refreshAttempt, this.random, this.backoff);
      this.#refreshAttempt += 1;
      this.#refreshTimer = this.clock.setTimeout(() => this.#proactiveRefresh(), delay);
    }
  }

  #sendRefreshFrame() {
    if (this.#state === State.OPEN && this.#ws) {
      this.#ws.send(
        JSON.stringify({ type: "refresh", session_token: this.#session.session_token }),
      );
    }
  }

  #onBroadcast(message) {
    const current = this.#session;
    if (!message || !current || message.session_id !== current.session_id) return;
    if (message.type === "logout") {
      this.#end("logout");
    } else if (
      message.type === "token" &&
      message.session_token !== current.session_token &&
      Date.parse(message.expires_at) >= Date.parse(current.expires_at)
    ) {
      this.#setSession(
        { ...current, session_token: message.session_token, expires_at: message.expires_at },
        { broadcast: false },
      );
      this.#sendRefreshFrame();
    }
  }

  #end(reason, code = null) {
    this.#clearTimers();
    this.#closeSocket();
    this.#session = null;
    this.#attempt = 0;
    this.#expiredRefreshUsed = false;
    this.storage?.removeItem(STORAGE_KEY);
    this.#setState(State.LOGGED_OUT, { code });
    this.#emit("session", null);
    this.#emit("loggedout", { reason, code });
  }

  #closeSocket() {
    const ws = this.#ws;
    this.#ws = null;
    this.#clearStable();
    if (ws && ws.readyState !== 2 && ws.readyState !== 3) ws.close(1000, "client closing");
  }

  #clearStable() {
    if (this.#stableTimer !== null) this.clock.clearTimeout(this.#stableTimer);
    this.#stableTimer = null;
  }

  #clearReconnect() {
    if (this.#reconnectTimer !== null) this.clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  #clearRefresh() {
    if (this.#refreshTimer !== null) this.clock.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
  }

  #clearTimers() {
    this.#clearReconnect();
    this.#clearRefresh();
    this.#clearStable();
  }

  /** Resolves when this tab's token is no longer `token` (adopted, refreshed, or logged out). */
  #tokenChange(token, timeoutMs) {
    return new Promise((resolve) => {
      let timer = null;
      const done = () => {
        stop();
        this.clock.clearTimeout(timer);
        resolve();
      };
      const stop = this.on("session", (session) => {
        if (session?.session_token !== token) done();
      });
      timer = this.clock.setTimeout(done, timeoutMs);
    });
  }

  async #authed(method, path) {
    const session = this.#session;
    if (!session) throw new ApiError(401, "not_logged_in", "not logged in");
    return this.#request(method, path, { token: session.session_token });
  }

  async #request(method, path, { body, token } = {}) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this.fetch(new URL(path, this.baseUrl).toString(), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
      });
    } catch (err) {
      throw new ApiError(0, "network", `cannot reach the server: ${err.message ?? err}`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.ok) return data;
    const error = data?.error ?? {};
    const retryAfter = Number(response.headers.get("retry-after")) || null;
    const failure = new ApiError(
      response.status,
      error.code ?? "http_error",
      error.message ?? `HTTP ${response.status}`,
      retryAfter,
    );
    // A Bearer call refused with 401 (or a refresh of a session that is gone) means this
    // session is over: say so once, here, instead of in every caller.
    const sessionOver =
      token &&
      token === this.#session?.session_token &&
      (response.status === 401 || (path === "/api/session/refresh" && response.status === 404));
    if (sessionOver) this.#end(error.code ?? "unauthorized", null);
    throw failure;
  }
}

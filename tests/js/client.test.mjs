// Unit tests of experience/static/symphainy-client.js: `node --test tests/js/`.
// They pin the reconnect policy, the handling of every close code, the refresh rules and the
// rule that no socket is ever opened without a token from the server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Action,
  AGENT_PATH,
  BACKOFF,
  backoffDelay,
  BEARER_PREFIX,
  closeAction,
  readLoginFragment,
  REFRESH_LOCK_PREFIX,
  STORAGE_KEY,
  State,
  SUBPROTOCOL,
  SymphainyClient,
} from "../../experience/static/symphainy-client.js";
import {
  FakeClock,
  fakeBroadcastChannelClass,
  fakeFetch,
  FakeLocks,
  fakeWebSocketClass,
  MemoryStorage,
  settle,
} from "./fakes.mjs";

const SESSION_ID = "0123456789abcdef0123456789abcdef";
const TOKEN_TTL_MS = 15 * 60 * 1000;
const BASE = "http://127.0.0.1:8000";

/** A client over fakes; the server's login and refresh hand out numbered tokens. */
function setup(options = {}) {
  const clock = options.clock ?? new FakeClock();
  const WebSocket = options.WebSocket ?? fakeWebSocketClass();
  const storage = options.storage ?? new MemoryStorage();
  let issued = options.issued ?? { n: 0 };
  const token = () => {
    issued.n += 1;
    return { token: `token-${issued.n}`, expires_at: new Date(clock.now() + TOKEN_TTL_MS).toISOString() };
  };
  const routes = {
    "POST /api/auth/login": ({ body }) => {
      if (body.password !== "right") {
        return { status: 401, body: { error: { code: "invalid_credentials", message: "no" } } };
      }
      const t = token();
      return {
        body: {
          session_id: SESSION_ID,
          session_token: t.token,
          expires_at: t.expires_at,
          user: { id: "u1", username: body.username },
        },
      };
    },
    "POST /api/session/refresh": () => {
      const t = token();
      return { body: { session_id: SESSION_ID, session_token: t.token, expires_at: t.expires_at } };
    },
    "POST /api/auth/logout": { status: 204 },
    ...options.routes,
  };
  const fetch = options.fetch ?? fakeFetch(routes);
  let ids = 0;
  const client = new SymphainyClient({
    baseUrl: options.baseUrl ?? BASE,
    clock: clock.api(),
    random: options.random ?? (() => 0.5),
    WebSocket,
    fetch,
    storage,
    locks: options.locks ?? null,
    BroadcastChannel: options.BroadcastChannel ?? null,
    newId: () => `intent-${++ids}`,
    backoff: options.backoff,
  });
  const events = [];
  for (const type of ["state", "close", "retry", "loggedout"]) {
    client.on(type, (detail) => events.push({ type, ...detail }));
  }
  return { client, clock, WebSocket, sockets: WebSocket.instances, fetch, storage, events, issued };
}

/** Logged in with the socket open. */
async function openClient(options) {
  const env = setup(options);
  await env.client.login("alice", "right");
  env.sockets.at(-1).open();
  return env;
}

const refreshCalls = (fetch) => fetch.calls.filter((c) => c.key === "POST /api/session/refresh");

describe("backoffDelay", () => {
  test("is full jitter below min(cap, base * 2^attempt)", () => {
    const almostOne = () => 0.999999;
    const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
    ceilings.forEach((ceiling, attempt) => {
      assert.equal(backoffDelay(attempt, () => 0), 0, `attempt ${attempt} can be immediate`);
      const top = backoffDelay(attempt, almostOne);
      assert.ok(top < ceiling && top >= ceiling - 1, `attempt ${attempt}: ${top} vs ${ceiling}`);
      assert.equal(backoffDelay(attempt, () => 0.5), ceiling / 2);
    });
  });

  test("uses the 0.5 s base and 20 s cap by default and never overflows", () => {
    assert.equal(BACKOFF.baseMs, 500);
    assert.equal(BACKOFF.capMs, 20_000);
    for (const attempt of [30, 64, 1000, 1e9]) {
      const delay = backoffDelay(attempt, () => 0.999999);
      assert.ok(Number.isFinite(delay) && delay < 20_000 && delay >= 19_999);
    }
  });

  test("draws every delay from the injected random", () => {
    const draws = [];
    const random = () => {
      const value = [0.1, 0.9, 0.3][draws.length % 3];
      draws.push(value);
      return value;
    };
    assert.deepEqual(
      [0, 1, 2].map((attempt) => backoffDelay(attempt, random)),
      [50, 900, 600],
    );
    assert.equal(draws.length, 3);
  });
});

describe("closeAction", () => {
  const expected = {
    4400: Action.LOGIN,
    4401: Action.LOGIN,
    4403: Action.LOGIN,
    4404: Action.LOGIN,
    4408: Action.REFRESH,
    4429: Action.RETRY,
    4503: Action.RETRY,
    1001: Action.RETRY,
    1006: Action.RETRY,
    1011: Action.RETRY,
  };
  for (const [code, action] of Object.entries(expected)) {
    test(`${code} → ${action}`, () => assert.equal(closeAction(Number(code)), action));
  }
});

describe("no socket without a token from the server", () => {
  test("a new client with nothing stored opens nothing", async () => {
    const { client, sockets, clock } = setup();
    assert.equal(client.start(), false);
    await clock.advance(60_000);
    assert.equal(sockets.length, 0);
    assert.equal(client.state, State.LOGGED_OUT);
    assert.equal(client.session, null);
  });

  test("a failed login opens nothing", async () => {
    const { client, sockets, clock } = setup();
    await assert.rejects(client.login("alice", "wrong"), { status: 401, code: "invalid_credentials" });
    await clock.advance(60_000);
    assert.equal(sockets.length, 0);
    assert.equal(client.state, State.LOGGED_OUT);
  });

  test("login opens one socket, the token as a subprotocol and not in the URL", async () => {
    const { client, sockets, storage } = setup();
    const session = await client.login("alice", "right");
    assert.equal(session.session_id, SESSION_ID);
    assert.equal(sockets.length, 1);
    assert.deepEqual(sockets[0].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-1`]);
    assert.equal(sockets[0].url, `ws://127.0.0.1:8000${AGENT_PATH}`);
    assert.equal(client.state, State.CONNECTING);
    assert.equal(JSON.parse(storage.getItem(STORAGE_KEY)).session_token, "token-1");
  });

  test("https pages use wss", async () => {
    const { client, sockets } = setup({ baseUrl: "https://example.test" });
    await client.login("alice", "right");
    assert.equal(sockets[0].url, `wss://example.test${AGENT_PATH}`);
  });

  test("the session id is the server's, stored for this tab, and resumed from storage", async () => {
    const first = setup();
    await first.client.login("alice", "right");
    const second = setup({ storage: first.storage });
    assert.equal(second.client.start(), true);
    assert.equal(second.client.session.session_id, SESSION_ID);
    assert.deepEqual(second.sockets[0].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-1`]);
  });

  test("a stored token that has expired is refreshed before any socket opens", async () => {
    const first = setup();
    await first.client.login("alice", "right");
    const clock = new FakeClock(first.clock.now() + TOKEN_TTL_MS + 1000);
    const second = setup({ storage: first.storage, clock, issued: first.issued });
    second.client.start();
    assert.equal(second.sockets.length, 0);
    await settle();
    assert.equal(refreshCalls(second.fetch).length, 1);
    assert.equal(refreshCalls(second.fetch)[0].init.headers.authorization, "Bearer token-1");
    assert.equal(second.sockets.length, 1);
    assert.deepEqual(second.sockets[0].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-2`]);
  });

  test("sending an intent needs an open socket", async () => {
    const { client, sockets } = setup();
    assert.throws(() => client.sendIntent("echo", {}), /not open/);
    await client.login("alice", "right");
    assert.throws(() => client.sendIntent("echo", {}), /not open/);
    sockets[0].open();
    const id = client.sendIntent("echo", { n: 1 });
    assert.deepEqual(sockets[0].sent, [{ type: "intent", id, intent: "echo", payload: { n: 1 } }]);
  });
});

describe("reconnecting", () => {
  test("each failure waits a jittered, doubling delay, capped at 20 s", async () => {
    const { client, clock, sockets, events } = await openClient({ random: () => 0.999999 });
    const expectedCeilings = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000];
    for (const ceiling of expectedCeilings) {
      const before = sockets.length;
      sockets.at(-1).serverClose(1006);
      assert.equal(client.state, State.RECONNECTING);
      const { delay } = events.filter((e) => e.type === "retry").at(-1);
      assert.ok(delay < ceiling && delay >= ceiling - 1, `${delay} vs ${ceiling}`);
      await clock.advance(delay - 1);
      assert.equal(sockets.length, before, "no attempt before the delay is up");
      await clock.advance(1);
      assert.equal(sockets.length, before + 1);
      assert.equal(client.state, State.RECONNECTING, "still reconnecting until open");
    }
  });

  test("the jitter comes from the injected random", async () => {
    const { clock, sockets, events } = await openClient({ random: () => 0.25 });
    sockets[0].serverClose(4503);
    await clock.advance(125);
    sockets[1].serverClose(4503);
    assert.deepEqual(
      events.filter((e) => e.type === "retry").map((e) => e.delay),
      [125, 250],
    );
  });

  test("a connection stable for stableAfterMs resets the backoff", async () => {
    const { clock, sockets, events } = await openClient({ random: () => 0.999999 });
    const delays = () => events.filter((e) => e.type === "retry").map((e) => e.delay);
    sockets[0].serverClose(1006); // attempt 0: < 500
    await clock.advance(500);
    sockets[1].open();
    await clock.advance(BACKOFF.stableAfterMs - 1);
    sockets[1].serverClose(1006); // open, but not long enough: attempt 1, < 1000
    await clock.advance(1000);
    sockets[2].open();
    await clock.advance(BACKOFF.stableAfterMs);
    sockets[2].serverClose(1006); // stable: back to attempt 0
    assert.deepEqual(delays(), [499, 999, 499]);
  });

  test("a socket that opens and closes at once (a rejected admission) does not reset", async () => {
    const { clock, sockets, events } = await openClient({ random: () => 0.999999 });
    for (let i = 0; i < 4; i++) {
      sockets.at(-1).serverClose(4503);
      await clock.advance(20_000);
      sockets.at(-1).open();
    }
    assert.deepEqual(
      events.filter((e) => e.type === "retry").map((e) => e.delay),
      [499, 999, 1999, 3999],
    );
  });

  for (const code of [4429, 4503, 1001, 1006]) {
    test(`${code} backs off and retries with the same token`, async () => {
      const { client, clock, sockets } = await openClient();
      sockets[0].serverClose(code);
      assert.equal(client.state, State.RECONNECTING);
      assert.equal(client.reconnectScheduled, true);
      await clock.advance(BACKOFF.baseMs);
      assert.equal(sockets.length, 2);
      assert.deepEqual(sockets[1].protocols, sockets[0].protocols);
      sockets[1].open();
      assert.equal(client.state, State.OPEN);
    });
  }
});

describe("terminal codes go back to login", () => {
  const reasons = { 4400: "malformed", 4401: "unauthorized", 4403: "origin_forbidden", 4404: "session_gone" };
  for (const [code, reason] of Object.entries(reasons)) {
    test(`${code} stops for good and forgets the session`, async () => {
      const { client, clock, sockets, storage, events, fetch } = await openClient();
      sockets[0].serverClose(Number(code));
      assert.equal(client.state, State.LOGGED_OUT);
      assert.equal(client.session, null);
      assert.equal(client.reconnectScheduled, false);
      assert.equal(storage.getItem(STORAGE_KEY), null);
      assert.deepEqual(events.filter((e) => e.type === "loggedout"), [
        { type: "loggedout", reason, code: Number(code) },
      ]);
      await clock.advance(60 * 60 * 1000);
      assert.equal(sockets.length, 1, "no reconnect attempt, ever");
      assert.equal(refreshCalls(fetch).length, 0, "and no refresh either");
    });
  }

  test("also when the socket is rejected before it ever opened", async () => {
    const { client, sockets, clock } = setup();
    await client.login("alice", "right");
    sockets[0].serverClose(4401);
    await clock.advance(60_000);
    assert.equal(sockets.length, 1);
    assert.equal(client.state, State.LOGGED_OUT);
  });
});

describe("4408: refresh once, then reconnect", () => {
  test("refreshes over HTTP with the old token and reconnects at once with the new one", async () => {
    const { client, sockets, fetch, events } = await openClient();
    sockets[0].serverClose(4408);
    assert.equal(client.state, State.RECONNECTING);
    await settle();
    const calls = refreshCalls(fetch);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].init.headers.authorization, "Bearer token-1");
    assert.equal(sockets.length, 2, "reconnected without waiting for a backoff");
    assert.deepEqual(sockets[1].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-2`]);
    assert.equal(events.filter((e) => e.type === "retry").length, 0);
    sockets[1].open();
    assert.equal(client.state, State.OPEN);
  });

  test("a second 4408 before the connection is stable goes to login", async () => {
    const { client, sockets, fetch, events, clock } = await openClient();
    sockets[0].serverClose(4408);
    await settle();
    sockets[1].open();
    sockets[1].serverClose(4408);
    await settle();
    assert.equal(refreshCalls(fetch).length, 1, "refreshed once only");
    assert.equal(client.state, State.LOGGED_OUT);
    assert.equal(events.find((e) => e.type === "loggedout").reason, "expired");
    await clock.advance(60_000);
    assert.equal(sockets.length, 2);
  });

  test("after a stable connection, a later 4408 may refresh again", async () => {
    const { client, sockets, fetch, clock } = await openClient();
    sockets[0].serverClose(4408);
    await settle();
    sockets[1].open();
    await clock.advance(BACKOFF.stableAfterMs);
    sockets[1].serverClose(4408);
    await settle();
    assert.equal(refreshCalls(fetch).length, 2);
    assert.equal(sockets.length, 3);
    assert.equal(client.state, State.RECONNECTING);
  });

  for (const status of [401, 404]) {
    test(`a refresh refused with ${status} goes to login`, async () => {
      const code = status === 401 ? "token_invalid" : "session_not_found";
      const { client, sockets, clock } = await openClient({
        routes: { "POST /api/session/refresh": { status, body: { error: { code, message: "no" } } } },
      });
      sockets[0].serverClose(4408);
      await settle();
      assert.equal(client.state, State.LOGGED_OUT);
      await clock.advance(60_000);
      assert.equal(sockets.length, 1);
    });
  }

  test("a refresh that fails for now (503) is retried with backoff, then reconnects", async () => {
    let failures = 2;
    const { client, sockets, clock, fetch } = await openClient({
      routes: {
        "POST /api/session/refresh": () =>
          failures-- > 0
            ? { status: 503, body: { error: { code: "runtime_unavailable", message: "x" } } }
            : { body: { session_id: SESSION_ID, session_token: "token-new", expires_at: new Date(clock.now() + TOKEN_TTL_MS).toISOString() } },
      },
    });
    sockets[0].serverClose(4408);
    await settle();
    assert.equal(sockets.length, 1, "no socket with a token known to be expired");
    assert.equal(client.state, State.RECONNECTING);
    await clock.advance(BACKOFF.capMs);
    await clock.advance(BACKOFF.capMs);
    assert.equal(refreshCalls(fetch).length, 3);
    assert.equal(sockets.length, 2);
    assert.deepEqual(sockets[1].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-new`]);
  });
});

describe("rotating tokens: only the newest works, a replaced one revokes at refresh", () => {
  /** Routes of a server that rotates as the real one does: each refresh replaces the token. */
  function rotating(clock, issued, server) {
    const refused = { status: 401, body: { error: { code: "token_invalid", message: "old" } } };
    const current = (call) =>
      !server.revoked && call.init.headers.authorization === `Bearer token-${issued.n}`;
    return {
      "POST /api/session/refresh": (call) => {
        if (!current(call)) {
          server.revoked = true; // reuse detection: the session ends for every holder
          return { status: 401, body: { error: { code: "session_revoked", message: "reused" } } };
        }
        issued.n += 1;
        const expires_at = new Date(clock.now() + TOKEN_TTL_MS).toISOString();
        return { body: { session_id: SESSION_ID, session_token: `token-${issued.n}`, expires_at } };
      },
      "GET /api/sessions": (call) => (current(call) ? { body: [] } : refused),
    };
  }

  test("every refresh, call, socket and reload uses the newest token", async () => {
    const clock = new FakeClock();
    const issued = { n: 0 };
    const server = { revoked: false };
    const routes = rotating(clock, issued, server);
    const { client, sockets, fetch, storage } = await openClient({
      clock,
      issued,
      routes,
      random: () => 0,
    });
    await clock.advance(TOKEN_TTL_MS - 60_000); // proactive refresh: token-1 → token-2
    assert.deepEqual(sockets[0].sent, [{ type: "refresh", session_token: "token-2" }]);
    sockets[0].serverClose(4408); // the 4408 path: token-2 → token-3, then reconnect
    await settle();
    assert.deepEqual(sockets[1].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-3`]);
    assert.deepEqual(await client.listSessions(), []);
    const presented = refreshCalls(fetch).map((c) => c.init.headers.authorization);
    assert.deepEqual(presented, ["Bearer token-1", "Bearer token-2"]);
    assert.equal(server.revoked, false, "no replaced token was ever presented");
    assert.equal(JSON.parse(storage.getItem(STORAGE_KEY)).session_token, "token-3");
    // A reload resumes with the stored, newest token.
    const reloaded = setup({ clock, issued, routes, storage });
    assert.equal(reloaded.client.start(), true);
    assert.deepEqual(reloaded.sockets.at(-1).protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-3`]);
  });
});

describe("refreshing before expiry", () => {
  test("refreshes ahead of expiry and hands the new token to the open socket in-band", async () => {
    const { client, sockets, clock, fetch } = await openClient({ random: () => 0 });
    await clock.advance(TOKEN_TTL_MS - 60_000 - 1);
    assert.equal(refreshCalls(fetch).length, 0);
    await clock.advance(1);
    assert.equal(refreshCalls(fetch).length, 1);
    assert.deepEqual(sockets[0].sent, [{ type: "refresh", session_token: "token-2" }]);
    assert.equal(client.session.session_token, "token-2");
    assert.equal(sockets.length, 1, "the socket stays");
    await clock.advance(TOKEN_TTL_MS - 60_000);
    assert.equal(refreshCalls(fetch).length, 2, "and again before the new token expires");
  });

  test("the refresh time is jittered earlier by up to half the lead", async () => {
    const { clock, fetch } = await openClient({ random: () => 0.999999 });
    await clock.advance(TOKEN_TTL_MS - 90_000 - 1);
    assert.equal(refreshCalls(fetch).length, 0);
    await clock.advance(2);
    assert.equal(refreshCalls(fetch).length, 1);
  });

  test("a token lifetime shorter than the lead refreshes at four fifths of it", async () => {
    const clock = new FakeClock();
    const { client, fetch } = setup({
      clock,
      random: () => 0,
      routes: {
        "POST /api/auth/login": {
          body: { session_id: SESSION_ID, session_token: "short", expires_at: new Date(clock.now() + 10_000).toISOString(), user: { id: "u", username: "alice" } },
        },
      },
    });
    await client.login("alice", "x");
    await clock.advance(7_999);
    assert.equal(refreshCalls(fetch).length, 0);
    await clock.advance(1);
    assert.equal(refreshCalls(fetch).length, 1);
  });

  test("a refresh that no longer extends the expiry is not repeated", async () => {
    const clock = new FakeClock();
    const end = new Date(clock.now() + 100_000).toISOString();
    const { client, fetch, sockets } = setup({
      clock,
      random: () => 0,
      routes: {
        "POST /api/auth/login": {
          body: { session_id: SESSION_ID, session_token: "t1", expires_at: end, user: { id: "u", username: "a" } },
        },
        "POST /api/session/refresh": { body: { session_id: SESSION_ID, session_token: "t2", expires_at: end } },
      },
    });
    await client.login("a", "x");
    sockets[0].open();
    await clock.advance(100_000);
    assert.equal(refreshCalls(fetch).length, 1);
  });
});

describe("tabs sharing a session", () => {
  async function twoTabs() {
    const locks = new FakeLocks();
    const BroadcastChannel = fakeBroadcastChannelClass();
    const clock = new FakeClock();
    const issued = { n: 0 };
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const routes = {
      "POST /api/session/refresh": async () => {
        await gate; // hold the first refresh open so the second tab finds the lock taken
        issued.n += 1;
        return {
          body: { session_id: SESSION_ID, session_token: `token-${issued.n}`, expires_at: new Date(clock.now() + TOKEN_TTL_MS).toISOString() },
        };
      },
    };
    const a = setup({ clock, locks, BroadcastChannel, issued, routes });
    await a.client.login("alice", "right");
    a.sockets[0].open();
    // A duplicated tab starts with a copy of the first tab's sessionStorage.
    const storage = new MemoryStorage();
    storage.setItem(STORAGE_KEY, a.storage.getItem(STORAGE_KEY));
    const b = setup({ clock, locks, BroadcastChannel, issued, routes, storage });
    b.client.start();
    b.sockets[0].open();
    return { a, b, locks, release, clock };
  }

  test("only one tab refreshes; the other adopts the new token and passes it in-band", async () => {
    const { a, b, locks, release } = await twoTabs();
    const first = a.client.refresh();
    const second = b.client.refresh();
    await settle();
    assert.deepEqual(locks.held, [`${REFRESH_LOCK_PREFIX}${SESSION_ID}`]);
    release();
    await Promise.all([first, second]);
    await settle();
    assert.equal(refreshCalls(a.fetch).length + refreshCalls(b.fetch).length, 1);
    assert.equal(a.client.session.session_token, "token-2");
    assert.equal(b.client.session.session_token, "token-2");
    assert.deepEqual(b.sockets[0].sent, [{ type: "refresh", session_token: "token-2" }]);
    assert.equal(JSON.parse(b.storage.getItem(STORAGE_KEY)).session_token, "token-2");
  });

  test("a tab whose token is newer does not adopt an older one", async () => {
    const { a, b, release } = await twoTabs();
    release();
    await b.client.refresh(); // token-2 everywhere
    await settle();
    await a.client.refresh(); // token-3 everywhere
    await settle();
    assert.equal(b.client.session.session_token, "token-3");
    assert.equal(a.client.session.session_token, "token-3");
  });

  test("logging out in one tab ends the session in the other", async () => {
    const { a, b, clock } = await twoTabs();
    await a.client.logout();
    await settle();
    assert.equal(b.client.state, State.LOGGED_OUT);
    assert.equal(b.sockets[0].closedByClient.code, 1000);
    await clock.advance(60_000);
    assert.equal(b.sockets.length, 1);
  });
});

describe("HTTP calls", () => {
  test("logout revokes with Bearer, closes the socket and never reconnects", async () => {
    const { client, sockets, fetch, storage, clock } = await openClient();
    await client.logout();
    const call = fetch.calls.find((c) => c.key === "POST /api/auth/logout");
    assert.equal(call.init.headers.authorization, "Bearer token-1");
    assert.equal(sockets[0].closedByClient.code, 1000);
    sockets[0].serverClose(4404); // the server's close of the revoked session comes too late
    assert.equal(client.state, State.LOGGED_OUT);
    assert.equal(storage.getItem(STORAGE_KEY), null);
    await clock.advance(60_000);
    assert.equal(sockets.length, 1);
  });

  test("a Bearer call answered 401 ends the session", async () => {
    const { client, sockets } = await openClient({
      routes: { "GET /api/sessions": { status: 401, body: { error: { code: "session_revoked", message: "x" } } } },
    });
    await assert.rejects(client.listSessions(), { status: 401 });
    assert.equal(client.state, State.LOGGED_OUT);
    assert.equal(sockets[0].closedByClient.code, 1000);
  });

  test("errors carry status, code and Retry-After", async () => {
    const { client } = setup({
      routes: {
        "POST /api/auth/login": { status: 429, headers: { "Retry-After": "7" }, body: { error: { code: "rate_limited", message: "slow down" } } },
      },
    });
    await assert.rejects(client.login("a", "b"), { status: 429, code: "rate_limited", retryAfter: 7, transient: true });
  });

  test("revoking the other sessions leaves the current one", async () => {
    const others = ["a".repeat(32), "b".repeat(32)];
    const { client, fetch, sockets } = await openClient({
      routes: {
        "GET /api/sessions": {
          body: [SESSION_ID, ...others].map((id) => ({ session_id: id, current: id === SESSION_ID })),
        },
        [`DELETE /api/session/${others[0]}`]: { status: 204 },
        [`DELETE /api/session/${others[1]}`]: { status: 404, body: { error: { code: "session_not_found", message: "gone" } } },
      },
    });
    assert.equal(await client.revokeOthers(), 1);
    const deletes = fetch.calls.filter((c) => c.key.startsWith("DELETE"));
    assert.deepEqual(deletes.map((c) => c.key), others.map((id) => `DELETE /api/session/${id}`));
    assert.equal(client.state, State.OPEN);
    assert.equal(sockets[0].closedByClient, null);
  });

  test("revoking this tab's own session ends it here", async () => {
    const { client } = await openClient({
      routes: { [`DELETE /api/session/${SESSION_ID}`]: { status: 204 } },
    });
    await client.revokeSession(SESSION_ID);
    assert.equal(client.state, State.LOGGED_OUT);
  });
});

describe("login through an OpenID provider", () => {
  const exchange = (status = 200) => ({
    "POST /api/auth/oidc/exchange": ({ body }) =>
      status === 200
        ? {
            body: {
              session_id: SESSION_ID,
              session_token: `token-for-${body.code}`,
              expires_at: new Date(Date.now() + TOKEN_TTL_MS).toISOString(),
              user: { id: "u1", username: "alice" },
            },
          }
        : { status, body: { error: { code: "handover_invalid", message: "used" } } },
  });

  test("reads the handover code or the error from the fragment, and nothing else", () => {
    assert.deepEqual(readLoginFragment("#handover=abc"), { handover: "abc", loginError: null });
    assert.deepEqual(readLoginFragment("#login_error=login_cancelled"), {
      handover: null,
      loginError: "login_cancelled",
    });
    assert.deepEqual(readLoginFragment(""), { handover: null, loginError: null });
    assert.deepEqual(readLoginFragment(undefined), { handover: null, loginError: null });
  });

  test("trades the code with a POST (not in a URL) and opens the socket with the token", async () => {
    const { client, sockets, fetch, storage } = setup({ routes: exchange() });
    const session = await client.loginWithHandover("one-time-code");
    const call = fetch.calls.at(-1);
    assert.equal(call.key, "POST /api/auth/oidc/exchange");
    assert.deepEqual(call.body, { code: "one-time-code" });
    assert.ok(!call.url.includes("one-time-code"));
    assert.equal(session.provider, "default");
    assert.equal(sockets.length, 1);
    assert.deepEqual(sockets[0].protocols, [SUBPROTOCOL, `${BEARER_PREFIX}token-for-one-time-code`]);
    assert.equal(JSON.parse(storage.getItem(STORAGE_KEY)).provider, "default");
  });

  test("a used or expired code opens nothing", async () => {
    const { client, sockets } = setup({ routes: exchange(401) });
    await assert.rejects(client.loginWithHandover("used"), { status: 401, code: "handover_invalid" });
    assert.equal(sockets.length, 0);
    assert.equal(client.session, null);
  });

  test("the provider's button shows only when the server says one is configured", async () => {
    const on = setup({
      routes: { "GET /api/auth/oidc/config": { body: { enabled: true, name: "Keycloak" } } },
    });
    assert.deepEqual(await on.client.oidcConfig(), { enabled: true, name: "Keycloak" });
    const off = setup({ fetch: async () => { throw new Error("offline"); } });
    assert.deepEqual(await off.client.oidcConfig(), { enabled: false });
  });
});

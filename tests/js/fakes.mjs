// Test doubles for SymphainyClient's injected dependencies: a manual clock, a scripted WebSocket,
// a routed fetch, in-memory storage, Web Locks and a BroadcastChannel hub shared by "tabs".

/** A clock whose timers fire only when the test advances it. */
export class FakeClock {
  constructor(start = Date.parse("2030-01-01T00:00:00Z")) {
    this.time = start;
    this.timers = new Map();
    this.nextHandle = 1;
  }

  now() {
    return this.time;
  }

  setTimeout(fn, ms) {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.time + Math.max(0, ms), fn, ms });
    return handle;
  }

  clearTimeout(handle) {
    this.timers.delete(handle);
  }

  /** Delays (ms, as requested) of the timers still pending. */
  pending() {
    return [...this.timers.values()].map((t) => t.ms);
  }

  /** Move time forward, firing due timers in order (and letting their promises settle). */
  async advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let due = null;
      for (const [handle, timer] of this.timers) {
        if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [handle, timer];
      }
      if (due === null) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
      await settle();
    }
    this.time = end;
    await settle();
  }

  /** The clock as the client expects it. */
  api() {
    return {
      now: () => this.now(),
      setTimeout: (fn, ms) => this.setTimeout(fn, ms),
      clearTimeout: (h) => this.clearTimeout(h),
    };
  }
}

/** Let pending promise callbacks (fetch, locks, async handlers) run. */
export async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Every socket the client opens, scripted by the test. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    static instances = sockets;

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedByClient = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = 3;
    }

    // Test side.
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return FakeWebSocket;
}

/** A fetch answering from `routes["METHOD /path"]`: a function of the request, or a response. */
export function fakeFetch(routes) {
  const calls = [];
  async function fetch(url, init = {}) {
    const path = new URL(url).pathname;
    const key = `${init.method ?? "GET"} ${path}`;
    const call = { key, url, init, body: init.body ? JSON.parse(init.body) : undefined };
    calls.push(call);
    let route = routes[key];
    if (route === undefined) return reply(404, { error: { code: "not_found", message: key } });
    if (typeof route === "function") route = await route(call);
    if (route instanceof Error) throw route;
    return reply(route.status ?? 200, route.body ?? null, route.headers);
  }
  fetch.calls = calls;
  return fetch;
}

function reply(status, body, headers = {}) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => lower[name.toLowerCase()] ?? null },
    text: async () => (body === null ? "" : JSON.stringify(body)),
  };
}

/** sessionStorage in memory. */
export class MemoryStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }

  removeItem(key) {
    this.items.delete(key);
  }
}

/** navigator.locks for exclusive locks, shared by every "tab" given the same instance. */
export class FakeLocks {
  constructor() {
    this.queues = new Map();
    this.held = [];
  }

  /** `request(name, [options], callback)`; `ifAvailable` gets `null` if the lock is taken. */
  request(name, options, callback) {
    if (callback === undefined) [options, callback] = [{}, options];
    if (options.ifAvailable && this.queues.has(name)) return Promise.resolve(callback(null));
    const previous = this.queues.get(name) ?? Promise.resolve();
    const run = previous.then(async () => {
      this.held.push(name);
      try {
        return await callback({ name, mode: "exclusive" });
      } finally {
        this.held.splice(this.held.indexOf(name), 1);
      }
    });
    const tail = run.catch(() => {});
    this.queues.set(name, tail);
    tail.then(() => {
      if (this.queues.get(name) === tail) this.queues.delete(name);
    });
    return run;
  }
}

/** A BroadcastChannel class whose instances deliver to each other (not to themselves). */
export function fakeBroadcastChannelClass() {
  const members = new Set();
  return class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      members.add(this);
    }

    postMessage(data) {
      const copy = structuredClone(data);
      for (const other of members) {
        if (other !== this && other.name === this.name) {
          setImmediate(() => other.onmessage?.({ data: copy }));
        }
      }
    }

    close() {
      members.delete(this);
    }
  };
}

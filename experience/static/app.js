// The web client's page: wires the DOM to SymphainyClient, which owns every session and socket rule.
import { ApiError, readLoginFragment, State, SymphainyClient } from "./symphainy-client.js";

const $ = (id) => document.getElementById(id);
const client = new SymphainyClient();
// Exposed for the browser tests and for poking at it from the devtools console.
window.symphainy = client;

const NOTICES = {
  logout: "You logged out.",
  revoked: "This session was revoked. Log in again.",
  session_gone: "Your session was revoked or has ended. Log in again.",
  unauthorized: "Your session is no longer valid. Log in again.",
  expired: "Your session expired. Log in again.",
  malformed: "The server refused the connection as malformed. Log in again.",
  origin_forbidden: "This page's origin is not allowed to connect. Log in again.",
};

// Why a login through the identity provider came back without a session (the server's codes).
const OIDC_ERRORS = {
  login_cancelled: "You cancelled the login at the identity provider.",
  provider_unavailable: "The identity provider is unavailable; try again shortly.",
  login_state_invalid: "That login took too long or was not started here; try again.",
  authorization_code_invalid: "The identity provider refused the login; try again.",
  id_token_invalid: "The identity provider's answer did not pass our checks.",
  handover_invalid: "That login was already used or has expired; log in again.",
};
let oidcName = "the identity provider";

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function loginErrorText(err) {
  if (!(err instanceof ApiError)) return `Login failed: ${err.message}`;
  if (err.status === 401) return "Wrong username or password.";
  if (err.status === 429) return `Too many attempts; try again in ${err.retryAfter ?? "a few"} s.`;
  if (err.status === 503) return "The service is unavailable; try again shortly.";
  if (err.status === 0) return "Cannot reach the server.";
  return `Login failed: ${err.message}`;
}

function renderState(state) {
  const status = $("socket-status");
  const shown = state === State.LOGGED_OUT ? State.CLOSED : state;
  status.dataset.state = shown;
  status.textContent = shown;
  $("intent-send").disabled = state !== State.OPEN;
}

function renderSession(session) {
  $("login").hidden = Boolean(session);
  $("app").hidden = !session;
  if (!session) return;
  $("session-user").textContent = session.user?.username ?? "";
  $("session-id").textContent = session.session_id;
  const expiry = $("session-expiry");
  expiry.dateTime = session.expires_at;
  expiry.textContent = new Date(session.expires_at).toLocaleString();
}

function log(type, text, id = "") {
  const item = document.createElement("li");
  item.dataset.type = type;
  if (id) item.dataset.id = id;
  item.textContent = `${type.padEnd(6)} ${text}`;
  $("console-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

async function loadSessions() {
  show($("sessions-error"), "");
  let sessions;
  try {
    sessions = await client.listSessions();
  } catch (err) {
    if (client.session) show($("sessions-error"), `Could not load sessions: ${err.message}`);
    return;
  }
  const list = $("sessions-list");
  list.replaceChildren(
    ...sessions.map((s) => {
      const item = document.createElement("li");
      item.dataset.sessionId = s.session_id;
      item.dataset.testid = "session-item";
      const label = document.createElement("span");
      label.textContent = `${s.session_id.slice(0, 8)}… since ${new Date(s.created_at).toLocaleTimeString()}`;
      item.append(label);
      if (s.current) {
        const mark = document.createElement("span");
        mark.className = "current";
        mark.textContent = "this tab";
        item.append(mark);
      }
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "secondary";
      revoke.textContent = "Revoke";
      revoke.dataset.testid = "revoke";
      revoke.addEventListener("click", async () => {
        try {
          await client.revokeSession(s.session_id);
        } catch (err) {
          show($("sessions-error"), `Could not revoke: ${err.message}`);
        }
        if (client.session) await loadSessions();
      });
      item.append(revoke);
      return item;
    }),
  );
  list.dataset.count = String(sessions.length);
}

client.on("state", ({ state }) => {
  renderState(state);
  // The list may have failed to load while the runtime was away: reload it on every (re)open.
  if (state === State.OPEN) loadSessions();
});
client.on("session", (session) => renderSession(session));
client.on("retry", ({ delay, code }) => log("retry", `close ${code}: reconnecting in ${delay} ms`));
client.on("frame", (frame) => {
  const { type, id, ...rest } = frame;
  log(type ?? "frame", JSON.stringify(rest), id ?? "");
});
client.on("loggedout", ({ reason }) => {
  show($("login-notice"), NOTICES[reason] ?? "Your session ended. Log in again.");
  $("console-log").replaceChildren();
  $("sessions-list").replaceChildren();
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("login-submit");
  button.disabled = true;
  show($("login-error"), "");
  try {
    await client.login($("username").value, $("password").value);
    $("password").value = "";
    show($("login-notice"), "");
  } catch (err) {
    show($("login-error"), loginErrorText(err));
  } finally {
    button.disabled = false;
  }
});

$("intent-form").addEventListener("submit", (event) => {
  event.preventDefault();
  show($("intent-error"), "");
  let payload;
  try {
    payload = JSON.parse($("intent-payload").value || "{}");
  } catch {
    show($("intent-error"), "The payload is not valid JSON.");
    return;
  }
  try {
    const intent = $("intent-name").value;
    const id = client.sendIntent(intent, payload);
    log("sent", `${intent} ${JSON.stringify(payload)}`, id);
  } catch (err) {
    show($("intent-error"), err.message);
  }
});

$("sessions-reload").addEventListener("click", loadSessions);

$("logout-others").addEventListener("click", async () => {
  try {
    await client.revokeOthers();
  } catch (err) {
    show($("sessions-error"), `Could not log out the other sessions: ${err.message}`);
  }
  if (client.session) await loadSessions();
});

$("logout").addEventListener("click", () => {
  const viaProvider = Boolean(client.session?.provider);
  client.logout();
  // Our session is revoked; the provider's own session is the user's to end, offered here.
  $("oidc-logout-link").textContent = `Also sign out of ${oidcName}`;
  $("oidc-logout").hidden = !viaProvider;
});

async function offerProvider() {
  const config = await client.oidcConfig();
  if (!config?.enabled) return;
  oidcName = config.name;
  const link = $("oidc-login");
  link.textContent = `Log in with ${config.name}`;
  link.href = config.login_url;
  $("oidc").hidden = false;
}

// A login through the provider comes back as /#handover=<one-time code> or /#login_error=<code>:
// take it out of the address bar (and the history) before anything else, then act on it.
const { handover, loginError } = readLoginFragment(location.hash);
if (location.hash) history.replaceState(null, "", location.pathname + location.search);

renderState(client.state);
offerProvider();
if (handover) {
  client.loginWithHandover(handover).then(
    () => show($("login-notice"), ""),
    (err) => show($("login-error"), OIDC_ERRORS[err.code] ?? loginErrorText(err)),
  );
} else {
  if (loginError) show($("login-error"), OIDC_ERRORS[loginError] ?? "The login did not succeed.");
  client.start();
}
renderSession(client.session);

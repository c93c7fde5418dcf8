"""The one ``Settings`` object: flags, ``SYMPHAINY_*`` environment variables, or ``.env``.

Built once at each entry point and passed down; nothing else reads the environment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "EdDSA", "RS256", "ES256", "ES384", "ES512"]


class Settings(BaseSettings):
    """Every knob of symphainy, with defaults fit for one machine."""

    model_config = SettingsConfigDict(
        env_prefix="SYMPHAINY_", env_file=".env", extra="ignore", frozen=True
    )

    # Where things are.
    # The bus: a URL (else the role's context's, else DEFAULT_NATS_URL) and, for a NATS that
    # requires credentials, a NATS CLI context file with this process's identity (bus/identity.py).
    nats_url: str | None = None
    nats_context: Path | None = None
    data_dir: Path = Path(".symphainy")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    nats_port: int = Field(default=4222, ge=-1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    dev_mode: bool = False

    # State Surface.
    kv_replicas: int = Field(default=1, ge=1, le=5)
    audit_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    # An audit record is ~500 bytes: size the cap as audited records/s x 500 B x max age. 1 GiB
    # holds 7 days at 3.5 records/s: 1,000 verifies/s with 1 in 1,000 failing is 1 record/s
    # (successful reads are not audited), 24 days (bench/audit_volume.py).
    audit_max_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)

    # Bus behaviour.
    request_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Intents of one type a runtime worker executes at once (FastStream's max_workers).
    runtime_concurrency: int = Field(default=64, ge=1, le=4096)
    retry_after_s: int = Field(default=2, ge=1, le=3600)
    write_retry_window_s: float = Field(default=10.0, ge=0, le=120)

    # Sessions.
    session_idle_timeout_s: int = Field(default=30 * 60, ge=1)
    session_max_lifetime_s: int = Field(default=12 * 3600, ge=1)
    session_touch_interval_s: int = Field(default=60, ge=0)
    token_ttl_s: int = Field(default=15 * 60, ge=1)
    # How long after its expiry a token may still be refreshed (the 4408 path), in seconds.
    refresh_grace_s: int = Field(default=300, ge=0)
    # Live sessions one user may hold; creating one more revokes the oldest.
    max_sessions_per_user: int = Field(default=50, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)

    # Tokens: ``jwt_keys`` maps key id to secret; ``jwt_active_kid`` signs, all of them verify.
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_keys: dict[str, SecretStr] = Field(default_factory=dict)
    jwt_active_kid: str | None = None
    jwt_issuer: str = "symphainy"
    jwt_audience: str = "symphainy"

    # HTTP edge. Login attempts: at most ``login_rate_limit`` per window per (username, client
    # address) (counted by the runtime, shared by every process) and failures per client address
    # (per process). Per username only a slowdown, so a stranger cannot lock a user out:
    login_rate_limit: int = Field(default=10, ge=1)
    login_rate_window_s: float = Field(default=60.0, gt=0)
    # Failures on one username in the window before each attempt on it is answered later.
    login_slowdown_after: int = Field(default=3, ge=0)
    # The longest that delay (doubling from 0.1 s per failure); well under the 2 s answer bound.
    login_slowdown_max_s: float = Field(default=1.0, ge=0, le=1.5)
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips): nobody by
    # default, else any local client could pick its own address. Behind a proxy that is the only
    # way in (compose: Traefik), its address or "*"; otherwise the proxy's address is everyone's.
    forwarded_allow_ips: str = ""
    # Where people open the app (``https://app.example``): the default allowed Host and Origin.
    public_url: str | None = None
    # Origins a browser socket may come from (``*``: any); empty: ``public_url``'s, else the
    # page's own origin (Origin equal to the request's Host, once that Host is allowed).
    allowed_origins: list[str] = Field(default_factory=list)
    # Host names (port ignored) a request may be addressed to (``*``: any); empty: ``public_url``'s
    # host, else names DNS rebinding cannot forge: IP addresses, ``localhost`` and the bind host.
    allowed_hosts: list[str] = Field(default_factory=list)

    # HTTP limits, met before any authentication (experience/server.py, experience/limits.py).
    # Bytes of one request body (413 beyond; a larger Content-Length is refused unread).
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Bytes of one request head, request line and header fields together (431 beyond).
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # Header fields in one request (431 beyond).
    http_max_headers: int = Field(default=100, ge=16)
    # Seconds to receive a request's head, and then again its body (408 and closed after).
    http_read_timeout_s: float = Field(default=10.0, gt=0)
    # Seconds an idle keep-alive connection is kept between requests (uvicorn's keep-alive).
    http_keep_alive_s: int = Field(default=5, ge=1)

    # WebSocket gate.
    ws_max_per_session: int = Field(default=8, ge=1)
    ws_max_per_user: int = Field(default=32, ge=1)
    ws_max_pending_admissions: int = Field(default=256, ge=1)
    ws_send_queue: int = Field(default=256, ge=1)
    ws_max_in_flight: int = Field(default=32, ge=1)
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    ws_drain_timeout_s: float = Field(default=5.0, ge=0)
    # permessage-deflate keeps a zlib compressor and decompressor per socket (~30 KB each idle
    # socket, bench/socket_rss.py) to shrink frames that are mostly small JSON: off by default.
    ws_per_message_deflate: bool = False
    agent_deadline_s: float = Field(default=300.0, gt=0)

    # Agent work (runtime side). A delivery not acked within ``agent_ack_wait_s`` goes to another
    # worker; a running agent keeps extending it. The delivery after ``agent_max_attempts`` is
    # answered with an error instead of being run again.
    agent_concurrency: int = Field(default=16, ge=1, le=1024)
    agent_ack_wait_s: float = Field(default=30.0, ge=1)
    agent_max_attempts: int = Field(default=5, ge=1, le=100)
    agent_drain_timeout_s: float = Field(default=5.0, ge=0)
    agent_queue_max_msgs: int = Field(default=100_000, ge=1)
    # Events one agent run may send; one more ends the run with a ``run_limit_exceeded`` error.
    agent_max_events_per_run: int = Field(default=1000, ge=1)
    # Bytes of events and result one agent run may send (JSON), ending it likewise past that.
    agent_max_event_bytes_per_run: int = Field(default=1024 * 1024, ge=1024)
    log_level: str = "INFO"
    # Prometheus metrics at ``http://<metrics_host>:<metrics_port>/metrics``: off unless a port
    # is given (0: any free one); loopback only, like every server here.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # ``json``: one JSON object per line (symphainy/logs.py), for a log collector.
    log_format: Literal["text", "json"] = "text"

    # OpenID Connect login (experience/oidc.py): on when the issuer and client id are set. The
    # redirect URI is ``<public_url>/api/auth/oidc/callback``; no client secret: a public client
    # (PKCE only), else ``client_secret_basic``.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email"
    # Shown on the button: "Log in with <name>".
    oidc_name: str = Field(default="OpenID Connect", min_length=1, max_length=64)
    # Seconds one call to the provider (discovery, keys, token exchange) may take.
    oidc_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Clock skew tolerated on the ID token's ``exp`` and ``iat``.
    oidc_clock_skew_s: int = Field(default=60, ge=0, le=600)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.session_idle_timeout_s > self.session_max_lifetime_s:
            raise ValueError("session_idle_timeout_s must not exceed session_max_lifetime_s")
        if self.jwt_active_kid is not None and self.jwt_active_kid not in self.jwt_keys:
            raise ValueError("jwt_active_kid must name one of jwt_keys")
        if self.oidc_issuer is not None and "openid" not in self.oidc_scopes.split():
            raise ValueError("oidc_scopes must include openid")
        # Key strength is checked where keys are loaded, for every source alike (experience/keys).
        if not _is_loopback(self.metrics_host):
            raise ValueError("metrics_host must be a loopback address (127.0.0.1, ::1, localhost)")
        return self


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

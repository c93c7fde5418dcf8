"""The one ``Settings`` object: flags, ``SYMPHAINY_*`` environment variables, or ``.env``.

Built once at each entry point and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this": refused outside dev mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "changethis", "secret", "dev", "development"})
MIN_SECRET_BYTES = 32

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "EdDSA", "RS256"]


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
    audit_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)

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
    token_refresh_grace_s: int = Field(default=24 * 3600, ge=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)

    # Tokens: ``jwt_keys`` maps key id to secret; ``jwt_active_kid`` signs, all of them verify.
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_keys: dict[str, SecretStr] = Field(default_factory=dict)
    jwt_active_kid: str | None = None
    jwt_issuer: str = "symphainy"
    jwt_audience: str = "symphainy"

    # HTTP edge. Login attempts: at most ``login_rate_limit`` per window per username (counted
    # by the runtime, shared by every process) and failures per client address (per process).
    login_rate_limit: int = Field(default=10, ge=1)
    login_rate_window_s: float = Field(default=60.0, gt=0)
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips). Behind a
    # proxy that is the only way in (compose: Traefik), "*"; otherwise the proxy's address is
    # every client's, and one address's failures would lock everyone out.
    forwarded_allow_ips: str = "127.0.0.1"
    allowed_origins: list[str] = Field(default_factory=list)

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
    agent_deadline_s: float = Field(default=300.0, gt=0)

    # Agent work (runtime side). A delivery not acked within ``agent_ack_wait_s`` goes to another
    # worker; a running agent keeps extending it. The delivery after ``agent_max_attempts`` is
    # answered with an error instead of being run again.
    agent_concurrency: int = Field(default=16, ge=1, le=1024)
    agent_ack_wait_s: float = Field(default=30.0, ge=1)
    agent_max_attempts: int = Field(default=5, ge=1, le=100)
    agent_drain_timeout_s: float = Field(default=5.0, ge=0)
    agent_queue_max_msgs: int = Field(default=100_000, ge=1)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.session_idle_timeout_s > self.session_max_lifetime_s:
            raise ValueError("session_idle_timeout_s must not exceed session_max_lifetime_s")
        if self.jwt_active_kid is not None and self.jwt_active_kid not in self.jwt_keys:
            raise ValueError("jwt_active_kid must name one of jwt_keys")
        if not self.dev_mode:
            for kid, secret in self.jwt_keys.items():
                value = secret.get_secret_value()
                if value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_BYTES:
                    raise ValueError(
                        f"jwt key {kid!r} is a placeholder or shorter than {MIN_SECRET_BYTES} "
                        "characters; set a real secret or use dev mode"
                    )
        return self

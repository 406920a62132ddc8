"""Settings base shared by every service; each service adds its own prefix and fields."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every service reads under the `CLINIC_` prefix."""

    model_config = SettingsConfigDict(env_prefix="CLINIC_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    jwt_secret: SecretStr = Field(default=SecretStr(""))
    jwt_issuer: str = "clinic"
    log_level: str = "INFO"
    log_json: bool = True
    policy_file: str | None = None
    topic_partitions: int = 3
    topic_prefix: str = ""
    """Put before every topic name (e.g. `staging.`): systems sharing a broker stay apart."""

    def topic(self, name: str) -> str:
        return self.topic_prefix + name


class ServiceSettings(BaseSettings):
    """Per-service settings: the subclass sets `env_prefix` (e.g. `BOOKING_`)."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str
    database_url: str
    http_host: str = "127.0.0.1"
    http_port: int
    relay_batch_size: int = 200
    relay_poll_interval_seconds: float = 0.5
    consumer_group: str = ""
    """Kafka consumer group; the service name when empty."""
    consumer_max_transient_attempts: int = 8
    consumer_retry_base_seconds: float = 0.1
    consumer_retry_max_seconds: float = 5.0
    consumer_poll_timeout_ms: int = 500
    consumer_max_poll_interval_ms: int = 300_000
    """Longer than this between polls and Kafka gives the consumer's partitions to another."""
    consumer_health_port: int = 0
    """Port of the consumer's liveness endpoint (`/livez`, `/metrics`); 0 serves none."""
    consumer_health_host: str = "127.0.0.1"
    consumer_stall_after_seconds: float = 30.0
    """A consumer that has not polled, or has lag and made no progress, for this long is
    reported stalled."""
    dispatcher_poll_interval_seconds: float = 1.0
    """How often a dispatcher looks for newly due rows when none was due."""
    common: CommonSettings = Field(default_factory=CommonSettings)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def jwt_secret(self) -> str:
        secret = self.common.jwt_secret.get_secret_value()
        if not secret:
            raise RuntimeError("CLINIC_JWT_SECRET is not set: tokens cannot be signed or checked")
        return secret

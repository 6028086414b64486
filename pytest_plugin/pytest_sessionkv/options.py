"""The plugin's options: each both a command-line flag and an ini key; the flag wins over the ini key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

__all__ = ["Options", "Settings"]

KNOWN_BACKENDS = ("memory", "virtual", "fakeredis", "redis", "custom", "redis_cluster", "redis_sentinel")


@dataclass(frozen=True)
class Settings:
    """The resolved options of one pytest run."""

    backends: tuple[str, ...] | None
    """Backends ``sessionkv_store`` runs on; ``None`` means every backend available."""
    redis_url: str | None
    """Use this server instead of starting one (each test still gets a private key prefix)."""
    redis_exec: str | None
    """The server binary to start (default: discovered, see ``find_redis_server``)."""
    require_redis: bool
    """Fail, rather than skip, the tests that need Redis when no server can be had."""

    key: ClassVar[pytest.StashKey[Settings]] = pytest.StashKey()


class Options:
    """(flag, ini key, help) for every option, registered and read in one place."""

    TABLE: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        (
            "--sessionkv-backends",
            "sessionkv_backends",
            "string",
            f"comma-separated backends for sessionkv_store, of {','.join(KNOWN_BACKENDS)} (default: all available)",
        ),
        (
            "--sessionkv-redis-url",
            "sessionkv_redis_url",
            "string",
            "use the Redis server at this URL instead of starting redis-server (tests get private key prefixes)",
        ),
        (
            "--sessionkv-redis-exec",
            "sessionkv_redis_exec",
            "string",
            "server binary to start, a path or a command name (valkey-server: the bundled one if not on PATH); "
            "default: $SESSIONKV_REDIS_EXEC, then redis-server, valkey-server on PATH, then the bundled "
            "valkey-server; a given server that is missing is an error",
        ),
        (
            "--sessionkv-require-redis",
            "sessionkv_require_redis",
            "bool",
            "fail instead of skip when no redis-server can be found or reached",
        ),
    )

    @classmethod
    def register(cls, parser: pytest.Parser) -> None:
        group = parser.getgroup("sessionkv", "sessionkv stores and fixtures")
        for flag, ini, kind, help_text in cls.TABLE:
            if kind == "bool":
                group.addoption(flag, action="store_true", default=None, dest=ini, help=help_text)
                parser.addini(ini, help_text, type="bool", default=False)
            else:
                group.addoption(flag, action="store", default=None, dest=ini, metavar="VALUE", help=help_text)
                parser.addini(ini, help_text, type="string", default="")

    @staticmethod
    def _value(config: pytest.Config, ini: str) -> object:
        flag_value = config.getoption(ini)
        return flag_value if flag_value is not None else config.getini(ini)

    @classmethod
    def read(cls, config: pytest.Config) -> Settings:
        raw_backends = str(cls._value(config, "sessionkv_backends") or "").strip()
        backends: tuple[str, ...] | None = None
        if raw_backends:
            backends = tuple(name.strip() for name in raw_backends.split(",") if name.strip())
            unknown = sorted(set(backends) - set(KNOWN_BACKENDS))
            if unknown:
                raise pytest.UsageError(
                    f"--sessionkv-backends: unknown backend(s) {unknown}; choose from {', '.join(KNOWN_BACKENDS)}"
                )
        return Settings(
            backends=backends,
            redis_url=str(cls._value(config, "sessionkv_redis_url") or "") or None,
            redis_exec=str(cls._value(config, "sessionkv_redis_exec") or "") or None,
            require_redis=bool(cls._value(config, "sessionkv_require_redis")),
        )

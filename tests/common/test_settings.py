from pathlib import Path

import pytest

from services.common.runtime.settings import ConfigError, load_service_settings
from services.gateway.settings import load_settings as load_gateway_settings
from tests.support import SERVICE_TOKEN, TOKENS

BASE = {
    "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
    "EMOGO_VIEWER_TOKEN": TOKENS["viewer"],
    "EMOGO_DEVICE_TOKEN": TOKENS["device"],
    "EMOGO_SERVICE_TOKEN": SERVICE_TOKEN,
}


def test_defaults_and_seed_names() -> None:
    settings = load_service_settings(
        "ingest",
        {
            **BASE,
            "MONGODB_URI": "mongodb://db.example:27017",
            "DB_NAME": "course",
            "MONGODB_ADMIN_USERNAME": "root",
            "MONGODB_ADMIN_PASSWORD": "pw-secret",
            "EMOGO_DATA_DIR": "/srv/emogo",
        },
    )
    assert settings.port == 8001
    assert settings.mongodb_uri == "mongodb://db.example:27017"
    assert settings.db_name == "course"
    assert settings.mongodb_admin_username == "root"
    assert settings.mongodb_admin_password == "pw-secret"
    assert settings.log_dir == Path("/srv/emogo/logs")
    assert settings.credentials.viewer == TOKENS["viewer"]


def test_settings_are_frozen_and_hide_secrets() -> None:
    settings = load_service_settings("media", BASE)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert TOKENS["admin"] not in repr(settings)
    assert TOKENS["admin"] not in repr(settings.credentials)


@pytest.mark.parametrize(
    ("override", "variable", "reason"),
    [
        ({"EMOGO_ADMIN_PORT": "http"}, "EMOGO_ADMIN_PORT", "whole number"),
        ({"EMOGO_ADMIN_PORT": "70000"}, "EMOGO_ADMIN_PORT", "between 1 and 65535"),
        ({"MONGODB_URI": "postgres://x"}, "MONGODB_URI", "mongodb://"),
        ({"EMOGO_LOG_LEVEL": "LOUD"}, "EMOGO_LOG_LEVEL", "one of"),
        ({"EMOGO_VIEWER_TOKEN": ""}, "EMOGO_VIEWER_TOKEN", "required"),
        ({"EMOGO_DEVICE_TOKEN": "short"}, "EMOGO_DEVICE_TOKEN", "at least 8"),
        ({"EMOGO_DEVICE_TOKEN": TOKENS["admin"]}, "EMOGO_DEVICE_TOKEN", "differ"),
    ],
)
def test_bad_values_name_the_variable(override: dict, variable: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_service_settings("admin", {**BASE, **override})
    assert caught.value.variable == variable
    assert reason in str(caught.value)


def test_gateway_upstreams_follow_service_ports_unless_given() -> None:
    settings = load_gateway_settings({**BASE, "EMOGO_MEDIA_PORT": "9102"})
    assert settings.upstreams == {
        "ingest": ("http://127.0.0.1:8001",),
        "media": ("http://127.0.0.1:9102",),
        "admin": ("http://127.0.0.1:8003",),
    }
    settings = load_gateway_settings({**BASE, "EMOGO_ADMIN_URL": "http://admin:8003/"})
    assert settings.upstreams["admin"] == ("http://admin:8003",)
    with pytest.raises(ConfigError, match="EMOGO_INGEST_URL"):
        load_gateway_settings({**BASE, "EMOGO_INGEST_URL": "ingest:8001"})


def test_a_service_may_have_several_replicas() -> None:
    settings = load_gateway_settings(
        {**BASE, "EMOGO_INGEST_URL": "http://ingest-1:8001, http://ingest-2:8001/"}
    )
    assert settings.upstreams["ingest"] == ("http://ingest-1:8001", "http://ingest-2:8001")
    with pytest.raises(ConfigError, match="EMOGO_INGEST_URL: lists a URL twice"):
        load_gateway_settings({**BASE, "EMOGO_INGEST_URL": "http://a:1,http://a:1"})
    with pytest.raises(ConfigError, match="EMOGO_MEDIA_URL"):
        load_gateway_settings({**BASE, "EMOGO_MEDIA_URL": "http://media-1:8002,media-2"})


def test_workers_per_service() -> None:
    assert load_gateway_settings(BASE).workers == 1
    assert load_gateway_settings({**BASE, "EMOGO_GATEWAY_WORKERS": "4"}).workers == 4
    with pytest.raises(ConfigError, match="EMOGO_GATEWAY_WORKERS"):
        load_gateway_settings({**BASE, "EMOGO_GATEWAY_WORKERS": "0"})


def test_the_gateway_spools_in_its_data_dir_unless_told_otherwise() -> None:
    settings = load_gateway_settings({**BASE, "EMOGO_DATA_DIR": "/srv/emogo"})
    assert settings.temp_dir == Path("/srv/emogo/tmp")
    elsewhere = {**BASE, "EMOGO_GATEWAY_TEMP_DIR": "/var/spool/emogo"}
    assert load_gateway_settings(elsewhere).temp_dir == Path("/var/spool/emogo")


def test_posts_are_relayed_together_unless_turned_off() -> None:
    settings = load_gateway_settings(BASE)
    assert settings.relay_together is True
    assert settings.relay_linger == 0.003
    quiet = load_gateway_settings(
        {**BASE, "EMOGO_GATEWAY_RELAY_TOGETHER": "false", "EMOGO_GATEWAY_RELAY_LINGER_MS": "0"}
    )
    assert quiet.relay_together is False
    assert quiet.relay_linger == 0
    with pytest.raises(ConfigError, match="EMOGO_GATEWAY_RELAY_LINGER_MS"):
        load_gateway_settings({**BASE, "EMOGO_GATEWAY_RELAY_LINGER_MS": "-1"})


def test_the_service_token_is_required_and_no_role_token() -> None:
    """The gateway's own credential (audit appends) must be set, and must not be a role
    token: the admin token alone may not write the audit trail."""
    without = {k: v for k, v in BASE.items() if k != "EMOGO_SERVICE_TOKEN"}
    with pytest.raises(ConfigError, match="EMOGO_SERVICE_TOKEN"):
        load_gateway_settings(without)
    with pytest.raises(ConfigError, match="differ from the role tokens"):
        load_gateway_settings({**BASE, "EMOGO_SERVICE_TOKEN": TOKENS["admin"]})


def test_forwarded_addresses_are_believed_only_from_configured_proxies() -> None:
    from services.common.runtime.serve import server_config

    settings = load_gateway_settings(BASE)
    assert settings.trusted_proxies == ()
    config = server_config(settings, None)  # type: ignore[arg-type]
    assert config.proxy_headers is False
    behind = load_gateway_settings({**BASE, "EMOGO_TRUSTED_PROXIES": "10.0.0.5, 172.18.0.0/16"})
    assert behind.trusted_proxies == ("10.0.0.5/32", "172.18.0.0/16")
    config = server_config(behind, None)  # type: ignore[arg-type]
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.5/32", "172.18.0.0/16"]
    with pytest.raises(ConfigError, match="EMOGO_TRUSTED_PROXIES"):
        load_gateway_settings({**BASE, "EMOGO_TRUSTED_PROXIES": "not-an-address"})

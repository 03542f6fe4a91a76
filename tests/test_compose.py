"""docker-compose.yml, checked by parsing it (no Docker engine runs in CI)."""

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

APP_SERVICES = {"ingest": 8001, "media": 8002, "admin": 8003, "gateway": 8000}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_mongo_is_a_single_node_replica_set_initialised_once(compose: dict) -> None:
    services = compose["services"]
    mongo = services["mongo"]
    assert "--replSet" in mongo["command"]
    assert mongo["healthcheck"]["test"]
    assert any(volume.endswith(":/data/db") for volume in mongo["volumes"])
    init = services["mongo-init"]
    assert init["restart"] == "no"
    assert init["depends_on"]["mongo"]["condition"] == "service_healthy"
    script = " ".join(init["command"])
    assert "rs.initiate" in script
    assert "isWritablePrimary" in script


def test_app_services_share_one_image_and_wait_for_their_dependencies(compose: dict) -> None:
    services = compose["services"]
    for name, port in APP_SERVICES.items():
        service = services[name]
        assert service["build"] == "."
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert importlib.util.find_spec(f"services.{name}.__main__") is not None
        assert f"127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        assert service["environment"][f"EMOGO_{name.upper()}_PORT"] == str(port)
        assert "replicaSet=rs0" in service["environment"]["MONGODB_URI"]
    for name in ("ingest", "media", "admin"):
        depends = services[name]["depends_on"]
        assert depends["mongo-init"]["condition"] == "service_completed_successfully"
    gateway = services["gateway"]
    for name in ("ingest", "media", "admin"):
        assert gateway["depends_on"][name]["condition"] == "service_healthy"
        urls = gateway["environment"][f"EMOGO_{name.upper()}_URL"].split(",")
        assert urls[0] == f"http://{name}:{APP_SERVICES[name]}"
    assert (REPO / "Dockerfile").exists()


def test_only_the_gateway_is_published_and_caddy_in_front_on_request(compose: dict) -> None:
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway", "caddy"}
    assert services["gateway"]["ports"] == [
        "${EMOGO_GATEWAY_BIND:-0.0.0.0}:${EMOGO_GATEWAY_PORT:-8000}:8000"
    ]
    caddy = services["caddy"]
    # Only with `--profile tls`, for a real domain, proxying to the gateway.
    assert caddy["profiles"] == ["tls"]
    assert caddy["environment"]["EMOGO_DOMAIN"].startswith("${EMOGO_DOMAIN:?")
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "{$EMOGO_DOMAIN}" in caddyfile
    assert "reverse_proxy gateway:8000" in caddyfile
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]


def test_mongo_requires_authentication_with_a_key_file(compose: dict) -> None:
    services = compose["services"]
    mongo = services["mongo"]
    assert mongo["command"][-2:] == ["--keyFile", "/keys/replica.key"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    assert mongo["depends_on"]["mongo-keyfile"]["condition"] == "service_completed_successfully"
    keyfile = " ".join(services["mongo-keyfile"]["command"])
    assert "chmod 400 /keys/replica.key" in keyfile
    assert "chown 999:999" in keyfile
    # The application signs in as its own user, which the admin bootstrap creates with
    # the root credentials; the others start once the admin service is healthy.
    for name in APP_SERVICES:
        uri = services[name]["environment"]["MONGODB_URI"]
        assert uri.startswith("mongodb://${EMOGO_MONGO_USER:-emogo}:${EMOGO_MONGO_PASSWORD:?")
    admin = services["admin"]["environment"]
    assert admin["MONGODB_ADMIN_USERNAME"] == "${MONGO_ROOT_USERNAME:-root}"
    assert admin["MONGODB_ADMIN_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    for name in ("ingest", "media"):
        assert services[name]["depends_on"]["admin"]["condition"] == "service_healthy"


def test_replica_set_initialisation_gives_up_with_a_message(compose: dict) -> None:
    init = compose["services"]["mongo-init"]
    script = " ".join(init["command"])
    assert "EMOGO_RS_INIT_TIMEOUT_SECONDS" in script
    assert "quit(1)" in script
    assert "no primary after" in script
    assert (
        init["environment"]["EMOGO_RS_INIT_TIMEOUT_SECONDS"]
        == "${EMOGO_RS_INIT_TIMEOUT_SECONDS:-120}"
    )


def test_logs_rotate_and_uploads_have_a_volume(compose: dict) -> None:
    for name, service in compose["services"].items():
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert logging["options"] == {"max-size": "10m", "max-file": "5"}, name
    assert "media-tmp:/data/tmp" in compose["services"]["media"]["volumes"]
    assert "media-tmp" in compose["volumes"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "/data/tmp" in dockerfile  # exists in the image, owned by the service's user


def test_the_image_installs_the_locked_dependencies() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    locked = {
        line.split("==")[0].lower()
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower()
        assert name in locked, f"{name} is not in requirements.lock: run make lock"
    assert "--hash=sha256:" in (REPO / "requirements.lock").read_text()


def test_secrets_are_required_not_defaulted(compose: dict) -> None:
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        for variable in (
            "EMOGO_ADMIN_TOKEN",
            "EMOGO_VIEWER_TOKEN",
            "EMOGO_DEVICE_TOKEN",
            "EMOGO_SECRET_KEY",
            "EMOGO_SERVICE_TOKEN",
        ):
            value = environment[variable]
            assert re.fullmatch(rf"\$\{{{variable}:\?.+\}}", value), value


def test_dockerfile_runs_as_an_unprivileged_user() -> None:
    dockerfile = Path(REPO / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)


def test_ingest_and_media_run_two_replicas_behind_the_gateway(compose: dict) -> None:
    services = compose["services"]
    gateway = services["gateway"]["environment"]
    assert gateway["EMOGO_INGEST_URL"].split(",") == ["http://ingest:8001", "http://ingest-2:8001"]
    assert gateway["EMOGO_MEDIA_URL"].split(",") == ["http://media:8002", "http://media-2:8002"]
    for name, port in (("ingest", "8001"), ("media", "8002")):
        first, second = services[name], services[f"{name}-2"]
        assert second["command"] == first["command"]
        assert second["healthcheck"] == first["healthcheck"]
        assert second["depends_on"] == first["depends_on"]
        assert second["environment"][f"EMOGO_{name.upper()}_PORT"] == port
        assert second["environment"]["EMOGO_REPLICA"] == "2"
        # The same database settings as the first replica.
        assert second["environment"]["MONGODB_URI"] == first["environment"]["MONGODB_URI"]
        assert f"{name}-2" in services["gateway"]["depends_on"]
    # Each media replica keeps its temporary files on a volume of its own.
    assert "media-2-tmp:/data/tmp" in services["media-2"]["volumes"]
    assert "media-2-tmp" in compose["volumes"]


def test_every_service_counts_days_alike_and_admin_reaches_the_gateway(compose: dict) -> None:
    """Local days of studies without a zone come from EMOGO_DISPLAY_TIMEZONE: a service
    with another value would count other days; the daily notices read the gateway."""
    apps = ("ingest", "ingest-2", "media", "media-2", "admin", "gateway")
    zones = {compose["services"][name]["environment"]["EMOGO_DISPLAY_TIMEZONE"] for name in apps}
    assert zones == {"${EMOGO_DISPLAY_TIMEZONE:-UTC}"}
    assert compose["services"]["admin"]["environment"]["EMOGO_GATEWAY_URL"] == "http://gateway:8000"

"""docker-compose.yml, checked by parsing it (no Docker engine runs in CI)."""

import importlib.util
import re
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
        assert (
            gateway["environment"][f"EMOGO_{name.upper()}_URL"]
            == f"http://{name}:{APP_SERVICES[name]}"
        )
    assert (REPO / "Dockerfile").exists()


def test_only_the_gateway_is_published(compose: dict) -> None:
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"gateway"}
    assert compose["services"]["gateway"]["ports"] == ["${EMOGO_GATEWAY_PORT:-8000}:8000"]


def test_secrets_are_required_not_defaulted(compose: dict) -> None:
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        for variable in (
            "EMOGO_ADMIN_TOKEN",
            "EMOGO_VIEWER_TOKEN",
            "EMOGO_DEVICE_TOKEN",
            "EMOGO_SECRET_KEY",
        ):
            value = environment[variable]
            assert re.fullmatch(rf"\$\{{{variable}:\?.+\}}", value), value


def test_dockerfile_runs_as_an_unprivileged_user() -> None:
    dockerfile = Path(REPO / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)

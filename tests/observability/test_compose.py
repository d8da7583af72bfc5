"""docker-compose.yml, the Dockerfile and the URLs documented for the stack."""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import pytest

from ._support import COMPOSE_FILE, PROMETHEUS_DIR, ROOT, load_yaml, run, run_ok, tool

REQUIRED_SERVICES = {
    "app", "redis", "postgres", "mariadb", "prometheus", "alertmanager", "grafana",
    "elasticsearch", "logstash", "kibana", "es-setup", "kibana-setup", "tempo",
}  # fmt: skip
ONE_SHOT = {"es-setup", "kibana-setup"}
# Browser-facing ports of docs/observability.md.
URLS = {
    "grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "kibana": 5601, "app": 8000,
}  # fmt: skip


def services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE_FILE)["services"]


def compose_command() -> list[str]:
    """docker-compose (v1, Debian's package) or else the docker compose v2 plugin."""
    docker = shutil.which("docker")
    has_v1 = shutil.which("docker-compose") is not None
    if not has_v1 and docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return [tool("docker-compose")]  # fails naming the package when missing


def test_compose_file_is_valid() -> None:
    run_ok([*compose_command(), "-f", COMPOSE_FILE, "config", "-q"])


def test_required_services() -> None:
    assert set(services()) >= REQUIRED_SERVICES


def test_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists(), name
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and re.search(r"\d", tag) and tag != "latest", f"{name}: {image}"


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_start_order_uses_conditions_that_can_be_met() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in all_services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            if dep in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dep)
            else:
                assert condition == "service_healthy", (name, dep)
                assert "healthcheck" in all_services[dep], (name, dep)
    # The data stream's template must exist before Logstash writes the first event.
    assert "es-setup" in all_services["logstash"]["depends_on"]


def test_bind_mounted_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_backends_are_configured_for_durability_and_2pc() -> None:
    all_services = services()
    redis = " ".join(all_services["redis"]["command"])
    assert "--appendonly yes" in redis and "--appendfsync always" in redis
    postgres = " ".join(all_services["postgres"]["command"])
    prepared = re.search(r"max_prepared_transactions=(\d+)", postgres)
    assert prepared and int(prepared.group(1)) > 0
    es = all_services["elasticsearch"]["environment"]
    assert es["discovery.type"] == "single-node"


def test_app_runs_the_demo_where_prometheus_scrapes_it() -> None:
    app = services()["app"]
    command = " ".join(app["command"])
    assert command == "interlock demo --host 0.0.0.0 --port 8000 --redis redis://redis:6379/0"
    prometheus = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "interlock")
    assert job["static_configs"][0]["targets"] == ["app:8000"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", dockerfile, re.MULTILINE)
    assert "pip install '.[redis,postgres,mysql,demo,otlp]'" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd and " ".join(json.loads(cmd.group(1))) == command


@pytest.mark.parametrize(("service", "port"), sorted(URLS.items()))
def test_documented_urls_match_published_ports(service: str, port: int) -> None:
    assert any(p.endswith(f":-{port}}}:{port}") for p in services()[service]["ports"])
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    assert f"http://localhost:{port}" in doc


def test_every_published_port_binds_loopback_and_is_overridable() -> None:
    """Issue 11 item 13: services with no auth must not listen on all interfaces, and host
    ports clash with local servers unless they can be moved. Failed before the fix."""
    published = 0
    for name, service in services().items():
        for port in service.get("ports", []):
            published += 1
            match = re.fullmatch(r"127\.0\.0\.1:\$\{(INTERLOCK_[A-Z_]+_PORT):-(\d+)\}:(\d+)", port)
            assert match, f"{name}: {port!r} must be 127.0.0.1:${{INTERLOCK_..._PORT:-N}}:N"
            assert match.group(2) == match.group(3), f"{name}: {port!r}"
    assert published >= 13


def test_the_demo_waits_only_for_what_it_uses() -> None:
    depends = services()["app"]["depends_on"]
    assert set(depends) == {"redis"}, depends

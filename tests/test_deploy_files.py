"""The deploy files as a new operator reads them: they parse, use only documented
variables, start the installed command, and keep Qdrant's server near its client."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from importlib import import_module
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def candor_containers() -> list[tuple[str, dict[str, Any]]]:
    """(where, container) for every container running the Candor image."""
    found: list[tuple[str, dict[str, Any]]] = []
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "build" in service or str(service.get("image", "")).startswith("candor"):
            found.append((f"compose:{name}", service))
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "candor.yaml").read_text()):
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            found.append((f"k8s:{doc['kind']}/{container['name']}", container))
    return found


def test_compose_and_k8s_files_parse() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"candor", "migrate", "postgres", "qdrant"} <= set(compose["services"])
    kinds = [d["kind"] for d in yaml.safe_load_all((DEPLOY / "k8s" / "candor.yaml").read_text())]
    assert kinds == ["Job", "Deployment", "Service", "Ingress"]


def test_deploy_files_reference_only_variables_env_example_defines() -> None:
    known = env_example_names()
    used: set[str] = set()
    for _where, container in candor_containers():
        env = container.get("environment") or container.get("env") or {}
        if isinstance(env, dict):
            used |= set(env)
        else:
            used |= {item["name"] for item in env}
    text = (DEPLOY / "docker-compose.yml").read_text()
    used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    used |= {n for n in re.findall(r"\b(CANDOR_[A-Z_]+|SLACK_[A-Z_]+|OPENAI_[A-Z_]+)", dockerfile)}
    assert used - known == set()


def test_every_command_the_deploy_files_run_exists_in_the_installed_package() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["candor"].partition(":")
    assert callable(getattr(import_module(module), func))
    from bot.cli.main import _parser

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    commands = [json.loads(cmd)]
    commands += [c["command"] for _w, c in candor_containers()]
    for command in commands:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        assert argv[0] == "candor", argv
        _parser().parse_args(argv[1:])  # SystemExit if the subcommand or a flag is unknown


def test_nothing_pulls_a_candor_image_from_docker_hub_and_probes_match_routes() -> None:
    for where, container in candor_containers():
        image = str(container.get("image", ""))
        if where.startswith("k8s"):
            assert "/" in image and not image.endswith(":latest"), where
    deployment = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "k8s" / "candor.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    replicas = {e["name"]: e.get("value") for e in container["env"]}
    assert replicas["CANDOR_REPLICAS"] == str(deployment["spec"]["replicas"])


def test_compose_stops_gracefully_and_qdrant_matches_the_client() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    candor = compose["services"]["candor"]
    assert candor["command"][0] == "candor"  # exec form: candor serve is PID 1, gets SIGTERM
    assert int(str(candor["stop_grace_period"]).rstrip("s")) > 20
    server = compose["services"]["qdrant"]["image"].rsplit(":v", 1)[1]
    client = version("qdrant-client")
    assert server.split(".")[:2] == client.split(".")[:2]


def test_the_docker_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "data", ".env", "tests"):
        assert path in ignored or f"{path}/" in ignored

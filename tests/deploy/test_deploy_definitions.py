"""The deployment definitions, checked without Docker or a cluster.

The service images (`services/<name>/Dockerfile`, `.dockerignore`), `docker-compose.yml`,
`deploy/k8s/`, `deploy/topics/`, `deploy/postgres/` and `deploy/policy/` must agree with each
other and with the code: the commands each service's command line accepts, the fields of its
settings classes, the topics of `clinic_shared.contracts.registry`, the topics each consumer
subscribes to, and the clinic policy every process of every service reads from one file. Compose,
Kubernetes and `clinic run` (`clinic_local.runner`) run the same long-lived roles of each
service, and give a service the address of every other service whose API it calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import io
import itertools
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tomllib
import typing
import urllib.parse
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from clinic_local import runner
from clinic_shared import service_main
from clinic_shared.contracts.registry import TOPICS
from clinic_shared.policy import PolicyError, load_policy
from clinic_shared.settings import CommonSettings, ServiceSettings
from notify.adapters.email import FileEmailSink, SmtpEmailSender
from notify.adapters.texts import FileTextSink, TwilioSmsSender
from notify.bootstrap import build_channels
from notify.config import NotifySettings
from notify.service_layer.delivery import Channels

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
K8S_DIR = REPO / "deploy" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
SECRET_TEMPLATE = K8S_DIR / "secret.example.yaml"
TOPICS_FILE = REPO / "deploy" / "topics" / "topics.yaml"
CREATE_TOPICS_SCRIPT = REPO / "deploy" / "topics" / "create-topics.sh"
POSTGRES_INIT = REPO / "deploy" / "postgres" / "init.sh"
POLICY_DIR = REPO / "deploy" / "policy"

SERVICES = tuple(TOPICS)
SERVICE_IMAGE = re.compile(r"clinic/(?P<service>[a-z]+)(?::[\w.-]+)?")
KAFKA_IMAGE = re.compile(r"apache/kafka:(?:3\.9\.\d+|4\.\d+\.\d+)")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY")
URL_PASSWORD = re.compile(r"://[^/@\s:]+:(?P<password>\$\{[^}]*\}|[^@\s/]*)@")
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}")
SECRET_PLACEHOLDER = "REPLACE_ME"
K8S_SECRET = "clinic-secrets"
K8S_POLICY_CONFIG_MAP = "clinic-policy"
POLICY_FILE_ENV = "CLINIC_POLICY_FILE"
PREPARE_LABEL = ("clinic/stage", "prepare")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

# The long-lived processes, `python -m <service> <role>`, every deployment runs of each service:
# every service's api, consumer and relay, and the dispatcher of each service with due-queues
# (durable timers in its database), which only such a service's command line offers.
COMMON_ROLES = ("api", "consumer", "relay")
DISPATCHER = "dispatcher"
# offer expiry; card charges and refunds; scheduled messages, stale claims, ride replies
SERVICES_WITH_DUE_QUEUES = {"waitlist", "billing", "notify"}
# The APIs a service calls, as the setting that holds the address: (caller, callee) -> name.
SERVICE_URL_SETTINGS = {
    ("waitlist", "booking"): "WAITLIST_BOOKING_URL",
    ("billing", "booking"): "BILLING_BOOKING_URL",
    ("notify", "booking"): "NOTIFY_BOOKING_URL",
}
# The roles of the caller that call the callee's API (its relay only publishes the outbox).
SERVICE_URL_ROLES = {
    ("waitlist", "booking"): ("api", "consumer", DISPATCHER),
    ("billing", "booking"): ("api",),  # superbills
    # contact details, medication classes; ride confirmations
    ("notify", "booking"): ("consumer", DISPATCHER),
}
# The secrets a role needs besides its database URL, in every deployment: compose takes them
# from required variables, Kubernetes from the Secret. A role that calls another service's API
# signs its service tokens with CLINIC_JWT_SECRET (every api checks tokens with it anyway).
ROLE_SECRETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("billing", "api"): ("CLINIC_JWT_SECRET", "BILLING_WEBHOOK_SECRET"),  # processor webhooks
    ("notify", "api"): ("CLINIC_JWT_SECRET", "NOTIFY_SMS_AUTH_TOKEN"),  # inbound texts
    ("notify", "consumer"): ("CLINIC_JWT_SECRET",),
    ("notify", DISPATCHER): ("CLINIC_JWT_SECRET",),  # and the key of the recipient digests
}


# --- the services' command lines ------------------------------------------------------------


class _CommandLineParsed(Exception):
    """Raised instead of loading the settings: the command line was accepted."""


def _stop_after_parsing() -> ServiceSettings:
    raise _CommandLineParsed


@functools.cache
def service_definition(service: str) -> service_main.ServiceDefinition:
    definition = importlib.import_module(f"{service}.entrypoints.cli").DEFINITION
    assert isinstance(definition, service_main.ServiceDefinition)
    return definition


def cli_accepts(service: str, argv: Sequence[str]) -> bool:
    """Whether `python -m <service> <argv>` gets past the service's own argparse (and `seed`
    only where the service has something to seed)."""
    definition = dataclasses.replace(service_definition(service), load_settings=_stop_after_parsing)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            service_main.main(definition, list(argv))
    except _CommandLineParsed:
        return argv[0] != "seed" or service_definition(service).seed is not None
    except SystemExit:
        return False
    raise AssertionError(f"{service}: main() returned without loading its settings")


def long_lived_roles(service: str) -> tuple[str, ...]:
    return COMMON_ROLES + ((DISPATCHER,) if service in SERVICES_WITH_DUE_QUEUES else ())


def workload_count() -> int:
    """The service workloads of each deployment: a migrate job and one per long-lived role."""
    return sum(1 + len(long_lived_roles(service)) for service in SERVICES)


# --- the services' settings -----------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    load_settings = importlib.import_module(f"{service}.config").load_settings
    cls = typing.get_type_hints(load_settings)["return"]
    assert issubclass(cls, ServiceSettings)
    return cls


def env_prefix(service: str) -> str:
    return f"{service.upper()}_"


def allowed_env_names(service: str) -> set[str]:
    """`<SERVICE>_<field>` of the service's settings class and `CLINIC_<field>` of the common
    settings. Not the service name: it is the consumer group and the outbox producer."""
    cls = settings_class(service)
    assert cls.model_config.get("env_prefix") == env_prefix(service)
    assert CommonSettings.model_config.get("env_prefix") == "CLINIC_"
    own = {
        env_prefix(service) + name.upper()
        for name, field in cls.model_fields.items()
        if name != "service_name"
        and not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
    }
    return own | {"CLINIC_" + name.upper() for name in CommonSettings.model_fields}


def unknown_env_names(service: str, names: Collection[str]) -> list[str]:
    return sorted(set(names) - allowed_env_names(service))


def load_service_settings(
    service: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """The service's real `load_settings()` with exactly `env` as its configuration."""
    for name in list(os.environ):
        if name.upper().startswith(("CLINIC_", env_prefix(service))):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = importlib.import_module(f"{service}.config").load_settings()
    assert isinstance(settings, ServiceSettings)
    return settings


# --- Dockerfiles and .dockerignore ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_path(service: str) -> Path:
    return REPO / "services" / service / "Dockerfile"


@functools.cache
def dockerfile_stages(service: str) -> list[list[Instruction]]:
    """The instructions of each stage (a stage starts at FROM); comments dropped, continuation
    lines joined."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in dockerfile_path(service).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{service}: instruction before FROM: {instruction}"
        stages[-1].append(instruction)
    assert not pending, f"{service}: Dockerfile ends in a continuation line"
    return stages


def instructions(service: str, keyword: str, stage: int | None = None) -> list[str]:
    stages = dockerfile_stages(service) if stage is None else [dockerfile_stages(service)[stage]]
    return [i.args for s in stages for i in s if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_env(service: str) -> dict[str, str]:
    """ENV of the final stage."""
    env: dict[str, str] = {}
    for args in instructions(service, "ENV", stage=-1):
        for token in shlex.split(args):
            name, sep, value = token.partition("=")
            assert sep, f"{service}: use ENV name=value, not {token!r}"
            env[name] = value
    return env


def copy_instructions(service: str) -> list[tuple[dict[str, str], list[str], str]]:
    """(flags, sources, destination) of every COPY."""
    result = []
    for args in instructions(service, "COPY"):
        tokens = shlex.split(args)
        flags = dict(t[2:].partition("=")[::2] for t in tokens if t.startswith("--"))
        paths = [t for t in tokens if not t.startswith("--")]
        result.append((flags, paths[:-1], paths[-1]))
    return result


def workspace_members() -> list[Path]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    members: list[Path] = []
    for pattern in pyproject["tool"]["uv"]["workspace"]["members"]:
        members += sorted(p for p in REPO.glob(pattern) if (p / "pyproject.toml").is_file())
    return members


def _glob_to_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, re.compile(_glob_to_regex(pattern))))
    return rules


def excluded_from_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `.dockerignore` keeps a context path out (it or a parent directory matches; the
    last matching rule wins)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# --- docker-compose.yml ---------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def compose_service_image(name: str) -> str | None:
    """The clinic service whose image a compose service runs, if any."""
    match = SERVICE_IMAGE.fullmatch(str(compose_services()[name].get("image", "")))
    return match["service"] if match else None


def compose_containers_of(service: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if compose_service_image(n) == service}


def compose_env(definition: Mapping[str, Any]) -> dict[str, str]:
    env = definition.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def compose_command(definition: Mapping[str, Any]) -> list[str] | None:
    command = definition.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def compose_depends_on(definition: Mapping[str, Any]) -> dict[str, str]:
    depends = definition.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()
    }


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`
    and `$$`; a missing required variable raises KeyError."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    escaped = value.replace("$$", "\0")
    result = _VARIABLE.sub(substitute, escaped)
    assert "$" not in result, f"unbraced or malformed variable in {value!r}"
    return result.replace("\0", "$")


@functools.cache
def compose_variables() -> dict[str, str]:
    """A value for every variable the file requires (what the operator's .env provides)."""
    names = {m["name"] for m in REQUIRED_VARIABLE.finditer(COMPOSE_FILE.read_text())}
    return {name: f"test-{name.lower().replace('_', '-')}" for name in names}


def is_required_variable(value: str) -> bool:
    return REQUIRED_VARIABLE.fullmatch(value) is not None


def compose_header() -> str:
    """The comment the file starts with, where the operator's variables are documented."""
    lines = COMPOSE_FILE.read_text().splitlines()
    return "\n".join(line for line in itertools.takewhile(lambda x: x.startswith("#"), lines))


@dataclasses.dataclass(frozen=True)
class ComposeMount:
    type: str  # "bind" (a host path) or "volume"
    source: str  # variables substituted
    target: str
    read_only: bool
    variables: frozenset[str]  # the variables the source is written with


def compose_mounts(
    definition: Mapping[str, Any], variables: Mapping[str, str]
) -> list[ComposeMount]:
    """The service's volumes, short (`source:target[:ro]`) or long syntax."""
    mounts = []
    for volume in definition.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = interpolate(volume, variables).split(":")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            read_only = "ro" in (mode[0].split(",") if mode else [])
            written = volume
        else:
            source = interpolate(str(volume.get("source", "")), variables)
            target, kind = str(volume["target"]), str(volume["type"])
            read_only = volume.get("read_only") is True
            written = str(volume.get("source", ""))
        names = frozenset(m["name"] for m in _VARIABLE.finditer(written))
        mounts.append(ComposeMount(kind, source, target, read_only, names))
    return mounts


def compose_host_path(source: str) -> Path:
    """Where a bind mount's source is: a relative path is relative to the compose file."""
    path = Path(source).expanduser()
    return (path if path.is_absolute() else COMPOSE_FILE.parent / path).resolve()


def compose_policy_mount(
    name: str, definition: Mapping[str, Any], variables: Mapping[str, str]
) -> tuple[str, ComposeMount]:
    """The path CLINIC_POLICY_FILE names in a compose service, and the mount that puts it there."""
    env = {k: interpolate(v, variables) for k, v in compose_env(definition).items()}
    path = env.get(POLICY_FILE_ENV)
    assert path, f"{name}: no {POLICY_FILE_ENV}"
    mounts = [m for m in compose_mounts(definition, variables) if m.target == path]
    assert len(mounts) == 1, f"{name}: {POLICY_FILE_ENV}={path} is mounted {len(mounts)} times"
    return path, mounts[0]


# --- deploy/k8s -----------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@functools.cache
def kustomization() -> dict[str, Any]:
    document = yaml.safe_load(KUSTOMIZATION.read_text())
    assert document["kind"] == "Kustomization"
    return document


def generator_file(entry: str) -> tuple[str, Path]:
    """A `files` entry of a configMapGenerator, `[key=]path`: its key and its file. Kustomize
    loads files from the kustomization's directory and below only."""
    key, sep, path = entry.partition("=")
    if not sep:
        key, path = posixpath.basename(entry), entry
    file = (K8S_DIR / path).resolve()
    assert file.is_relative_to(K8S_DIR.resolve()), f"{entry}: outside {K8S_DIR.name}/"
    return key, file


@functools.cache
def generated_config_maps() -> list[dict[str, Any]]:
    """The ConfigMaps of the kustomization's configMapGenerator, as kustomize makes them, but
    named without the content hash kustomize appends (and rewrites every reference to)."""
    documents = []
    for generator in kustomization().get("configMapGenerator", []):
        unsupported = set(generator) - {"name", "files", "literals", "options"}
        assert not unsupported, f"{generator['name']}: {sorted(unsupported)} not checked here"
        data: dict[str, str] = {}
        for entry in generator.get("files", []):
            key, file = generator_file(entry)
            assert file.is_file(), f"{generator['name']}: {entry}: no such file"
            data[key] = file.read_text()
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        labels = dict((generator.get("options") or {}).get("labels") or {})
        metadata = {"name": generator["name"], "labels": labels}
        documents.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )
    return documents


@functools.cache
def k8s_documents() -> list[dict[str, Any]]:
    resources = [d for name in kustomization()["resources"] for d in load_documents(K8S_DIR / name)]
    return resources + generated_config_maps()


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def k8s_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) of every workload in the kustomization."""
    for document in k8s_documents():
        if document["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(document)
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield document, container


def k8s_containers_of(service: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (w, c)
        for w, c in k8s_containers()
        if (m := SERVICE_IMAGE.fullmatch(c["image"])) and m["service"] == service
    ]


@functools.cache
def secret_template() -> dict[str, str]:
    (secret,) = load_documents(SECRET_TEMPLATE)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == K8S_SECRET
    return {k: str(v) for k, v in secret["stringData"].items()}


@dataclasses.dataclass(frozen=True)
class EnvSource:
    kind: str  # "value", "configMap" or "secret"
    value: str = ""
    name: str = ""
    key: str = ""

    def resolve(self) -> str:
        if self.kind == "configMap":
            return str(k8s_object("ConfigMap", self.name)["data"][self.key])
        if self.kind == "secret":
            assert self.name == K8S_SECRET, f"unknown Secret {self.name}"
            return secret_template()[self.key]
        return self.value


def k8s_env(container: Mapping[str, Any]) -> dict[str, EnvSource]:
    env: dict[str, EnvSource] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom only from ConfigMaps"
        name = source["configMapRef"]["name"]
        for key in k8s_object("ConfigMap", name)["data"]:
            env[key] = EnvSource("configMap", name=name, key=key)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = EnvSource("value", value=str(item["value"]))
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = EnvSource("configMap", name=ref["name"], key=ref["key"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = EnvSource("secret", name=ref["name"], key=ref["key"])
    return env


@dataclasses.dataclass(frozen=True)
class MountedFile:
    config_map: str
    key: str
    read_only: bool


def k8s_mounted_files(
    workload: Mapping[str, Any], container: Mapping[str, Any]
) -> dict[str, MountedFile]:
    """The files a container sees from ConfigMap volumes, by path (whole volumes, `items` and
    `subPath`)."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    files: dict[str, MountedFile] = {}
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        data = k8s_object("ConfigMap", source["name"])["data"]
        paths = {i["path"]: i["key"] for i in source.get("items", [])} or {k: k for k in data}
        for path, key in paths.items():
            assert key in data, f"ConfigMap {source['name']} has no key {key}"
            file = MountedFile(source["name"], key, mount.get("readOnly") is True)
            if "subPath" not in mount:
                files[posixpath.join(mount["mountPath"], path)] = file
            elif mount["subPath"] == path:
                files[mount["mountPath"]] = file
    return files


def k8s_config_maps_used(workload: Mapping[str, Any]) -> set[str]:
    """The ConfigMaps a workload's pods need to start: env, envFrom and volumes."""
    spec = pod_spec(workload)
    names = {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    for container in spec.get("initContainers", []) + spec["containers"]:
        names |= {s.name for s in k8s_env(container).values() if s.kind == "configMap"}
    return names


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


# --- topics ---------------------------------------------------------------------------------

TopicSpec = tuple[int, int, dict[str, str]]  # partitions, replication factor, config


@functools.cache
def topic_definitions() -> dict[str, dict[str, Any]]:
    topics = yaml.safe_load(TOPICS_FILE.read_text())["topics"]
    by_name = {t["name"]: t for t in topics}
    assert len(by_name) == len(topics), "a topic is defined twice"
    return by_name


def defined_topic_specs() -> dict[str, TopicSpec]:
    return {
        name: (
            int(t["partitions"]),
            int(t["replication_factor"]),
            {k: str(v) for k, v in t["config"].items()},
        )
        for name, t in topic_definitions().items()
    }


def parse_topic_lines(text: str) -> dict[str, TopicSpec]:
    """The `TOPICS` of create-topics.sh: `<name> <partitions> <replication> <k=v,...>`."""
    specs: dict[str, TopicSpec] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, partitions, replication, *rest = line.split()
        assert len(rest) <= 1, f"bad topic line {line!r}"
        config = dict(kv.split("=", 1) for kv in rest[0].split(",")) if rest else {}
        assert name not in specs, f"{name} listed twice"
        specs[name] = (int(partitions), int(replication), config)
    return specs


def single_broker(specs: Mapping[str, TopicSpec]) -> dict[str, TopicSpec]:
    return {
        name: (partitions, 1, {**config, "min.insync.replicas": "1"})
        for name, (partitions, _, config) in specs.items()
    }


def expected_topic_names() -> set[str]:
    return {t for topic in TOPICS.values() for t in (topic, f"{topic}.DLT")}


def consumed_topics(service: str) -> list[str]:
    return list(importlib.import_module(f"{service}.entrypoints.consumer").CONSUMED_TOPICS)


# ============================================================================================
# The checks can fail
# ============================================================================================


def test_the_checks_reject_what_is_wrong(tmp_path: Path) -> None:
    assert cli_accepts("booking", ["migrate", "head"])
    assert cli_accepts("booking", ["seed"])
    assert not cli_accepts("booking", ["migrat"])
    assert not cli_accepts("booking", ["api", "--reload"])
    assert not cli_accepts("waitlist", ["seed"]), "waitlist has nothing to seed"
    assert not cli_accepts("booking", [DISPATCHER]), "booking has no due-queues"

    assert not unknown_env_names("booking", {"BOOKING_DATABASE_URL", "CLINIC_JWT_SECRET"})
    assert unknown_env_names("booking", {"BOOKING_DATABSE_URL"}) == ["BOOKING_DATABSE_URL"]
    assert unknown_env_names("booking", {"WAITLIST_DATABASE_URL"})
    assert unknown_env_names("booking", {"BOOKING_SERVICE_NAME", "BOOKING_COMMON"})
    assert unknown_env_names("booking", {"CLINIC_JWT_SECRT"})

    assert is_required_variable("${CLINIC_JWT_SECRET:?set it}")
    assert not is_required_variable("${CLINIC_JWT_SECRET:-changeme}")
    assert not is_required_variable("hunter2")
    with pytest.raises(KeyError):
        interpolate("${MISSING:?set MISSING}", {})
    assert interpolate("a${X:-b}$$c", {}) == "ab$c"

    rules = dockerignore_rules("**/tests\n.env\nsecrets/\n!secrets/public.txt\n")
    assert excluded_from_context(".env", rules)
    assert excluded_from_context("services/booking/tests/unit/test_x.py", rules)
    assert excluded_from_context("secrets/key.pem", rules)
    assert not excluded_from_context("secrets/public.txt", rules)
    assert not excluded_from_context("services/booking/src/booking/__main__.py", rules)

    passwords = [
        m["password"]
        for m in URL_PASSWORD.finditer(
            "postgresql://u:hunter2@h/db postgresql+asyncpg://u:${P:?set P}@h/db PLAINTEXT://k:9092"
        )
    ]
    assert passwords == ["hunter2", "${P:?set P}"]
    assert not is_required_variable(passwords[0]) and is_required_variable(passwords[1])

    assert parse_topic_lines("a 3 1 x=1,y=2\n\nb 1 3\n") == {
        "a": (3, 1, {"x": "1", "y": "2"}),
        "b": (1, 3, {}),
    }

    (short, named, long) = compose_mounts(
        {
            "volumes": [
                "${P:-./deploy/policy/x.yaml}:/etc/clinic/policy.yaml:ro",
                "data:/var/lib/data",
                {"type": "bind", "source": "${P:-./a.yaml}", "target": "/b.yaml"},
            ]
        },
        {"P": "/srv/p.yaml"},
    )
    assert short == ComposeMount(
        "bind", "/srv/p.yaml", "/etc/clinic/policy.yaml", True, frozenset({"P"})
    )
    assert named == ComposeMount("volume", "data", "/var/lib/data", False, frozenset())
    assert long == ComposeMount("bind", "/srv/p.yaml", "/b.yaml", False, frozenset({"P"}))
    assert compose_host_path("./deploy/policy/x.yaml") == POLICY_DIR / "x.yaml"
    with pytest.raises(AssertionError, match="no CLINIC_POLICY_FILE"):
        compose_policy_mount("x", {"environment": {}, "volumes": []}, {})
    with pytest.raises(AssertionError, match="mounted 0 times"):
        compose_policy_mount("x", {"environment": {POLICY_FILE_ENV: "/p.yaml"}}, {})

    assert generator_file("policy.yaml=policy/x.yaml") == ("policy.yaml", K8S_DIR / "policy/x.yaml")
    assert generator_file("policy/x.yaml") == ("x.yaml", K8S_DIR / "policy/x.yaml")
    with pytest.raises(AssertionError, match="outside"):
        generator_file("policy.yaml=../policy/x.yaml")
    pod = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "containers": [],
                    "volumes": [
                        {"name": "all", "configMap": {"name": "clinic-config"}},
                        {
                            "name": "one",
                            "configMap": {
                                "name": "clinic-config",
                                "items": [{"key": "CLINIC_LOG_LEVEL", "path": "level"}],
                            },
                        },
                        {"name": "tmp", "emptyDir": {}},
                    ],
                }
            }
        },
    }
    files = k8s_mounted_files(
        pod,
        {
            "name": "c",
            "volumeMounts": [
                {"name": "all", "mountPath": "/etc/a", "readOnly": True},
                {"name": "one", "mountPath": "/etc/b"},
                {"name": "one", "mountPath": "/level", "subPath": "level"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
    )
    assert files["/etc/a/CLINIC_LOG_LEVEL"] == MountedFile(
        "clinic-config", "CLINIC_LOG_LEVEL", True
    )
    assert files["/etc/b/level"] == files["/level"]
    assert files["/level"] == MountedFile("clinic-config", "CLINIC_LOG_LEVEL", False)
    assert "/etc/b/CLINIC_LOG_LEVEL" not in files and "/tmp" not in files
    assert k8s_config_maps_used(pod) == {"clinic-config"}

    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("booking:\n  chairs: 0\n")
    with pytest.raises(PolicyError, match=r"booking\.chairs"):
        load_policy(bad_policy)
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")


def test_the_services_are_the_producers_of_the_topic_registry() -> None:
    service_dirs = {p.parent.name for p in (REPO / "services").glob("*/pyproject.toml")}
    assert service_dirs == set(SERVICES)


# ============================================================================================
# Images
# ============================================================================================


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_entrypoint_runs_the_service_module(service: str) -> None:
    assert dockerfile_path(service).is_file()
    (entrypoint,) = instructions(service, "ENTRYPOINT", stage=-1)
    assert exec_form(entrypoint) == ["python", "-m", service]
    main_module = REPO / "services" / service / "src" / service / "__main__.py"
    assert main_module.is_file()
    spec = importlib.util.find_spec(f"{service}.__main__")
    assert spec is not None and Path(str(spec.origin)).resolve() == main_module.resolve()


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_default_command_is_the_api(service: str) -> None:
    (cmd,) = instructions(service, "CMD", stage=-1)
    assert exec_form(cmd) == ["api"]
    assert cli_accepts(service, exec_form(cmd))


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_multi_stage_slim_with_pinned_uv_and_a_non_root_user(service: str) -> None:
    stages = dockerfile_stages(service)
    assert len(stages) >= 2
    for stage in stages:
        base = stage[0].args.split()[0]
        assert base == "python:3.11-slim", f"{service}: FROM {base}"
    uv_images = [
        f["from"] for f, _, _ in copy_instructions(service) if "astral-sh" in f.get("from", "")
    ]
    assert uv_images and all(
        re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", image) for image in uv_images
    ), f"{service}: uv must come from a pinned ghcr.io/astral-sh/uv image: {uv_images}"
    users = instructions(service, "USER", stage=-1)
    assert users, f"{service}: the final stage runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert image_env(service).get("PYTHONUNBUFFERED") == "1"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_keeps_the_layout_the_code_finds_its_migrations_in(service: str) -> None:
    # The code finds alembic.ini and migrations/ at parents[3] of entrypoints/cli.py: the
    # service directory. The image keeps the repository layout under /app, installed editable.
    service_dir = service_definition(service).service_dir
    assert service_dir == REPO / "services" / service
    assert (service_dir / "alembic.ini").is_file()
    assert (service_dir / "migrations" / "env.py").is_file()

    for stage in dockerfile_stages(service):
        workdirs = [i.args for i in stage if i.keyword == "WORKDIR"]
        assert workdirs == ["/app"], f"{service}: WORKDIR {workdirs}"
    copies = copy_instructions(service)
    local = {(tuple(src), dest) for flags, src, dest in copies if "from" not in flags}
    assert ((f"services/{service}",), f"services/{service}") in local
    assert (("shared/src",), "shared/src") in local
    build_stages = {s[0].args.split()[-1] for s in dockerfile_stages(service)[:-1]}
    assert any(
        flags.get("from") in build_stages and src == ["/app"] and dest == "/app"
        for flags, src, dest in copies
    ), f"{service}: the final stage must copy /app (venv and code) from the build stage"

    syncs = [
        shlex.split(cmd.strip())
        for run in instructions(service, "RUN")
        for cmd in re.findall(r"uv sync[^&;|]*", run)
    ]
    assert syncs, f"{service}: no `uv sync`"
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync
        assert "--no-editable" not in sync, "the code must stay at /app/services/<name>"
        packages = [sync[n + 1] for n, option in enumerate(sync[:-1]) if option == "--package"]
        assert "--all-packages" in sync or packages == [service], f"{service}: {sync}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_copies_the_lock_and_every_workspace_member_manifest(service: str) -> None:
    sources = {
        s for flags, src, _ in copy_instructions(service) if "from" not in flags for s in src
    }
    expected = {"pyproject.toml", "uv.lock"} | {
        str((member / "pyproject.toml").relative_to(REPO)) for member in workspace_members()
    }
    assert expected <= sources, f"{service}: not copied: {sorted(expected - sources)}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_serves_http_on_all_interfaces_and_checks_healthz(service: str) -> None:
    env = image_env(service)
    prefixed = {n for n in env if n.startswith(("CLINIC_", *map(env_prefix, SERVICES)))}
    assert not unknown_env_names(service, prefixed)
    assert env.get(f"{env_prefix(service)}HTTP_HOST") == "0.0.0.0"
    port = settings_class(service).model_fields["http_port"].default
    assert instructions(service, "EXPOSE", stage=-1) == [str(port)]
    (healthcheck,) = instructions(service, "HEALTHCHECK", stage=-1)
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck
    assert f"'{env_prefix(service)}HTTP_PORT', '{port}'" in healthcheck


def _meant_to_stay_out(path: Path) -> bool:
    """Tests, caches, local databases: files the images should not contain anyway."""
    return any(
        part.startswith(".") or part in ("__pycache__", "tests") for part in path.parts
    ) or path.suffix in (".pyc", ".db", ".sqlite")


def test_dockerignore_keeps_secrets_out_and_every_build_input_in() -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    for secret in (".env", ".env.production", ".git/config"):
        assert excluded_from_context(secret, rules), f"{secret} would be in the build context"
    assert excluded_from_context(".venv/bin/python", rules)
    for service in SERVICES:
        for flags, sources, _ in copy_instructions(service):
            if "from" in flags:
                continue
            for source in sources:
                path = REPO / source
                assert path.exists(), f"{service}: COPY {source}: no such path"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                for file in files:
                    relative = file.relative_to(REPO)
                    if _meant_to_stay_out(relative):
                        continue
                    assert not excluded_from_context(str(relative), rules), (
                        f"{service}: .dockerignore drops {relative}"
                    )


# ============================================================================================
# docker-compose.yml
# ============================================================================================


def test_compose_dependencies_exist_with_the_right_conditions() -> None:
    services = compose_services()
    for name, definition in services.items():
        for target, condition in compose_depends_on(definition).items():
            assert target in services, f"{name} depends on unknown {target}"
            if target in ("kafka", "postgres"):
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
            if target == "kafka-init" or target.endswith(("-migrate", "-seed")):
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{target}: no healthcheck"
            if condition == "service_completed_successfully":
                assert str(services[target].get("restart")) == "no", f"{target} is not a job"


def test_compose_names_no_container_so_every_service_can_scale() -> None:
    for name, definition in compose_services().items():
        assert "container_name" not in definition, name


def test_every_compose_command_is_accepted_by_the_service_cli() -> None:
    checked = 0
    for name, definition in compose_services().items():
        service = compose_service_image(name)
        if service is None:
            continue
        command = compose_command(definition)
        assert command, f"{name}: give the command explicitly"
        assert cli_accepts(service, command), f"{name}: python -m {service} {command}"
        checked += 1
    assert checked >= 4 * len(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_migrations_then_every_long_lived_role(service: str) -> None:
    containers = compose_containers_of(service)
    by_command: dict[str, list[str]] = {}
    for name, definition in containers.items():
        by_command.setdefault((compose_command(definition) or ["api"])[0], []).append(name)
        assert definition["image"] == f"clinic/{service}:local"
        assert definition["build"] == {
            "context": ".",
            "dockerfile": f"services/{service}/Dockerfile",
        }
    for command in ("migrate", *long_lived_roles(service)):
        assert by_command.get(command) == [f"{service}-{command}"], by_command
    unexpected = set(by_command) - {"migrate", "seed", *long_lived_roles(service)}
    assert not unexpected, f"{service}: {sorted(unexpected)} is not one of its roles"
    for command, names in by_command.items():
        for name in names:
            definition = containers[name]
            one_off = command in ("migrate", "seed")
            assert (str(definition.get("restart")) == "no") == one_off, name
            if not one_off:
                depends = compose_depends_on(definition)
                assert depends.get(f"{service}-migrate") == "service_completed_successfully"
                assert depends.get("kafka-init") == "service_completed_successfully"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_environment_names_are_settings_fields(service: str) -> None:
    for name, definition in compose_containers_of(service).items():
        unknown = unknown_env_names(service, set(compose_env(definition)))
        assert not unknown, f"{name}: not a setting of {service}: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_environment_loads_into_the_service_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_env = compose_env(compose_services()["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    for name, definition in compose_containers_of(service).items():
        env = {k: v for k, v in image_env(service).items() if k in allowed_env_names(service)}
        env |= {k: interpolate(v, compose_variables()) for k, v in compose_env(definition).items()}
        settings = load_service_settings(service, env, monkeypatch)
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert settings.common.kafka_bootstrap_servers == advertised, name
        command = (compose_command(definition) or ["api"])[0]
        if command == "api":
            assert settings.http_host == "0.0.0.0"
            assert settings.jwt_secret == compose_variables()["CLINIC_JWT_SECRET"]
            ports = [str(p).rsplit(":", 1)[-1] for p in definition.get("ports", [])]
            assert ports == [str(settings.http_port)], f"{name}: publishes {ports}"
            probe = " ".join(definition["healthcheck"]["test"])
            assert f"http://127.0.0.1:{settings.http_port}/readyz" in probe, name
        elif command == "consumer":
            # Its health port is for its own check only (see the consumer liveness tests).
            assert not definition.get("ports"), f"{name} publishes no port"
        else:
            assert not definition.get("ports"), f"{name} serves no HTTP"
            assert definition.get("healthcheck", {}).get("disable") is True, (
                f"{name}: the image's HEALTHCHECK probes an HTTP port only the api listens on"
            )


def test_compose_kafka_is_a_pinned_single_kraft_node() -> None:
    kafka = compose_services()["kafka"]
    assert KAFKA_IMAGE.fullmatch(kafka["image"]), kafka["image"]
    env = compose_env(kafka)
    assert env["KAFKA_NODE_ID"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = env["KAFKA_LISTENERS"]
    assert "PLAINTEXT://:9092" in listeners and env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name
    probe = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --list" in probe


def test_compose_postgres_creates_a_database_and_role_per_service_with_btree_gist() -> None:
    postgres = compose_services()["postgres"]
    assert postgres["image"] == "postgres:16"
    assert any(
        str(v).split(":")[:2]
        == ["./deploy/postgres/init.sh", "/docker-entrypoint-initdb.d/10-clinic.sh"]
        for v in postgres["volumes"]
    )
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    script = POSTGRES_INIT.read_text()
    (loop,) = re.findall(r"^for service in ([a-z ]+); do$", script, re.MULTILINE)
    assert sorted(loop.split()) == sorted(SERVICES)
    for statement in (
        'CREATE ROLE :"service" LOGIN PASSWORD',
        'CREATE DATABASE :"service" OWNER :"service"',
        "CREATE EXTENSION IF NOT EXISTS btree_gist",
    ):
        assert statement in script
    assert 'password_var="${service^^}_DB_PASSWORD"' in script

    postgres_env = compose_env(postgres)
    assert is_required_variable(postgres_env["POSTGRES_PASSWORD"])
    for service in SERVICES:
        password_variable = f"{service.upper()}_DB_PASSWORD"
        assert is_required_variable(postgres_env[password_variable])
        for name, definition in compose_containers_of(service).items():
            url = compose_env(definition)[f"{env_prefix(service)}DATABASE_URL"]
            match = re.fullmatch(
                r"postgresql\+asyncpg://(?P<user>\w+):(?P<password>\$\{[^}]+\})@postgres:5432/(?P<db>\w+)",
                url,
            )
            assert match, f"{name}: {url}"
            assert match["user"] == match["db"] == service, name
            reference = REQUIRED_VARIABLE.fullmatch(match["password"])
            assert reference and reference["name"] == password_variable, name


# ============================================================================================
# Topics
# ============================================================================================


def test_the_topic_definitions_are_the_registry_topics_and_their_dead_letter_topics() -> None:
    assert set(topic_definitions()) == expected_topic_names()
    for name, (partitions, replication, config) in defined_topic_specs().items():
        assert partitions >= 1 and replication >= 1, name
        assert config["cleanup.policy"] == "delete", f"{name}: every event counts"
        assert int(config["retention.ms"]) > 0, name
        assert int(config["min.insync.replicas"]) <= replication, name


def test_the_topic_readers_and_writers_are_the_services_consumers() -> None:
    definitions = topic_definitions()
    for producer, topic in TOPICS.items():
        readers = {s for s in SERVICES if topic in consumed_topics(s)}
        assert definitions[topic]["written_by"] == [producer], topic
        assert set(definitions[topic]["read_by"]) == readers, topic
        assert set(definitions[f"{topic}.DLT"]["written_by"]) == readers, f"{topic}.DLT"
        assert definitions[f"{topic}.DLT"]["read_by"] == []


def test_compose_kafka_init_creates_the_defined_topics_for_one_broker() -> None:
    init = compose_services()["kafka-init"]
    assert init["image"] == compose_services()["kafka"]["image"]
    assert compose_depends_on(init) == {"kafka": "service_healthy"}
    assert str(init.get("restart")) == "no"
    (mount,) = [str(v) for v in init["volumes"] if "create-topics.sh" in str(v)]
    source, target = mount.split(":")[:2]
    assert (REPO / source).resolve() == CREATE_TOPICS_SCRIPT
    assert target in init["entrypoint"]
    env = compose_env(init)
    assert (
        env["BOOTSTRAP_SERVERS"]
        == compose_env(compose_services()["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    )
    assert parse_topic_lines(env["TOPICS"]) == single_broker(defined_topic_specs())


def test_the_k8s_topics_job_creates_the_defined_topics() -> None:
    job = k8s_object("Job", "clinic-topics")
    (container,) = pod_spec(job)["containers"]
    assert container["image"] == compose_services()["kafka"]["image"]
    assert container["command"] == ["/bin/sh", "-c"]
    assert container["args"] == [CREATE_TOPICS_SCRIPT.read_text()], (
        "the Job's script differs from deploy/topics/create-topics.sh"
    )
    env = k8s_env(container)
    assert env["BOOTSTRAP_SERVERS"] == EnvSource(
        "configMap", name="clinic-config", key="CLINIC_KAFKA_BOOTSTRAP_SERVERS"
    )
    assert parse_topic_lines(env["TOPICS"].resolve()) == defined_topic_specs()


def _run_create_topics(
    tmp_path: Path, topics: str, fail_on: str = ""
) -> tuple[int, list[list[str]]]:
    calls = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do printf \'%s\\037\' "$arg"; done >> "$CALLS"\n'
        "printf '\\n' >> \"$CALLS\"\n"
        f"case \" $* \" in *' --topic {fail_on} '*) exit 1;; esac\n"
    )
    stub.chmod(0o755)
    result = subprocess.run(
        ["sh", str(CREATE_TOPICS_SCRIPT)],
        env={
            "PATH": os.environ["PATH"],
            "BOOTSTRAP_SERVERS": "kafka:9092",
            "TOPICS": topics,
            "KAFKA_BIN": str(tmp_path),
            "CALLS": str(calls),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result.returncode, [line.split("\x1f")[:-1] for line in lines]


def test_create_topics_runs_kafka_topics_once_per_definition(tmp_path: Path) -> None:
    topics = compose_env(compose_services()["kafka-init"])["TOPICS"]
    returncode, calls = _run_create_topics(tmp_path, topics)
    assert returncode == 0
    assert calls[-1] == ["--bootstrap-server", "kafka:9092", "--list"]
    created: dict[str, TopicSpec] = {}
    for call in calls[:-1]:
        assert call[:4] == ["--bootstrap-server", "kafka:9092", "--create", "--if-not-exists"]
        options = list(zip(call[4::2], call[5::2], strict=True))
        config = dict(v.split("=", 1) for k, v in options if k == "--config")
        named = dict(o for o in options if o[0] != "--config")
        created[named["--topic"]] = (
            int(named["--partitions"]),
            int(named["--replication-factor"]),
            config,
        )
    assert created == parse_topic_lines(topics)


def test_create_topics_fails_when_kafka_topics_fails(tmp_path: Path) -> None:
    topics = compose_env(compose_services()["kafka-init"])["TOPICS"]
    returncode, calls = _run_create_topics(tmp_path, topics, fail_on="waitlist.events")
    assert returncode != 0
    assert [c[c.index("--topic") + 1] for c in calls] == [
        "booking.events",
        "booking.events.DLT",
        "waitlist.events",
    ]


def test_the_topic_partitions_setting_matches_the_definitions() -> None:
    (partitions,) = {spec[0] for spec in defined_topic_specs().values()}
    assert partitions == 3
    for name in SERVICES:
        for container, definition in compose_containers_of(name).items():
            assert compose_env(definition)["CLINIC_TOPIC_PARTITIONS"] == str(partitions), container
    config = k8s_object("ConfigMap", "clinic-config")["data"]
    assert config["CLINIC_TOPIC_PARTITIONS"] == str(partitions)


# ============================================================================================
# deploy/k8s
# ============================================================================================


def test_every_k8s_manifest_parses_and_names_its_objects() -> None:
    manifests = sorted(set(K8S_DIR.glob("*.yaml")) - {KUSTOMIZATION})
    assert manifests
    for path in manifests:
        documents = load_documents(path)
        assert documents, f"{path.name} is empty"
        for document in documents:
            for field in ("apiVersion", "kind"):
                assert document.get(field), f"{path.name}: no {field}"
            assert document.get("metadata", {}).get("name"), f"{path.name}: no metadata.name"


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), f"{resource} does not exist"
    manifests = {p.name for p in K8S_DIR.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert set(resources) == manifests - {SECRET_TEMPLATE.name}
    assert SECRET_TEMPLATE.name not in resources
    namespaces = [d["metadata"]["name"] for d in k8s_documents() if d["kind"] == "Namespace"]
    assert namespaces == [kustomization()["namespace"]]
    images = {c["image"] for _, c in k8s_containers()}
    assert {i["name"] for i in kustomization().get("images", [])} <= images


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_runs_migrations_then_every_long_lived_role(service: str) -> None:
    migrate = k8s_object("Job", f"{service}-migrate")
    (container,) = pod_spec(migrate)["containers"]
    assert container["args"] == ["migrate"]
    assert pod_spec(migrate)["restartPolicy"] == "Never"

    for component in long_lived_roles(service):
        deployment = k8s_object("Deployment", f"{service}-{component}")
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"] == [component]
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]
        if component not in ("api", "consumer"):  # a consumer serves its liveness only
            assert not container.get("ports"), f"{service}-{component} serves no HTTP"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe not in container, f"{service}-{component}: {probe} without HTTP"
    deployments = {
        w["metadata"]["name"] for w, _ in k8s_containers_of(service) if w["kind"] == "Deployment"
    }
    assert deployments == {f"{service}-{role}" for role in long_lived_roles(service)}

    api = k8s_object("Deployment", f"{service}-api")
    assert api["spec"]["replicas"] == 2
    (container,) = pod_spec(api)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    service_object = k8s_object("Service", service)
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service_object["spec"]["selector"].items() <= pod_labels.items()
    for workload, _ in k8s_containers():
        if workload is not api and workload["kind"] == "Deployment":
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert not service_object["spec"]["selector"].items() <= labels.items(), (
                f"Service {service} also selects {workload['metadata']['name']}"
            )


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_api_ports_and_probes_use_the_settings_port(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = k8s_object("Deployment", f"{service}-api")
    (container,) = pod_spec(api)["containers"]
    env = {k: s.resolve() for k, s in k8s_env(container).items()}
    image = {k: v for k, v in image_env(service).items() if k in allowed_env_names(service)}
    settings = load_service_settings(service, image | env, monkeypatch)
    assert settings.http_host == "0.0.0.0"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            port = container[probe]["httpGet"]["port"]
            assert container_port(container, port) == settings.http_port, probe
    (service_port,) = k8s_object("Service", service)["spec"]["ports"]
    assert service_port["port"] == settings.http_port
    assert container_port(container, service_port["targetPort"]) == settings.http_port


def test_every_k8s_command_is_accepted_by_the_service_cli() -> None:
    checked = 0
    for workload, container in k8s_containers():
        match = SERVICE_IMAGE.fullmatch(container["image"])
        if match is None:
            assert KAFKA_IMAGE.fullmatch(container["image"]), container["image"]
            continue
        name = f"{workload['metadata']['name']}/{container['name']}"
        assert "command" not in container, f"{name}: keep the image's ENTRYPOINT"
        assert container.get("args"), f"{name}: give the command explicitly"
        assert cli_accepts(match["service"], container["args"]), f"{name}: {container['args']}"
        checked += 1
    assert checked == workload_count()


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_environment_names_are_settings_fields(service: str) -> None:
    for workload, container in k8s_containers_of(service):
        unknown = unknown_env_names(service, set(k8s_env(container)))
        assert not unknown, f"{workload['metadata']['name']}: not a setting of {service}: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_environment_loads_into_the_service_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for workload, container in k8s_containers_of(service):
        env = {k: s.resolve() for k, s in k8s_env(container).items()}
        settings = load_service_settings(service, env, monkeypatch)
        name = workload["metadata"]["name"]
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert settings.common.kafka_bootstrap_servers != "127.0.0.1:9092", name
        if container["args"] == ["api"]:
            assert settings.jwt_secret, name


# ============================================================================================
# Roles and the addresses of the APIs a service calls: compose, k8s and `clinic run`
# ============================================================================================


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_offers_a_dispatcher_exactly_when_it_has_due_queues(service: str) -> None:
    assert cli_accepts(service, [DISPATCHER]) == (service in SERVICES_WITH_DUE_QUEUES), (
        f"`python -m {service} {DISPATCHER}` is accepted: {cli_accepts(service, [DISPATCHER])}; "
        f"SERVICES_WITH_DUE_QUEUES: {sorted(SERVICES_WITH_DUE_QUEUES)}"
    )


def test_clinic_run_runs_the_roles_the_deployments_run() -> None:
    assert set(runner.SERVICES) == set(SERVICES)
    assert {service: tuple(roles) for service, roles in runner.ROLES.items()} == {
        service: long_lived_roles(service) for service in SERVICES
    }
    for service, roles in runner.ROLES.items():
        for role in roles:
            assert cli_accepts(service, [role]), f"clinic run: python -m {service} {role}"


def _callee_address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http" and parts.hostname and parts.port, url
    assert parts.path in ("", "/") and not parts.query, f"{url}: the API's root, no path"
    return parts.hostname, parts.port


def test_the_service_url_settings_are_settings_of_the_caller() -> None:
    for (caller, callee), name in SERVICE_URL_SETTINGS.items():
        assert callee in SERVICES and caller != callee
        assert name == f"{env_prefix(caller)}{callee.upper()}_URL"
        assert name in allowed_env_names(caller), f"{name} is not a setting of {caller}"


def _service_url_names(env: Collection[str], service: str) -> set[str]:
    """The settings of `service` in `env` that name another service's API: <SERVICE>_<OTHER>_URL."""
    return {
        name
        for other in SERVICES
        if (name := f"{env_prefix(service)}{other.upper()}_URL") in env and other != service
    }


@pytest.mark.parametrize(("caller", "callee"), list(SERVICE_URL_SETTINGS))
def test_compose_gives_the_caller_the_address_of_the_callee_api(
    caller: str, callee: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = SERVICE_URL_SETTINGS[caller, callee]
    (callee_api,) = [
        n
        for n, d in compose_containers_of(callee).items()
        if (compose_command(d) or ["api"])[0] == "api"
    ]
    api_env = {k: v for k, v in image_env(callee).items() if k in allowed_env_names(callee)}
    api_env |= {
        k: interpolate(v, compose_variables())
        for k, v in compose_env(compose_services()[callee_api]).items()
    }
    callee_port = load_service_settings(callee, api_env, monkeypatch).http_port
    callers = {
        (compose_command(d) or ["api"])[0]: compose_env(d)
        for d in compose_containers_of(caller).values()
    }
    for role in SERVICE_URL_ROLES[caller, callee]:
        env = callers[role]
        assert name in env, f"{caller}-{role}: no {name}"
        url = interpolate(env[name], compose_variables())
        assert _callee_address(url) == (callee_api, callee_port), f"{caller}-{role}: {url}"


@pytest.mark.parametrize(("caller", "callee"), list(SERVICE_URL_SETTINGS))
def test_k8s_gives_the_caller_the_address_of_the_callee_service(caller: str, callee: str) -> None:
    name = SERVICE_URL_SETTINGS[caller, callee]
    (service_port,) = k8s_object("Service", callee)["spec"]["ports"]
    namespace = kustomization()["namespace"]
    hosts = {callee, f"{callee}.{namespace}", f"{callee}.{namespace}.svc"}
    hosts.add(f"{callee}.{namespace}.svc.cluster.local")
    callers = {c["args"][0]: (w, c) for w, c in k8s_containers_of(caller)}
    for role in SERVICE_URL_ROLES[caller, callee]:
        workload, container = callers[role]
        label = workload["metadata"]["name"]
        env = k8s_env(container)
        assert name in env, f"{label}: no {name}"
        host, port = _callee_address(env[name].resolve())
        assert host in hosts, f"{label}: {name} names {host}, not the Service {callee}"
        assert port == service_port["port"], f"{label}: {name} port {port}"


def test_every_service_url_in_compose_and_k8s_is_a_known_call() -> None:
    known = set(SERVICE_URL_SETTINGS.values())
    for service in SERVICES:
        for name, definition in compose_containers_of(service).items():
            unknown = _service_url_names(compose_env(definition), service) - known
            assert not unknown, f"{name}: {sorted(unknown)} not in SERVICE_URL_SETTINGS"
        for workload, container in k8s_containers_of(service):
            unknown = _service_url_names(k8s_env(container), service) - known
            assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)}"


def test_clinic_run_gives_the_caller_the_local_address_of_the_callee(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith(tuple(env_prefix(s) for s in SERVICES)):
            monkeypatch.delenv(name)
    env = runner.service_environment(tmp_path, "127.0.0.1:9092", "secret", 9000)
    for (_, callee), name in SERVICE_URL_SETTINGS.items():
        callee_port = int(env[f"{env_prefix(callee)}HTTP_PORT"])
        assert callee_port == 9001 + runner.SERVICES.index(callee)
        assert _callee_address(env[name]) == ("127.0.0.1", callee_port), f"{name}={env[name]}"
        monkeypatch.setenv(name, "http://elsewhere.example:1")
        explicit = runner.service_environment(tmp_path, "127.0.0.1:9092", "secret", 9000)
        assert explicit[name] == "http://elsewhere.example:1", "an explicit setting wins"


# ============================================================================================
# The clinic policy
# ============================================================================================


def test_the_policy_file_setting_is_a_common_setting() -> None:
    field = POLICY_FILE_ENV.removeprefix("CLINIC_").lower()
    assert POLICY_FILE_ENV == f"CLINIC_{field.upper()}"
    assert field in CommonSettings.model_fields
    for service in SERVICES:
        assert POLICY_FILE_ENV in allowed_env_names(service)


def test_every_policy_file_in_deploy_validates() -> None:
    files = sorted(POLICY_DIR.glob("*.yaml")) + sorted((K8S_DIR / "policy").glob("*.yaml"))
    assert files
    for file in files:
        load_policy(file)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_mounts_the_policy_file_every_service_container_names(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    containers = compose_containers_of(service)
    commands = {(compose_command(d) or ["api"])[0] for d in containers.values()}
    assert {"migrate", *long_lived_roles(service)} <= commands
    for name, definition in containers.items():
        path, mount = compose_policy_mount(name, definition, compose_variables())
        env = {k: interpolate(v, compose_variables()) for k, v in compose_env(definition).items()}
        settings = load_service_settings(service, env, monkeypatch)
        assert settings.common.policy_file == path, name
        assert posixpath.isabs(path), f"{name}: {POLICY_FILE_ENV}={path} is not absolute"
        assert mount.type == "bind", f"{name}: the policy is not a host file"
        assert mount.read_only, f"{name}: the policy is mounted writable"
        host = compose_host_path(mount.source)
        assert host.is_relative_to(REPO) and host.is_file(), f"{name}: no file {mount.source}"
        load_policy(host)


def test_compose_takes_the_policy_file_from_an_optional_documented_variable() -> None:
    variables: set[str] = set()
    for name, definition in compose_services().items():
        if compose_service_image(name) is not None:
            variables |= compose_policy_mount(name, definition, compose_variables())[1].variables
    (variable,) = variables
    assert variable not in compose_variables(), f"{variable} is required: give it a default"
    assert re.search(rf"^#\s+{variable}\s", compose_header(), re.MULTILINE), (
        f"{variable} is not documented in the header comment"
    )
    chosen = {**compose_variables(), variable: "/srv/clinic/policy.yaml"}
    for name, definition in compose_services().items():
        if compose_service_image(name) is not None:
            _, mount = compose_policy_mount(name, definition, chosen)
            assert mount.source == "/srv/clinic/policy.yaml", name


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_mounts_the_policy_config_map_where_every_service_container_looks(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    containers = k8s_containers_of(service)
    assert {(w["kind"], c["args"][0]) for w, c in containers} == {("Job", "migrate")} | {
        ("Deployment", role) for role in long_lived_roles(service)
    }
    for workload, container in containers:
        name = f"{workload['metadata']['name']}/{container['name']}"
        env = {k: s.resolve() for k, s in k8s_env(container).items()}
        path = env.get(POLICY_FILE_ENV)
        assert path, f"{name}: no {POLICY_FILE_ENV}"
        assert load_service_settings(service, env, monkeypatch).common.policy_file == path
        files = k8s_mounted_files(workload, container)
        assert path in files, f"{name}: nothing mounted at {POLICY_FILE_ENV}={path}"
        assert files[path].config_map == K8S_POLICY_CONFIG_MAP, f"{name}: {files[path]}"
        assert files[path].read_only, f"{name}: the policy is mounted writable"


def test_the_k8s_policy_config_map_validates(tmp_path: Path) -> None:
    keys = set()
    for workload, container in k8s_containers():
        for file in k8s_mounted_files(workload, container).values():
            if file.config_map == K8S_POLICY_CONFIG_MAP:
                keys.add(file.key)
    assert keys, f"no container mounts {K8S_POLICY_CONFIG_MAP}"
    data = k8s_object("ConfigMap", K8S_POLICY_CONFIG_MAP)["data"]
    for key in keys:
        policy_file = tmp_path / key
        policy_file.write_text(data[key])
        load_policy(policy_file)


def test_the_k8s_policy_config_map_is_generated_and_ready_before_the_jobs() -> None:
    # Generated: its name carries a hash of the content, so a change rolls every pod onto it.
    (generator,) = [
        g
        for g in kustomization().get("configMapGenerator", [])
        if g["name"] == K8S_POLICY_CONFIG_MAP
    ]
    for options in (kustomization().get("generatorOptions") or {}, generator.get("options") or {}):
        assert options.get("disableNameSuffixHash") is not True
    # The prepare stage (`kubectl apply -k ... -l clinic/stage=prepare`) must create every
    # ConfigMap its Jobs need, or their pods wait for it.
    key, value = PREPARE_LABEL
    prepared = 0
    for document in k8s_documents():
        if document["kind"] in WORKLOAD_KINDS and document["metadata"]["labels"].get(key) == value:
            for name in k8s_config_maps_used(document):
                labels = k8s_object("ConfigMap", name)["metadata"].get("labels") or {}
                assert labels.get(key) == value, f"{document['metadata']['name']} needs {name}"
            prepared += 1
    assert prepared == len(SERVICES) + 1


def test_kustomize_builds_the_policy_config_map_every_service_container_mounts() -> None:
    # kubectl ships with this project's machines; without it this test fails rather than skip.
    assert shutil.which("kubectl"), "kubectl is needed to build the Kubernetes manifests"
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    (policy,) = [
        d
        for d in built
        if d["kind"] == "ConfigMap"
        and d["metadata"]["name"].startswith(f"{K8S_POLICY_CONFIG_MAP}-")
    ]
    expected = k8s_object("ConfigMap", K8S_POLICY_CONFIG_MAP)
    assert policy["data"] == expected["data"]
    assert expected["metadata"]["labels"].items() <= policy["metadata"]["labels"].items()
    checked = 0
    for document in built:
        if document["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(document)
        if not any(SERVICE_IMAGE.match(c["image"]) for c in spec["containers"]):
            continue
        names = {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
        assert policy["metadata"]["name"] in names, document["metadata"]["name"]
        assert K8S_POLICY_CONFIG_MAP not in names, "a reference kustomize did not rewrite"
        checked += 1
    assert checked == workload_count()


def test_every_process_of_every_service_reads_one_policy_path_and_file() -> None:
    paths: dict[str, str] = {}
    compose_files: set[Path] = set()
    for name, definition in compose_services().items():
        if compose_service_image(name) is not None:
            path, mount = compose_policy_mount(name, definition, compose_variables())
            paths[f"compose {name}"] = path
            compose_files.add(compose_host_path(mount.source))
    k8s_sources: set[str] = set()
    for workload, container in k8s_containers():
        if SERVICE_IMAGE.fullmatch(container["image"]):
            path = k8s_env(container)[POLICY_FILE_ENV].resolve()
            paths[f"k8s {workload['metadata']['name']}/{container['name']}"] = path
            file = k8s_mounted_files(workload, container)[path]
            k8s_sources.add(f"{file.config_map}/{file.key}")
    assert len(paths) >= 2 * workload_count()
    assert len(set(paths.values())) == 1, paths
    assert len(compose_files) == 1, f"compose mounts several policy files: {compose_files}"
    assert len(k8s_sources) == 1, f"k8s mounts several policy files: {k8s_sources}"


# ============================================================================================
# Secrets
# ============================================================================================


def test_compose_takes_every_secret_from_the_operators_environment() -> None:
    for name, definition in compose_services().items():
        for variable, value in compose_env(definition).items():
            if SECRET_NAME.search(variable):
                assert is_required_variable(value), (
                    f"{name}: {variable} is a literal or has a default"
                )
            for match in URL_PASSWORD.finditer(value):
                assert is_required_variable(match["password"]), f"{name}: password in {variable}"


def test_k8s_takes_every_secret_from_the_secret() -> None:
    for workload, container in k8s_containers():
        for variable, source in k8s_env(container).items():
            secret_like = SECRET_NAME.search(variable) or variable.endswith("_DATABASE_URL")
            if secret_like:
                assert source.kind == "secret" and source.name == K8S_SECRET, (
                    f"{workload['metadata']['name']}: {variable} from {source.kind}"
                )
                assert source.key in secret_template(), f"{source.key} missing in the template"
            elif source.kind == "value":
                assert not URL_PASSWORD.search(source.value), variable
    for document in k8s_documents():
        assert document["kind"] != "Secret", "a Secret with values is listed in kustomization"
        if document["kind"] == "ConfigMap":
            for key, value in document["data"].items():
                assert not SECRET_NAME.search(key) and not URL_PASSWORD.search(str(value)), key


def test_the_secret_template_holds_only_placeholders() -> None:
    for key, value in secret_template().items():
        assert SECRET_PLACEHOLDER in value, f"{key} in {SECRET_TEMPLATE.name} is not a placeholder"


def test_no_deploy_file_holds_a_password_in_a_url() -> None:
    files = [COMPOSE_FILE, POSTGRES_INIT, CREATE_TOPICS_SCRIPT, TOPICS_FILE]
    files += [dockerfile_path(s) for s in SERVICES]
    files += [p for p in K8S_DIR.glob("*.yaml") if p != SECRET_TEMPLATE]
    for path in files:
        for match in URL_PASSWORD.finditer(path.read_text()):
            assert is_required_variable(match["password"]), f"{path.relative_to(REPO)}: {match[0]}"


@pytest.mark.parametrize(("service", "role"), list(ROLE_SECRETS))
def test_every_role_gets_the_secrets_it_needs(service: str, role: str) -> None:
    assert role in long_lived_roles(service)
    compose_definition = compose_services()[f"{service}-{role}"]
    (container,) = pod_spec(k8s_object("Deployment", f"{service}-{role}"))["containers"]
    for name in ROLE_SECRETS[service, role]:
        assert name in allowed_env_names(service), f"{name} is not a setting of {service}"
        value = compose_env(compose_definition).get(name, "")
        assert is_required_variable(value), f"compose {service}-{role}: {name}={value!r}"
        source = k8s_env(container).get(name)
        assert source is not None, f"k8s {service}-{role}: no {name}"
        assert source.kind == "secret" and source.name == K8S_SECRET, f"{service}-{role}: {name}"
        assert source.key in secret_template(), f"{source.key} missing in the template"


# ============================================================================================
# Notify's providers
# ============================================================================================

# notify-api checks inbound texts and records replies by the keyed digest of the sender's
# number; notify-dispatcher sends and records the digest of every number it texts. Both must
# read the key, and the token, from the same place, or no reply matches the text it answers.
NOTIFY_SHARED_SETTINGS = (
    "CLINIC_JWT_SECRET",
    "NOTIFY_RECIPIENT_DIGEST_KEY",
    "NOTIFY_SMS_AUTH_TOKEN",
)


def _notify_channels(settings: ServiceSettings) -> Channels:
    assert isinstance(settings, NotifySettings)
    try:
        return build_channels(settings)
    except SystemExit as exc:  # a provider's settings are incomplete
        raise AssertionError(str(exc)) from exc


def test_compose_notify_sends_to_files_on_a_volume_every_notify_container_shares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    containers = compose_containers_of("notify")
    dispatcher = compose_env(containers[f"notify-{DISPATCHER}"])
    api = compose_env(containers["notify-api"])
    for name in NOTIFY_SHARED_SETTINGS:
        assert api.get(name) == dispatcher.get(name), f"notify-api and -dispatcher: {name}"
    env = {k: interpolate(v, compose_variables()) for k, v in dispatcher.items()}
    settings = load_service_settings("notify", env, monkeypatch)
    channels = _notify_channels(settings)
    asyncio.run(channels.close())
    assert isinstance(channels.email, FileEmailSink) and isinstance(channels.sms, FileTextSink)
    assert isinstance(settings, NotifySettings)
    outbox = posixpath.normpath(settings.outbox_dir)
    volumes = set()
    for name, definition in containers.items():
        mounts = [
            m
            for m in compose_mounts(definition, compose_variables())
            if outbox == m.target or outbox.startswith(m.target.rstrip("/") + "/")
        ]
        assert len(mounts) == 1, f"{name}: {outbox} is not on one mounted volume: {mounts}"
        assert mounts[0].type == "volume" and not mounts[0].read_only, f"{name}: {mounts[0]}"
        volumes.add((mounts[0].source, mounts[0].target))
    ((volume, _),) = volumes
    assert volume in (compose().get("volumes") or {}), f"{volume} is not a named volume"


def test_k8s_notify_sends_through_smtp_and_twilio_and_checks_inbound_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    containers = {c["args"][0]: (w, c) for w, c in k8s_containers_of("notify")}
    workload, dispatcher = containers[DISPATCHER]
    _, api = containers["api"]
    for name in NOTIFY_SHARED_SETTINGS:
        assert k8s_env(api).get(name) == k8s_env(dispatcher).get(name), f"api, dispatcher: {name}"
    env = {k: s.resolve() for k, s in k8s_env(dispatcher).items()}
    settings = load_service_settings("notify", env, monkeypatch)
    channels = _notify_channels(settings)
    asyncio.run(channels.close())
    assert isinstance(channels.email, SmtpEmailSender), "e-mail goes to files in the pod"
    assert isinstance(channels.sms, TwilioSmsSender), "texts go to files in the pod"
    assert isinstance(settings, NotifySettings)
    # Push has no provider: its file must be on a writable volume (the root is read-only).
    outbox = posixpath.normpath(settings.outbox_dir)
    assert posixpath.isabs(outbox), f"NOTIFY_OUTBOX_DIR={outbox} is relative to /app"
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    (mount,) = [
        m
        for m in dispatcher.get("volumeMounts", [])
        if outbox == m["mountPath"] or outbox.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly"), mount
    api_env = {k: s.resolve() for k, s in k8s_env(api).items()}
    api_settings = load_service_settings("notify", api_env, monkeypatch)
    assert isinstance(api_settings, NotifySettings)
    assert api_settings.sms_auth_token is not None, "the inbound webhook answers 503"
    assert api_settings.inbound_sms_url, "Twilio signs the public URL, not the pod's"
    assert urllib.parse.urlsplit(api_settings.inbound_sms_url).path == "/v1/inbound/sms"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_consumer_liveness_probes_its_health_port(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = k8s_object("Deployment", f"{service}-consumer")
    (container,) = pod_spec(consumer)["containers"]
    env = {k: s.resolve() for k, s in k8s_env(container).items()}
    image = {k: v for k, v in image_env(service).items() if k in allowed_env_names(service)}
    settings = load_service_settings(service, image | env, monkeypatch)
    assert settings.consumer_health_host == "0.0.0.0"
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/livez"
    assert container_port(container, probe["port"]) == settings.consumer_health_port != 0


@pytest.mark.parametrize("service", SERVICES)
def test_compose_consumer_health_check_probes_its_health_port(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = compose_services()[f"{service}-consumer"]
    assert compose_command(consumer) == ["consumer"]
    settings = load_service_settings(service, compose_env(consumer), monkeypatch)
    check = " ".join(consumer["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.consumer_health_port}/livez" in check
    assert settings.consumer_health_port != 0

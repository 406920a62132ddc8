"""aiokafka's defaults are unsafe (acks=1, no idempotence, auto-commit): none may slip in."""

import ast
from pathlib import Path

import pytest

from clinic_shared.kafka import make_consumer, make_producer

ROOT = Path(__file__).resolve().parents[3]
FACTORY = ROOT / "shared/src/clinic_shared/kafka.py"
SOURCE_DIRS = ["shared/src", "services", "deploy/local/src", "bench", "tests"]


async def test_the_producer_factory_builds_an_idempotent_acks_all_producer():
    producer = make_producer("127.0.0.1:1", client_id="t")
    assert producer._sender._acks == -1  # "all"
    assert producer._txn_manager is not None  # the idempotent producer's sequence tracking


async def test_the_consumer_factory_commits_by_hand_from_the_earliest_offset():
    consumer = make_consumer("127.0.0.1:1", "group", "topic")
    assert consumer._enable_auto_commit is False
    assert consumer._auto_offset_reset == "earliest"
    assert consumer._group_id == "group"


@pytest.mark.parametrize("unsafe", [{"acks": 1}, {"enable_idempotence": False}])
def test_the_producer_factory_refuses_to_weaken_delivery(unsafe):
    with pytest.raises(ValueError):
        make_producer("127.0.0.1:1", client_id="t", **unsafe)


def test_the_consumer_factory_refuses_auto_commit():
    with pytest.raises(ValueError):
        make_consumer("127.0.0.1:1", "g", "t", enable_auto_commit=True)


def _constructions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("AIOKafkaProducer", "AIOKafkaConsumer"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_kafka_client_is_built_outside_the_safe_factory():
    offenders = []
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            if path == FACTORY or ".venv" in path.parts:
                continue
            offenders.extend(_constructions(path))
    assert offenders == [], f"build Kafka clients with clinic_shared.kafka: {offenders}"


def test_the_scan_finds_a_direct_construction(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("from aiokafka import AIOKafkaProducer\np = AIOKafkaProducer(acks=1)\n")
    tree = ast.parse(sample.read_text())
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "AIOKafkaProducer"
    ]
    assert len(calls) == 1

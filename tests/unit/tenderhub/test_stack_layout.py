"""The stack's layouts without starting anything: one Redis, or a Redis Cluster of six nodes (`stack up --cluster`);
a stack folder keeps the layout it was made with."""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.settings import load_stack_settings
from tenderhub.stack import Redis, Stack, StackError


def _stack(tmp_path: Path, **overrides: object) -> Stack:
    return Stack(load_stack_settings(stack_dir=tmp_path / "stack", **overrides))


def test_one_redis_by_default_and_six_cluster_nodes_on_their_own_ports(tmp_path: Path) -> None:
    single = [s for s in _stack(tmp_path).services if isinstance(s, Redis)]
    assert [(s.name, s.port) for s in single] == [("redis", 16379)]
    nodes = [s for s in _stack(tmp_path, redis_nodes=6, redis_port=20000).services if isinstance(s, Redis)]
    assert [(s.name, s.port) for s in nodes] == [
        ("redis", 20000),
        ("redis-2", 20100),
        ("redis-3", 20200),
        ("redis-4", 20300),
        ("redis-5", 20400),
        ("redis-6", 20500),
    ]


def test_a_cluster_node_is_configured_for_the_cluster_with_its_secrets_in_the_file(tmp_path: Path) -> None:
    stack = _stack(tmp_path, redis_nodes=6)
    node = next(s for s in stack.services if isinstance(s, Redis) and s.node == 3)
    node.dir.mkdir(parents=True)
    node.initialise()
    conf = (node.dir / "redis.conf").read_text().splitlines()
    password = stack.secrets["redis_password"]
    assert "cluster-enabled yes" in conf and f"masterauth {password}" in conf
    assert f"cluster-config-file {node.dir / 'nodes.conf'}" in conf
    assert (node.dir / "redis.conf").stat().st_mode & 0o777 == 0o600
    assert password not in " ".join(node.command())
    single = next(s for s in _stack(tmp_path / "one").services if isinstance(s, Redis))
    single.dir.mkdir(parents=True)
    single.initialise()
    assert not any(line.startswith("cluster") for line in (single.dir / "redis.conf").read_text().splitlines())


def test_the_env_file_says_whether_redis_is_a_cluster(tmp_path: Path) -> None:
    for nodes, flag in ((1, "false"), (6, "true")):
        stack = _stack(tmp_path / str(nodes), redis_nodes=nodes)
        stack.root.mkdir(parents=True)
        stack.write_env_file()
        assert f"TENDERHUB_REDIS_CLUSTER={flag}\n" in stack.env_file.read_text()


def test_a_stack_folder_keeps_the_layout_it_was_made_with(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    assert Stack.recorded_layout(root) == {}
    root.mkdir()
    (root / "kafka-brokers").write_text("3\n")
    # Made before Redis Cluster mode: one Redis.
    assert Stack.recorded_layout(root) == {"kafka_brokers": 3, "redis_nodes": 1}
    (root / "redis-nodes").write_text("6\n")
    assert Stack.recorded_layout(root) == {"kafka_brokers": 3, "redis_nodes": 6}
    with pytest.raises(StackError, match=r"made with 6 Redis node\(s\), not 1: run `tenderhub stack down --purge`"):
        _stack(tmp_path, kafka_brokers=3).up()


def test_purge_removes_only_a_folder_the_stack_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder holding other things (a mistyped TENDERHUB_STACK_DIR, the repository itself): nothing is deleted.
    precious = tmp_path / "repo"
    (precious / ".git").mkdir(parents=True)
    (precious / "README.md").write_text("keep me")
    monkeypatch.chdir(precious)
    for root in (precious, Path("."), tmp_path):
        with pytest.raises(StackError, match="not a stack folder"):
            Stack(load_stack_settings(stack_dir=root)).down(purge=True, progress=lambda _: None)
    assert (precious / "README.md").read_text() == "keep me" and (precious / ".git").is_dir()
    # The stack's own folder (its secrets file in it) goes, from inside it too.
    stack = _stack(tmp_path)
    stack.root.mkdir()
    stack.write_env_file()
    assert (stack.root / "secrets.json").is_file()
    monkeypatch.chdir(stack.root)
    stack.down(purge=True, progress=lambda _: None)
    assert not stack.root.exists()
    # A first `stack up` that failed early left only its layout file: the purge it asks for still works.
    monkeypatch.chdir(tmp_path)
    half = _stack(tmp_path / "half")
    half.root.mkdir(parents=True)
    (half.root / next(iter(Stack.LAYOUT))).write_text("1\n")
    half.down(purge=True, progress=lambda _: None)
    assert not half.root.exists()

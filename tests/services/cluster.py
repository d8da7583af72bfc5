"""A Redis Cluster of three masters, each a :class:`RedisServer`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from typing import Self

from ._process import _POLL, STARTUP_TIMEOUT, ServiceError, _find_binary, free_port
from .redis import RedisServer


class RedisCluster:
    """Three Redis masters forming a cluster (no replicas), each a :class:`RedisServer`.

    The nodes keep their ``nodes.conf`` in their own directory, so a node that is killed and
    started again rejoins with its slots; :meth:`wait_ok` waits for the cluster to agree.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        node_timeout_ms: int = 2000,
        config: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.cli = _find_binary(["redis-cli"], "redis-server")
        self.startup_timeout = startup_timeout
        self.nodes = [
            RedisServer(
                config={
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": str(node_timeout_ms),
                    # Redis 7 lets the bus port be chosen, so it need not be port + 10000.
                    "cluster-port": str(free_port()),
                    **(config or {}),
                },
                startup_timeout=startup_timeout,
            )
            for _ in range(masters)
        ]
        self._created = False

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    def start(self) -> Self:
        """Start every stopped node; create the cluster the first time; wait for state ok."""
        for node in self.nodes:
            if not node.running:
                if node.paused:
                    node.resume()
                else:
                    node.start()
        if not self._created:
            self._create()
            self._created = True
        self.wait_ok()
        return self

    def _create(self) -> None:
        cmd = [self.cli, "--cluster", "create"]
        cmd += [f"127.0.0.1:{port}" for port in self.ports]
        cmd += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            result = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=self.startup_timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"`{' '.join(cmd)}` timed out: {exc.stdout!r}") from exc
        if result.returncode != 0:
            raise ServiceError(
                f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every node reports ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        want = f"cluster_known_nodes:{len(self.nodes)}"
        last: dict[int, str] = {}
        while True:
            for node in self.nodes:
                try:
                    last[node.port] = info = str(node.command("CLUSTER", "INFO", timeout=1.0))
                except (OSError, ConnectionError, ServiceError) as exc:
                    last[node.port] = repr(exc)
                    break
                if "cluster_state:ok" not in info or want not in info:
                    break
            else:
                return
            if time.monotonic() > deadline:
                details = "\n".join(f"{port}: {info[:200]!r}" for port, info in last.items())
                raise ServiceError(f"redis cluster not ok in time:\n{details}")
            time.sleep(_POLL * 5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def __enter__(self) -> Self:
        return self.start()

    def __repr__(self) -> str:
        return f"<RedisCluster {self.nodes!r}>"

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""A study on a two-node Ray cluster started with ``ray start``, joined by ``--address``.

Each node runs in a Linux network namespace of its own, created by the fixture and joined by a
veth pair on 10.231.7.0/30. The namespaces have no default route, so the cluster reaches nothing
but the other node. This matters because the dashboard head of Ray 2.60 queries the cloud
metadata address 169.254.169.254 and, for a ``ray start`` cluster, posts a usage-stats notice,
even with usage stats disabled (ray/dashboard/modules/usage_stats/usage_stats_head.py). Inside
the namespaces those requests fail before a packet is sent.

Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Without it, or without the
``ip`` and ``ray`` commands, the test is skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from analysis.records import read_study
from study.tuning import OPTUNA_FILE, OPTUNA_STUDY_NAME
from tests.conftest import REPO

pytestmark = pytest.mark.slow

HEAD_IP = "10.231.7.1"
WORKER_IP = "10.231.7.2"
SUBNET = "10.231.7.0/30"
# Each node has a network of its own, so Ray's default GCS port cannot collide with another
# Ray runtime on the machine.
GCS_PORT = 6379
# The embedded synthetic data at 32 px takes a few MB, while Ray's default object store would
# reserve 30% of the machine's memory on each node.
OBJECT_STORE_BYTES = 200_000_000
NODE_START_TIMEOUT_S = 180
STUDY_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30
NUM_SAMPLES = 4


@dataclass(frozen=True)
class TwoNodeCluster:
    """A running cluster: its GCS address, the head's namespace, and the raylet node ids."""

    address: str
    head_namespace: str
    env: dict[str, str]
    node_ids: frozenset[str]

    def command_on_head(self, *args: str) -> list[str]:
        """Return ``args`` wrapped to run inside the head node's network namespace."""
        return ["ip", "netns", "exec", self.head_namespace, *args]


def run_ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def namespace_pids(namespace: str) -> list[int]:
    listed = run_ip("netns", "pids", namespace)
    return [int(word) for word in listed.stdout.split()]


def ray_command() -> str:
    """Return the ``ray`` CLI of this interpreter's environment, or skip the test when it is missing."""
    beside_python = Path(sys.executable).with_name("ray")
    if beside_python.is_file():
        return str(beside_python)
    on_path = shutil.which("ray")
    if on_path is None:
        pytest.skip("the `ray` command is not installed next to this Python or on PATH")
    return on_path


def cluster_env(token_file: Path) -> dict[str, str]:
    """Return the environment of every cluster process and of the driver.

    tests/conftest.py pins Ray to 127.0.0.1 with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and in that
    mode ``ray start --address`` rejects a second node, so the variable is removed here. All
    processes share one token file, because Ray 2.60 turns token authentication on by default.
    """
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def connect_namespaces(head: str, worker: str) -> None:
    """Join two namespaces with a veth pair on SUBNET, or skip the test when Linux does not allow it."""
    created = run_ip("link", "add", "veth-head", "netns", head, "type", "veth", "peer", "name", "veth-worker", "netns", worker)
    if created.returncode != 0:
        pytest.skip(f"cannot create a veth pair between network namespaces: {created.stderr.strip()}")
    for namespace, device, address in ((head, "veth-head", HEAD_IP), (worker, "veth-worker", WORKER_IP)):
        for args in (("addr", "add", f"{address}/30", "dev", device), ("link", "set", device, "up"), ("link", "set", "lo", "up")):
            done = run_ip("-n", namespace, *args)
            assert done.returncode == 0, f"ip -n {namespace} {' '.join(args)} failed: {done.stderr.strip()}"


def assert_isolated(namespace: str) -> None:
    """Fail unless the namespace can reach only SUBNET (no default route in IPv4 or IPv6)."""
    for family in ("-4", "-6"):
        default = run_ip(family, "-n", namespace, "route", "show", "default")
        assert default.stdout.strip() == "", f"namespace {namespace} has a default route: {default.stdout.strip()}"
    routes = run_ip("-4", "-n", namespace, "route", "show").stdout.splitlines()
    assert all(route.startswith(SUBNET) for route in routes), f"namespace {namespace} routes beyond {SUBNET}: {routes}"


def start_node(ray: str, namespace: str, arguments: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    """Run ``ray start --block`` in the namespace and wait until its raylet has joined the GCS.

    ``ray start`` prints "Ray runtime started." only after the node's raylet has registered with
    the GCS, so the node can take trials once the line appears.
    """
    with log_file.open("w") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, ray, "start", "--block", *arguments],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while "Ray runtime started." not in log_file.read_text():
        if process.poll() is not None:
            pytest.fail(f"ray start in {namespace} exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"ray start in {namespace} did not start within {NODE_START_TIMEOUT_S} s:\n{log_file.read_text()[-3000:]}")
        time.sleep(1)
    return process


def raylet_node_id(namespace: str) -> str:
    """Return the node id of the raylet running in the namespace, read from its command line."""
    for pid in namespace_pids(namespace):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if arguments[0].endswith("/raylet"):
            for argument in arguments:
                if argument.startswith("--node_id="):
                    return argument.removeprefix("--node_id=")
    pytest.fail(f"no raylet with a --node_id argument runs in namespace {namespace}")


def stop_namespace(namespace: str) -> list[int]:
    """Kill every process in the namespace, then delete it. Return the pids that survived SIGKILL."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (pids := namespace_pids(namespace)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    survivors = namespace_pids(namespace)
    if not survivors:
        # Deleting a namespace also deletes the veth end inside it, and with it the whole pair.
        run_ip("netns", "del", namespace)
    return survivors


@pytest.fixture
def two_node_cluster(request) -> TwoNodeCluster:
    """Start a head and a worker node, one CPU each, in two network namespaces, and stop both after the test."""
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    ray = ray_command()

    suffix = secrets.token_hex(4)
    head, worker = f"lls-head-{suffix}", f"lls-worker-{suffix}"
    # Ray's temp dir contains Unix sockets, whose paths must stay under 108 bytes, so it gets a
    # short folder under /tmp instead of pytest's deep tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="lls-twonode-"))
    namespaces: list[str] = []
    nodes: list[subprocess.Popen] = []

    def stop_cluster() -> None:
        # SIGTERM lets each `ray start --block` stop the processes it started. SIGKILL then takes
        # whatever is still running in the namespaces.
        for node in reversed(nodes):
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(timeout=STOP_TIMEOUT_S)
        survivors = {namespace: stop_namespace(namespace) for namespace in namespaces}
        shutil.rmtree(folder, ignore_errors=True)
        left = {namespace: pids for namespace, pids in survivors.items() if pids}
        assert not left, f"processes still running in the cluster's network namespaces: {left}"

    request.addfinalizer(stop_cluster)

    # Two namespaces, each with only a loopback device and one end of the veth pair.
    for namespace in (head, worker):
        added = run_ip("netns", "add", namespace)
        if added.returncode != 0:
            pytest.skip(f"cannot create network namespace {namespace} (needs root): {added.stderr.strip()}")
        namespaces.append(namespace)
    connect_namespaces(head, worker)
    assert_isolated(head)
    assert_isolated(worker)

    token_file = folder / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    env = cluster_env(token_file)
    common = [
        "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(OBJECT_STORE_BYTES),
        "--disable-usage-stats",
    ]

    nodes.append(start_node(
        ray,
        head,
        ["--head", "--node-ip-address", HEAD_IP, "--port", str(GCS_PORT), "--include-dashboard", "false",
         "--temp-dir", str(folder / "head"), *common],
        folder / "head.log", env,
    ))
    nodes.append(start_node(
        ray,
        worker,
        ["--address", f"{HEAD_IP}:{GCS_PORT}", "--node-ip-address", WORKER_IP, "--temp-dir", str(folder / "worker"), *common],
        folder / "worker.log", env,
    ))

    return TwoNodeCluster(
        address=f"{HEAD_IP}:{GCS_PORT}",
        head_namespace=head,
        env=env,
        node_ids=frozenset({raylet_node_id(head), raylet_node_id(worker)}),
    )


def test_study_runs_on_both_nodes(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    storage = tmp_path / "two_nodes"
    command = cluster.command_on_head(
        sys.executable, "-m", "study.run", "--space", "loss_mix", "--address", cluster.address,
        "--num-samples", str(NUM_SAMPLES), "--epochs", "1", "--image-size", "32",
        "--storage", str(storage), "--name", "two_nodes",
    )

    result = subprocess.run(command, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=STUDY_TIMEOUT_S)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = read_study(storage)
    assert list(records.runs["status"]) == ["FINISHED"] * NUM_SAMPLES
    client = MlflowClient(tracking_uri=records.source.tracking_uri)
    node_ids = {client.get_run(run_id).data.tags.get("node_id") for run_id in records.runs["run_id"]}
    assert len(node_ids) == 2, f"expected trials on both nodes, got node_id tags {node_ids}"
    assert node_ids == cluster.node_ids
    trials = optuna.load_study(study_name=OPTUNA_STUDY_NAME, storage=f"sqlite:///{storage / OPTUNA_FILE}").get_trials()
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * NUM_SAMPLES

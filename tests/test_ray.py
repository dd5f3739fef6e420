"""engine="ray": the same extraction as a Ray Data pipeline on a local Ray (2 CPUs) started by the test,
on a Ray that probe starts itself, and on a two-node cluster on this machine; all of them on 127.0.0.1 only."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pyarrow.dataset as ds
import pytest

import probe

ray = pytest.importorskip("ray")

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_pattern"]
TEXTS = [
    f"The {w} sat on the mat number {i}, then it (quietly) left." for i, w in enumerate(["cat", "dog", "bird"] * 6)
]


def loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host.strip("[]"))
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def listening() -> set[tuple[str, str]]:
    """(process name, address) of every socket that this process's children (Ray's servers) listen on."""
    psutil = pytest.importorskip("psutil")
    seen = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    seen.add((proc.name(), conn.laddr.ip))
        except psutil.Error:
            continue
    return seen


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert loopback(ray.get_runtime_context().gcs_address.rpartition(":")[0])  # conftest's single-node mode
    yield
    ray.shutdown()


def read(out) -> pd.DataFrame:
    frame = ds.dataset(out, format="parquet").to_table().to_pandas()
    return frame.sort_values(["doc_id", "position"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "c.csv"
    pd.DataFrame({"text": TEXTS, "animal": ["cat", "dog", "bird"] * 6}).to_csv(path, index=False)
    return path


def test_ray_engine_equals_local_row_for_row(local_ray, tiny_gpt_path, corpus, tmp_path):
    kwargs = {"hooks": HOOKS, "docs_per_shard": 4, "batch_size": 3, "dtype": "float32", "quiet": True}
    local = probe.extract(tiny_gpt_path, corpus, out=tmp_path / "local", **kwargs)
    remote = probe.extract(tiny_gpt_path, corpus, out=tmp_path / "ray", engine="ray", **kwargs)
    a, b = read(tmp_path / "local"), read(tmp_path / "ray")
    assert len(a) == local["counts"]["rows"] and a.doc_id.nunique() == len(TEXTS)
    pd.testing.assert_frame_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir()
    )
    assert ds.dataset(tmp_path / "ray").schema.equals(ds.dataset(tmp_path / "local").schema, check_metadata=True)
    assert {k: v for k, v in remote.items() if k != "versions"} == {k: v for k, v in local.items() if k != "versions"}


def test_ray_engine_resumes_a_local_run(local_ray, tiny_gpt_path, corpus, tmp_path):
    kwargs = {"hooks": HOOKS, "docs_per_shard": 4, "quiet": True}
    probe.extract(tiny_gpt_path, corpus, out=tmp_path / "whole", **kwargs)
    probe.extract(tiny_gpt_path, corpus, out=tmp_path / "part", **kwargs)
    for k in (1, 3):  # as if the run had died before these windows
        (tmp_path / "part" / f"part-{k:06d}.parquet").unlink()
    model = probe.load(tiny_gpt_path)  # a fresh Model object (test_parity's bridge rewires the shared fixture)
    manifest = probe.extract(model, corpus, out=tmp_path / "part", engine="ray", **kwargs)
    pd.testing.assert_frame_equal(read(tmp_path / "part"), read(tmp_path / "whole"))
    saved = json.loads((tmp_path / "part" / "_manifest.json").read_text())
    assert saved["complete"] and saved["counts"] == manifest["counts"]


# placed after the local_ray tests: that fixture's Ray is torn down when the module's other tests are done,
# so these run with no Ray initialised in this process (each checks)


@pytest.fixture
def no_ray():
    if ray.is_initialized():
        ray.shutdown()
    yield
    assert not ray.is_initialized(), "probe left the Ray it started running"


# probe's own doing, not the tests' set-up: the extraction runs in a fresh process whose environment does not
# name Ray's single-node mode (conftest sets it for this one); it reports what the Ray it used binds
CLEAN_RUN = """
import json, sys
import psutil
import probe
import probe.analysis._ray

seen = {}

def listening():
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            found |= {(proc.name(), c.laddr.ip) for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return sorted(found)

def spied(loopback, imported=probe.analysis._ray.import_ray):  # ray is imported by probe, not here
    ray = imported(loopback)
    shutdown = ray.shutdown

    def spy():  # what the running Ray binds, read just before probe shuts it down
        seen["gcs"] = ray.get_runtime_context().gcs_address
        seen["nodes"] = [n["NodeManagerAddress"] for n in ray.nodes()]
        seen["listening"] = listening()
        shutdown()

    ray.shutdown = spy
    return ray

probe.analysis._ray.import_ray = spied
model, corpus, out, address, hooks = sys.argv[1:6]
probe.extract(model, corpus, hooks=hooks.split(","), out=out, docs_per_shard=6, quiet=True, engine="ray",
              address=address or None)
print(json.dumps(seen))
"""


def extract_in_a_clean_process(model, corpus, out, address: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run(
        [sys.executable, "-c", CLEAN_RUN, str(model), str(corpus), str(out), address or "", ",".join(HOOKS)],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_ray_probe_starts_listens_on_loopback_only(no_ray, tiny_gpt_path, corpus, tmp_path):
    probe.extract(tiny_gpt_path, corpus, hooks=HOOKS, out=tmp_path / "local", docs_per_shard=6, quiet=True)
    seen = extract_in_a_clean_process(tiny_gpt_path, corpus, tmp_path / "ray")
    pd.testing.assert_frame_equal(read(tmp_path / "ray"), read(tmp_path / "local"))
    assert loopback(seen["gcs"].rpartition(":")[0]), seen
    assert seen["nodes"] and all(loopback(n) for n in seen["nodes"]), seen
    assert {"gcs_server", "raylet"} <= {name for name, _ in seen["listening"]}, seen
    assert all(loopback(ip) for _, ip in seen["listening"]), seen["listening"]


def test_a_two_node_cluster_at_a_loopback_address(no_ray, tiny_gpt_path, corpus, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert cluster.address.startswith("127.0.0.1:")
        probe.extract(tiny_gpt_path, corpus, hooks=HOOKS, out=tmp_path / "local", docs_per_shard=6, quiet=True)
        start = time.monotonic()
        seen = extract_in_a_clean_process(tiny_gpt_path, corpus, tmp_path / "ray", address=cluster.address)
        took = time.monotonic() - start
        pd.testing.assert_frame_equal(read(tmp_path / "ray"), read(tmp_path / "local"))
        assert len(seen["nodes"]) == 2 and all(loopback(n) for n in seen["nodes"]), seen
        assert took < 120, f"{took:.0f} s: Ray rewrote the loopback address and waited on it"
        assert all(loopback(ip) for _, ip in listening()), listening()  # the cluster's own servers
    finally:
        cluster.shutdown()


def test_an_unreachable_address_is_one_line_in_seconds(no_ray, tiny_gpt_path, corpus, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(probe.InputError, match=r"could not reach the Ray cluster at '127\.0\.0\.1:\d+'"):
        probe.extract(tiny_gpt_path, corpus, hooks=HOOKS, out=tmp_path / "a", engine="ray", address=address, quiet=True)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "a").exists()  # refused before anything was written
    cli = subprocess.run(
        [sys.executable, "-m", "probe.cli", "extract", str(tiny_gpt_path), str(corpus), "--hooks",
         "blocks.0.hook_resid_post", "--out", str(tmp_path / "b"), "--engine", "ray", "--address", address],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    assert "could not reach the Ray cluster" in cli.stderr and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ray_imported_before_probe_warns_once_naming_the_fix(tmp_path):
    script = (
        "import os, warnings; os.environ.pop('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', None)\n"
        "import ray\n"
        "from probe.analysis._ray import import_ray\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import_ray(loopback=True); import_ray(loopback=True); import_ray(loopback=False)\n"
        "print(len(w)); print(w[0].message if w else '')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    count, message = done.stdout.strip().split("\n", 1)
    assert count == "1", done.stdout + done.stderr
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in message

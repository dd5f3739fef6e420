"""engine="ray": the same extraction as a Ray Data pipeline on a local Ray (2 CPUs) started by the test."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.dataset as ds
import pytest

import probe

ray = pytest.importorskip("ray")

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_pattern"]
TEXTS = [
    f"The {w} sat on the mat number {i}, then it (quietly) left." for i, w in enumerate(["cat", "dog", "bird"] * 6)
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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

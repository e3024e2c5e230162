"""YAML as YAML defines it (merge keys), within limits, and a linear layer merge."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from builder.config.source import load_mapping, merge

MERGED = ("base: &base {port: 80, name: web, tls: false}\n"
          "extra: &extra {port: 81, tls: true}\n"
          "site:\n"
          "  <<: [*extra, *base]\n"  # between merged maps: what Ansible (PyYAML) reads
          "  port: 8080\n")          # the mapping's own keys win over merged ones


def test_merge_keys_override_as_yaml_defines() -> None:
    doc = load_mapping(MERGED, Path("app.yml"))
    assert doc.values["site"] == {"port": 8080, "name": "web", "tls": False}
    assert doc.values == yaml.safe_load(MERGED)  # the same values Ansible's loader gets
    assert doc.origins[("site", "port")].line == 5
    assert doc.origins[("site", "name")].line == 1  # where the merged value was written


def test_a_merged_mapping_value_is_replaced_whole_with_its_origins() -> None:
    doc = load_mapping("b: &b {db: {host: a, port: 1}}\nsite:\n  <<: *b\n  db: {host: c}\n",
                       Path("app.yml"))
    assert doc.values["site"] == {"db": {"host": "c"}}
    assert ("site", "db", "port") not in doc.origins
    assert doc.origins[("site", "db", "host")].line == 4


def test_merging_a_layer_of_50000_keys_is_linear() -> None:
    keys = 50_000
    base = load_mapping("".join(f"k{i}: {{a: 1}}\n" for i in range(0, keys, 2)), Path("b.yml"))
    over = load_mapping("".join(f"k{i}: {i}\n" for i in range(keys)), Path("o.yml"))
    start = time.perf_counter()
    merged = merge(base, over)
    assert time.perf_counter() - start < 3.0  # 0.2-0.4 s here; quadratic took minutes
    assert len(merged.values) == keys
    assert ("k0", "a") not in merged.origins and merged.origins[("k0",)].file == Path("o.yml")

"""`builder diff` without a bake: two build folders as bakes leave them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.bake.packages import Package, write_manifest
from builder.errors import InputError
from builder.pipelines.diff import compare
from builder.records import BuildRecord


def _build(folder: Path, found: list[Package], inputs: dict[str, object]) -> Path:
    folder.mkdir(parents=True)
    write_manifest(folder, found)
    (folder / "fingerprint.json").write_text(json.dumps({"fingerprint": "f", "inputs": inputs}))
    return folder


def test_packages_and_inputs(tmp_path: Path) -> None:
    inputs = {"template": "t1", "vars": "v1", "source_ami": "ami-base1",
              "files": {"playbooks/demo/packer-app.yml": "a", "roles/base/x.yml": "b"},
              "vault": {}}
    before = _build(tmp_path / "one", [Package("bash", "amd64", "5.2-1", "bash"),
                                       Package("curl", "amd64", "7.88.1-10+deb12u5", "curl")],
                    inputs)
    after = _build(tmp_path / "two", [Package("bash", "amd64", "5.2-2", "bash"),
                                      Package("curl", "amd64", "7.88.1-10+deb12u5", "curl"),
                                      Package("tree", "amd64", "2.1.0-1", "tree")],
                   inputs | {"vars": "v2", "source_ami": "ami-base2",
                             "files": {"playbooks/demo/packer-app.yml": "c",
                                       "roles/base/x.yml": "b", "roles/base/y.yml": "d"}})

    result = compare(BuildRecord.from_folder("ami-1", before),
                     BuildRecord.from_folder("ami-2", after))

    assert [(c.name, c.change, c.before, c.after) for c in result.packages] == [
        ("bash", "upgraded", "5.2-1", "5.2-2"), ("tree", "added", "", "2.1.0-1")]
    assert [(c.part, c.name, c.before, c.after) for c in result.inputs] == [
        ("vars", "vars", "v1", "v2"), ("source_ami", "source_ami", "ami-base1", "ami-base2"),
        ("files", "playbooks/demo/packer-app.yml", "a", "c"),
        ("files", "roles/base/y.yml", "", "d")]
    document = result.to_json()
    assert document["counts"] == {"added": 1, "removed": 0, "upgraded": 1, "downgraded": 0}
    text = result.to_text()
    assert "ami-1 -> ami-2: packages 1 added, 0 removed, 1 upgraded, 0 downgraded" in text
    assert "tree" in text and "ami-base2" in text


def test_same_build_is_no_change(tmp_path: Path) -> None:
    folder = _build(tmp_path / "one", [Package("bash", "amd64", "5.2-1", "bash")], {"vars": "v"})
    record = BuildRecord.from_folder("ami-1", folder)
    result = compare(record, record)
    assert result.packages == () and result.inputs == ()
    assert "inputs: unchanged" in result.to_text()


def test_a_missing_manifest_is_exit_2(tmp_path: Path) -> None:
    folder = _build(tmp_path / "one", [Package("bash", "amd64", "5.2-1", "bash")], {})
    old = tmp_path / "old"
    old.mkdir()
    with pytest.raises(InputError) as refused:
        compare(BuildRecord.from_folder("ami-old", old), BuildRecord.from_folder("ami-1", folder))
    assert refused.value.exit_code == 2
    assert "ami-old: no package manifest" in refused.value.message

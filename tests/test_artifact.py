"""The artifact format: checksums, format versions, atomic writes, reproducibility."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest

import edgec
from edgec.artifact import Artifact, write_atomic
from edgec.errors import ArtifactError


@pytest.fixture(scope="module")
def art_bytes(tmp_path_factory):
    from conftest import mlp_model, save_model

    path = save_model(mlp_model(), tmp_path_factory.mktemp("art") / "mlp.onnx")
    return path, edgec.compile(path, "host").to_bytes()


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _repack(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_round_trip_preserves_outputs(art_bytes, tmp_path):
    _, data = art_bytes
    art = Artifact.from_bytes(data)
    path = art.save(str(tmp_path / "a.edgec"))
    again = edgec.load(path)
    x = np.ones((2, 16), np.float32)
    np.testing.assert_array_equal(art.run({"x": x})["y"], again.run({"x": x})["y"])


def test_two_builds_are_byte_identical(art_bytes):
    path, data = art_bytes
    assert edgec.compile(path, "host").to_bytes() == data


def test_manifest_records_how_to_rebuild(art_bytes):
    _, data = art_bytes
    manifest = json.loads(_members(data)["manifest.json"])
    for key in ("format_version", "edgec_version", "tvm_version", "preset", "target", "model", "options",
                "inputs", "outputs", "files"):
        assert key in manifest
    assert manifest["target"]["kind"] == "llvm"
    assert "mtime" not in json.dumps(manifest)


def test_missing_file_is_reported(art_bytes):
    members = _members(art_bytes[1])
    del members["weights/model.params"]
    with pytest.raises(ArtifactError, match="weights/model.params listed in the manifest is missing"):
        Artifact.from_bytes(_repack(members))


def test_newer_format_is_refused(art_bytes):
    members = _members(art_bytes[1])
    manifest = json.loads(members["manifest.json"])
    manifest["format_version"] = 99
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(ArtifactError, match="newer"):
        Artifact.from_bytes(_repack(members))


def test_unlisted_or_unsafe_files_are_refused(art_bytes):
    members = _members(art_bytes[1])
    members["extra.bin"] = b"x"
    with pytest.raises(ArtifactError, match="not in the manifest"):
        Artifact.from_bytes(_repack(members))
    members = _members(art_bytes[1])
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["../evil"] = {"sha256": "0", "size": 1}
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(ArtifactError, match="unsafe"):
        Artifact.from_bytes(_repack(members))


def test_not_an_artifact():
    with pytest.raises(ArtifactError, match="truncated or not an edgec artifact"):
        Artifact.from_bytes(b"hello world" * 100)


def test_built_for_another_device(art_bytes):
    art = Artifact.from_bytes(art_bytes[1])
    art.manifest["arch"] = "aarch64"
    art.manifest["preset"] = "rpi5"
    with pytest.raises(ArtifactError, match="built for rpi5"):
        art.run({"x": np.ones((1, 16), np.float32)})


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(target), b"new contents")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]

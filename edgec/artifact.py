"""The artifact: one uncompressed tar file holding everything a device needs to run a model.

Layout (documented in docs/artifact.md)::

    manifest.json          what was built, from what, for which device; sha256 of every file
    lib/model.so           the compiled library (Relax VM executable + kernels) for the device
    weights/model.params   the weights, in TVM's parameter-dict format, in the order main takes them
    ...                    target-specific extras (device runtime libraries, native runner)

Writing is atomic (a temporary file in the destination folder, fsync, rename), members are
written in a fixed order with zeroed times and owners, so the same inputs give the same bytes.
Loading checks the format version and every checksum before anything is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field

from edgec.errors import ArtifactError
from edgec.signature import TensorSpec

FORMAT = "edgec-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LIBRARY = "lib/model.so"
WEIGHTS = "weights/model.params"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Artifact:
    manifest: dict
    files: dict[str, bytes] = field(default_factory=dict)
    _runner: object = field(default=None, repr=False, compare=False)

    # -- what it holds -------------------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.manifest["outputs"]]

    @property
    def target(self) -> dict:
        return self.manifest["target"]

    @property
    def preset(self) -> str:
        return self.manifest["preset"]

    @property
    def arch(self) -> str:
        return self.manifest["arch"]

    @property
    def device(self) -> str:
        return self.manifest["device"]

    def sha256(self) -> str:
        return sha256(self.to_bytes())

    # -- running -------------------------------------------------------------------------------

    def run(self, feeds: dict, *, emulate: bool = False) -> dict:
        """Run on this machine (or under qemu with ``emulate``); returns ``{output name: ndarray}``."""
        from edgec.runtime import runner_for

        if self._runner is None or getattr(self._runner, "emulated", False) != emulate:
            self._runner = runner_for(self, emulate=emulate)
        return self._runner.run(feeds)

    # -- bytes on disk ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        manifest = dict(self.manifest)
        manifest["files"] = {
            name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(self.files.items())
        }
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
            for name in sorted(self.files):
                _add(tar, name, self.files[name], mode=0o755 if name.startswith("bin/") else 0o644)
        self.manifest = manifest
        return buf.getvalue()

    def save(self, path: str) -> str:
        """Write atomically: either the whole artifact is at ``path`` or nothing new is."""
        write_atomic(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str) -> "Artifact":
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {path} does not exist") from None
        except IsADirectoryError:
            raise ArtifactError(f"artifact {path} is a directory; edgec artifacts are single files") from None
        except OSError as err:
            raise ArtifactError(f"cannot read artifact {path}: {err.strerror}") from None
        return cls.from_bytes(data, path)

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "<bytes>") -> "Artifact":
        members = _read_tar(data, origin)
        if MANIFEST not in members:
            raise ArtifactError(f"{origin} is not an edgec artifact: it has no {MANIFEST}")
        try:
            manifest = json.loads(members.pop(MANIFEST).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ArtifactError(f"{origin} is corrupted: its manifest is not valid JSON ({err})") from None
        _check_manifest(manifest, origin)
        listed = manifest["files"]
        for name, meta in listed.items():
            if name not in members:
                raise ArtifactError(f"{origin} is corrupted: file {name} listed in the manifest is missing")
            if sha256(members[name]) != meta.get("sha256") or len(members[name]) != meta.get("size"):
                raise ArtifactError(f"{origin} is corrupted: checksum of {name} does not match the manifest")
        extra = sorted(set(members) - set(listed))
        if extra:
            raise ArtifactError(f"{origin} is corrupted: files {extra} are not in the manifest")
        return cls(manifest, members)


def _check_manifest(manifest, origin: str) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{origin} is not an edgec artifact (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{origin} is corrupted: manifest has no format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{origin} uses artifact format {version}, newer than this edgec reads ({FORMAT_VERSION}); upgrade edgec"
        )
    for key in ("files", "inputs", "outputs", "target", "preset", "arch", "device"):
        if key not in manifest:
            raise ArtifactError(f"{origin} is corrupted: manifest has no {key!r}")
    for name in manifest["files"]:
        if name.startswith("/") or ".." in name.split("/"):
            raise ArtifactError(f"{origin} is corrupted: unsafe file name {name!r} in the manifest")


def _read_tar(data: bytes, origin: str) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    raise ArtifactError(f"{origin} is corrupted: {info.name} is not a regular file")
                if info.name in members:
                    raise ArtifactError(f"{origin} is corrupted: {info.name} appears twice")
                members[info.name] = tar.extractfile(info).read()
    except tarfile.TarError as err:
        raise ArtifactError(f"{origin} is truncated or not an edgec artifact ({err})") from None
    except (EOFError, OSError) as err:
        raise ArtifactError(f"{origin} is truncated or not an edgec artifact ({err})") from None
    return members


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def temp_prefix(pid: int | None = None) -> str:
    """Names of write_atomic's temporary files carry the writer's pid, so that whoever watched a
    writer die (edgec.isolation) removes exactly its leftovers."""
    return f".edgec-{os.getpid() if pid is None else pid}-"


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=".tmp", dir=folder)
    except OSError as err:
        raise ArtifactError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise ArtifactError(f"cannot write {path}: {err.strerror}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

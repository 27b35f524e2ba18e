"""``edgec build``: the config, the matrix, the cache, verification, reproducibility, the CI files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgec import build as build_mod
from edgec.build import build
from edgec.build_config import ConfigError, load_config
from edgec.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
TARGETS = ["host", "linux-arm64", "jetson"]


def _make_models(folder: str) -> None:
    spec = importlib.util.spec_from_file_location("make_build_models", os.path.join(EXAMPLES, "make_build_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(folder)


def _config(folder: str, *, conv_layout: str = "auto", verify: bool = True, extra: str = "") -> str:
    path = os.path.join(folder, "edgec.toml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
            verify = {str(verify).lower()}

            [models.mlp]
            path = "tiny_mlp.onnx"
            inputs = {{ x = "1x16:float32" }}
            targets = {json.dumps(TARGETS)}

            [models.conv]
            path = "tiny_conv.onnx"
            layout = "{conv_layout}"
            targets = {json.dumps(TARGETS)}
            """) + extra)
    return path


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _qemu_here() -> bool:
    return shutil.which("qemu-aarch64") is not None and os.path.isdir("/usr/aarch64-linux-gnu/lib")


def _gpu_here() -> bool:
    import tvm

    return bool(tvm.cuda(0).exist)


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    """The 2 models x 3 targets matrix, built once from an empty cache, in this process."""
    folder = str(tmp_path_factory.mktemp("matrix"))
    _make_models(folder)
    config = _config(folder)
    out, cache = os.path.join(folder, "out"), os.path.join(folder, "cache")
    summary = build(load_config(config), out, cache, jobs=1)
    return {"folder": folder, "config": config, "out": out, "cache": cache, "summary": summary}


def _forbid_compiling(monkeypatch) -> list:
    compiled = []

    def fake(task):
        compiled.append(task["name"])
        return _real_compile(task)

    monkeypatch.setattr(build_mod, "_compile", fake)
    return compiled


_real_compile = build_mod._compile


# -- the matrix -------------------------------------------------------------------------------


def test_matrix_builds_every_cell_and_records_it(first_build):
    out = first_build["out"]
    report = _read_json(os.path.join(out, "build.json"))
    assert report["summary"] == {"cells": 6, "built": 6, "cached": 0, "failed": 0}
    cells = {(c["model"], c["target"]): c for c in report["cells"]}
    assert set(cells) == {(m, t) for m in ("mlp", "conv") for t in TARGETS}
    for (model, target), cell in cells.items():
        assert cell["status"] == "built"
        assert cell["artifact"] == f"{model}/{target}/model.edgec"
        path = os.path.join(out, cell["artifact"])
        assert _sha(path) == cell["sha256"] and os.path.getsize(path) == cell["size"]
        import edgec

        art = edgec.load(path)
        assert art.preset == {"host": "host", "linux-arm64": "linux-arm64", "jetson": "jetson-orin-nano"}[target]
        assert cell["options"]["layout"] == "auto"
        v = cell["verification"]
        if target == "host":
            assert v["executed"] and v["ok"] and v["how"] == "host" and v["outputs"]
        elif target == "linux-arm64" and _qemu_here():
            assert v["executed"] and v["ok"] and v["how"] == "qemu-aarch64"
        elif target == "jetson" and not _gpu_here():
            assert v["executed"] is False and v["ok"] is False and v["note"]
    text = open(os.path.join(out, "build.json")).read()
    assert first_build["folder"] not in text and "/tmp" not in text  # no absolute paths


def test_second_run_rebuilds_nothing(first_build, monkeypatch):
    compiled = _forbid_compiling(monkeypatch)
    before = _read_json(os.path.join(first_build["out"], "build.json"))
    summary = build(load_config(first_build["config"]), first_build["out"], first_build["cache"], jobs=1)
    assert compiled == []
    assert summary.counts() == {"built": 0, "cached": 6, "failed": 0}
    after = _read_json(os.path.join(first_build["out"], "build.json"))
    assert [c["sha256"] for c in after["cells"]] == [c["sha256"] for c in before["cells"]]
    assert all(c["status"] == "cached" for c in after["cells"])
    host = next(c for c in after["cells"] if c["target"] == "host")
    assert host["verification"]["executed"] and host["verification"]["ok"]


def test_changed_option_rebuilds_exactly_its_cells(first_build, tmp_path, monkeypatch):
    folder = str(tmp_path)
    for name in ("tiny_mlp.onnx", "tiny_conv.onnx"):
        shutil.copy(os.path.join(first_build["folder"], name), folder)
    shutil.copytree(first_build["cache"], os.path.join(folder, "cache"))
    config = _config(folder, conv_layout="none", verify=False)
    compiled = _forbid_compiling(monkeypatch)
    summary = build(load_config(config), os.path.join(folder, "out"), os.path.join(folder, "cache"), jobs=1)
    assert sorted(compiled) == sorted(f"conv/{t}" for t in TARGETS)
    status = {c.name: c.status for c in summary.cells}
    assert status == {**{f"mlp/{t}": "cached" for t in TARGETS}, **{f"conv/{t}": "built" for t in TARGETS}}
    art_json = _read_json(os.path.join(folder, "out", "build.json"))
    conv_host = next(c for c in art_json["cells"] if c["model"] == "conv" and c["target"] == "host")
    assert conv_host["options"]["layout"] == "none" and conv_host["verification"] is None


def test_broken_model_fails_only_its_cells(tmp_path, capsys):
    folder = str(tmp_path)
    _make_models(folder)
    with open(os.path.join(folder, "broken.onnx"), "wb") as f:
        f.write(b"this is not an onnx model")
    config = os.path.join(folder, "edgec.toml")
    with open(config, "w") as f:
        f.write('[models.good]\npath = "tiny_mlp.onnx"\ntargets = ["host"]\n\n'
                '[models.broken]\npath = "broken.onnx"\ntargets = ["host", "linux-arm64"]\n')
    out = os.path.join(folder, "out")
    stale = os.path.join(out, "broken", "host", "model.edgec")
    os.makedirs(os.path.dirname(stale))
    open(stale, "wb").write(b"last week's artifact")
    code = main(["build", config, "-o", out, "--cache-dir", os.path.join(folder, "cache"), "--jobs", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "2 of 3 cells failed" in captured.err and "broken/host" in captured.err
    report = _read_json(os.path.join(out, "build.json"))
    status = {(c["model"], c["target"]): c for c in report["cells"]}
    assert status[("good", "host")]["status"] == "built"
    for target in ("host", "linux-arm64"):
        cell = status[("broken", target)]
        assert cell["status"] == "failed" and cell["artifact"] is None
        assert "broken.onnx" in cell["reason"] and "\n" not in cell["reason"]
    assert not os.path.exists(stale)  # a failed cell leaves no stale artifact behind
    assert os.path.isfile(os.path.join(out, "good", "host", "model.edgec"))


def test_only_builds_the_named_model(first_build, tmp_path, monkeypatch):
    compiled = _forbid_compiling(monkeypatch)
    summary = build(load_config(first_build["config"]), str(tmp_path), first_build["cache"],
                    only=("mlp/host",), jobs=1)
    assert [c.name for c in summary.cells] == ["mlp/host"] and compiled == []
    with pytest.raises(ConfigError, match="nosuch"):
        build(load_config(first_build["config"]), str(tmp_path), first_build["cache"], only=("nosuch",))


# -- config errors ----------------------------------------------------------------------------

_BAD_CONFIGS = {
    "unknown key": ('verify = true\n\n[models.a]\npath = "tiny_mlp.onnx"\nquantise = "int4"\ntargets = ["host"]\n',
                    5, "unknown key 'models.a.quantise'; did you mean 'quantize'"),
    "unknown global key": ('verfy = true\n[models.a]\npath = "tiny_mlp.onnx"\ntargets = ["host"]\n',
                           1, "unknown key 'verfy'"),
    "bad target in a multi-line list": (
        '[models.a]\npath = "tiny_mlp.onnx"\ntargets = [\n  "host",\n  "jetsn",\n]\n', 5, "unknown target 'jetsn'"),
    "missing model file": ('\n[ models . "a" ]\ntargets = ["host"]\npath = "nope.onnx"\n', 4,
                           "file nope.onnx does not exist"),
    "missing target file": ('[models.a]\npath = "tiny_mlp.onnx"\ntargets = ["boards/mine.json"]\n', 3,
                            "does not exist"),
    "wrong type": ('[models.a]\npath = "tiny_mlp.onnx"\ntargets = ["host"]\nverify = "yes"\n', 4,
                   "must be true or false"),
    "bad input spec": ('models.a.path = "tiny_mlp.onnx"\nmodels.a.targets = ["host"]\n'
                       'models.a.inputs = {x = "1x16:float99"}\n', 3, "unknown dtype 'float99'"),
    "bad layout in a later table": (
        '[models.a]\npath = "tiny_mlp.onnx"\ntargets = ["host"]\nnote = """\n[models.b]\nlayout = 1\n"""\n',
        4, "unknown key 'models.a.note'"),
    "missing targets": ('[models.a]\npath = "tiny_mlp.onnx"\n', 1, "has no 'targets'"),
    "not toml": ('[models.a]\npath = "tiny_mlp.onnx"\ntargets = ["host"\n', 4, "not valid TOML"),
}


@pytest.mark.parametrize("case", list(_BAD_CONFIGS))
def test_config_errors_name_the_line(case, tmp_path, capsys):
    text, line, message = _BAD_CONFIGS[case]
    (tmp_path / "tiny_mlp.onnx").write_bytes(b"")  # only its existence is checked before the build
    config = tmp_path / "edgec.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(config))
    assert f"edgec.toml:{line}: " in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)
    assert main(["build", str(config), "-o", str(tmp_path / "out")]) == 2
    assert f"edgec.toml:{line}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_key_covers_tuning_db_content_and_only_reads_it(tmp_path):
    from edgec.build import plan

    (tmp_path / "m.onnx").write_bytes(b"model bytes")
    db = tmp_path / "db"
    db.mkdir()
    (db / "database_tuning_record.json").write_text("[]\n")
    config = tmp_path / "edgec.toml"
    config.write_text('[models.a]\npath = "m.onnx"\ntuning_db = "db"\ntargets = ["host", "linux-arm64"]\n')
    first = [c.key for c in plan(load_config(str(config)))]
    assert first == [c.key for c in plan(load_config(str(config)))] and len(set(first)) == 2
    (db / "database_tuning_record.json").write_text('[["one record"]]\n')
    assert set(first).isdisjoint(c.key for c in plan(load_config(str(config))))


# -- reproducibility and the CI files ----------------------------------------------------------


def _cli(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    exe = shutil.which("edgec")
    cmd = [exe] if exe else [sys.executable, "-m", "edgec.cli"]
    return subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_clean_rebuild_in_worker_processes_is_byte_identical(first_build, tmp_path):
    out = str(tmp_path / "out")
    proc = _cli(["build", first_build["config"], "-o", out, "--cache-dir", str(tmp_path / "cache"),
                 "--jobs", "2", "--json"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["built"] == 6
    for cell in report["cells"]:
        ours, theirs = os.path.join(out, cell["artifact"]), os.path.join(first_build["out"], cell["artifact"])
        with open(ours, "rb") as a, open(theirs, "rb") as b:
            assert a.read() == b.read(), cell["artifact"]
    import edgec

    # nothing of this machine's layout in what we generate (bin/edgec-run is the runtime's own build)
    art = edgec.load(os.path.join(out, "mlp", "linux-arm64", "model.edgec"))
    for name in ("lib/model.so", "weights/model.params"):
        assert not any(p.encode() in art.files[name] for p in ("/tmp/", "/root/", "/home/", "/work/")), name
    manifest = json.dumps(art.manifest)
    assert str(tmp_path) not in manifest and first_build["folder"] not in manifest


def _ci_commands() -> list[tuple[str, list[str]]]:
    import yaml  # a dev dependency
    with open(os.path.join(EXAMPLES, "ci", "github-actions.yml")) as f:
        github = yaml.safe_load(f)
    with open(os.path.join(EXAMPLES, "ci", ".gitlab-ci.yml")) as f:
        gitlab = yaml.safe_load(f)
    gh_lines = [s["run"] for job in github["jobs"].values() for s in job["steps"] if "run" in s]
    gl_lines = [line for name, job in gitlab.items() if isinstance(job, dict) and "script" in job
                for line in job.get("before_script", []) + job["script"]]
    split = lambda lines: [ln.strip() for block in lines for ln in block.splitlines() if ln.strip()]  # noqa: E731
    return [("github", split(gh_lines)), ("gitlab", split(gl_lines))]


def test_ci_files_run_edgec_build_on_the_example(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo / "examples", ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    for ci, lines in _ci_commands():
        ours = [ln for ln in lines if ln.startswith(("edgec build", "python examples/make_build_models.py"))]
        builds = [ln for ln in ours if ln.startswith("edgec build")]
        assert len(builds) == 1 and "examples/edgec.toml" in builds[0], (ci, lines)
        for line in ours:
            args = shlex.split(line)
            if args[0] == "edgec":
                proc = _cli(args[1:], cwd=str(repo))
            else:
                proc = subprocess.run([sys.executable, *args[1:]], cwd=str(repo), capture_output=True, text=True)
            assert proc.returncode == 0, (ci, line, proc.stdout, proc.stderr)
        out = shlex.split(builds[0])[shlex.split(builds[0]).index("-o") + 1]
        report = _read_json(str(repo / out / "build.json"))
        assert report["summary"]["failed"] == 0 and report["summary"]["cells"] == 5
        if ci == "gitlab":  # same cache folder as the github run before it: nothing to rebuild
            assert report["summary"]["cached"] == 5

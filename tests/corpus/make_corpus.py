"""Generate the bad-input corpus: every file a user could wrongly hand to edgec, and the command.

Run ``python tests/corpus/make_corpus.py DIR`` to write the corpus into DIR with a ``cases.json``
index; ``tests/test_corpus.py`` does this into a temporary folder and runs every case through
the real command line. Nothing here is a hand-kept binary: each case is made from a small valid
model, artifact or database by a documented mutation, so the corpus can be regenerated and
extended.

A case is ``{"name", "argv", "error"}``: ``argv`` is the ``edgec`` command line with ``{dir}``
standing for the corpus folder, and ``error`` the :mod:`edgec.errors` class the command must
end in (always exit code 2: bad input).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = "{dir}/out-{name}.edgec"  # every compile writes here; nothing may appear there


def seed_model() -> onnx.ModelProto:
    """A small valid CNN: Conv → Relu → GlobalAveragePool → Flatten → Gemm."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "seed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "case", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 10
    return model


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def onnx_cases() -> dict[str, bytes]:
    """name -> bytes of a file handed to ``edgec compile``."""
    seed = seed_model()
    good = seed.SerializeToString()
    cases: dict[str, bytes] = {}

    # truncated at several offsets, including inside the weights and just before the end
    for frac in (0.0001, 0.1, 0.5, 0.9):
        cases[f"truncated_{int(frac * 1000):03d}permille"] = good[: max(1, int(len(good) * frac))]
    cases["truncated_last_byte"] = good[:-1]
    cases["empty"] = b""
    cases["random_bytes"] = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    cases["text_file"] = b"this is not a model\n" * 20

    # wrong field types: ModelProto.graph (field 7) as a varint; ir_version (field 1) as a string
    cases["graph_field_as_varint"] = _varint(1 << 3) + _varint(10) + _varint(7 << 3) + _varint(5)
    cases["ir_version_as_string"] = _varint((1 << 3) | 2) + _varint(2) + b"10" + good
    bad_attr = seed_model()
    conv = bad_attr.graph.node[0]
    del conv.attribute[:]
    conv.attribute.append(helper.make_attribute("pads", "one"))
    cases["attribute_of_wrong_type"] = bad_attr.SerializeToString()

    # graph structure: a cycle, a dangling input, a missing initializer
    cycle = _model(
        [helper.make_node("Add", ["x", "b"], ["a"], name="add_a"), helper.make_node("Relu", ["a"], ["b"], name="relu_b")],
        [_vi("x", [4])], [_vi("b", [4])],
    )
    cases["cycle"] = cycle.SerializeToString()
    dangling = _model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")], [_vi("x", [4])], [_vi("y", [4])])
    cases["dangling_input"] = dangling.SerializeToString()
    missing = seed_model()
    del missing.graph.initializer[2]  # fc_w
    cases["missing_initializer"] = missing.SerializeToString()
    no_output = _model([helper.make_node("Relu", ["x"], ["r"], name="relu")], [_vi("x", [4])], [_vi("y", [4])])
    cases["output_never_produced"] = no_output.SerializeToString()

    # tensors whose declared shape disagrees with their data (raw bytes, and typed fields)
    short_raw = seed_model()
    short_raw.graph.initializer[0].raw_data = short_raw.graph.initializer[0].raw_data[:-8]
    cases["initializer_raw_data_short"] = short_raw.SerializeToString()
    typed = seed_model()
    w = typed.graph.initializer[2]
    values = numpy_helper.to_array(w).ravel()[:-3]
    w.ClearField("raw_data")
    w.float_data.extend(values.tolist())
    cases["initializer_float_data_short"] = typed.SerializeToString()
    short = helper.make_tensor("c", TensorProto.FLOAT, [5], [1.0] * 5)
    short.dims[:] = [4, 4]  # onnx.helper refuses the mismatch; a damaged file need not
    constant = _model(
        [helper.make_node("Constant", [], ["c"], name="const", value=short),
         helper.make_node("Add", ["x", "c"], ["y"], name="add")],
        [_vi("x", [4, 4])], [_vi("y", [4, 4])],
    )
    cases["constant_node_shape_mismatch"] = constant.SerializeToString()

    # unknown domains, and opsets from the future
    unknown = _model([helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.acme")],
                     [_vi("x", [4])], [_vi("y", [4])], opsets=(("", 17), ("com.acme", 1)))
    cases["unknown_domain"] = unknown.SerializeToString()
    undeclared = _model([helper.make_node("Relu", ["x"], ["y"], name="relu", domain="org.undeclared")],
                        [_vi("x", [4])], [_vi("y", [4])])
    cases["domain_not_imported"] = undeclared.SerializeToString()
    future = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", [4])], [_vi("y", [4])],
                    opsets=(("", 99),))
    cases["opset_from_the_future"] = future.SerializeToString()
    future_ir = seed_model()
    future_ir.ir_version = 99
    cases["ir_version_from_the_future"] = future_ir.SerializeToString()

    # names that are not UTF-8: the protobuf string field holds invalid bytes
    named = seed_model()
    named.graph.node[1].name = "RELU_NAME_XX"
    cases["non_utf8_node_name"] = named.SerializeToString().replace(b"RELU_NAME_XX", b"relu\xff\xfe\xc3(xx")
    named_in = seed_model()
    cases["non_utf8_tensor_name"] = named_in.SerializeToString().replace(b"conv_b", b"co\xffv_")

    # huge declared dimensions: refused, never allocated
    huge_init = seed_model()
    t = huge_init.graph.initializer[3]
    t.ClearField("raw_data")
    t.ClearField("dims")
    t.dims.extend([1 << 20, 1 << 20])
    cases["initializer_2pow40_elements"] = huge_init.SerializeToString()
    huge_input = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                        [_vi("x", [1 << 20, 1 << 20])], [_vi("y", [1 << 20, 1 << 20])])
    cases["input_2pow40_elements"] = huge_input.SerializeToString()
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], dtype=np.int64), "shape")
    fill = _model([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
                   helper.make_node("Add", ["x", "big"], ["y"], name="add")],
                  [_vi("x", [1])], [_vi("y", ["a", "b"])], inits=[shape])  # only computing y reveals its size
    cases["constant_of_shape_2pow40"] = fill.SerializeToString()
    return cases


def pt2_cases(scratch: str) -> dict[str, bytes]:
    """``.pt2`` files that are not what they claim to be."""
    cases = {
        "pt2_random_bytes": np.random.default_rng(2).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "pt2_is_onnx": seed_model().SerializeToString(),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")
        z.writestr("archive/version", b"99")
    cases["pt2_zip_not_an_export"] = buf.getvalue()
    real = _exported_pt2()
    if real is not None:
        cases["pt2_truncated"] = real[: len(real) // 2]
        at = len(real) // 3
        flipped = bytearray(real)
        flipped[at:at + 64] = bytes(64)
        cases["pt2_zeroed_block"] = bytes(flipped)
    return cases


def _exported_pt2() -> bytes | None:
    try:
        import torch
    except ImportError:  # the torch cases need torch; the ONNX ones do not
        return None

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            return torch.relu(self.fc(x))

    program = torch.export.export(Tiny().eval(), (torch.randn(2, 8),))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def artifact_cases(artifact: bytes) -> dict[str, bytes]:
    """Damaged copies of a valid artifact (a tar of manifest + files)."""
    members = {}
    with tarfile.open(fileobj=io.BytesIO(artifact)) as tar:
        for info in tar:
            members[info.name] = tar.extractfile(info).read()

    def pack(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    manifest = json.loads(members["manifest.json"])
    library = next(n for n in members if n.endswith(".so"))
    cases = {}
    flipped = bytearray(artifact)
    at = artifact.index(members[library][2048:2112]) + 7
    flipped[at] ^= 0x01
    cases["artifact_flipped_byte"] = bytes(flipped)
    cases["artifact_missing_file"] = pack({n: d for n, d in members.items() if n != library})
    cases["artifact_truncated"] = artifact[: len(artifact) // 2]
    cases["artifact_not_a_tar"] = b"\x00" * 1024
    newer = dict(manifest, format_version=manifest["format_version"] + 1)
    cases["artifact_newer_format"] = pack({**members, "manifest.json": json.dumps(newer).encode()})
    cases["artifact_manifest_not_json"] = pack({**members, "manifest.json": b'{"format": "edgec-artif'})
    unsafe = dict(manifest, files={**manifest["files"], "../escape.so": manifest["files"][library]})
    cases["artifact_unsafe_path"] = pack({**members, "manifest.json": json.dumps(unsafe).encode()})
    return cases


def write(folder: str) -> list[dict]:
    """Write every case into ``folder`` and return the case list (also saved as cases.json)."""
    os.makedirs(folder, exist_ok=True)
    cases: list[dict] = []

    def add(name: str, filename: str, data: bytes | None, argv: list[str], error: str):
        if data is not None:
            with open(os.path.join(folder, filename), "wb") as f:
                f.write(data)
        cases.append({"name": name, "argv": [a.replace("{name}", name) for a in argv], "error": error})

    for name, data in onnx_cases().items():
        add(name, f"{name}.onnx", data, ["compile", f"{{dir}}/{name}.onnx", "-o", OUT], _onnx_error(name))
    for name, data in pt2_cases(folder).items():
        add(name, f"{name}.pt2", data, ["compile", f"{{dir}}/{name}.pt2", "-o", OUT], "ModelError")

    # a valid model, artifact and inputs to damage
    seed_path = os.path.join(folder, "seed.onnx")
    onnx.save(seed_model(), seed_path)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.savez(os.path.join(folder, "inputs.npz"), x=x)
    np.savez(os.path.join(folder, "inputs_wrong_name.npz"), image=x)
    np.savez(os.path.join(folder, "inputs_wrong_shape.npz"), x=x[:, :, :8])
    np.savez(os.path.join(folder, "inputs_wrong_dtype.npz"), x=x.astype(np.float64))

    import edgec  # noqa: E402 - only the artifact cases need the compiler

    artifact = edgec.compile(seed_path, "host").to_bytes()
    for name, data in artifact_cases(artifact).items():
        add(name, f"{name}.edgec", data, ["run", f"{{dir}}/{name}.edgec", "--inputs", "{dir}/inputs.npz",
                                          "-o", "{dir}/out-{name}.npz"], "ArtifactError")
        add(f"{name}_inspect", f"{name}.edgec", None, ["inspect", f"{{dir}}/{name}.edgec"], "ArtifactError")
    with open(os.path.join(folder, "seed.edgec"), "wb") as f:
        f.write(artifact)
    for kind in ("name", "shape", "dtype"):
        add(f"run_inputs_wrong_{kind}", "", None, ["run", "{dir}/seed.edgec", "--inputs",
                                                    f"{{dir}}/inputs_wrong_{kind}.npz", "-o", "{dir}/out-{name}.npz"],
            "InputError")

    # tuning databases: a record file cut mid-JSON, a marker file cut mid-JSON
    for name, damage in (("db_truncated_workload", "workload"), ("db_truncated_marker", "marker")):
        _damaged_database(os.path.join(folder, name), damage)
        add(name, "", None, ["compile", "{dir}/seed.onnx", "--tuning-db", f"{{dir}}/{name}", "-o", OUT],
            "DatabaseError")

    # wrong usage around a good model
    add("unknown_target", "", None, ["compile", "{dir}/seed.onnx", "-t", "raspberry-pi-9", "-o", OUT], "TargetError")
    add("compile_wrong_input_name", "", None, ["compile", "{dir}/seed.onnx", "--input", "image:1x3x16x16", "-o", OUT],
        "InputError")
    add("compile_wrong_input_rank", "", None, ["compile", "{dir}/seed.onnx", "--input", "x:1x3x16", "-o", OUT],
        "InputError")
    add("compile_wrong_input_dtype", "", None,
        ["compile", "{dir}/seed.onnx", "--input", "x:1x3x16x16:int8", "-o", OUT], "InputError")

    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1)
    return cases


def _onnx_error(name: str) -> str:
    if name == "unknown_domain":
        return "UnsupportedOperatorError"
    return "ModelError"


def _damaged_database(path: str, damage: str) -> None:
    """A database holding one record for the seed model's kernels, then damaged."""
    from edgec.schedules.database import MARKER, TuningDatabase

    shutil.rmtree(path, ignore_errors=True)
    TuningDatabase(path, create=True)
    if damage == "marker":
        marker = os.path.join(path, MARKER)
        with open(marker, "rb") as f:
            data = f.read()
        with open(marker, "wb") as f:
            f.write(data[: len(data) // 2])
        return
    # a file cut mid-JSON, as a writer that skipped the atomic rename would leave it
    import tvm

    from edgec.schedules.database import target_key
    from edgec.targets import resolve

    folder = os.path.join(path, target_key(tvm.target.Target(resolve("host").target)), "0000")
    os.makedirs(folder)
    with open(os.path.join(folder, "workload.json"), "w") as f:
        f.write('{"workload": {"mod": "AAAA", "shash": 1}')


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py DIR")
    print(f"{len(write(sys.argv[1]))} cases written to {sys.argv[1]}")

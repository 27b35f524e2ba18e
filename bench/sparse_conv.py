"""Sparse convs on a synthetic LiDAR scan: edgec (both dataflows) against spconv's CPU path.

Per layer: each layer is compiled alone (``edgec`` ONNX op) and timed per call, kernel map
included, exactly as spconv builds its indice pairs per call. End to end: a MinkUNet-style
encoder-decoder (subm, strided and inverse convs with fused ReLU) compiled as one model against
the same network in spconv (indice keys shared as in ours). spconv runs with one thread (its CPU
path races with more); edgec runs with ``--threads`` (default 1, the like-for-like number).
Ratios are spconv time / edgec time: above 1 means edgec is faster.

The scan is examples/lidar.py's 64-beam street scene (about 100k points), voxelized at 0.05 m.

    python bench/sparse_conv.py [--voxel 0.05] [--runs 5] [--threads 1] [--examples] [--json]

``--examples`` also compiles examples/sparse_models.py's full-size MinkUNet and CenterPoint
(raw points in, Voxelize included) and times them against the same modules run eagerly in
PyTorch (edgec.nn's plain-PyTorch reference; spconv has no counterpart of these modules).
"""

from __future__ import annotations

import json
import time

import click
import numpy as np


def synthetic_scan(points: int, seed: int = 0) -> np.ndarray:
    """examples/lidar.py's scan when it is there, else a simple 64-beam ring pattern over a ground
    plane with box-shaped objects; xyz + intensity."""
    try:
        import os
        import sys

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
        from lidar import synthetic_scan as street

        return street(seed)
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    beams = np.deg2rad(np.linspace(-25.0, 3.0, 64))
    per_beam = points // 64
    az = rng.uniform(-np.pi, np.pi, (64, per_beam))
    el = np.repeat(beams[:, None], per_beam, axis=1) + rng.normal(0, 1e-3, (64, per_beam))
    height = 1.8
    # ground hit distance for downward beams, else a far wall at 60 m
    dist = np.where(el < -1e-3, height / np.tan(-np.minimum(el, -1e-3)), 60.0)
    dist = np.minimum(dist, 60.0)
    xyz = np.stack([dist * np.cos(az) * np.cos(el), dist * np.sin(az) * np.cos(el),
                    height + dist * np.sin(el)], axis=-1).reshape(-1, 3) - [0, 0, height]
    # boxes (cars): points inside get pulled onto the box surface facing the sensor
    for _ in range(12):
        c = rng.uniform(-30, 30, 2)
        size = np.array([4.5, 1.9, 1.6])
        rel = xyz[:, :2] - c
        inside = (np.abs(rel[:, 0]) < size[0] / 2) & (np.abs(rel[:, 1]) < size[1] / 2)
        xyz[inside, 2] = rng.uniform(-height, -height + size[2], inside.sum())
    xyz += rng.normal(0, 0.01, xyz.shape)
    return np.concatenate([xyz, rng.random((len(xyz), 1))], axis=1).astype(np.float32)


def voxels(points: np.ndarray, voxel: float, channels: int, seed: int = 0):
    idx = np.floor((points[:, :3] - points[:, :3].min(axis=0)) / voxel).astype(np.int64)
    coords = np.unique(np.concatenate([np.zeros((len(idx), 1), np.int64), idx], axis=1), axis=0).astype(np.int32)
    feats = np.random.default_rng(seed).standard_normal((len(coords), channels)).astype(np.float32)
    return feats, coords


LAYERS = [  # name, cin, cout, attrs
    ("subm3 16->16", 16, 16, dict(kernel_size=[3, 3, 3], subm=1)),
    ("subm3 32->32", 32, 32, dict(kernel_size=[3, 3, 3], subm=1)),
    ("down2 s2 16->32", 16, 32, dict(kernel_size=[2, 2, 2], stride=[2, 2, 2])),
    ("down3 s2 32->64", 32, 64, dict(kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1])),
]


def _edgec_layer(cin, cout, attrs, dataflow):
    from onnx import TensorProto, helper, numpy_helper

    import edgec

    w = np.random.default_rng(1).standard_normal((*attrs["kernel_size"], cin, cout)).astype(np.float32) * 0.1
    node = helper.make_node("SparseConv3d", ["feats", "coords", "w"], ["out", "out_coords"], domain="edgec",
                            dataflow=dataflow, **attrs)
    graph = helper.make_graph([node], "layer", [
        helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["n", cin]),
        helper.make_tensor_value_info("coords", TensorProto.INT32, ["n", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["m", cout]),
         helper.make_tensor_value_info("out_coords", TensorProto.INT32, ["m", 4])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgec", 1)])
    model.ir_version = 10
    return edgec.compile(model, target="host"), w


def _spconv_layer(cin, cout, attrs, w):
    import spconv.pytorch as spconv
    import torch

    k = attrs["kernel_size"]
    if attrs.get("subm"):
        m = spconv.SubMConv3d(cin, cout, k, padding=[x // 2 for x in k], bias=False)
    else:
        m = spconv.SparseConv3d(cin, cout, k, stride=attrs["stride"], padding=attrs.get("padding", 0), bias=False)
    m.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(4, 0, 1, 2, 3)))
    return m


UNET = [  # name, cin, cout, attrs, input, indice key (spconv)
    ("s0", 4, 16, dict(kernel_size=[3, 3, 3], subm=1), "feats", "s0"),
    ("d0", 16, 32, dict(kernel_size=[2, 2, 2], stride=[2, 2, 2]), "s0", "d0"),
    ("s1", 32, 32, dict(kernel_size=[3, 3, 3], subm=1), "d0", "s1"),
    ("d1", 32, 64, dict(kernel_size=[2, 2, 2], stride=[2, 2, 2]), "s1", "d1"),
    ("s2", 64, 64, dict(kernel_size=[3, 3, 3], subm=1), "d1", "s2"),
    ("u1", 64, 32, dict(kernel_size=[2, 2, 2], stride=[2, 2, 2], inverse=1), "s2", "d1"),
    ("u0", 32, 16, dict(kernel_size=[2, 2, 2], stride=[2, 2, 2], inverse=1), "u1", "d0"),
]


def _unet_edgec(weights):
    from onnx import TensorProto, helper, numpy_helper

    import edgec

    coords = {"feats": "coords"}
    nodes = []
    for name, _cin, _cout, attrs, src, key in UNET:
        inputs = [src, coords[src], f"w_{name}"]
        if attrs.get("inverse"):
            # the coordinates the paired strided conv started from
            inputs += ["", coords[next(s for n, _a, _b, _c, s, _k in UNET if n == key)]]
        nodes.append(helper.make_node("SparseConv3d", inputs, [name, f"{name}_c"], name, domain="edgec",
                                      activation="ReLU", **attrs))
        coords[name] = inputs[-1] if attrs.get("inverse") else (coords[src] if attrs.get("subm") else f"{name}_c")
    graph = helper.make_graph(nodes, "unet", [
        helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["n", 4]),
        helper.make_tensor_value_info("coords", TensorProto.INT32, ["n", 4])],
        [helper.make_tensor_value_info("u0", TensorProto.FLOAT, ["n", 16])],
        initializer=[numpy_helper.from_array(w, f"w_{k}") for k, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgec", 1)])
    model.ir_version = 10
    return edgec.compile(model, target="host")


def _unet_spconv(weights):
    import spconv.pytorch as spconv
    import torch

    layers = {}
    for name, cin, cout, attrs, _src, key in UNET:
        k = attrs["kernel_size"]
        if attrs.get("subm"):
            m = spconv.SubMConv3d(cin, cout, k, padding=1, bias=False, indice_key=key)
        elif attrs.get("inverse"):
            m = spconv.SparseInverseConv3d(cin, cout, k, bias=False, indice_key=key)
        else:
            m = spconv.SparseConv3d(cin, cout, k, stride=attrs["stride"], bias=False, indice_key=key)
        m.weight.data = torch.from_numpy(np.ascontiguousarray(weights[name].transpose(4, 0, 1, 2, 3)))
        layers[name] = m

    def forward(x):
        out = {"feats": x}
        for name, *_rest, src, _key in UNET:
            y = layers[name](out[src])
            out[name] = y.replace_feature(torch.relu(y.features))
        return out["u0"]

    return forward


def _end_to_end(scan, voxel, runs):
    import spconv.pytorch as spconv
    import torch

    feats, coords = voxels(scan, voxel, 4)
    shape = (coords[:, 1:].max(axis=0) + 4).tolist()
    rng = np.random.default_rng(3)
    weights = {name: (rng.standard_normal((*a["kernel_size"], cin, cout)) * 0.2).astype(np.float32)
               for name, cin, cout, a, _s, _k in UNET}
    row = {"layer": "MinkUNet-style e2e", "voxels": len(coords)}
    for flow in ("implicit_gemm", "gather_scatter", None):
        from edgec.passes.sparse_conv.ops import dataflow_choices

        with dataflow_choices(force=flow):
            art = _unet_edgec(weights)
        row[(flow or "auto") + "_ms"] = _time(lambda: art.run({"feats": feats, "coords": coords}), runs)
    forward = _unet_spconv(weights)
    tf, tc = torch.from_numpy(feats), torch.from_numpy(coords)

    def run_spconv():
        with torch.no_grad():
            forward(spconv.SparseConvTensor(tf, tc, shape, 1))

    row["spconv_ms"] = _time(run_spconv, runs)
    best = min(row["implicit_gemm_ms"], row["gather_scatter_ms"], row["auto_ms"])
    row["ratio_spconv_over_edgec"] = row["spconv_ms"] / best
    return row


def _example_networks(scan, runs):
    import os
    import sys

    import torch

    import edgec

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    from sparse_models import CenterPointBackbone, MinkUNet, randomize

    points = scan.astype(np.float32)
    for name, model in (("MinkUNet (example)", randomize(MinkUNet())),
                        ("CenterPoint (ex.)", randomize(CenterPointBackbone()))):
        art = edgec.compile(model, "host", inputs={"points": (("P", 4), "float32")})
        tp = torch.from_numpy(points)
        with torch.no_grad():
            voxels = model.voxelize(tp).feats.shape[0]

            def eager():
                model(tp)

            pytorch_ms = _time(eager, max(1, runs // 2))
        edgec_ms = _time(lambda: art.run({"points": points}), runs)
        yield {"layer": name, "voxels": int(voxels), "edgec_ms": edgec_ms, "pytorch_ms": pytorch_ms,
               "ratio_pytorch_over_edgec": pytorch_ms / edgec_ms}


def _time(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


@click.command()
@click.option("--points", default=100_000, show_default=True)
@click.option("--voxel", default=0.05, show_default=True)
@click.option("--runs", default=5, show_default=True)
@click.option("--threads", default=1, show_default=True, help="edgec CPU threads (spconv always runs 1)")
@click.option("--examples", is_flag=True, help="Also time the full example networks against eager PyTorch.")
@click.option("--json", "as_json", is_flag=True)
def main(points, voxel, runs, threads, examples, as_json):
    from edgec.bench_util import set_threads

    set_threads(threads)
    import spconv.pytorch as spconv
    import torch

    torch.set_num_threads(1)  # spconv's CPU path races with more threads
    scan = synthetic_scan(points)
    results = []
    for name, cin, cout, attrs in LAYERS:
        feats, coords = voxels(scan, voxel, cin)
        shape = (coords[:, 1:].max(axis=0) + 1).tolist()
        row = {"layer": name, "voxels": len(coords)}
        for flow in ("implicit_gemm", "gather_scatter"):
            art, w = _edgec_layer(cin, cout, attrs, flow)
            row[flow + "_ms"] = _time(lambda: art.run({"feats": feats, "coords": coords}), runs)
        layer = _spconv_layer(cin, cout, attrs, w)
        tf, tc = torch.from_numpy(feats), torch.from_numpy(coords)

        def run_spconv():
            with torch.no_grad():
                layer(spconv.SparseConvTensor(tf, tc, shape, 1))

        row["spconv_ms"] = _time(run_spconv, runs)
        best = min(row["implicit_gemm_ms"], row["gather_scatter_ms"])
        row["ratio_spconv_over_edgec"] = row["spconv_ms"] / best
        results.append(row)
        if not as_json:
            print(f"{name:18s} N={len(coords):6d}  implicit {row['implicit_gemm_ms']:8.2f} ms  gather-scatter "
                  f"{row['gather_scatter_ms']:8.2f} ms  spconv {row['spconv_ms']:8.2f} ms  "
                  f"speedup {row['ratio_spconv_over_edgec']:.2f}x", flush=True)
    row = _end_to_end(scan, voxel, runs)
    results.append(row)
    if not as_json:
        print(f"{row['layer']:18s} N={row['voxels']:6d}  implicit {row['implicit_gemm_ms']:8.2f} ms  gather-scatter "
              f"{row['gather_scatter_ms']:8.2f} ms  auto {row['auto_ms']:8.2f} ms  spconv {row['spconv_ms']:8.2f} ms  "
              f"speedup {row['ratio_spconv_over_edgec']:.2f}x", flush=True)
    if examples:
        for row in _example_networks(scan, runs):
            results.append(row)
            if not as_json:
                print(f"{row['layer']:18s} N={row['voxels']:6d}  edgec {row['edgec_ms']:8.2f} ms  PyTorch eager "
                      f"{row['pytorch_ms']:8.2f} ms  speedup {row['ratio_pytorch_over_edgec']:.2f}x", flush=True)
    if as_json:
        print(json.dumps({"threads": threads, "points": points, "voxel": voxel, "layers": results}, indent=1))


if __name__ == "__main__":
    main()

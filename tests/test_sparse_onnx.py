"""NVIDIA libspconv-style ONNX graphs: rewritten to edgec ops, compiled, checked against spconv."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError

SHAPE = [10, 12, 14]  # (z, y, x), as libspconv's input_spatial_shape
DOWN = [5, 6, 7]  # output extent of the k3 s2 p1 conv
CIN, C = 4, 6


def _node(inputs, output, name, **attrs):
    base = dict(ndim=3, in_channels=0, out_channels=0, output_padding=[0, 0, 0], transposed=0, inverse=0,
                dilation=[1, 1, 1], activation="None")
    base.update(attrs)
    return helper.make_node("SparseConvolution", inputs, [output], name, **base)


def _graph(weights, batch):
    """subm(+ReLU) -> strided -> Relu -> subm, residual Add -> inverse; the strided branch is
    also scattered dense and reshaped to BEV with libspconv's dims-attribute Transpose/Reshape."""
    k3 = [3, 3, 3]
    nodes = [
        _node(["0", "w0", "b0"], "1", "conv0", kernel_size=k3, stride=[1, 1, 1], padding=[1, 1, 1], subm=1,
              rulebook="subm1", activation="ReLU", input_spatial_shape=SHAPE, output_spatial_shape=SHAPE),
        _node(["1", "w1"], "2", "conv1", kernel_size=k3, stride=[2, 2, 2], padding=[1, 1, 1], subm=0,
              rulebook="spconv2", input_spatial_shape=SHAPE, output_spatial_shape=DOWN),
        helper.make_node("Relu", ["2"], ["3"], "relu1"),
        _node(["3", "w2"], "4", "conv2", kernel_size=k3, stride=[1, 1, 1], padding=[1, 1, 1], subm=1,
              rulebook="subm2", input_spatial_shape=DOWN, output_spatial_shape=DOWN),
        helper.make_node("Add", ["4", "3"], ["5"], "add1"),
        _node(["5", "w3", "b3"], "6", "conv3", kernel_size=k3, stride=[2, 2, 2], padding=[1, 1, 1], subm=0,
              inverse=1, rulebook="spconv2", input_spatial_shape=DOWN, output_spatial_shape=SHAPE),
        helper.make_node("ScatterDense", ["5"], ["7"], "scatter", input_spatial_shape=DOWN, format="xyz",
                         output_shape=[batch, C, *DOWN]),
        helper.make_node("Transpose", ["7"], ["8"], "transpose", dims=[0, 1, 4, 2, 3]),
        helper.make_node("Reshape", ["8"], ["9"], "reshape", dims=[batch, C * DOWN[2], DOWN[0], DOWN[1]]),
    ]
    graph = helper.make_graph(
        nodes, "scn", [helper.make_tensor_value_info("0", TensorProto.FLOAT, [1000, CIN])],
        [helper.make_tensor_value_info("6", TensorProto.FLOAT, [1000, C]),
         helper.make_tensor_value_info("9", TensorProto.FLOAT, [batch, C * DOWN[2], DOWN[0], DOWN[1]])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx", 11)], producer_name="pytorch")
    model.ir_version = 10
    return model


def _weights(rng):
    def w(cin, cout):  # libspconv layout [Cout, kD, kH, kW, Cin]
        return (rng.standard_normal((cout, 3, 3, 3, cin)) * 0.3).astype(np.float32)

    return {"w0": w(CIN, C), "b0": rng.standard_normal(C).astype(np.float32), "w1": w(C, C), "w2": w(C, C),
            "w3": w(C, C), "b3": rng.standard_normal(C).astype(np.float32)}


def _spconv_reference(weights, feats, coords, batch):
    import spconv.pytorch as spconv  # a dev dependency: the independent reference, never skipped
    import torch
    torch.set_num_threads(1)  # spconv's CPU path races with more threads

    def load(module, w, b=None):
        module.weight.data = torch.from_numpy(weights[w])
        if b is not None:
            module.bias.data = torch.from_numpy(weights[b])
        return module

    conv0 = load(spconv.SubMConv3d(CIN, C, 3, padding=1, bias=True, indice_key="subm1"), "w0", "b0")
    conv1 = load(spconv.SparseConv3d(C, C, 3, stride=2, padding=1, bias=False, indice_key="spconv2"), "w1")
    conv2 = load(spconv.SubMConv3d(C, C, 3, padding=1, bias=False, indice_key="subm2"), "w2")
    conv3 = load(spconv.SparseInverseConv3d(C, C, 3, bias=True, indice_key="spconv2"), "w3", "b3")
    with torch.no_grad():
        x = spconv.SparseConvTensor(torch.from_numpy(feats), torch.from_numpy(coords), SHAPE, batch)
        x1 = conv0(x)
        x1 = x1.replace_feature(torch.relu(x1.features))
        x3 = conv1(x1)
        x3 = x3.replace_feature(torch.relu(x3.features))
        x4 = conv2(x3)
        x5 = x4.replace_feature(x4.features + x3.features)
        x6 = conv3(x5)
        dense = x5.dense().permute(0, 1, 4, 2, 3).reshape(batch, C * DOWN[2], DOWN[0], DOWN[1])
        # rows of x6 follow its indices; put them in the order of the input coordinates
        rows = {tuple(r): i for i, r in enumerate(x6.indices.numpy().tolist())}
        order = [rows[tuple(r)] for r in coords.tolist()]
        return x6.features.numpy()[order], dense.numpy()


def _scan(rng, batch, n):
    c = np.stack([rng.integers(0, batch, n), rng.integers(0, SHAPE[0], n), rng.integers(0, SHAPE[1], n),
                  rng.integers(0, SHAPE[2], n)], axis=1)
    c = np.unique(c, axis=0).astype(np.int32)
    rng.shuffle(c)
    return c


def test_libspconv_graph_matches_spconv():
    rng = np.random.default_rng(11)
    batch = 2
    weights = _weights(rng)
    art = edgec.compile(_graph(weights, batch), target="host")
    names = [i["name"] for i in art.manifest["inputs"]]
    assert names == ["0", "coords"]
    for n in (500, 120):  # N is dynamic
        coords = _scan(rng, batch, n)
        feats = rng.standard_normal((len(coords), CIN)).astype(np.float32)
        got = art.run({"0": feats, "coords": coords})
        want_sparse, want_dense = _spconv_reference(weights, feats, coords, batch)
        np.testing.assert_allclose(got["6"], want_sparse, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(got["9"], want_dense, rtol=1e-3, atol=1e-3)


def test_libspconv_rewrite_shares_rulebooks():
    from edgec.frontend.onnx_ops.libspconv import rewrite_libspconv

    model = rewrite_libspconv(_graph(_weights(np.random.default_rng(0)), 1))
    onnx.checker.check_model(model)
    convs = [n for n in model.graph.node if n.op_type == "SparseConv3d"]
    assert [n.domain for n in convs] == ["edgec"] * 4
    inverse = convs[3]
    assert inverse.input[4] == "coords"  # the strided conv's input coordinates, by rulebook
    assert list(inverse.input[:2]) == ["5", "2__coords"]


@pytest.mark.parametrize("change, message", [
    ({"transposed": 1}, "transposed"),
    ({"rulebook": "nowhere"}, "rulebook"),
    ({"ndim": 2}, "ndim"),
])
def test_libspconv_refusals(change, message):
    model = _graph(_weights(np.random.default_rng(0)), 1)
    node = next(n for n in model.graph.node if n.name == "conv3")
    for key, value in change.items():
        for a in node.attribute:
            if a.name == key:
                node.attribute.remove(a)
                break
        node.attribute.append(helper.make_attribute(key, value))
    with pytest.raises(EdgecError, match=message):
        edgec.compile(model, target="host")

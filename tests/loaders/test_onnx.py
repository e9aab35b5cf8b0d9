"""ONNX loader on synthetic models, one per supported operator family, checked against
onnxruntime at 1e-6; and the refusals (unsupported op, bad attributes, corrupt files)."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.errors import ModelLoadError, UnsupportedOperatorError
from nnresilience.loaders import load_network
from nnresilience.loaders.onnx import SUPPORTED_OPS, load_onnx, onnxruntime_forward


def _check(ox, tmp_path, nodes, input_shape, inits, n_points=6, seed=0, prob=False):
    path = tmp_path / "m.onnx"
    ox.make_model(nodes, input_shape, inits, path=path)
    net = load_onnx(path)
    rng = np.random.default_rng(seed)
    x = (rng.integers(-16, 17, size=(n_points, net.n_inputs)) / 16).astype(np.float64)
    ref = onnxruntime_forward(net, x)
    got = net.probabilities(x) if prob else net.forward(x)
    assert ref.shape == got.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    return net


def N(ox, op, ins, outs, name=None, **attrs):
    return ox.helper.make_node(op, ins, outs, name=name or f"{op}_{outs[0]}", **attrs)


def test_conv_padding_stride_relu(ox, tmp_path):
    rng = np.random.default_rng(1)
    inits = [ox.init("w", ox.dyadic(rng, (3, 2, 3, 3))), ox.init("b", ox.dyadic(rng, (3,)))]
    nodes = [N(ox, "Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             N(ox, "Relu", ["c"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 2, 7, 7], inits)
    assert [layer.kind for layer in net.layers] == ["affine", "relu"]
    assert net.layers[0].is_sparse and net.n_outputs == 3 * 4 * 4


def test_conv_groups_dilation_asymmetric_pads(ox, tmp_path):
    rng = np.random.default_rng(2)
    inits = [ox.init("w", ox.dyadic(rng, (4, 2, 3, 3)))]
    nodes = [N(ox, "Conv", ["x", "w"], ["y"], group=2, dilations=[2, 2], pads=[2, 1, 0, 1])]
    _check(ox, tmp_path, nodes, [1, 4, 8, 8], inits)


def test_conv_auto_pad_same(ox, tmp_path):
    rng = np.random.default_rng(3)
    inits = [ox.init("w", ox.dyadic(rng, (2, 1, 3, 2)))]
    nodes = [N(ox, "Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])]
    _check(ox, tmp_path, nodes, [1, 1, 6, 5], inits)


def test_maxpool_with_padding_after_conv(ox, tmp_path):
    rng = np.random.default_rng(4)
    inits = [ox.init("w", ox.dyadic(rng, (2, 2, 3, 3))), ox.init("b", ox.dyadic(rng, (2,)))]
    nodes = [N(ox, "Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             N(ox, "Relu", ["c"], ["r"]),
             N(ox, "MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])]
    net = _check(ox, tmp_path, nodes, [1, 2, 7, 7], inits)
    assert net.layers[-1].kind == "maxpool"


def test_maxpool_ceil_mode_dilation(ox, tmp_path):
    nodes = [N(ox, "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)]
    _check(ox, tmp_path, nodes, [1, 2, 5, 5], [])
    nodes = [N(ox, "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])]
    _check(ox, tmp_path, nodes, [1, 1, 6, 6], [])


@pytest.mark.parametrize("include", [0, 1])
def test_average_pool_count_include_pad(ox, tmp_path, include):
    nodes = [N(ox, "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1], count_include_pad=include)]
    _check(ox, tmp_path, nodes, [1, 2, 6, 7], [])


def test_global_average_pool_flatten_gemm(ox, tmp_path):
    rng = np.random.default_rng(5)
    inits = [ox.init("B", ox.dyadic(rng, (4, 3))), ox.init("C", ox.dyadic(rng, (4,)))]
    nodes = [N(ox, "GlobalAveragePool", ["x"], ["g"]), N(ox, "Flatten", ["g"], ["f"]),
             N(ox, "Gemm", ["f", "B", "C"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    _check(ox, tmp_path, nodes, [1, 3, 4, 4], inits)


def test_batchnorm_folded(ox, tmp_path):
    rng = np.random.default_rng(6)
    inits = [ox.init("w", ox.dyadic(rng, (3, 2, 2, 2))),
             ox.init("s", ox.dyadic(rng, (3,))), ox.init("bb", ox.dyadic(rng, (3,))),
             ox.init("m", ox.dyadic(rng, (3,))),
             ox.init("v", np.abs(ox.dyadic(rng, (3,))) + 0.5)]
    nodes = [N(ox, "Conv", ["x", "w"], ["c"]),
             N(ox, "BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
             N(ox, "Relu", ["n"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 2, 4, 4], inits)
    assert [layer.kind for layer in net.layers] == ["affine", "relu"]   # BN merged into conv


def test_transpose_reshape_composed(ox, tmp_path):
    rng = np.random.default_rng(7)
    inits = [ox.init("B", ox.dyadic(rng, (5, 24))), ox.init("shape", np.array([1, -1]))]
    nodes = [N(ox, "Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             N(ox, "Reshape", ["t", "shape"], ["r"]),
             N(ox, "Gemm", ["r", "B"], ["g"], transB=1),
             N(ox, "Relu", ["g"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 2, 3, 4], inits)
    # The permutation is folded into the Gemm weight: one affine, one relu.
    assert [layer.kind for layer in net.layers] == ["affine", "relu"]


def test_transpose_after_relu_before_maxpool(ox, tmp_path):
    nodes = [N(ox, "Relu", ["x"], ["r"]),
             N(ox, "Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),
             N(ox, "MaxPool", ["t"], ["y"], kernel_shape=[2, 2], strides=[1, 2])]
    net = _check(ox, tmp_path, nodes, [1, 2, 4, 6], [])
    assert [layer.kind for layer in net.layers] == ["relu", "maxpool"]


def test_activations_and_elementwise_constants(ox, tmp_path):
    rng = np.random.default_rng(8)
    inits = [ox.init("W", ox.dyadic(rng, (6, 5))), ox.init("a", ox.dyadic(rng, (5,))),
             ox.init("m", ox.dyadic(rng, (1, 5))), ox.init("d", np.full((5,), 4.0)),
             ox.init("s", ox.dyadic(rng, (5,))), ox.init("W2", ox.dyadic(rng, (5, 4)))]
    nodes = [N(ox, "MatMul", ["x", "W"], ["h"]), N(ox, "Add", ["h", "a"], ["h1"]),
             N(ox, "LeakyRelu", ["h1"], ["l"], alpha=0.25), N(ox, "Mul", ["l", "m"], ["l2"]),
             N(ox, "Atan", ["l2"], ["t"]), N(ox, "Div", ["t", "d"], ["t2"]),
             N(ox, "Sub", ["s", "t2"], ["t3"]), N(ox, "Tanh", ["t3"], ["u"]),
             N(ox, "Neg", ["u"], ["u2"]), N(ox, "Sigmoid", ["u2"], ["v"]),
             N(ox, "MatMul", ["v", "W2"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 6], inits)
    kinds = [layer.kind for layer in net.layers]
    assert kinds == ["affine", "leaky_relu", "affine", "arctan", "affine", "tanh", "affine",
                     "sigmoid", "affine"]
    assert net.layers[1].slope == 0.25


def test_softmax_last_sets_flag(ox, tmp_path):
    rng = np.random.default_rng(9)
    inits = [ox.init("B", ox.dyadic(rng, (4, 3)))]
    nodes = [N(ox, "Gemm", ["x", "B"], ["g"]), N(ox, "Softmax", ["g"], ["y"], axis=-1)]
    net = _check(ox, tmp_path, nodes, [1, 4], inits, prob=True)
    assert net.softmax and net.layers[-1].kind == "affine"


def test_gemm_transposed_data_and_left_matmul(ox, tmp_path):
    rng = np.random.default_rng(10)
    inits = [ox.init("B", ox.dyadic(rng, (5, 3))), ox.init("C", ox.dyadic(rng, (3,)))]
    nodes = [N(ox, "Gemm", ["x", "B", "C"], ["y"], transA=1, alpha=0.5, beta=2.0)]
    _check(ox, tmp_path, nodes, [5, 1], inits)
    inits = [ox.init("A", ox.dyadic(rng, (3, 5)))]
    nodes = [N(ox, "Gemm", ["A", "x"], ["y"])]
    _check(ox, tmp_path, nodes, [5, 2], inits)
    inits = [ox.init("A", ox.dyadic(rng, (3, 4)))]
    nodes = [N(ox, "MatMul", ["A", "x"], ["y"])]
    _check(ox, tmp_path, nodes, [2, 4, 2], inits)


def test_shape_ops_identity_dropout_constant_folding(ox, tmp_path):
    h = ox.helper
    rng = np.random.default_rng(11)
    inits = [ox.init("ax0", np.array([0], dtype=np.int64)),
             ox.init("minus1", np.array([-1], dtype=np.int64)),
             ox.init("zero", np.array(0, dtype=np.int64)),
             ox.init("W", ox.dyadic(rng, (12, 2)))]
    shift = h.make_tensor("shift", ox.TensorProto.FLOAT, [12],
                          (np.arange(12) / 8).astype(np.float32).tolist())
    nodes = [N(ox, "Identity", ["x"], ["i"]), N(ox, "Dropout", ["i"], ["d"]),
             N(ox, "Squeeze", ["d", "ax0"], ["s"]),           # (3, 4)
             N(ox, "Unsqueeze", ["s", "ax0"], ["u"]),         # (1, 3, 4)
             N(ox, "Shape", ["u"], ["shp"]),
             N(ox, "Gather", ["shp", "zero"], ["n0"], axis=0),
             N(ox, "Unsqueeze", ["n0", "ax0"], ["n0u"]),
             N(ox, "Concat", ["n0u", "minus1"], ["tgt"], axis=0),
             N(ox, "Reshape", ["u", "tgt"], ["r"]),           # (1, 12)
             h.make_node("Constant", [], ["k"], value=shift, name="const_shift"),
             N(ox, "Add", ["r", "k"], ["a"]), N(ox, "MatMul", ["a", "W"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 3, 4], inits)
    assert len(net.layers) == 1


def test_acas_like_structure_merges(ox, tmp_path):
    rng = np.random.default_rng(12)
    inits = [ox.init("avg", np.zeros((1, 1, 1, 5))), ox.init("W1", ox.dyadic(rng, (5, 7))),
             ox.init("b1", ox.dyadic(rng, (7,))), ox.init("W2", ox.dyadic(rng, (7, 5))),
             ox.init("b2", ox.dyadic(rng, (5,)))]
    nodes = [N(ox, "Sub", ["x", "avg"], ["s"]), N(ox, "Flatten", ["s"], ["f"]),
             N(ox, "MatMul", ["f", "W1"], ["m1"]), N(ox, "Add", ["m1", "b1"], ["a1"]),
             N(ox, "Relu", ["a1"], ["r1"]), N(ox, "MatMul", ["r1", "W2"], ["m2"]),
             N(ox, "Add", ["m2", "b2"], ["y"])]
    net = _check(ox, tmp_path, nodes, [1, 1, 1, 5], inits)
    assert [layer.kind for layer in net.layers] == ["affine", "relu", "affine"]
    assert net.input_shape == (1, 1, 5) and net.onnx_input_shape == (1, 1, 1, 5)
    assert net.source_format == "onnx" and net.onnx_input_name == "x"


def test_dynamic_batch_dimension(ox, tmp_path):
    rng = np.random.default_rng(13)
    inits = [ox.init("B", ox.dyadic(rng, (3, 4)))]
    path = tmp_path / "dyn.onnx"
    ox.make_model([N(ox, "MatMul", ["x", "B"], ["y"])], ["N", 3], inits, path=path)
    net = load_network(path)
    x = rng.integers(-8, 9, size=(5, 3)) / 8
    np.testing.assert_allclose(net.forward(x), onnxruntime_forward(net, x), atol=1e-6)
    assert net.input_shape == (3,)


# ---------------------------------------------------------------- refusals
def test_unsupported_op_names_op_and_node(ox, tmp_path):
    path = tmp_path / "cos.onnx"
    ox.make_model([N(ox, "Cos", ["x"], ["y"], name="my_cos")], [1, 3], [], path=path)
    with pytest.raises(UnsupportedOperatorError) as ei:
        load_network(path)
    err = ei.value
    assert err.op_type == "Cos" and err.node_name == "my_cos"
    assert "Cos" in str(err) and "my_cos" in str(err) and "Relu" in str(err)
    assert "\n" not in str(err)
    assert set(err.supported) == set(SUPPORTED_OPS)


def test_softmax_not_last_is_refused(ox, tmp_path):
    path = tmp_path / "sm.onnx"
    ox.make_model([N(ox, "Softmax", ["x"], ["s"]), N(ox, "Relu", ["s"], ["y"])], [1, 3], [],
                  path=path)
    with pytest.raises(UnsupportedOperatorError, match="final operator"):
        load_network(path)


def test_leaky_relu_alpha_out_of_range(ox, tmp_path):
    path = tmp_path / "lk.onnx"
    ox.make_model([N(ox, "LeakyRelu", ["x"], ["y"], alpha=1.5)], [1, 3], [], path=path)
    with pytest.raises(UnsupportedOperatorError, match="alpha"):
        load_network(path)


def test_branching_graph_refused(ox, tmp_path):
    path = tmp_path / "res.onnx"
    ox.make_model([N(ox, "Relu", ["x"], ["r"]), N(ox, "Add", ["r", "x"], ["y"])], [1, 3], [],
                  path=path)
    with pytest.raises(UnsupportedOperatorError):
        load_network(path)


def test_two_data_inputs_refused(ox, tmp_path):
    path = tmp_path / "two.onnx"
    ox.make_model([N(ox, "Relu", ["x"], ["y"])], [1, 3], [], path=path,
                  extra_inputs=[("z", [1, 3])])
    with pytest.raises(ModelLoadError, match="data inputs"):
        load_network(path)


def test_truncated_and_missing_files(ox, tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "full.onnx"
    ox.make_model([N(ox, "MatMul", ["x", "B"], ["y"])], [1, 30],
                  [ox.init("B", ox.dyadic(rng, (30, 30)))], path=path)
    data = path.read_bytes()
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="trunc.onnx"):
        load_network(bad)
    with pytest.raises(ModelLoadError, match="no such"):
        load_network(tmp_path / "absent.onnx")
    with pytest.raises(ModelLoadError, match="unknown model format"):
        load_network(tmp_path / "model.h5")


def test_onnxruntime_forward_none_for_other_formats():
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network

    net = Network([Affine(np.eye(2), np.zeros(2))])
    assert onnxruntime_forward(net, np.zeros(2)) is None

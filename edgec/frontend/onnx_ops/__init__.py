"""Converters for ONNX ops that stock TVM lacks or gets wrong; each module registers its own."""

from edgec.frontend.onnx_ops import compare, gru, lstm  # noqa: F401,E402
from edgec.frontend.onnx_ops import layer_norm  # noqa: F401
from edgec.frontend.onnx_ops import attention  # noqa: F401
from edgec.frontend.onnx_ops import lp_norm  # noqa: F401
from edgec.frontend.onnx_ops import resize  # noqa: F401
from edgec.frontend.onnx_ops import rms_norm  # noqa: F401
from edgec.frontend.onnx_ops import celu  # noqa: F401
from edgec.frontend.onnx_ops import loss  # noqa: F401
from edgec.frontend.onnx_ops import dropout  # noqa: F401
from edgec.frontend.onnx_ops import int4  # noqa: F401
from edgec.frontend.onnx_ops import clip  # noqa: F401
from edgec.frontend.onnx_ops import gather  # noqa: F401
from edgec.frontend.onnx_ops import sparse  # noqa: F401

"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (the latter is log-softmax + NLL).

Semantics follow the ONNX reference, including how ``mean`` divides: by the summed weights of
the non-ignored targets when weights or an ``ignore_index`` are in play, by the element count
otherwise (for NLL, an ``ignore_index`` of -1 without weights counts as "otherwise").
"""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register


def _reduction(attr) -> str:
    value = attr.get("reduction", b"mean")
    return value.decode() if isinstance(value, bytes) else value


def nll(bb, log_prob, target, weight, attr, count_ignored_in_mean: bool):
    dtype = str(log_prob.ty.dtype)
    ignore = attr.get("ignore_index")
    target = bb.normalize(relax.op.astype(target, "int64"))
    ignored = None
    safe = target
    if ignore is not None:
        ignored = bb.normalize(relax.op.equal(target, relax.const(ignore, "int64")))
        safe = bb.normalize(relax.op.where(ignored, relax.const(0, "int64"), target))
    picked = relax.op.gather_elements(log_prob, relax.op.expand_dims(safe, 1), axis=1)
    loss = bb.normalize(relax.op.negative(relax.op.squeeze(picked, [1])))
    weights = None
    if weight is not None:
        weights = relax.op.take(weight, safe, axis=0)
    elif ignored is not None and not count_ignored_in_mean:
        weights = relax.op.ones_like(loss)
    if weights is not None and ignored is not None:
        weights = relax.op.where(ignored, relax.const(0, dtype), weights)
    if weights is not None:
        weights = bb.normalize(weights)
        loss = bb.normalize(relax.op.multiply(loss, weights))
    elif ignored is not None:
        loss = bb.normalize(relax.op.where(ignored, relax.const(0, dtype), loss))
    reduction = _reduction(attr)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return relax.op.sum(loss)
    if weights is not None:
        return relax.op.divide(relax.op.sum(loss), relax.op.sum(weights))
    return relax.op.mean(loss)


@register("NegativeLogLikelihoodLoss")
class NegativeLogLikelihoodLoss(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        count_all = attr.get("ignore_index") == -1 and inputs[2] is None
        return nll(bb, inputs[0], inputs[1], inputs[2], attr, count_ignored_in_mean=count_all)


@register("SoftmaxCrossEntropyLoss")
class SoftmaxCrossEntropyLoss(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        log_prob = bb.normalize(relax.op.nn.log_softmax(inputs[0], axis=1))
        loss = bb.normalize(nll(bb, log_prob, inputs[1], inputs[2], attr, count_ignored_in_mean=False))
        return relax.Tuple([loss, log_prob])

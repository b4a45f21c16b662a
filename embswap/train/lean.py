"""Leaner activations for training through a frozen body on CPU: same numbers, less memory.

Step 2 back-propagates through the whole frozen body to reach the embeddings, so autograd keeps
each layer's activations until the backward pass. Two of them cost more than they need to on CPU,
where ``torch.dropout`` and the attention of ``scaled_dot_product_attention`` (its math path,
taken whenever attention dropout is on) keep float tensors that hold little information:

- dropout keeps its mask as a float32 tensor (4 bytes per element); here it keeps a bool (1 byte);
- attention keeps its probabilities twice (after softmax and after dropout, plus a float mask and
  copies of q and k); here it keeps q, k, v and a bool mask, and recomputes the probabilities
  (one ``q @ k^T`` and one softmax per layer) during the backward pass.

And with ``tied_weight`` (the word-embedding matrix, which the MLM output layer shares), the output
layer's weight gradient, a dense [vocabulary, hidden] matrix that autograd computes first and
holds through the whole backward pass, is computed last, from the small factors it is made of,
once the body's activations are gone.

Both draw their random masks exactly as torch does (``bernoulli_`` on the same generator, in the
same order) and compute the same operations, so losses and gradients equal the plain path's bit
for bit (``tests/reliability/test_perf_guards.py``). Anything else (GPUs, whose fused kernels are lean
already, autocast, causal or boolean masks, evaluation) goes through torch unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# The softmax torch's math attention uses (rows masked out entirely give zeros, not NaN); older
# torch versions lack it and keep their own attention.
_HAS_SAFE_SOFTMAX = hasattr(torch, "_safe_softmax")


def _dropout_noise(like: torch.Tensor, p: float) -> torch.Tensor:
    """torch's CPU dropout draws: Bernoulli(1 - p) in the input's dtype (then scaled by 1 / (1 - p))."""
    return torch.empty_like(like).bernoulli_(1 - p)


def _scaled(keep: torch.Tensor, dtype: torch.dtype, p: float) -> torch.Tensor:
    """The float noise ``_dropout_noise`` made, rebuilt from its bool mask."""
    return keep.to(dtype).div_(1 - p)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        noise = _dropout_noise(x, p)
        keep = noise.bool()
        ctx.save_for_backward(keep)
        ctx.p = p
        return x * noise.div_(1 - p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * _scaled(keep, grad.dtype, ctx.p), None


def _probabilities(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float | None) -> torch.Tensor:
    """softmax(q k^T * scale + mask), as torch's math attention computes it (q and k each scaled by its root)."""
    root = math.sqrt(scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))
    scores = torch.matmul(q * root, k.transpose(-2, -1) * root)
    if mask is not None:
        scores.add_(mask)
    return torch._safe_softmax(scores, -1)


class _Attention(torch.autograd.Function):
    """Dropout attention that keeps q, k, v and a bool mask, and recomputes the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, mask, p: float, scale: float | None):
        probs = _probabilities(q, k, mask, scale)
        noise = _dropout_noise(probs, p)
        keep = noise.bool()
        out = torch.matmul(probs * noise.div_(1 - p), v)
        ctx.save_for_backward(q, k, v, keep, mask)
        ctx.p, ctx.scale = p, scale
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, k, v, keep, mask = ctx.saved_tensors
        root = math.sqrt(ctx.scale if ctx.scale is not None else 1.0 / math.sqrt(q.shape[-1]))
        probs = _probabilities(q, k, mask, ctx.scale)
        noise = _scaled(keep, probs.dtype, ctx.p)
        grad_v = torch.matmul((probs * noise).transpose(-2, -1), grad)
        grad_probs = torch.matmul(grad, v.transpose(-2, -1)) * noise
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        grad_q = torch.matmul(grad_scores, k * root) * root
        grad_k = torch.matmul(grad_scores.transpose(-2, -1), q * root) * root
        return grad_q, grad_k, grad_v, None, None, None


class _Ticket(torch.autograd.Function):
    """The autograd edge through which the output layer's weight gradient reaches the matrix.

    Made before the forward pass, so its node has a lower sequence number than every node of the
    body: autograd runs it after them, and only then multiplies the factors the head left.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, factors: list) -> torch.Tensor:
        ctx.factors = factors
        return weight.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        if not ctx.factors:
            return None, None
        x, grad = ctx.factors.pop()
        return grad.t().mm(x), None  # what autograd computes for the weight of F.linear


class _OutputLayer(torch.autograd.Function):
    """F.linear(x, weight, bias) whose weight gradient is left to the ticket as (x, grad)."""

    @staticmethod
    def forward(ctx, x, ticket, weight, bias, factors: list):
        ctx.save_for_backward(x, weight)
        ctx.factors, ctx.has_bias = factors, bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        ctx.factors.append((x, grad))
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad.mm(weight), grad.new_empty(0), None, grad_bias, None


def _on_cpu_with_grad(*tensors: torch.Tensor) -> bool:
    return (
        torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)
        and any(t.requires_grad for t in tensors)
    )


def _lean_dropout(args, kwargs):
    """F.dropout's arguments when the lean version applies, else None."""
    names = ("input", "p", "training", "inplace")
    bound = dict(zip(names, args)) | kwargs
    x, p = bound["input"], bound.get("p", 0.5)
    if not bound.get("training", True) or bound.get("inplace", False) or not 0 < p < 1 or x.numel() == 0:
        return None
    return (x, p) if _on_cpu_with_grad(x) else None


def _lean_attention(args, kwargs):
    """F.scaled_dot_product_attention's arguments when the lean version applies, else None."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args)) | kwargs
    q, k, v, mask = bound["query"], bound["key"], bound["value"], bound.get("attn_mask")
    p, scale = bound.get("dropout_p", 0.0), bound.get("scale")
    if not 0 < p < 1 or bound.get("is_causal", False) or bound.get("enable_gqa", False) or not _HAS_SAFE_SOFTMAX:
        return None
    if scale is not None and not scale > 0:
        return None
    if q.dim() != 4 or k.shape[-3] != q.shape[-3] or (mask is not None and not mask.is_floating_point()):
        return None  # grouped heads and boolean masks: torch's own path
    if not _on_cpu_with_grad(q, k, v) or (mask is not None and (mask.requires_grad or mask.dtype != q.dtype)):
        return None
    return q, k, v, mask, p, scale


class lean_activations(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch's modes
    """Within ``with lean_activations(tied_weight):``, the forward pass keeps leaner activations.

    ``tied_weight``: the matrix both ends of a masked LM share; its first use as a 2-D ``F.linear``
    weight inside the block (the output layer) gets the deferred weight gradient. Affects only CPU
    float tensors that need gradients outside autocast; elsewhere it is a no-op.
    """

    def __init__(self, tied_weight: torch.Tensor | None = None):
        super().__init__()
        self.tied_weight = tied_weight
        self._ticket: torch.Tensor | None = None
        self._factors: list = []

    def __enter__(self):
        weight = self.tied_weight
        if weight is not None and _on_cpu_with_grad(weight):
            self._ticket = _Ticket.apply(weight, self._factors)  # before the body runs: see _Ticket
        return super().__enter__()

    def _output_layer(self, args, kwargs):
        bound = dict(zip(("input", "weight", "bias"), args)) | kwargs
        x, weight = bound["input"], bound["weight"]
        if self._ticket is None or weight is not self.tied_weight or x.dim() != 2 or not _on_cpu_with_grad(x, weight):
            return None
        ticket, self._ticket = self._ticket, None
        return _OutputLayer.apply(x, ticket, weight.detach(), bound.get("bias"), self._factors)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            out = self._output_layer(args, kwargs)
            if out is not None:
                return out
        elif func is F.dropout:
            lean = _lean_dropout(args, kwargs)
            if lean is not None:
                return _Dropout.apply(*lean)
        elif func is F.scaled_dot_product_attention:
            lean = _lean_attention(args, kwargs)
            if lean is not None:
                return _Attention.apply(*lean)
        return func(*args, **kwargs)

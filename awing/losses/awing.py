"""Adaptive Wing (AWing) loss and its weighted loss map (Wang, Bo & Fuxin, ICCV 2019; methods.md §1, §2).

Per pixel, with ground truth ``y`` in ``[0, 1]``, prediction ``ŷ``, ``Δ = |y - ŷ|`` and ``p = α - y``::

    AWing(y, ŷ) = ω · ln(1 + (Δ/ε)^p)      if Δ < θ
                  A · Δ - C                 otherwise
    A = ω · p · (θ/ε)^(p-1) / (ε · (1 + (θ/ε)^p))
    C = θ · A - ω · ln(1 + (θ/ε)^p)

with ``ω = 14, θ = 0.5, ε = 1, α = 2.1``. ``A`` and ``C`` make value and slope continuous at ``Δ = θ``. The log
branch divides by ``ε``: many public ports divide by ``ω`` there, which breaks that continuity (methods.md §1.4).

The loss map of methods.md §2 weights pixels near the foreground: ``W · M + 1`` with ``M`` the ground truth, grey
dilated over a 3 x 3 window and thresholded with a strict ``> 0.2`` (as the official ``generate_weight_map``).

Speed: float32 CPU inputs with no weight or one weight per heatmap go through a C kernel (:mod:`awing.losses.native`,
compiled on first use) that computes the loss, its gradient and the map in one vectorised pass. Everything else, and
every input when no C compiler is available, takes the eager torch path below, the reference the kernel is tested
against: a custom autograd function computes the loss and its gradient in one pass over memory, in chunks of
whole heatmaps that stay in the CPU cache, with the weight map built chunk by chunk; clamping ``Δ`` to ``θ`` folds
both branches into one formula (for ``Δ ≥ θ`` the clamped slope is ``A``). The gradient is stored during the
forward pass, already scaled, so the backward pass returns it (or multiplies it by the incoming gradient).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from awing.losses import native

REDUCTIONS = ("none", "mean", "sum")

# Elements per chunk and thread on the CPU (whole heatmaps): ten 256 KB temporaries per thread stay in the caches.
_CPU_CHUNK = 1 << 16
_DEVICE_CHUNK = 1 << 22


def validate_loss_inputs(pred: Tensor, target: Tensor, weight: Tensor | None, reduction: str) -> None:
    """Shared up-front checks of the loss functions: tensors, equal shapes, devices, broadcastable weight."""
    for name, value in (("pred", pred), ("target", target)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not pred.is_floating_point():
        raise TypeError(f"pred must be a floating-point tensor, got dtype {pred.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if target.device != pred.device:
        raise ValueError(f"target must be on pred's device {pred.device}, got {target.device}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if weight is None:
        return
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.device != pred.device:
        raise ValueError(f"weight must be on pred's device {pred.device}, got {weight.device}")
    try:
        broadcast = torch.broadcast_shapes(weight.shape, pred.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != pred.shape:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not broadcast to pred's shape {tuple(pred.shape)}"
        )


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` ("none", "mean" or "sum") to a per-element loss."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_awing_constants(omega: float, theta: float, epsilon: float, alpha: float) -> None:
    for name, value in (("omega", omega), ("theta", theta), ("epsilon", epsilon)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if not alpha > 2:
        raise ValueError(
            f"alpha must be > 2 so that the exponent alpha - y - 1 stays positive for every y in [0, 1] "
            f"(a smooth loss with zero slope at zero error, methods.md §1.2), got {alpha}"
        )


def _check_map_options(threshold: float, weight: float, kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    for name, value in (("threshold", threshold), ("weight", weight)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):  # a NaN threshold would silently switch the weight map off
            raise ValueError(f"{name} must be finite, got {value!r}")


def _check_target_range(low: float, high: float) -> None:
    if not (low >= 0.0 and high <= 1.0):
        raise ValueError(f"target values must lie in [0, 1], got min {low:.6g} and max {high:.6g}")


def _planes(shape: torch.Size) -> tuple[int, int, int]:
    """``(P, H, W)`` with ``H, W`` the last two dimensions (a 1-D or 0-D shape is one row)."""
    if len(shape) >= 2:
        height, width = shape[-2], shape[-1]
    else:
        height, width = 1, math.prod(shape)
    return math.prod(shape) // max(height * width, 1), height, width


class _Dilation:
    """``1.0 where the (2r+1)^2 grey dilation of target > threshold, else 0.0`` on fixed ``(P, H, W)`` buffers.

    Thresholding commutes with the max of the dilation, so the 0/1 mask is dilated, along W then along H: the max
    of the mask and its copies shifted by ``1..r`` pixels, through views, so that values outside the plane are
    ignored (max-pool "same" padding). The views are built once; a call costs a few ``torch.maximum`` calls.
    """

    def __init__(self, out: Tensor, scratch: Tensor, radius: int) -> None:
        self.out = self.result = out
        self.steps: list[tuple[Tensor, Tensor, Tensor]] = []  # (a, b, dst): dst = max(a, b)
        for dim in (2, 1) if radius else ():
            src, dst = self.result, (scratch if self.result is out else out)
            self.result, size = dst, src.shape[dim]
            if size == 1:
                self.steps.append((src, src, dst))  # a copy
                continue
            for k in range(1, min(radius, size - 1) + 1):
                head, tail = dst.narrow(dim, 0, size - k), dst.narrow(dim, k, size - k)
                src_head, src_tail = src.narrow(dim, 0, size - k), src.narrow(dim, k, size - k)
                if k == 1:  # dst = max(src, src shifted by one), the last line copied
                    last = src.narrow(dim, size - 1, 1)
                    self.steps += [(src_head, src_tail, head), (last, last, dst.narrow(dim, size - 1, 1))]
                else:
                    self.steps.append((head, src_tail, head))
                self.steps.append((tail, src_head, tail))

    def __call__(self, target: Tensor, threshold: float) -> Tensor:
        torch.gt(target, threshold, out=self.out)
        for a, b, dst in self.steps:
            torch.maximum(a, b, out=dst)
        return self.result


def loss_weight_map(target: Tensor, *, threshold: float = 0.2, weight: float = 10.0, kernel_size: int = 3) -> Tensor:
    """Loss weight map ``weight · M + 1`` of methods.md §2, built from the ground truth only.

    ``M = 1`` where the ``kernel_size x kernel_size`` grey dilation of ``target`` (a max-pool with stride 1 and
    "same" padding, equal to ``scipy.ndimage.grey_dilation``) is strictly greater than ``threshold``, else 0: the
    rule of the official ``generate_weight_map``. With the official 7 x 7 Gaussian targets every isolated
    landmark gets 61 pixels of weight ``weight + 1``.

    Args:
        target: ``(..., H, W)`` ground-truth heatmaps, e.g. ``B x C x H x W`` or ``C x H x W``.
        threshold: foreground threshold on the dilated target (strict ``>``).
        weight: ``W``, the extra weight of foreground pixels.
        kernel_size: odd side of the square dilation window.

    Returns:
        Tensor of ``target``'s shape, dtype and device; no gradient.

    >>> target = torch.zeros(1, 1, 5, 5)
    >>> target[0, 0, 2, 2] = 1.0
    >>> loss_weight_map(target)[0, 0]
    tensor([[ 1.,  1.,  1.,  1.,  1.],
            [ 1., 11., 11., 11.,  1.],
            [ 1., 11., 11., 11.,  1.],
            [ 1., 11., 11., 11.,  1.],
            [ 1.,  1.,  1.,  1.,  1.]])
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.ndim < 2 or not target.is_floating_point():
        raise ValueError(
            f"target must be a floating-point (..., H, W) tensor, got shape {tuple(target.shape)} "
            f"and dtype {target.dtype}"
        )
    _check_map_options(threshold, weight, kernel_size)
    if target.numel():
        _check_target_range(*(float(v) for v in torch.aminmax(target.detach())))
    planes = target.detach().reshape(_planes(target.shape))
    with torch.no_grad():
        mask = _Dilation(torch.empty_like(planes), torch.empty_like(planes), kernel_size // 2)(planes, threshold)
        return mask.mul_(weight).add_(1.0).view(target.shape)


def _awing_forward(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None,
    weight_map: tuple[float, float, int] | None,
    constants: tuple[float, float, float, float],
    reduction: str,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Loss and ``d loss / d pred`` (already scaled by the reduction and the weights) from one chunked pass.

    The work runs over ``(P, H, W)`` planes, a chunk of whole planes at a time (small enough for the CPU cache).
    With ``r = clamp(ŷ - y, ±θ) / ε``, ``a = |r|^(p-2)``, ``q = |r|^p = a · r²`` and ``c = ω · scale / ε²``:
    grad = c · w · p · a · clamp(ŷ - y, ±θ) / (1 + q), which is 0 at zero error and, through the clamp, ``A · sign``
    for ``Δ ≥ θ``; loss = scale · w · ω · ln(1 + q) + grad · (ŷ - y - clamp(ŷ - y, ±θ)) (the linear excess).
    ``r²`` gets the smallest normal number added so that ``ln`` stays finite at zero error; ``ln(2c)`` is added to
    the exponent, so ``exp`` returns ``2c · a`` and ``c · p · a = 2c · a · (1 + (p - 2) / 2)`` costs one multiply-add.
    """
    omega, theta, epsilon, alpha = constants
    shape, dtype, numel = pred.shape, pred.dtype, pred.numel()
    if numel == 0:
        empty = pred.new_full((), float("nan")) if reduction == "mean" else pred.new_zeros(())
        return (pred.new_empty(shape) if reduction == "none" else empty), torch.zeros_like(pred)
    num_planes, height, width = _planes(shape)
    plane = height * width
    p3 = pred.contiguous().view(num_planes, height, width)
    y3 = target.to(dtype).contiguous().view(num_planes, height, width)
    scale = 1.0 / numel if reduction == "mean" else 1.0
    if native.serves(pred, weight):
        plane_weight = None
        if weight is not None:  # one weight per plane (native.serves checked it), or a scalar
            plane_weight = weight.to(dtype).expand(*shape[:-2], 1, 1).reshape(num_planes).contiguous()
        loss, grad, low, high = native.awing_forward(
            p3, y3, plane_weight, constants, weight_map, scale, need_grad, elementwise=reduction == "none"
        )
        _check_target_range(low.item(), high.item())
        return loss.view(shape) if reduction == "none" else loss, None if grad is None else grad.view(shape)
    w3 = None if weight is None else weight.to(dtype).expand(shape).reshape(num_planes, height, width)
    c = omega * scale / epsilon**2

    # On the CPU each thread of an elementwise op gets _CPU_CHUNK elements; elsewhere chunks only bound the memory.
    chunk = _CPU_CHUNK * torch.get_num_threads() if pred.device.type == "cpu" else _DEVICE_CHUNK
    per_chunk = min(max(1, chunk // plane), num_planes)
    size = per_chunk * plane
    buffers = [pred.new_empty(size) for _ in range(5 if weight_map is None else 7)]  # d, r, x, s, z [, map x 2]
    buffers += [pred.new_full((size,), value) for value in (torch.finfo(dtype).tiny, 1.0, math.log(2 * c))]
    chunk_views = {}
    for planes in {per_chunk, num_planes % per_chunk or per_chunk}:
        views = [b[: planes * plane].view(planes, height, width) for b in buffers]
        dilation = None if weight_map is None else _Dilation(views[5], views[6], weight_map[2] // 2)
        chunk_views[planes] = (*views[:5], *views[-3:], dilation)
    half_alpha_m2 = torch.tensor((alpha - 2.0) / 2.0, dtype=dtype, device=pred.device)
    grad = torch.empty_like(p3) if need_grad else None
    out = torch.empty_like(p3) if reduction == "none" else None
    lows, highs, log_terms, excess_terms, clamp_terms = [], [], [], [], []

    for start in range(0, num_planes, per_chunk):
        stop = min(start + per_chunk, num_planes)
        d, r, x, s, z, tiny, ones, log_2c, dilation = chunk_views[stop - start]
        z = grad[start:stop] if need_grad else z
        yc = y3[start:stop]
        lows.append(torch.amin(yc))
        highs.append(torch.amax(yc))
        torch.sub(p3[start:stop], yc, out=d)
        torch.clamp(d, -theta, theta, out=r)
        torch.addcmul(tiny, r, r, value=1.0 / epsilon**2, out=x)  # (r/ε)² + tiny
        torch.log(x, out=z)
        torch.sub(half_alpha_m2, yc, alpha=0.5, out=s)  # (p - 2) / 2
        torch.addcmul(log_2c, z, s, out=z).exp_()  # 2c · a
        torch.addcmul(ones, x, z, value=0.5 / c, out=x)  # 1 + q
        z.mul_(r).addcmul_(z, s).div_(x)  # c · p · a · clamp(ŷ - y) / (1 + q)
        torch.log(x, out=s)  # ln(1 + q)
        if w3 is not None:
            z.mul_(w3[start:stop])
            s.mul_(w3[start:stop])
        if dilation is not None:  # times W · M + 1
            mask = dilation(yc, weight_map[0])
            z.addcmul_(z, mask, value=weight_map[1])
            s.addcmul_(s, mask, value=weight_map[1])
        if out is not None:
            torch.mul(s, omega, out=out[start:stop]).addcmul_(z, d.sub_(r))
            continue
        flat_z = z.reshape(-1)
        log_terms.append(s.sum())
        excess_terms.append(torch.dot(flat_z, d.view(-1)))
        clamp_terms.append(torch.dot(flat_z, r.view(-1)))

    _check_target_range(torch.stack(lows).min().item(), torch.stack(highs).max().item())
    if out is not None:
        loss = out.view(shape)
    else:
        log_sum = torch.stack(log_terms).double().sum() * (omega * scale)
        linear = torch.stack(excess_terms).double().sum() - torch.stack(clamp_terms).double().sum()
        loss = (log_sum + linear).to(dtype)
    return loss, (grad.view(shape) if need_grad else None)


class _AdaptiveWingFunction(torch.autograd.Function):
    """AWing loss with a hand-written gradient w.r.t. ``pred`` (``target`` and ``weight`` get none)."""

    @staticmethod
    def forward(ctx, pred, target, weight, weight_map, constants, reduction):  # type: ignore[override]
        loss, grad = _awing_forward(
            pred, target, weight, weight_map, constants, reduction, need_grad=ctx.needs_input_grad[0]
        )
        ctx.reduction = reduction
        if grad is not None:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        # The stored gradient already holds the reduction's scale; loss.backward() passes exactly 1.
        if not (ctx.reduction != "none" and grad_output.device.type == "cpu" and grad_output.item() == 1.0):
            grad = grad * grad_output
        return grad, None, None, None, None, None


def _awing(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None,
    weight_map: tuple[float, float, int] | None,
    constants: tuple[float, float, float, float],
    reduction: str,
) -> Tensor:
    validate_loss_inputs(pred, target, weight, reduction)
    _check_awing_constants(*constants)
    compute = pred if pred.dtype in (torch.float32, torch.float64) else pred.float()
    loss = _AdaptiveWingFunction.apply(compute, target.detach(), weight, weight_map, constants, reduction)
    return loss.to(pred.dtype)


def adaptive_wing_loss(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    reduction: str = "mean",
) -> Tensor:
    """Adaptive Wing loss of methods.md §1.1 (Wang, Bo & Fuxin, ICCV 2019), optionally weighted per pixel.

    ``loss = reduce(AWing(target, pred) · weight)``, the formula in this module's docstring; "mean" divides the
    sum by the number of elements of ``pred`` (methods.md §1.3).

    Args:
        pred: ``(*)`` predicted heatmaps, e.g. ``B x C x H x W``; not clamped.
        target: ``(*)`` ground truth, same shape, values in ``[0, 1]``.
        weight: optional per-pixel weight broadcastable to ``pred``'s shape (e.g. :func:`loss_weight_map` or a
            ``B x C x 1 x 1`` visibility mask), multiplied before the reduction.
        omega, theta, epsilon, alpha: ``ω, θ, ε, α`` (``α > 2``).
        reduction: "none" (shape of ``pred``), "mean" or "sum" (scalars).

    Only ``pred`` gets a gradient; ``target`` and ``weight`` are treated as constants. The gradient is exact
    (it passes a float64 ``gradcheck``) and 0 at zero error.

    >>> pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    >>> target = torch.tensor([[[[0.0, 1.0], [0.0, 0.5]]]])
    >>> loss = adaptive_wing_loss(pred, target, reduction="sum")
    >>> loss.backward()
    >>> round(loss.item(), 4), pred.grad[0, 0, 1, 1].item()  # 2 x 2.9352 (y=0) + 5.3605 (y=1), methods.md §1.2
    (11.2309, 0.0)
    """
    return _awing(pred, target, weight, None, (omega, theta, epsilon, alpha), reduction)


class AdaptiveWingLoss(nn.Module):
    """Adaptive Wing loss weighted by the loss map ``weight · M + 1`` (methods.md §1, §2), the official recipe.

    ``AdaptiveWingLoss()(pred, target, w)`` equals
    ``adaptive_wing_loss(pred, target, loss_weight_map(target) * w)``; the map is built inside the same pass
    (from ``target`` only, without gradient), not as a separate tensor.

    Args:
        omega, theta, epsilon, alpha: AWing constants (``α > 2``).
        use_weight_map: multiply by the loss weight map of methods.md §2.
        weight: ``W`` of the weight map (foreground pixels weigh ``W + 1``).
        threshold: foreground threshold on the dilated target (strict ``>``).
        kernel_size: odd side of the dilation window.
        reduction: "none", "mean" or "sum".

    Shape:
        - pred, target: ``(..., H, W)``, e.g. ``B x C x H x W``; target values in ``[0, 1]``.
        - weight (forward): optional, broadcastable to ``pred``, e.g. a ``B x C x 1 x 1`` visibility mask; it
          multiplies the weight map.
        - output: scalar, or ``pred``'s shape for "none".

    >>> criterion = AdaptiveWingLoss()
    >>> pred = torch.zeros(2, 3, 8, 8, requires_grad=True)
    >>> target = torch.zeros(2, 3, 8, 8)
    >>> target[:, :, 4, 4] = 1.0
    >>> loss = criterion(pred, target)
    >>> loss.backward()
    >>> round(loss.item(), 4), pred.grad.shape  # 10.2594 (y=1, Δ=1) x 11 / 64 pixels
    (1.7633, torch.Size([2, 3, 8, 8]))
    """

    def __init__(
        self,
        omega: float = 14.0,
        theta: float = 0.5,
        epsilon: float = 1.0,
        alpha: float = 2.1,
        use_weight_map: bool = True,
        weight: float = 10.0,
        threshold: float = 0.2,
        kernel_size: int = 3,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_awing_constants(omega, theta, epsilon, alpha)
        _check_map_options(threshold, weight, kernel_size)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.omega, self.theta, self.epsilon, self.alpha = omega, theta, epsilon, alpha
        self.use_weight_map = use_weight_map
        self.weight, self.threshold, self.kernel_size = weight, threshold, kernel_size
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        weight_map = None
        if self.use_weight_map:
            if isinstance(target, Tensor) and target.ndim < 2:
                raise ValueError(f"the weight map needs (..., H, W) targets, got shape {tuple(target.shape)}")
            weight_map = (float(self.threshold), float(self.weight), self.kernel_size)
        constants = (self.omega, self.theta, self.epsilon, self.alpha)
        return _awing(pred, target, weight, weight_map, constants, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"omega={self.omega}, theta={self.theta}, epsilon={self.epsilon}, alpha={self.alpha}, "
            f"use_weight_map={self.use_weight_map}, weight={self.weight}, threshold={self.threshold}, "
            f"kernel_size={self.kernel_size}, reduction={self.reduction!r}"
        )

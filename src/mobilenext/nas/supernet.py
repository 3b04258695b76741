"""The DARTS search network ("supernet") and the architecture step.

Every edge of a cell is a :class:`MixedOp`: the softmax(alpha)-weighted sum of all candidate operations.
Two alpha matrices, ``[edges, operations]``, are shared by all normal cells and all reduction cells. The
weights w are trained on one half of the training set, alpha on the other (:class:`Architect`):

* first order: alpha follows the gradient of the validation loss at the current w;
* second order (unrolled): alpha follows the gradient of ``L_val(w', alpha)`` where
  ``w' = w - xi * grad_w L_train(w, alpha)`` is one virtual SGD step (with momentum and weight decay, as
  the real step), so alpha is judged by the weights it leads to. The chain rule brings in a mixed
  Hessian-vector product ``(d^2 L_train / d alpha d w) v``. By default autograd computes it exactly (double
  backward); ``hessian="finite-difference"`` takes DARTS's central differences of ``grad_alpha L_train`` at
  ``w +- eps v``, ``eps = 0.01 / |v|``, which costs less memory but is only as good as that radius is small
  next to the curvature (on a small network it can be off by more than the term itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from .genotypes import Genotype, derive_genotype
from .network import STEM_MULTIPLIER, cell_preprocess, check_network_size
from .operations import OP_PRESETS, OPS

__all__ = ["MixedOp", "SearchCell", "SearchNetwork", "Architect"]


class MixedOp(nn.Module):
    """All candidate operations on one edge; the output is their weighted sum."""

    def __init__(self, channels: int, stride: int, ops: Sequence[str]):
        super().__init__()
        candidates = []
        for name in ops:
            op = OPS[name](channels, stride, False)
            if "pool" in name:  # pooling has no BN of its own; DARTS adds one so outputs are on one scale
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            candidates.append(op)
        self.ops = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    """A cell with every edge ``j -> i`` (i intermediate, j earlier) present as a :class:`MixedOp`."""

    def __init__(
        self,
        steps: int,
        multiplier: int,
        prev_prev_chs: int,
        prev_chs: int,
        chs: int,
        reduction: bool,
        reduction_prev: bool,
        ops: Sequence[str],
    ):
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0, self.preprocess1 = cell_preprocess(prev_prev_chs, prev_chs, chs, reduction_prev, False)
        self.edges = nn.ModuleList(
            MixedOp(chs, 2 if reduction and j < 2 else 1, ops) for i in range(steps) for j in range(i + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class SearchNetwork(nn.Module):
    """DARTS's CIFAR supernet: ``layers`` cells (8), ``init_channels`` (16), ``steps`` nodes per cell (4),
    reduction cells at 1/3 and 2/3 of the depth. ``alphas_normal`` / ``alphas_reduce`` are parameters, kept
    apart from the weights by :meth:`arch_parameters` and :meth:`weight_parameters`."""

    def __init__(
        self,
        init_channels: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        ops: Sequence[str] = OP_PRESETS["darts+sg"],
    ):
        super().__init__()
        check_network_size(init_channels, layers)
        if not 1 <= multiplier <= steps:
            raise ConfigError(
                f"a search cell needs at least 1 node and concatenates 1..nodes of them; got {steps} "
                f"node(s), {multiplier} concatenated."
            )
        self.ops, self.steps, self.multiplier = tuple(ops), steps, multiplier
        self.config = dict(
            init_channels=init_channels,
            num_classes=num_classes,
            layers=layers,
            steps=steps,
            multiplier=multiplier,
            ops=list(self.ops),
        )
        chs = STEM_MULTIPLIER * init_channels
        self.stem = nn.Sequential(nn.Conv2d(3, chs, 3, padding=1, bias=False), nn.BatchNorm2d(chs))
        prev_prev, prev, chs = chs, chs, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            chs *= 2 if reduction else 1
            self.cells.append(SearchCell(steps, multiplier, prev_prev, prev, chs, reduction, reduction_prev, ops))
            reduction_prev = reduction
            prev_prev, prev = prev, multiplier * chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)
        edges = sum(i + 2 for i in range(steps))
        # Near-uniform start: every operation gets the same say until the data decide.
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(edges, len(self.ops)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(edges, len(self.ops)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal, reduce = self.arch_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(self.global_pool(s1).flatten(1))

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over the operations of each edge, for the normal and the reduction cells."""
        return F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("alphas_")]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def genotype(self) -> Genotype:
        """The discrete cells by the DARTS rule (:func:`derive_genotype`)."""
        genotype = derive_genotype(*self.arch_weights(), self.ops, self.steps)
        concat = tuple(range(2 + self.steps - self.multiplier, self.steps + 2))
        return genotype._replace(normal_concat=concat, reduce_concat=concat)


HESSIAN_MODES = ("exact", "finite-difference")


def _grad(loss: torch.Tensor, tensors: list[torch.Tensor], create_graph: bool = False) -> list[torch.Tensor]:
    """Gradients, with zeros for tensors the loss does not use (e.g. alphas_normal in a supernet of only
    reduction cells, or the weights of a candidate whose softmax weight is exactly zero)."""
    grads = torch.autograd.grad(loss, tensors, allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


class Architect:
    """Updates alpha with Adam (DARTS: lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) on held-out batches."""

    def __init__(
        self,
        model: SearchNetwork,
        lr: float = 3e-4,
        weight_decay: float = 1e-3,
        second_order: bool = True,
        hessian: str = "exact",
        radius: float = 0.01,
    ):
        if hessian not in HESSIAN_MODES:
            raise ValueError(f"hessian must be one of {', '.join(HESSIAN_MODES)}, not {hessian!r}.")
        self.model, self.second_order = model, second_order
        self.hessian, self.radius = hessian, radius
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)

    def step(
        self,
        train_batch: tuple[torch.Tensor, torch.Tensor],
        val_batch: tuple[torch.Tensor, torch.Tensor],
        lr: float,
        weight_optimizer: torch.optim.Optimizer,
    ) -> float:
        """One alpha update; ``lr`` is the weights' current learning rate (the virtual step's xi).
        Returns the validation loss alpha was judged on."""
        if self.second_order:
            grads, loss = self.unrolled_gradient(train_batch, val_batch, lr, weight_optimizer)
        else:
            loss = F.cross_entropy(self.model(val_batch[0]), val_batch[1])
            grads = _grad(loss, self.model.arch_parameters())
        self.optimizer.zero_grad(set_to_none=True)
        for alpha, grad in zip(self.model.arch_parameters(), grads):
            alpha.grad = grad
        self.optimizer.step()
        return float(loss.detach())

    # ---- second order -------------------------------------------------------------------------------------
    def _loss_at(self, weights: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The loss with the weights replaced by ``weights`` and BN statistics left untouched: virtual steps
        must not leave traces in the real model."""
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        return F.cross_entropy(functional_call(self.model, {**weights, **buffers}, (batch[0],)), batch[1])

    def virtual_weights(
        self, train_batch, lr: float, weight_optimizer: torch.optim.Optimizer, keep_graph: bool = False
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """``w' = w - lr * (momentum * buffer + grad_w L_train + weight_decay * w)``, the step SGD would take,
        and ``grad_w L_train`` (with its graph if ``keep_graph``, for the exact Hessian-vector product)."""
        named = self.model.named_weight_parameters()
        loss = self._loss_at({}, train_batch)
        grads = _grad(loss, [p for _, p in named], create_graph=keep_graph)
        group = weight_optimizer.param_groups[0]
        momentum, decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        stepped = {}
        for (name, w), g in zip(named, grads):
            buffer = weight_optimizer.state.get(w, {}).get("momentum_buffer")
            direction = g + decay * w + (momentum * buffer if buffer is not None else 0.0)
            stepped[name] = (w - lr * direction).detach()
        return stepped, grads

    def unrolled_val_loss(self, train_batch, val_batch, lr: float, weight_optimizer) -> float:
        """``L_val(w'(alpha), alpha)``, the objective the second-order gradient differentiates."""
        with torch.enable_grad():
            stepped, _ = self.virtual_weights(train_batch, lr, weight_optimizer)
        with torch.no_grad():
            return float(self._loss_at(stepped, val_batch))

    def unrolled_gradient(self, train_batch, val_batch, lr: float, weight_optimizer):
        """``d L_val(w', alpha) / d alpha = grad_alpha L_val(w', alpha) - lr * H v`` with ``v = grad_w' L_val``
        and ``H = d^2 L_train(w, alpha) / d alpha d w``. Returns the gradients and ``L_val(w', alpha)``."""
        alphas = self.model.arch_parameters()
        # The exact product differentiates grad_w L_train once more: keep its graph rather than recompute it.
        stepped, train_grads = self.virtual_weights(train_batch, lr, weight_optimizer, self.hessian == "exact")
        stepped = {n: w.requires_grad_() for n, w in stepped.items()}
        loss = self._loss_at(stepped, val_batch)
        grads = _grad(loss, [*alphas, *stepped.values()])
        direct, v = grads[: len(alphas)], grads[len(alphas) :]
        hessian_v = self.mixed_hessian_vector(train_batch, v, train_grads if self.hessian == "exact" else None)
        return [d - lr * h for d, h in zip(direct, hessian_v)], loss.detach()

    def mixed_hessian_vector(
        self, train_batch, v: list[torch.Tensor], train_grads: list[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """``(d^2 L_train / d alpha d w) v`` at the current weights, exactly or by central differences.
        ``train_grads``: ``grad_w L_train`` with its graph, if already computed."""
        alphas = self.model.arch_parameters()
        named = self.model.named_weight_parameters()
        if self.hessian == "exact":  # d/d alpha of (grad_w L_train . v)
            if train_grads is None:
                train_grads = _grad(self._loss_at({}, train_batch), [w for _, w in named], create_graph=True)
            return _grad(sum((g * u).sum() for g, u in zip(train_grads, v)), alphas)
        eps = self.radius / torch.cat([u.flatten() for u in v]).norm().clamp_min(1e-12)

        def alpha_grad(sign: float) -> list[torch.Tensor]:
            shifted = {name: (w + sign * eps * u).detach() for (name, w), u in zip(named, v)}
            return _grad(self._loss_at(shifted, train_batch), alphas)

        return [(p - m) / (2 * eps) for p, m in zip(alpha_grad(1.0), alpha_grad(-1.0))]

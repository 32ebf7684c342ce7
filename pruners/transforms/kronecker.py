"""Kronecker-factored (separable) linear layers: y = (A1 ⊗ A2) x + b without ever forming A1 ⊗ A2.

Convention (row-major, torch's): the input x of length K1*K2 is viewed as X = x.view(K1, K2), the output is
Y = A1 X A2^T of shape (I1, I2) flattened row-major, which equals ``torch.kron(A1, A2) @ x``. In the
column-major vec convention of the ARLST paper this is the same map written Y' = A2 X' A1^T with
X' = X^T (K2 x K1). Parameters: I1*K1 + I2*K2 (+ bias) instead of I1*I2*K1*K2.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

Shape = tuple[int, int]


class KroneckerFactor(nn.Module):
    """One factor A (I x K) of a Kronecker layer; `prunable_weight` lets every pruner find and mask it."""

    prunable_weight = True

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}x{self.weight.shape[1]}"


class KroneckerLinear(nn.Module):
    """A Linear layer whose weight is A1 ⊗ A2 with A1 (I1 x K1), A2 (I2 x K2); exports as reshapes + MatMuls."""

    def __init__(self, factors: Sequence[Shape], bias: bool = True):
        super().__init__()
        (i1, k1), (i2, k2) = factors
        self.factors = nn.ModuleList([KroneckerFactor(i1, k1), KroneckerFactor(i2, k2)])
        self.in_features, self.out_features = k1 * k2, i1 * i2
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        for f in self.factors:
            nn.init.normal_(f.weight, 0.0, 1.0 / math.sqrt(f.weight.shape[1]))

    @property
    def shapes(self) -> list[list[int]]:
        """[[I1, K1], [I2, K2]]."""
        return [list(f.weight.shape) for f in self.factors]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, a2 = self.factors[0].weight, self.factors[1].weight
        (i1, k1), (i2, k2) = a1.shape, a2.shape
        lead = x.shape[:-1]
        t = x.reshape(-1, k1, k2) @ a2.t()  # (M, K1, I2)
        y = (a1 @ t).reshape(*lead, i1 * i2)  # (M, I1, I2) -> row-major flatten
        return y if self.bias is None else y + self.bias

    def weight_matrix(self) -> torch.Tensor:
        """The dense equivalent kron(A1, A2) (out x in), for checks and reports."""
        return torch.kron(self.factors[0].weight, self.factors[1].weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def near_square(n: int) -> Shape:
    """(a, b) with a * b = n, a <= b and a the largest divisor of n not above sqrt(n)."""
    a = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return a, n // a


def auto_factors(out_features: int, in_features: int) -> list[list[int]]:
    """Near-square factor shapes [[I1, K1], [I2, K2]]: I1*I2 = out, K1*K2 = in, the smaller divisors first."""
    (i1, i2), (k1, k2) = near_square(out_features), near_square(in_features)
    return [[i1, k1], [i2, k2]]


def rearrange(weight: torch.Tensor, factors: Sequence[Shape]) -> torch.Tensor:
    """Van Loan–Pitsianis rearrangement R(W) ((I1*K1) x (I2*K2)) in which kron(A1, A2) is vec(A1) vec(A2)^T."""
    (i1, k1), (i2, k2) = factors
    return weight.reshape(i1, i2, k1, k2).permute(0, 2, 1, 3).reshape(i1 * k1, i2 * k2)


def top_singular_pair(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, u, v) of the largest singular value; exact SVD for small matrices, randomised for large ones."""
    if min(r.shape) <= 1024:
        u, s, vh = torch.linalg.svd(r, full_matrices=False)
        return s[0], u[:, 0], vh[0]
    torch.manual_seed(0)  # the randomised range finder: reproducible initialisation
    u, s, v = torch.svd_lowrank(r, q=8, niter=12)
    return s[0], u[:, 0], v[:, 0]


def nearest_kronecker(weight: torch.Tensor, factors: Sequence[Shape]) -> tuple[torch.Tensor, torch.Tensor]:
    """A1, A2 minimising ||W - A1 ⊗ A2||_F: the top singular pair of R(W), split evenly (float64 inside)."""
    r = rearrange(weight.detach().double(), factors)
    s, u, v = top_singular_pair(r)
    if float(u.sum()) < 0:  # sign is arbitrary: prefer a positive-sum A1 for reproducibility
        u, v = -u, -v
    (i1, k1), (i2, k2) = factors
    root = s.sqrt()
    return (root * u).reshape(i1, k1).to(weight.dtype), (root * v).reshape(i2, k2).to(weight.dtype)


def from_linear(linear: nn.Linear, factors: Sequence[Shape]) -> KroneckerLinear:
    """A KroneckerLinear initialised with the nearest Kronecker product of `linear`'s weight and its bias."""
    layer = KroneckerLinear(factors, bias=linear.bias is not None).to(linear.weight.device, linear.weight.dtype)
    a1, a2 = nearest_kronecker(linear.weight, factors)
    with torch.no_grad():
        layer.factors[0].weight.copy_(a1)
        layer.factors[1].weight.copy_(a2)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
    return layer


def log_gram_det(a: torch.Tensor) -> torch.Tensor:
    """log det of the k x k Gram matrix of A's smaller side (k = min(a, b)) = 2 * sum(log sigma_i).

    For a < b, A^T A (b x b) is always singular, so the smaller Gram A A^T is used: both have the same
    k nonzero eigenvalues sigma_i^2. A singular value of exactly zero (a pruned-away rank) is clamped to
    the smallest normal float so the term stays finite and its gradient zero rather than NaN.
    """
    s = torch.linalg.svdvals(a.float())
    return 2 * torch.log(s.clamp_min(torch.finfo(torch.float32).tiny)).sum()


def condition_term(a: torch.Tensor, nu: float) -> torch.Tensor:
    """(log[nu + det(G)/k])^2 / (4 k log k) for one factor, computed in the log domain (no overflow)."""
    k = min(a.shape)
    log_inner = torch.logaddexp(torch.tensor(math.log(nu), device=a.device), log_gram_det(a) - math.log(k))
    return log_inner.pow(2) / (4 * k * math.log(max(k, 2)))  # k = 1 has log k = 0: use log 2 instead


def condition_regularizer(factors: Sequence[torch.Tensor], nu: float = 1e-3) -> torch.Tensor:
    """ARLST's h(A) = 1/T sum_t (log[nu + det(A_t^T A_t)/k_t])^2 / (4 k_t log k_t), k_t = min(a_t, b_t).

    The paper writes one k for all factors; factors of different shapes use their own k here, which is
    the same formula when all factors share their smaller dimension.
    """
    return torch.stack([condition_term(a, nu) for a in factors]).mean()


def layer_condition_sum(layers: Sequence[KroneckerLinear], nu: float = 1e-3) -> torch.Tensor:
    """ARLST's regulariser over a model: h of each separable layer (Eq. 20 of the supplement, whose 1/T averages
    the T factors of one layer's transformation), summed over the layers as the loss sums its layer terms."""
    return torch.stack([condition_regularizer([f.weight for f in layer.factors], nu) for layer in layers]).sum()


def kronecker_layers(model: nn.Module) -> list[tuple[str, KroneckerLinear]]:
    """(name, module) of every KroneckerLinear in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, KroneckerLinear)]

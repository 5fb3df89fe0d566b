"""Small building blocks shared by the DEIMv2 encoder and decoder."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is float16/bfloat16; float32 and float64 tensors are returned unchanged."""
    return x.float() if x.dtype in REDUCED_PRECISION else x


def attention_implementation(config: Any, output_attentions: bool) -> str:
    """``"eager"`` (explicit softmax) when attention weights are requested or configured, else ``"sdpa"``."""
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    return "eager" if output_attentions else implementation


class Deimv2SelfAttention(nn.Module):
    """Multi-head attention whose queries and keys share one input (features + positions) and values another.

    Holds the same weights as ``nn.MultiheadAttention`` (its packed ``in_proj`` split into q/k/v). The eager
    path performs ``nn.MultiheadAttention``'s own operations in its order (sequence-first projections, queries
    scaled by ``sqrt(1 / head_dim)``, ``bmm``/``baddbmm``, softmax, ``bmm``), so that float64 results equal
    the original's bit for bit; the ``sdpa`` path uses ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, config: Any = None):
        super().__init__()
        self.num_heads = num_heads
        self.config = config
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self,
        query_key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``attention_mask`` (bool, ``[L, L]``): ``True`` where a query may attend to a key.

        Returns the output ``[B, L, D]`` and, on the eager path, the weights ``[B, heads, L, L]``.
        """
        if attention_implementation(self.config, output_attentions) == "eager":
            return self._eager(query_key, value, attention_mask)
        batch, length, dim = value.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, heads, dim // heads).transpose(1, 2)

        q, k, v = split(self.q_proj(query_key)), split(self.k_proj(query_key)), split(self.v_proj(value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim)), None

    def _eager(
        self, query_key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, dim = value.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        # sequence-first, as nn.MultiheadAttention(batch_first=True) computes internally
        q = self.q_proj(query_key.transpose(1, 0))
        k = self.k_proj(query_key.transpose(1, 0))
        v = self.v_proj(value.transpose(1, 0))
        q, k, v = (t.view(length, batch * heads, head_dim).transpose(0, 1) for t in (q, k, v))
        q = q * math.sqrt(1.0 / float(head_dim))
        if attention_mask is None:
            scores = torch.bmm(q, k.transpose(-2, -1))
        else:
            bias = torch.zeros(attention_mask.shape, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill_(~attention_mask, float("-inf")).unsqueeze(0)
            scores = torch.baddbmm(bias, q, k.transpose(-2, -1))
        weights = F.softmax(scores, dim=-1)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(length * batch, dim)
        out = self.out_proj(out).view(length, batch, dim).transpose(1, 0)
        return out, weights.view(batch, heads, length, length)


class Deimv2RMSNorm(nn.Module):
    """RMSNorm computed in float32 (also for float64 inputs, as the original), then scaled."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Deimv2MLP(nn.Module):
    """Stack of linear layers with an activation between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, act: str):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = self.act(x)
        return x


class Deimv2SwiGLUFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class Deimv2Gate(nn.Module):
    """Sigmoid gates mixing the residual and the cross-attention output, then RMSNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, 2 * dim)
        self.norm = Deimv2RMSNorm(dim)

    def forward(self, residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.gate(torch.cat([residual, update], dim=-1)))
        g1, g2 = gates.chunk(2, dim=-1)
        return self.norm(g1 * residual + g2 * update)

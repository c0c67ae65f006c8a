"""Graph pieces SegTAD uses twice: the dynamic k-nearest-neighbour graph over snippets (Sec. 3.2.2, after DGCNN)
and the edge convolution of Eq. 1, over snippets in the 1D-SSN and over proposals in the PDN (Sec. 3.3).

A graph over N nodes is kept as neighbour lists, not as an N x N matrix: ``neighbours (B, N, K)`` int64 holds the K
nodes that row i of the adjacency matrix A points at, ``valid (B, N, K)`` bool marks the real ones when a node has
fewer than K (None: all real). The product A X then costs N K instead of N^2 memory.

Eq. 1 reads X_GC = ([X'^T, A X'^T - X'^T] W)^T. Two readings of ours, stated once:
- A's rows are divided by the number of neighbours, so A X' - X' is the mean of the edge features x_j - x_i
  (DGCNN's edge feature); with the paper's 0/1 entries it would grow with K.
- W maps the concatenation [x, A x - x] of width 2C' to C' (the paper prints W in R^{C' x C'}, a slip: the
  concatenation is 2C' wide), followed by a ReLU (Eq. 1 has none; the PDN stacks three of these layers).
"""
from __future__ import annotations

import torch
from torch import nn


def knn_graph(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each node's ``k`` most similar other nodes by negative mean squared distance (Sec. 3.2.2, "minus MSE").

    features (B, C, N) -> neighbours (B, N, k) int64, most similar first. A node is never its own neighbour. The
    choice is not differentiable (gradients flow through the features gathered along the edges, not the edges).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(f"features must be a tensor (B, C, N), got "
                         f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__}")
    nodes = features.shape[2]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < nodes:
        raise ValueError(f"k must be an int in [1, N - 1] = [1, {nodes - 1}] (N = {nodes} nodes), got {k!r}")
    with torch.no_grad():
        x = features.transpose(1, 2).float()  # (B, N, C); float32 keeps near-ties apart under AMP
        squared = x.pow(2).sum(-1)  # (B, N)
        # |x_i - x_j|^2 = |x_i|^2 + |x_j|^2 - 2 x_i . x_j, then the mean over the C channels
        distance = (squared[:, :, None] + squared[:, None, :] - 2 * x @ x.transpose(1, 2)) / x.shape[2]
        self_loops = torch.eye(nodes, dtype=torch.bool, device=x.device)
        distance = distance.masked_fill(self_loops, float("inf"))
        return (-distance).topk(k, dim=-1).indices


def gather_nodes(nodes: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """nodes (B, N, C), neighbours (B, N, K) int64 -> (B, N, K, C): the features of every node's neighbours."""
    video = torch.arange(nodes.shape[0], device=nodes.device)[:, None, None]
    return nodes[video, neighbours]  # advanced indexing: faster than gather with an expanded index on the CPU


class EdgeConv(nn.Module):
    """Edge convolution (Eq. 1): ``ReLU([x_i, sum_j a_ij x_j / K_i - x_i] W)`` on node features (B, N, C_in).

    ``attention=False`` (the snippet graph): a_ij = 1 on every edge. ``attention=True`` (the proposal graph):
    a_ij = cos(x_i, x_j), the cosine attention of Sec. 3.3, recomputed from each layer's input. K_i counts node i's
    valid neighbours (a node without any gets A x = 0). Returns (B, N, C_out).
    """

    def __init__(self, in_dim: int, out_dim: int, attention: bool = False):
        super().__init__()
        self.attention = bool(attention)
        self.linear = nn.Linear(2 * in_dim, out_dim)  # W: [x, A x - x] (2 C_in) -> C_out

    def forward(self, nodes: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor | None = None):
        """nodes (B, N, C_in), neighbours (B, N, K) int64, valid (B, N, K) bool or None -> (B, N, C_out)."""
        gathered = gather_nodes(nodes, neighbours)  # (B, N, K, C_in)
        if self.attention:  # cos(x_i, x_j) = x_i . x_j / (|x_i| |x_j|), the norms gathered, not recomputed
            norms = nodes.norm(dim=-1).clamp_min(1e-8)  # (B, N)
            dots = (gathered * nodes[:, :, None, :]).sum(-1)  # (B, N, K)
            weights = dots / (norms[:, :, None] * norms.gather(1, neighbours.flatten(1)).view_as(dots))
        else:
            weights = gathered.new_ones(gathered.shape[:3])
        if valid is not None:
            weights = weights * valid.to(weights.dtype)
            count = valid.sum(-1, keepdim=True).clamp_min(1).to(nodes.dtype)  # (B, N, 1)
        else:
            count = torch.full_like(nodes[..., :1], neighbours.shape[2])
        aggregated = (weights[..., None] * gathered).sum(2) / count  # row i of A X, A's rows divided by K_i
        return torch.relu(self.linear(torch.cat([nodes, aggregated - nodes], dim=-1)))

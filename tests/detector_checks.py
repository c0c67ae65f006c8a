"""What the detectors' tests share: the CUDA marker, moving a collated batch, a few training steps."""
import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def to_device(batch: dict, device) -> dict:
    """A collated batch with every tensor on ``device`` (video ids and other Python values as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_steps(model: torch.nn.Module, batch: dict, steps: int = 3, lr: float = 1e-2) -> dict:
    """``steps`` AdamW steps of ``model.loss`` on ``batch`` (every detector's training contract); the last
    step's loss terms."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        terms = model.loss(model(batch["features"]), batch)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    return terms

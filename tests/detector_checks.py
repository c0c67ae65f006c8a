"""What the detectors' tests share: the CUDA marker, moving a collated batch, training steps (with their loss curve),
and the check that one seeded training step is reproducible."""
import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def to_device(batch: dict, device) -> dict:
    """A collated batch with every tensor on ``device`` (video ids and other Python values as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_steps(model: torch.nn.Module, batch: dict, steps: int = 3, lr: float = 1e-2, optimizer=torch.optim.AdamW,
                seed: int | None = None, losses: list | None = None) -> dict:
    """``steps`` steps of ``optimizer`` on ``model.loss`` over ``batch`` (every detector's training contract); the
    last step's loss terms. ``seed``: reseed torch before every step (the same random draws each step);
    ``losses``: a list that receives every step's total loss."""
    optimizer = optimizer(model.parameters(), lr=lr)
    for _ in range(steps):
        if seed is not None:
            torch.manual_seed(seed)
        terms = model.loss(model(batch["features"]), batch)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        if losses is not None:
            losses.append(float(terms["total"].detach()))
    return terms


def assert_reproducible_step(make_model, make_batch) -> None:
    """Two runs of: a fresh ``make_model()``, torch seeded, ``make_batch()``, one AdamW step. Same loss, same
    weights after the step."""
    def one_step():
        model = make_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(1)
        batch = make_batch()
        loss = model.loss(model(batch["features"]), batch)["total"]
        loss.backward()
        optimizer.step()
        return loss.detach(), [p.detach().clone() for p in model.parameters()]

    (loss_a, params_a), (loss_b, params_b) = one_step(), one_step()
    assert torch.equal(loss_a, loss_b) and all(torch.equal(a, b) for a, b in zip(params_a, params_b))

import math

import pytest
import torch

from tagdistill.losses import distill_loss

torch.set_num_threads(1)

# One word, two labels: student logits (1, 3), teacher logits (2, 0), T = 2.
S = torch.tensor([[1.0, 3.0]])
TE = torch.tensor([[2.0, 0.0]])


def _hand_probs() -> tuple[list[float], list[float]]:
    # p = softmax(teacher / 2) = softmax(1, 0); log q = log_softmax(student / 2) = log_softmax(0.5, 1.5)
    z = math.exp(1.0) + math.exp(0.0)
    p = [math.exp(1.0) / z, math.exp(0.0) / z]
    log_zq = math.log(math.exp(0.5) + math.exp(1.5))
    log_q = [0.5 - log_zq, 1.5 - log_zq]
    return p, log_q


def test_kl_by_hand() -> None:
    p, log_q = _hand_probs()
    expected = 4.0 * (p[0] * (math.log(p[0]) - log_q[0]) + p[1] * (math.log(p[1]) - log_q[1]))
    assert distill_loss(S, TE, "kl", 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_ce_by_hand() -> None:
    p, log_q = _hand_probs()
    expected = 4.0 * -(p[0] * log_q[0] + p[1] * log_q[1])
    assert distill_loss(S, TE, "soft_ce", 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_mse_by_hand_with_the_t_squared_factor() -> None:
    expected = 4.0 * ((0.5 - 1.0) ** 2 + (1.5 - 0.0) ** 2) / 2  # T^2 (s/T - t/T)^2 averaged over 2 labels
    assert distill_loss(S, TE, "mse", 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_mse_does_not_depend_on_temperature() -> None:
    assert distill_loss(S, TE, "mse", 2.0).item() == pytest.approx(distill_loss(S, TE, "mse", 5.0).item())


def test_kl_is_soft_ce_minus_scaled_teacher_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g) * 3
    T = 1.7
    p = torch.softmax(t / T, dim=1)
    entropy = -(p * p.log()).sum(dim=1).mean()
    kl = distill_loss(s, t, "kl", T)
    soft_ce = distill_loss(s, t, "soft_ce", T)
    assert kl.item() == pytest.approx((soft_ce - T**2 * entropy).item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_zero_when_student_equals_teacher(kind: str) -> None:
    x = torch.randn(4, 6)
    assert distill_loss(x, x.clone(), kind, 3.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["kl", "mse", "soft_ce"])
def test_mean_over_words_and_gradient_reaches_student(kind: str) -> None:
    s = torch.tensor([[1.0, 3.0], [0.0, -1.0]], requires_grad=True)
    t = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    both = distill_loss(s, t, kind, 2.0)
    each = [distill_loss(s[i : i + 1], t[i : i + 1], kind, 2.0).item() for i in range(2)]
    assert both.item() == pytest.approx(sum(each) / 2, rel=1e-6)
    both.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_empty_batch_costs_zero_and_bad_input_is_refused() -> None:
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = distill_loss(empty, torch.zeros(0, 3), "kl", 2.0)
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="unknown"):
        distill_loss(S, TE, "js", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="teacher"):
        distill_loss(S, torch.zeros(1, 3), "kl", 2.0)

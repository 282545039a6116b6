import itertools
import math

import pytest
import torch

from tagdistill.crf import CRF, is_iob2

torch.set_num_threads(1)

LABELS = ["A", "B", "C"]  # not IOB2: no constraints
IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _crf(labels: list[str], seed: int = 0, **kwargs: bool) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(labels, **kwargs)
    with torch.no_grad():  # scores large enough that paths differ clearly
        crf.start.normal_()
        crf.end.normal_()
        crf.transitions.normal_()
    return crf


@torch.no_grad()
def _path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, k] for t, k in enumerate(path))
    score = score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))
    return float(score)


def _brute_log_z(crf: CRF, emissions: torch.Tensor, keep=lambda path: True) -> float:
    n, L = emissions.shape
    scores = [_path_score(crf, emissions, p) for p in itertools.product(range(L), repeat=n) if keep(p)]
    return math.log(sum(math.exp(s) for s in scores))


def test_nll_equals_brute_force_over_all_paths() -> None:
    crf = _crf(LABELS)
    emissions = torch.randn(1, 4, 3)
    tags = torch.tensor([[2, 0, 1, 1]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        log_z = _brute_log_z(crf, emissions[0])
        expected = log_z - _path_score(crf, emissions[0], (2, 0, 1, 1))
        assert crf.nll(emissions, tags, mask).item() == pytest.approx(expected, rel=1e-5)
        assert crf.log_partition(emissions, mask).item() == pytest.approx(log_z, rel=1e-5)


def test_viterbi_equals_brute_force_argmax() -> None:
    for seed in range(5):
        crf = _crf(LABELS, seed)
        emissions = torch.randn(1, 4, 3)
        with torch.no_grad():
            best = max(itertools.product(range(3), repeat=4), key=lambda p: _path_score(crf, emissions[0], p))
        assert crf.viterbi(emissions, torch.ones(1, 4, dtype=torch.bool)) == [list(best)]


def test_padding_is_ignored() -> None:
    crf = _crf(LABELS)
    emissions = torch.randn(3, 4, 3)
    tags = torch.tensor([[2, 0, 1, 1], [1, 2, 0, 0], [0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        nll = crf.nll(emissions, tags, mask)
        paths = crf.viterbi(emissions, mask)
        for b, n in enumerate(mask.sum(1).tolist()):
            alone = crf.nll(emissions[b : b + 1, :n], tags[b : b + 1, :n], mask[b : b + 1, :n])
            assert nll[b].item() == pytest.approx(alone.item(), rel=1e-5)
            assert paths[b] == crf.viterbi(emissions[b : b + 1, :n], mask[b : b + 1, :n])[0]
            assert len(paths[b]) == n
        # Junk in padded positions changes nothing.
        emissions[1, 2:] = 100.0
        tags[1, 2:] = 2
        assert crf.nll(emissions, tags, mask)[1].item() == pytest.approx(nll[1].item(), rel=1e-5)
        assert crf.viterbi(emissions, mask)[1] == paths[1]
    expected = _brute_log_z(crf, emissions[1, :2]) - _path_score(crf, emissions[1, :2], (1, 2))
    assert nll[1].item() == pytest.approx(expected, rel=1e-5)


def test_unlabeled_positions_are_summed_over() -> None:
    crf = _crf(LABELS)
    emissions = torch.randn(2, 4, 3)
    tags = torch.tensor([[2, -100, 1, -100], [-100, -100, -100, -100]])
    mask = torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        nll = crf.nll(emissions, tags, mask)
        consistent = _brute_log_z(crf, emissions[0], keep=lambda p: p[0] == 2 and p[2] == 1)
    assert nll[0].item() == pytest.approx(_brute_log_z(crf, emissions[0]) - consistent, rel=1e-5)
    assert nll[1].item() == pytest.approx(0.0, abs=1e-4)


def test_nll_is_positive_and_trainable() -> None:
    crf = _crf(LABELS)
    emissions = torch.randn(2, 4, 3, requires_grad=True)
    tags = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    nll = crf.nll(emissions, tags, torch.ones(2, 4, dtype=torch.bool)).sum()
    nll.backward()
    assert nll.item() > 0
    assert emissions.grad is not None and torch.isfinite(emissions.grad).all()
    assert crf.transitions.grad is not None and crf.transitions.grad.abs().sum() > 0


def _valid_iob2(tags: list[str]) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


def test_iob2_constraints_bind_viterbi() -> None:
    emissions = torch.zeros(1, 4, 5)
    emissions[0, 0, 2] = 5.0  # I-PER first
    emissions[0, 1, 0] = 5.0  # O
    emissions[0, 2, 4] = 5.0  # I-LOC after O
    emissions[0, 3, 2] = 5.0  # I-PER after I-LOC
    mask = torch.ones(1, 4, dtype=torch.bool)
    free = CRF(IOB2, iob2_constraints=False)
    constrained = CRF(IOB2)
    constrained.load_state_dict(free.state_dict())
    assert free.viterbi(emissions, mask) == [[2, 0, 4, 2]]
    path = constrained.viterbi(emissions, mask)[0]
    assert _valid_iob2([IOB2[i] for i in path])
    with torch.no_grad():
        valid = [p for p in itertools.product(range(5), repeat=4) if _valid_iob2([IOB2[i] for i in p])]
        best = max(valid, key=lambda p: _path_score(constrained, emissions[0], p))
    assert path == list(best)


def test_constraints_only_for_iob2_labels() -> None:
    assert is_iob2(IOB2) and not is_iob2(LABELS) and not is_iob2(["O", "B-"])
    assert CRF(IOB2).transition_penalty.min() < 0
    assert CRF(LABELS).transition_penalty.abs().sum() == 0
    assert "transition_penalty" not in CRF(IOB2).state_dict()


def _brute_marginals(crf: CRF, emissions: torch.Tensor, keep=lambda path: True) -> torch.Tensor:
    """P(label k at t) (n, L) by summing the exp-scores of every (kept) path."""
    n, L = emissions.shape
    probs = torch.zeros(n, L, dtype=torch.float64)
    for p in itertools.product(range(L), repeat=n):
        if keep(p):
            weight = math.exp(_path_score(crf, emissions, p))
            for t, k in enumerate(p):
                probs[t, k] += weight
    return probs / probs[0].sum()


def test_marginals_equal_brute_force_and_ignore_padding() -> None:
    crf = _crf(LABELS)
    emissions = torch.randn(3, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    emissions[1, 2:] = 100.0  # junk in the padding
    probs = crf.marginals(emissions, mask)
    assert probs.shape == (3, 4, 3)
    for b, n in enumerate(mask.sum(1).tolist()):
        expected = _brute_marginals(crf, emissions[b, :n]).float()
        assert torch.allclose(probs[b, :n], expected, atol=1e-5)
        assert torch.allclose(probs[b, :n].sum(1), torch.ones(n), atol=1e-5)


def test_marginals_give_invalid_iob2_labels_no_probability() -> None:
    crf = _crf(IOB2, seed=3)
    emissions = torch.randn(1, 4, 5)
    probs = crf.marginals(emissions, torch.ones(1, 4, dtype=torch.bool))[0]
    expected = _brute_marginals(crf, emissions[0], keep=lambda p: _valid_iob2([IOB2[i] for i in p]))
    assert torch.allclose(probs, expected.float(), atol=1e-5)
    assert probs[0, [2, 4]].max() < 1e-6  # a sentence never starts inside an entity

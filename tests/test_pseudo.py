import math

import torch

from tagdistill.pseudo import pseudo_labels
from tagdistill.schemes import IGNORE


def _logits_for(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in row] for row in probs])


def test_argmax_kept_without_threshold():
    sent = _logits_for([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5 - 1e-6]])
    assert pseudo_labels([sent]) == [[1, 0, 0]]


def test_token_filter_drops_only_unsure_words():
    sent = _logits_for([[0.05, 0.95], [0.6, 0.4], [0.91, 0.09]])
    assert pseudo_labels([sent], threshold=0.9, unit="token") == [[1, IGNORE, 0]]


def test_sentence_filter_drops_whole_sentence():
    sure = _logits_for([[0.05, 0.95], [0.97, 0.03]])
    unsure = _logits_for([[0.05, 0.95], [0.6, 0.4]])
    assert pseudo_labels([sure, unsure], threshold=0.9, unit="sentence") == [[1, 0], [IGNORE, IGNORE]]

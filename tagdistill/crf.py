"""Linear-chain CRF: negative log-likelihood by the forward algorithm, decoding by Viterbi, and
per-token marginals by forward-backward.

Both run batched, looping over time only. Masks are prefix masks: the real tokens of a sentence
come first, padding after them (what ``Vocab.encode`` produces).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_NEG = -1e4  # a "forbidden" score: exp() of it is 0, and unlike -inf it gives no NaN gradients


def is_iob2(labels: list[str]) -> bool:
    """Whether every label is "O", "B-<type>" or "I-<type>"."""
    return all(lab == "O" or (lab[:2] in ("B-", "I-") and len(lab) > 2) for lab in labels)


class CRF(nn.Module):
    """Start, end and transition scores over ``len(labels)`` labels.

    With ``iob2_constraints`` (the default) and IOB2 labels, Viterbi never starts a sentence with
    I-X nor moves O -> I-X or B-X/I-X -> I-Y (Y != X). The constraints bind decoding only: the
    likelihood is left unconstrained so that an invalid training sequence (a teacher's argmax
    pseudo-labels can hold one) costs a finite loss instead of an infinite one; the learned
    transition scores are what keeps such sequences rare.
    """

    def __init__(self, labels: list[str], iob2_constraints: bool = True) -> None:
        super().__init__()
        L = len(labels)
        self.start = nn.Parameter(torch.empty(L).uniform_(-0.1, 0.1))  # (L,)
        self.end = nn.Parameter(torch.empty(L).uniform_(-0.1, 0.1))  # (L,)
        self.transitions = nn.Parameter(torch.empty(L, L).uniform_(-0.1, 0.1))  # (L, L) [from, to]
        start_penalty = torch.zeros(L)
        transition_penalty = torch.zeros(L, L)
        if iob2_constraints and is_iob2(labels):
            for j, to in enumerate(labels):
                if not to.startswith("I-"):
                    continue
                start_penalty[j] = _NEG
                for i, frm in enumerate(labels):
                    if frm == "O" or frm[2:] != to[2:]:
                        transition_penalty[i, j] = _NEG
        # Rebuilt from the labels, so not part of the saved state.
        self.register_buffer("start_penalty", start_penalty, persistent=False)
        self.register_buffer("transition_penalty", transition_penalty, persistent=False)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood (B,) of the tags given the emissions (B, T, L).

        A tag of -100 (or any negative id) leaves its position unlabeled: the numerator then sums
        over every path through the labeled positions (partial-annotation CRF), so a sentence with
        no labeled position costs 0.
        """
        known = mask & (tags >= 0)  # (B, T)
        allowed = torch.ones_like(emissions, dtype=torch.bool)  # (B, T, L)
        allowed[known] = nn.functional.one_hot(tags[known], emissions.shape[-1]).bool()
        gold = emissions.masked_fill(~allowed, _NEG)  # (B, T, L)
        return self.log_partition(emissions, mask) - self.log_partition(gold, mask)

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log of the summed exp-score of all label paths (B,), by the forward algorithm."""
        alpha = _forward(emissions, mask, self.start, self.transitions)[-1]  # (B, L)
        return torch.logsumexp(alpha + self.end, dim=1)  # (B,)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """P(label at t | sentence) (B, T, L) by forward-backward, exp(alpha_t + beta_t - log Z), under
        the scores ``viterbi`` decodes with (IOB2 constraints included, so an invalid path has
        probability 0). Rows past a sentence's end are junk."""
        start, end = self.start + self.start_penalty, self.end
        transitions = self.transitions + self.transition_penalty  # (L, L) [from, to]
        alphas = _forward(emissions, mask, start, transitions)
        steps = emissions.unbind(1)  # T x (B, L)
        keep = mask.unbind(1)  # T x (B,)
        beta = end.expand_as(steps[-1])  # (B, L) at the last step: only the end score follows
        betas = [beta]
        for t in range(len(steps) - 2, -1, -1):
            after = transitions + (steps[t + 1] + beta).unsqueeze(1)  # (B, L, L) [b, from, to]
            # At a sentence's last token (the next step is padding) only the end score follows.
            beta = torch.where(keep[t + 1].unsqueeze(1), torch.logsumexp(after, dim=2), end)  # (B, L)
            betas.append(beta)
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # (B,)
        return (torch.stack(alphas, 1) + torch.stack(betas[::-1], 1) - log_z[:, None, None]).exp()

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """The best label path of each sentence, as many ids as it has real tokens."""
        steps = emissions.unbind(1)  # T x (B, L)
        keep = mask.unsqueeze(2).unbind(1)  # T x (B, 1)
        transitions = self.transitions + self.transition_penalty  # (L, L)
        score = self.start + self.start_penalty + steps[0]  # (B, L)
        history = []  # T - 1 x (B, L): the best previous label for each label at step t
        for t in range(1, len(steps)):
            best, best_prev = (score.unsqueeze(2) + transitions).max(dim=1)  # (B, L) each
            history.append(best_prev)
            score = torch.where(keep[t], best + steps[t], score)  # (B, L)
        last = (score + self.end).argmax(dim=1, keepdim=True)  # (B, 1) label at each sentence's last token
        lengths = mask.sum(dim=1)  # (B,)
        last_index = (lengths - 1).clamp(min=0)  # (B,) an empty sentence "ends" at 0 and keeps no label
        ends_here = nn.functional.one_hot(last_index, len(steps)).bool().unsqueeze(2).unbind(1)  # T x (B, 1)
        current = last
        path = []
        for t in range(len(steps) - 1, -1, -1):
            # A sentence ending at t starts its backtrace here; longer ones follow their pointers.
            current = torch.where(ends_here[t], last, current)  # (B, 1)
            path.append(current)
            if t > 0:
                current = history[t - 1].gather(1, current)  # (B, 1)
        best_paths = torch.cat(path[::-1], dim=1).tolist()  # (B, T)
        return [row[:n] for row, n in zip(best_paths, lengths.tolist(), strict=True)]


def _forward(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor) -> list[Tensor]:
    """Forward scores T x (B, L): log of the summed exp-score of the paths ending in each label at t
    (held at a sentence's last token over its padding)."""
    steps = emissions.unbind(1)  # T x (B, L)
    keep = mask.unsqueeze(2).unbind(1)  # T x (B, 1)
    alphas = [start + steps[0]]  # (B, L)
    for t in range(1, len(steps)):
        scores = alphas[-1].unsqueeze(2) + transitions + steps[t].unsqueeze(1)  # (B, L, L) [b, from, to]
        alphas.append(torch.where(keep[t], torch.logsumexp(scores, dim=1), alphas[-1]))  # (B, L)
    return alphas


"""The student: a small word-level tagger (Lample et al. 2016; Strubell et al. 2017).

Each word is the concatenation of a word embedding (lowercased lookup), a case embedding and a
character encoding (CNN max-pooled over characters, or BiLSTM final states). A BiLSTM or an iterated
dilated CNN reads the sentence, a linear layer scores every label, and either a softmax per word or a
CRF over the sentence turns the scores into tags.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tagdistill.config import StudentConfig
from tagdistill.crf import CRF
from tagdistill.schemes import IGNORE
from tagdistill.vocab import CASES, Vocab

CASE_DIM = 10  # case embedding size
IDCNN_DILATIONS = (1, 1, 2)  # dilations of the convolutions in one ID-CNN block
IDCNN_ITERATIONS = 4  # times the block is applied, with shared weights


class CharCNN(nn.Module):
    """Character embeddings, one width-3 convolution, max over the word's characters."""

    def __init__(self, n_chars: int, char_dim: int, filters: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel_size=3, padding=1)
        self.out_dim = filters

    def forward(self, chars: Tensor) -> Tensor:
        """chars (N, C) of N real words -> (N, filters)."""
        x = self.conv(self.embed(chars).transpose(1, 2))  # (N, filters, C)
        x = x.masked_fill((chars == 0).unsqueeze(1), float("-inf"))  # padding never wins the max
        return x.amax(dim=2)  # (N, filters)


class CharLSTM(nn.Module):
    """Character embeddings read by a BiLSTM; the word is its two final states."""

    def __init__(self, n_chars: int, char_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, chars: Tensor) -> Tensor:
        """chars (N, C) of N real words -> (N, 2 * hidden)."""
        if chars.shape[0] == 0:  # a batch of empty sentences: nothing to pack
            return self.embed.weight.new_zeros(0, self.out_dim)
        lengths = (chars != 0).sum(dim=1).cpu()  # (N,)
        packed = pack_padded_sequence(self.embed(chars), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (2, N, hidden)
        return torch.cat([h[0], h[1]], dim=1)  # (N, 2 * hidden)


class BiLSTMEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D) -> (B, T, 2 * hidden); padded positions are zeros."""
        if bool(mask.all()):  # no padding (one sentence, or equal lengths): packing would only cost time
            return self.lstm(x)[0]
        lengths = mask.sum(dim=1).clamp(min=1).cpu()  # (B,) an empty sentence still packs one step
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, 2H)
        return out


class IDCNNEncoder(nn.Module):
    """Iterated dilated CNN: a width-3 projection, then one block of dilated width-3 convolutions
    applied ``IDCNN_ITERATIONS`` times with shared weights (a receptive field of 3 + 4 * 8 words).

    Strubell et al. put a loss and dropout after every iteration; this encoder has one loss, on
    the last, and instead adds each iteration's output to its input (residual), without which the
    13 stacked ReLU convolutions learnt a toy task poorly. Dropout acts on its input and output only
    (in ``NeuralTagger``): repeated on every iteration at the BiLSTM's rate it halved dev F1 on
    CoNLL-2003. Padded positions are zeroed after every convolution, so a sentence's output does
    not depend on how much padding its batch has.
    """

    def __init__(self, in_dim: int, channels: int) -> None:
        super().__init__()
        self.project = nn.Conv1d(in_dim, channels, kernel_size=3, padding=1)
        self.block = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size=3, padding=d, dilation=d) for d in IDCNN_DILATIONS
        )
        self.out_dim = channels

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D) -> (B, T, channels)."""
        keep = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = torch.relu(self.project(x.transpose(1, 2))) * keep  # (B, channels, T)
        for _ in range(IDCNN_ITERATIONS):
            r = h
            for conv in self.block:
                r = torch.relu(conv(r)) * keep  # (B, channels, T)
            h = h + r
        return h.transpose(1, 2)  # (B, T, channels)


class NeuralTagger(nn.Module):
    """Word + case + character features -> BiLSTM or ID-CNN -> label scores (-> CRF)."""

    def __init__(self, cfg: StudentConfig, vocab: Vocab, vectors: Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = vocab
        if vectors is not None:
            if vectors.shape[0] != len(vocab.words):
                raise ValueError(f"{vectors.shape[0]} word vectors for {len(vocab.words)} words")
            self.word_emb = nn.Embedding.from_pretrained(vectors.float(), freeze=False, padding_idx=0)
        else:
            self.word_emb = nn.Embedding(len(vocab.words), cfg.word_dim, padding_idx=0)
        self.case_emb = nn.Embedding(len(CASES), CASE_DIM, padding_idx=0)
        char_cls = CharLSTM if cfg.char_encoder == "lstm" else CharCNN
        self.char_encoder = char_cls(len(vocab.chars), cfg.char_dim, cfg.char_hidden)
        in_dim = self.word_emb.embedding_dim + CASE_DIM + self.char_encoder.out_dim
        self.encoder: BiLSTMEncoder | IDCNNEncoder
        if cfg.encoder == "idcnn":
            self.encoder = IDCNNEncoder(in_dim, cfg.hidden)
        else:
            self.encoder = BiLSTMEncoder(in_dim, cfg.hidden, cfg.layers, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(self.encoder.out_dim, len(vocab.labels))
        self.crf = CRF(vocab.labels) if cfg.crf else None

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor, mask: Tensor) -> Tensor:
        """Ids from ``Vocab.encode`` -> label scores (B, T, L) (emissions; padded rows are junk)."""
        B, T = words.shape
        char_feats = self.char_encoder(chars[mask])  # (N, Dc) for the N real words only
        char_all = char_feats.new_zeros(B, T, char_feats.shape[1])  # (B, T, Dc)
        char_all[mask] = char_feats
        x = torch.cat([self.word_emb(words), self.case_emb(cases), char_all], dim=2)  # (B, T, D)
        h = self.encoder(self.dropout(x), mask)  # (B, T, H)
        return self.out(self.dropout(h))  # (B, T, L)

    def gold_loss(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Loss against label ids (B, T); positions outside the mask or tagged -100 teach nothing.

        Softmax: cross-entropy averaged over the labeled words. CRF: the sentences' negative
        log-likelihoods summed and divided by the number of words, so it is per word like
        cross-entropy and the distillation term; a -100 position is left open (the likelihood
        sums over all of its labels; see ``CRF.nll``).
        """
        if self.crf is not None:
            return self.crf.nll(emissions, tags, mask).sum() / mask.sum().clamp(min=1)
        labeled = mask & (tags != IGNORE)  # (B, T)
        if not labeled.any():
            return emissions.sum() * 0.0  # nothing to learn from, but keep the graph for backward()
        return F.cross_entropy(emissions[labeled], tags[labeled])

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """Best label ids per sentence (Viterbi with a CRF, argmax per word otherwise)."""
        if self.crf is not None:
            return self.crf.viterbi(emissions, mask)
        best = emissions.argmax(dim=2).tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, mask.sum(dim=1).tolist(), strict=True)]

    @torch.inference_mode()
    def tag_ids(
        self, batch: list[list[str]], probabilities: bool = False
    ) -> tuple[list[list[int]], np.ndarray | None]:
        """Best label ids per sentence of a batch of token lists (``decode``) and, with
        ``probabilities``, every token's label probabilities (B, T, L): the softmax of its scores, or
        with a CRF its marginals (``CRF.marginals``). Call it in eval mode, or dropout stays on."""
        words, cases, chars, mask = self.vocab.encode(batch, self.out.weight.device)
        emissions = self(words, cases, chars, mask)  # (B, T, L)
        ids = self.decode(emissions, mask)
        if not probabilities:
            return ids, None
        probs = self.crf.marginals(emissions, mask) if self.crf is not None else emissions.softmax(dim=2)
        return ids, probs.float().cpu().numpy()

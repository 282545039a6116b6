"""The student (and, for speed comparisons, the teacher) as ONNX graphs for ONNX Runtime: export
(fp32, and int8 weights for the student) and inference.

``export_student(folder)`` writes ``model.onnx`` beside the student's ``model.safetensors``; with
``int8`` also ``model.int8.onnx`` (``onnxruntime.quantization.quantize_dynamic``: int8 weights for
the embeddings, LSTMs and output layer, activations quantized on the fly). The graph is
``NeuralTagger.forward``: its inputs are the ids of ``Vocab.encode`` (words, cases (B, T) int64,
chars (B, T, C) int64, mask (B, T) bool), its output the emissions (B, T, L) float32, with batch,
tokens and characters as dynamic axes. Decoding stays outside the graph: argmax for a softmax
student, Viterbi in NumPy for a CRF one.

Each file carries in its metadata the SHA-256 of the weights it was made from and, for a CRF student,
the start, end and transition scores with the IOB2 constraints folded in; a file whose digest is not
that of the folder's ``model.safetensors`` is stale and is never used. Every export is checked: ONNX
Runtime and torch must give the same emissions (within ``TOLERANCE``) on padded batches of real
sentences, or nothing is written.

``export_teacher(folder)`` writes the teacher's ``model.onnx`` beside its Hugging Face weights: the
encoder and its token-classification head, input ids and attention mask (B, S) in, logits (B, S, L)
out; windows and word logits are the torch teacher's own code around it (``OnnxTeacher``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tagdistill.student import CharLSTM, NeuralTagger
from tagdistill.vocab import Vocab

if TYPE_CHECKING:  # transformers is slow to import: the teacher's modules load only when a teacher is used
    from tagdistill.alignment import Window
    from tagdistill.teacher import Teacher

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")  # Tagger.load's choices; auto: ONNX fp32 when usable
OPSET = 17
INPUTS = ("words", "cases", "chars", "mask")
AXES = {"words": {0: "batch", 1: "tokens"}, "cases": {0: "batch", 1: "tokens"},
        "chars": {0: "batch", 1: "tokens", 2: "characters"}, "mask": {0: "batch", 1: "tokens"},
        "emissions": {0: "batch", 1: "tokens"}}
# Embeddings, LSTMs and the output layer get int8 weights; convolutions stay fp32: with ORT's ConvInteger
# for the char CNN a CoNLL student's int8 graph was slower than fp32 at batch 32 (44k against 60k words/s,
# one thread), without it faster (67k).
INT8_OPS = ["Gather", "LSTM", "MatMul"]
TOLERANCE = 1e-3  # largest |ORT - torch| of an emission accepted at export (seen: ~1e-6)
DIGEST_KEY, CRF_KEY = "tagdistill.weights_sha256", "tagdistill.crf"
# Traced once with padding, so the graph keeps the BiLSTM's packing path, which is right for any batch
# (NeuralTagger skips packing for a batch without padding only because it would cost time).
EXAMPLE = [["Exported", "by", "tagdistill", "."], ["EU"]]
CHECK_SENTENCES = 256  # sentences of the check, in file order, in batches of 32 and alone
TEACHER_INPUTS = ("input_ids", "attention_mask")
TEACHER_AXES = {"input_ids": {0: "batch", 1: "subtokens"}, "attention_mask": {0: "batch", 1: "subtokens"},
                "logits": {0: "batch", 1: "subtokens"}}
TEACHER_CHECK_SENTENCES = 64  # a transformer is slow on CPU: fewer sentences than the student's check


def weights_digest(folder: Path) -> str:
    """SHA-256 of the folder's ``model.safetensors``: ties an ONNX file to the weights it came from."""
    from tagdistill.tagger import WEIGHTS_FILE

    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()


class _PaddedCharLSTM(nn.Module):
    """``CharLSTM`` in a form the TorchScript exporter takes (it fails on a packed LSTM whose outputs
    go unused): the same final states, read from the padded outputs, the forward direction at each
    word's last character and the backward one at its first."""

    def __init__(self, encoder: CharLSTM) -> None:
        super().__init__()
        self.embed, self.lstm, self.out_dim = encoder.embed, encoder.lstm, encoder.out_dim

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars (N, C) of N real words (each with at least one character id) -> (N, 2 * hidden)."""
        lengths = (chars != 0).sum(dim=1)  # (N,)
        packed = pack_padded_sequence(self.embed(chars), lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=chars.shape[1])
        H = out.shape[2] // 2  # out: (N, C, 2H)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, H)  # (N, 1, H)
        return torch.cat([out[:, :, :H].gather(1, last).squeeze(1), out[:, 0, H:]], dim=1)


def export_student(
    folder: Path, int8: bool = False, sentences: list[list[str]] | None = None
) -> dict[str, Any]:
    """Write ``model.onnx`` (and with ``int8`` ``model.int8.onnx``) into a student folder (or a job
    folder's ``student/``), after checking the graph against torch on ``sentences`` (default: the
    bundled sample's test split). Older ONNX files of the folder are removed first. Returns what was
    written: file names, bytes, and the largest emission difference from torch of each file."""
    from tagdistill.tagger import load_student, model_folder

    folder = model_folder(folder)
    model = load_student(folder)
    for name in (ONNX_FILE, INT8_FILE):
        (folder / name).unlink(missing_ok=True)
    sentences = [s for s in (sentences or _sample_sentences()) if s][:CHECK_SENTENCES]
    meta = {DIGEST_KEY: weights_digest(folder)}
    if model.crf is not None:  # the scores CRF.viterbi decodes with, as float32 values
        with torch.no_grad():
            crf = model.crf
            meta[CRF_KEY] = json.dumps({
                "start": (crf.start + crf.start_penalty).tolist(), "end": crf.end.tolist(),
                "transitions": (crf.transitions + crf.transition_penalty).tolist(),
            })
    tmp = folder / (ONNX_FILE + ".tmp")
    exportable = model
    if isinstance(model.char_encoder, CharLSTM):
        exportable = copy.deepcopy(model)
        exportable.char_encoder = _PaddedCharLSTM(exportable.char_encoder)
    with _quiet(), torch.no_grad():
        # The TorchScript exporter: torch.export (dynamo=True) stops at forward's data-dependent branches.
        torch.onnx.export(
            exportable, model.vocab.encode(EXAMPLE), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=list(INPUTS), output_names=["emissions"], dynamic_axes=AXES,
        )
    _stamp(tmp, meta)
    written = [(ONNX_FILE, tmp)]  # (name, temporary path); renamed once every check has passed
    diff = max_difference(model, OnnxStudent(tmp, model.vocab), sentences)
    if not diff <= TOLERANCE:
        tmp.unlink()
        raise RuntimeError(f"the ONNX graph of {folder} differs from torch by {diff:.3g} (> {TOLERANCE})")
    info: dict[str, Any] = {"opset": OPSET, "checked_sentences": len(sentences),
                            "fp32": {"file": ONNX_FILE, "bytes": tmp.stat().st_size, "max_abs_diff": diff}}
    if int8:
        int8_tmp = folder / (INT8_FILE + ".tmp")
        with _quiet():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(tmp), str(int8_tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=INT8_OPS)
        _stamp(int8_tmp, meta)
        written.insert(0, (INT8_FILE, int8_tmp))  # renamed first: a reader that sees model.onnx sees both
        info["int8"] = {"file": INT8_FILE, "bytes": int8_tmp.stat().st_size,
                        "max_abs_diff": max_difference(model, OnnxStudent(int8_tmp, model.vocab), sentences)}
    for name, path in written:
        path.replace(folder / name)
    return info


def max_difference(model: NeuralTagger, runner: OnnxStudent, sentences: list[list[str]]) -> float:
    """Largest |emission| difference between torch and ONNX Runtime over the real tokens of
    ``sentences``, in file order, in padded batches of 32 and one at a time."""
    batches = [sentences[i : i + 32] for i in range(0, len(sentences), 32)] + [[s] for s in sentences[:16]]
    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            words, cases, chars, mask = model.vocab.encode(batch)
            expected = model(words, cases, chars, mask).numpy()
            got, _ = runner.emissions(batch)
            worst = max(worst, float(np.abs(got - expected)[mask.numpy()].max()))
    return worst


def _session(file: Path, threads: int | None) -> tuple[Any, int, dict[str, str]]:
    """An ONNX Runtime CPU session of ``file`` with its threads set once, here (default: torch's
    thread count; 1 inter-op thread), its thread count and the file's metadata."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    return session, options.intra_op_num_threads, session.get_modelmeta().custom_metadata_map


class OnnxStudent:
    """An exported student run by ONNX Runtime: the tagger's ``tag_ids`` for a batch of token lists."""

    def __init__(self, file: Path, vocab: Vocab | None = None, threads: int | None = None) -> None:
        """``vocab``: the student's (default: read from the file's folder)."""
        from tagdistill.meta import read_meta

        self.file = Path(file)
        self.vocab = vocab or Vocab.from_dict(read_meta(self.file.parent, "student")["vocab"])
        self.session, self.threads, meta = _session(self.file, threads)
        self.weights_sha256 = meta.get(DIGEST_KEY)
        crf = json.loads(meta[CRF_KEY]) if CRF_KEY in meta else None
        self.crf = {k: np.asarray(v, dtype=np.float32) for k, v in crf.items()} if crf else None

    def emissions(self, batch: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Emissions (B, T, L) and mask (B, T) of a batch, encoded by ``Vocab.encode_arrays``."""
        arrays = self.vocab.encode_arrays(batch)
        return self.session.run(None, dict(zip(INPUTS, arrays, strict=True)))[0], arrays[3]

    def tag_ids(
        self, batch: list[list[str]], probabilities: bool = False
    ) -> tuple[list[list[int]], np.ndarray | None]:
        """``NeuralTagger.tag_ids`` on ONNX Runtime: best label ids per sentence (Viterbi with a CRF,
        argmax per word otherwise) and, with ``probabilities``, the label probabilities (B, T, L):
        softmax, or the CRF's marginals (``crf_marginals``), in NumPy."""
        emissions, mask = self.emissions(batch)
        lengths = mask.sum(axis=1)  # (B,)
        if self.crf is not None:
            ids = viterbi(emissions, lengths, **self.crf)
        else:
            best = emissions.argmax(axis=2)  # (B, T)
            ids = [row[:n].tolist() for row, n in zip(best, lengths, strict=True)]
        if not probabilities:
            return ids, None
        if self.crf is None:
            return ids, np.exp(emissions - _logsumexp(emissions, axis=2)[:, :, None])
        return ids, crf_marginals(emissions, lengths, **self.crf)


def viterbi(
    emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray
) -> list[list[int]]:
    """``CRF.viterbi`` in NumPy, with the same float32 sums in the same order: the best label path of
    each sentence, as many ids as it has real tokens. ``transitions`` (L, L) is [from, to]."""
    B, T, L = emissions.shape
    score = start + emissions[:, 0]  # (B, L)
    back = np.zeros((T, B, L), dtype=np.int64)  # back[t]: the best previous label of each label at t
    for t in range(1, T):
        scores = score[:, :, None] + transitions  # (B, L, L) [b, from, to]
        back[t] = scores.argmax(axis=1)
        live = (t < lengths)[:, None]  # (B, 1) sentences that still have a token at t
        score = np.where(live, scores.max(axis=1) + emissions[:, t], score)
    paths = []
    for b, n in enumerate(lengths.tolist()):
        label = int((score[b] + end).argmax())
        path = [label]
        for t in range(n - 1, 0, -1):
            label = int(back[t, b, label])
            path.append(label)
        paths.append(path[::-1] if n else [])
    return paths


def crf_marginals(
    emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray
) -> np.ndarray:
    """``CRF.marginals`` in NumPy, as ``viterbi`` is ``CRF.viterbi``: per-token label probabilities
    (B, T, L) by forward-backward; rows past a sentence's end are junk. The ONNX Runtime path runs no
    torch op: on this (busy) machine, one softmax in torch took 40 ms, waking torch's thread pool,
    against 0.1 ms in NumPy."""
    T = emissions.shape[1]
    live = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
    alphas = np.empty_like(emissions)  # (B, T, L)
    alphas[:, 0] = start + emissions[:, 0]
    for t in range(1, T):
        scores = alphas[:, t - 1, :, None] + transitions  # (B, L, L) [b, from, to]
        alpha = _logsumexp(scores, axis=1) + emissions[:, t]  # (B, L)
        alphas[:, t] = np.where(live[:, t, None], alpha, alphas[:, t - 1])
    betas = np.empty_like(emissions)  # (B, T, L)
    betas[:, T - 1] = end
    for t in range(T - 2, -1, -1):
        after = transitions + (emissions[:, t + 1] + betas[:, t + 1])[:, None, :]  # (B, L, L) [b, from, to]
        betas[:, t] = np.where(live[:, t + 1, None], _logsumexp(after, axis=2), end)
    log_z = _logsumexp(alphas[:, T - 1] + end, axis=1)  # (B,)
    return np.exp(alphas + betas - log_z[:, None, None])


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(x))) along ``axis``, shifted by the maximum so nothing overflows (NumPy has no
    logsumexp; SciPy's is not a dependency)."""
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def open_runtime(
    folder: Path, runtime: str, device: str, runner: Callable[[Path], OnnxStudent | OnnxTeacher],
    int8: bool = True,
) -> OnnxStudent | OnnxTeacher | None:
    """The ONNX Runtime model ``Tagger.load`` should use, ``runner(file)``, or None for torch.

    ``auto``: the fp32 file when it is there, up to date, on CPU, with onnxruntime installed;
    ``onnx`` / ``onnx-int8``: that file, or an error saying why not; ``torch``: None. ``int8``:
    whether the model has an int8 file (a teacher has none).
    """
    choices = RUNTIMES if int8 else tuple(r for r in RUNTIMES if r != "onnx-int8")
    if runtime not in choices:
        raise ValueError(f"runtime {runtime!r}: choose one of {', '.join(choices)}")
    if runtime == "torch":
        return None
    file = Path(folder) / (INT8_FILE if runtime == "onnx-int8" else ONNX_FILE)
    if runtime == "auto":
        if str(device) != "cpu" or not file.is_file():
            return None
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
    elif not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: run `tagdistill export --model {folder}"
                                f"{' --int8' if runtime == 'onnx-int8' else ''}`")
    onnx = runner(file)
    if onnx.weights_sha256 != weights_digest(folder):
        message = f"{file} was exported from other weights than {folder}'s: run `tagdistill export` again"
        if runtime != "auto":
            raise ValueError(message)
        warnings.warn(message + " (using torch meanwhile)", stacklevel=3)
        return None
    return onnx


class _Logits(nn.Module):
    """A Hugging Face token classifier with tensors in and the logits out, as the exporter needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, S, L)


def export_teacher(folder: Path, sentences: list[list[str]] | None = None) -> dict[str, Any]:
    """Write ``model.onnx`` (fp32) into a teacher folder, after checking its word logits against the
    torch teacher's on ``sentences`` (default: the bundled sample's test split), in batches of 32 and
    one at a time. Returns what was written: file, bytes, the largest word-logit difference."""
    from tagdistill.alignment import batch_tensors, make_windows
    from tagdistill.teacher import Teacher

    folder = Path(folder)
    teacher = Teacher.load(folder, torch.device("cpu"))
    teacher.model.eval()
    (folder / ONNX_FILE).unlink(missing_ok=True)
    sentences = [s for s in (sentences or _sample_sentences()) if s][:TEACHER_CHECK_SENTENCES]
    windows = make_windows(teacher.tokenizer, EXAMPLE, teacher.max_length, teacher.stride)
    example = batch_tensors(windows, teacher.tokenizer.pad_token_id or 0)
    tmp = folder / (ONNX_FILE + ".tmp")
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            _Logits(teacher.model), tuple(example[k] for k in TEACHER_INPUTS), str(tmp), dynamo=False,
            opset_version=OPSET, input_names=list(TEACHER_INPUTS), output_names=["logits"],
            dynamic_axes=TEACHER_AXES,
        )
    _stamp(tmp, {DIGEST_KEY: weights_digest(folder)})
    runner = OnnxTeacher(teacher, tmp)
    diff = 0.0
    for batch_size in (32, 1):
        expected = teacher.word_logits(sentences, batch_size)
        got = runner.word_logits(sentences, batch_size)
        diff = max(diff, *(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True)))
    if not diff <= TOLERANCE:
        tmp.unlink()
        raise RuntimeError(f"the ONNX graph of {folder} differs from torch by {diff:.3g} (> {TOLERANCE})")
    info = {"opset": OPSET, "checked_sentences": len(sentences),
            "fp32": {"file": ONNX_FILE, "bytes": tmp.stat().st_size, "max_abs_diff": diff}}
    tmp.replace(folder / ONNX_FILE)
    return info


class OnnxTeacher:
    """An exported teacher run by ONNX Runtime: the torch ``Teacher``'s windows and word logits
    (``predict``, ``word_logits``), with the logits of each batch of windows from the graph."""

    def __init__(self, teacher: Teacher, file: Path, threads: int | None = None) -> None:
        self.teacher = teacher
        self.labels = teacher.labels
        self.file = Path(file)
        self.session, self.threads, meta = _session(self.file, threads)
        self.weights_sha256 = meta.get(DIGEST_KEY)

    def window_logits(self, windows: Sequence[Window]) -> torch.Tensor:
        """Logits (B, S, L) of a padded batch of windows."""
        from tagdistill.alignment import batch_tensors

        batch = batch_tensors(windows, self.teacher.tokenizer.pad_token_id or 0)
        feed = {k: batch[k].numpy() for k in TEACHER_INPUTS}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def word_logits(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[torch.Tensor]:
        return self.teacher.word_logits(sentences, batch_size, window_logits=self.window_logits)

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        return self.teacher.predict(sentences, batch_size, window_logits=self.window_logits)


def _stamp(path: Path, meta: dict[str, str]) -> None:
    """Add ``meta`` to the ONNX file's metadata (ONNX Runtime reads it as ``custom_metadata_map``)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _sample_sentences() -> list[list[str]]:
    from tagdistill.data import read_file

    return [s.tokens for s in read_file(Path(__file__).parent / "sample" / "test.conll", "conll")]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and the quantizer's advice (deprecation, tracer warnings, "consider
    pre-processing") is about cases this module handles; it would only clutter job logs."""
    root = logging.getLogger()
    drop = _FromOnnxRuntime()
    root.addFilter(drop)  # the quantizer logs on the root logger; nothing else is dropped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)


class _FromOnnxRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

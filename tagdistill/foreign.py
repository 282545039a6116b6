"""Teachers fine-tuned elsewhere: Hugging Face token-classification folders without ``tagdistill.json``.

Their label names are read in IOB2 (``iob2_label``) and mapped onto a dataset's (``label_groups``); a label
that only one side has is a ``LabelMismatch`` naming it. Their weights must be safetensors
(``check_weights``): pickle files are never loaded. Everything here reads ``config.json`` and file
names only, without importing transformers, so the service checks a job's teacher before any work
starts; ``tagdistill.teacher.Teacher.load`` applies the mapping to the model.
"""

from __future__ import annotations

import json
from pathlib import Path

# Weight files that torch.load unpickles (code can run on load): a teacher's weights are safetensors only
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_IOB2_PREFIX = {"B": "B", "I": "I", "S": "B", "U": "B", "E": "I", "L": "I"}  # BIOES and BILOU -> IOB2


class LabelMismatch(ValueError):
    """A teacher's labels (read in IOB2) and a dataset's are not the same set: ``missing`` are the
    dataset's labels the teacher lacks, ``extra`` the teacher's (as it names them) the dataset lacks."""

    def __init__(self, missing: list[str], extra: list[str]) -> None:
        parts = [f"the dataset has {', '.join(missing)}, which the teacher lacks"] if missing else []
        parts += [f"the teacher has {', '.join(extra)}, which the dataset lacks"] if extra else []
        super().__init__("the teacher's labels do not match the dataset's: " + "; ".join(parts))
        self.missing, self.extra = missing, extra


def iob2_label(label: str) -> str:
    """A model's label name in IOB2, as ``schemes.to_iob2`` reads a tag: BIOES/BILOU's ``S-X``/``U-X`` are
    ``B-X``, ``E-X``/``L-X`` are ``I-X``; ``O``, ``B-X``, ``I-X`` and any other name stay as they are."""
    prefix, dash, kind = label.partition("-")
    return f"{_IOB2_PREFIX[prefix]}-{kind}" if dash and kind and prefix in _IOB2_PREFIX else label


def label_groups(model_labels: list[str], labels: list[str]) -> list[list[int]]:
    """For each of ``labels`` (a dataset's), the ids of the model's labels that are it in IOB2 (several for
    a BIOES model: ``B-X`` and ``S-X``); LabelMismatch when a label has no id or an id no label."""
    groups: dict[str, list[int]] = {label: [] for label in labels}
    extra = []
    for i, name in enumerate(model_labels):
        group = groups.get(iob2_label(name))
        if group is None:
            extra.append(name)
        else:
            group.append(i)
    missing = [label for label, ids in groups.items() if not ids]
    if missing or extra:
        raise LabelMismatch(missing, extra)
    return list(groups.values())


def model_labels(path: Path) -> list[str]:
    """The labels of a token-classification folder's ``config.json`` (``id2label``), in id order; ValueError
    when it has none. Reads that one file, so a service can check a folder before any work starts."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")
    try:
        id2label = json.loads(config.read_text()).get("id2label")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"{config.name} is not a JSON object ({exc})") from None
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError("config.json has no id2label: not a token-classification model")
    labels = {str(k): v for k, v in id2label.items()}
    names = [labels.get(str(i)) for i in range(len(labels))]
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"config.json's id2label does not name every id 0 to {len(labels) - 1}")
    return names


def teacher_label_mapping(path: Path, labels: list[str]) -> list[list[int]]:
    """``label_groups`` of the teacher folder ``path`` onto a dataset's ``labels``, from its config.json
    alone: LabelMismatch (naming them) before any work starts, for any teacher folder."""
    return label_groups(model_labels(path), labels)


def check_weights(path: Path) -> None:
    """ValueError unless the folder has safetensors weights: a checkpoint saved only as pickle
    (``pytorch_model.bin``) is refused rather than loaded."""
    path = Path(path)
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_WEIGHTS)
    if pickled:
        raise ValueError(
            f"{path} has weights only as pickle ({', '.join(pickled)}), which tagdistill does not load: "
            "save the model with save_pretrained(..., safe_serialization=True) (model.safetensors)"
        )
    raise ValueError(f"{path} has no weights (*.safetensors)")

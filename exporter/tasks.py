"""The task registry: one declarative entry per task (model class, ONNX I/O, axes, agreement metric)."""

from __future__ import annotations

from dataclasses import dataclass

import qdqbert
from qdqbert.modeling_qdqbert import QDQBertPreTrainedModel

from .errors import UsageError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Task:
    """name: CLI name. model_class: the QDQBERT head. outputs: ONNX output names, which are also the
    field names of the model's output. output_axes: the dynamic axes of each output ("batch",
    "sequence", "choices"). agreement: how two runs are judged to agree (see engines.compare).
    pair: inputs are text pairs (question/context, sentence A/B). choices: multiple-choice layout
    (batch, choices, sequence)."""

    name: str
    model_class: type[QDQBertPreTrainedModel]
    outputs: tuple[str, ...]
    output_axes: dict[str, dict[int, str]]
    agreement: str
    pair: bool = False
    choices: bool = False

    @property
    def input_axes(self) -> dict[str, dict[int, str]]:
        axes = {0: "batch", 1: "choices", 2: "sequence"} if self.choices else {0: "batch", 1: "sequence"}
        return {name: axes for name in INPUT_NAMES}


_BS = {0: "batch", 1: "sequence"}
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("qa", qdqbert.QDQBertForQuestionAnswering, ("start_logits", "end_logits"),
             {"start_logits": _BS, "end_logits": _BS}, "span", pair=True),
        Task("sequence-classification", qdqbert.QDQBertForSequenceClassification, ("logits",),
             {"logits": {0: "batch"}}, "argmax", pair=True),
        Task("token-classification", qdqbert.QDQBertForTokenClassification, ("logits",),
             {"logits": _BS}, "token_argmax"),
        Task("multiple-choice", qdqbert.QDQBertForMultipleChoice, ("logits",),
             {"logits": {0: "batch"}}, "argmax", pair=True, choices=True),
        Task("masked-lm", qdqbert.QDQBertForMaskedLM, ("logits",),
             {"logits": _BS}, "token_argmax"),
        Task("next-sentence", qdqbert.QDQBertForNextSentencePrediction, ("logits",),
             {"logits": {0: "batch"}}, "argmax", pair=True),
        Task("feature-extraction", qdqbert.QDQBertModel, ("last_hidden_state", "pooler_output"),
             {"last_hidden_state": _BS, "pooler_output": {0: "batch"}}, "cosine"),
    )
}  # fmt: skip


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None

"""`qat`: fine-tune a calibrated QDQBERT with fake quant in the loop, optionally distilling from the
FP32 model (NVIDIA's best BERT INT8 recipe: QAT + distillation). Saves a QDQBERT checkpoint that
`build --model` accepts, calibration kept (amax is frozen during QAT)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.nn import functional as F

from qdqbert import quantizers, set_quantization
from qdqbert.quant import QuantMode

from . import data as data_mod
from .distributed import rank_and_world, shard
from .errors import UsageError
from .tasks import Task

LABELLED = {
    "qa": "SQuAD-format JSON (question, context, answers)",
    "sequence-classification": "JSONL/CSV with text (+ text_pair) and an integer label",
    "next-sentence": "JSONL/CSV with text, text_pair and label (0: continuation, 1: random)",
    "token-classification": "JSONL with tokens and tags (one integer tag per token)",
    "multiple-choice": "JSONL with text, choices (list) and label (index of the right choice)",
    "masked-lm": "any text (15% of tokens are masked at random)",
    "feature-extraction": "any text (needs --distill: the student matches the FP32 hidden states)",
}


def add_qat_parser(sub, add_model, add_calibration, add_common) -> None:
    parser = sub.add_parser("qat", help="quantization-aware fine-tuning on labelled data")
    add_model(parser)
    add_calibration(parser)
    group = parser.add_argument_group("training")
    group.add_argument("--train-data", required=True, help="labelled data; per task: " +
                       "; ".join(f"{k}: {v}" for k, v in LABELLED.items()).replace("%", "%%"))  # fmt: skip
    group.add_argument("--out", required=True, help="directory for the fine-tuned QDQBERT checkpoint")
    group.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    group.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate (default 2e-5)")
    group.add_argument("--batch-size", type=int, default=8, help="per-process batch size (default 8)")
    group.add_argument("--distill", action="store_true", help="add a distillation loss from the FP32 model")
    group.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (default 2)")
    group.add_argument("--alpha", type=float, default=0.5, help="distillation weight, 0..1 (default 0.5)")
    add_common(parser)
    parser.set_defaults(run=_cmd_qat)


def _cmd_qat(args, log, warn) -> int:
    path = run_qat(args, warn, log)
    print(f"QAT checkpoint → {path} (use it with: python -m exporter build --task {args.task} --model {path})")
    return 0


def labelled_batch(
    samples: list[data_mod.Sample], tokenizer, task: Task, seq_len: int, seed: int
) -> dict[str, torch.Tensor]:
    """Tokenized inputs plus the label tensors the task's QDQBERT head takes."""
    if task.name == "qa":
        return _qa_batch(samples, tokenizer, seq_len)
    if task.name == "token-classification":
        return _token_batch(samples, tokenizer, seq_len)
    if task.name == "multiple-choice":
        return _choice_batch(samples, tokenizer, seq_len)
    batch = data_mod.encode(samples, tokenizer, task, seq_len)
    if task.name == "masked-lm":
        return batch | _mask_tokens(batch, tokenizer, seed)
    if task.name == "feature-extraction":
        return batch
    labels = [s.label for s in samples]
    if any(label is None for label in labels):
        raise UsageError(f"--train-data for {task.name} needs a label on every sample ({LABELLED[task.name]})")
    return batch | {"labels": torch.tensor([int(label) for label in labels])}


def _qa_batch(samples, tokenizer, seq_len) -> dict[str, torch.Tensor]:
    if any(s.pair is None or s.answer_start is None or s.answer_text is None for s in samples):
        raise UsageError(f"--train-data for qa needs {LABELLED['qa']}")
    encoded = tokenizer([s.text for s in samples], [s.pair for s in samples], padding=True, truncation="only_second",
                        max_length=seq_len, return_offsets_mapping=True, return_tensors="pt")  # fmt: skip
    starts, ends = [], []
    for i, s in enumerate(samples):
        first, last = s.answer_start, s.answer_start + len(s.answer_text)
        sequence_ids = encoded.sequence_ids(i)
        start = end = 0  # answers cut off by truncation point at [CLS]
        for t, (a, b) in enumerate(encoded["offset_mapping"][i].tolist()):
            if sequence_ids[t] != 1:
                continue
            if a <= first < b or (start == 0 and a >= first and b <= last and b > a):
                start = start or t
            if a < last <= b:
                end = t
        if not (start and end):
            start = end = 0
        starts.append(start)
        ends.append(end)
    batch = {k: v for k, v in encoded.items() if k in data_mod.INPUTS}
    return batch | {"start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}


def _token_batch(samples, tokenizer, seq_len) -> dict[str, torch.Tensor]:
    if any(s.words is None or s.label is None for s in samples):
        raise UsageError(f"--train-data for token-classification needs {LABELLED['token-classification']}")
    encoded = tokenizer([s.words for s in samples], is_split_into_words=True, padding=True, truncation=True,
                        max_length=seq_len, return_tensors="pt")  # fmt: skip
    labels = torch.full_like(encoded["input_ids"], -100)  # sub-tokens after the first are ignored
    for i, s in enumerate(samples):
        previous = None
        for t, word in enumerate(encoded.word_ids(i)):
            if word is not None and word != previous:
                labels[i, t] = int(s.label[word])
            previous = word
    return {k: v for k, v in encoded.items() if k in data_mod.INPUTS} | {"labels": labels}


def _choice_batch(samples, tokenizer, seq_len) -> dict[str, torch.Tensor]:
    choices = [s.extra.get("choices") for s in samples]
    if any(not c for c in choices) or any(s.label is None for s in samples):
        raise UsageError(f"--train-data for multiple-choice needs {LABELLED['multiple-choice']}")
    width = len(choices[0])
    if any(len(c) != width for c in choices):
        raise UsageError("--train-data for multiple-choice: every sample needs the same number of choices")
    firsts = [s.text for s in samples for _ in range(width)]
    flat = tokenizer(firsts, [c for cs in choices for c in cs], padding=True, truncation=True, max_length=seq_len,
                     return_tensors="pt")  # fmt: skip
    batch = {k: v.view(len(samples), width, -1) for k, v in flat.items() if k in data_mod.INPUTS}
    return batch | {"labels": torch.tensor([int(s.label) for s in samples])}


def _mask_tokens(batch: dict[str, torch.Tensor], tokenizer, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = batch["input_ids"].clone()
    special = torch.tensor([[t in tokenizer.all_special_ids for t in row] for row in ids.tolist()])
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special & (batch["attention_mask"] > 0)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids[chosen] = tokenizer.mask_token_id
    return {"input_ids": ids, "labels": labels}


def _distill_loss(student, teacher, task: Task, temperature: float) -> torch.Tensor:
    if task.name == "feature-extraction":
        return F.mse_loss(student.last_hidden_state, teacher.last_hidden_state)
    losses = []
    for name in task.outputs:
        s, t = student[name] / temperature, teacher[name] / temperature
        losses.append(F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean") * temperature**2)
    return sum(losses) / len(losses)


def run_qat(args, warn, log):
    from .preparation import BuildConfig, load, prepare_quantizers, quant_json, validate_config
    from .staging import Staging

    if not 0 <= args.alpha <= 1:
        raise UsageError(f"--alpha {args.alpha}: use a weight between 0 and 1")
    if args.task == "feature-extraction" and not args.distill:
        raise UsageError("qat for feature-extraction has no labels: add --distill to match the FP32 hidden states")
    config = BuildConfig(task=args.task, model=args.model, out=args.out, calib_data=args.calib_data,
                         calibrator=args.calibrator, percentile=args.percentile, num_calib=args.num_calib,
                         seq_len=args.seq_len, seed=args.seed, skip_quant=args.skip_quant,
                         batch=(1, args.batch_size, args.batch_size))  # fmt: skip
    validate_config(config)
    train = data_mod.read_samples(args.train_data)
    loaded = load(config, warn, num_labels=_num_labels(train, args.task))
    model, task = loaded.model, loaded.task
    qs = quantizers(model)
    if any(q.mode is QuantMode.QUANTIZE and not q.is_calibrated for q in qs.values()):
        calib = data_mod.select(data_mod.read_samples(config.calib_data), config.num_calib, "--num-calib", warn)
        log(f"the model is not calibrated yet: calibrating ({config.calibrator}, {len(calib)} samples)")
        prepare_quantizers(loaded, config, calib)
    rank, world = rank_and_world()
    teacher = None
    if args.distill:
        teacher = copy.deepcopy(model).eval()
        set_quantization(teacher, False)
    generator = torch.Generator().manual_seed(args.seed)
    mine = shard(train, rank, world)
    steps_per_epoch = max(1, -(-len(mine) // args.batch_size))
    total = max(1, round(args.epochs * steps_per_epoch))
    trainable = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    from tqdm.auto import tqdm

    model.train()
    progress = tqdm(range(total), desc="qat", unit="step", disable=rank != 0)
    history: list[float] = []
    for step in progress:
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(mine), generator=generator).tolist()
        index = order[(step % steps_per_epoch) * args.batch_size :][: args.batch_size]
        batch = labelled_batch([mine[i] for i in index], loaded.tokenizer, task, config.seq_len, args.seed + step)
        out = trainable(**batch, return_dict=True)
        loss = out.loss if task.name != "feature-extraction" else torch.zeros(())
        if teacher is not None:
            with torch.no_grad():
                inputs = {k: v for k, v in batch.items() if k in data_mod.INPUTS}
                target = teacher(**inputs, return_dict=True)
            distill = _distill_loss(out, target, task, args.temperature)
            loss = distill if task.name == "feature-extraction" else (1 - args.alpha) * loss + args.alpha * distill
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        progress.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    if rank == 0:
        log(f"loss {history[0]:.4f} → {history[-1]:.4f} over {total} steps")
        with Staging(config.out_dir) as staging:
            model.save_pretrained(staging.path)
            loaded.tokenizer.save_pretrained(staging.path)
            (staging.path / "quant.json").write_bytes(quant_json(model, {"method": config.calibrator}))
            (staging.path / "qat.json").write_text(_history_json(history, args))
            staging.publish()
    return config.out_dir


def _num_labels(samples: list[data_mod.Sample], task: str) -> int | None:
    """Head size the labels need, for the tasks whose head size is the number of classes."""
    if task not in ("sequence-classification", "token-classification"):
        return None
    labels = [t for s in samples if s.label is not None for t in (s.label if isinstance(s.label, list) else [s.label])]
    try:
        values = [int(label) for label in labels]
    except (TypeError, ValueError):
        raise UsageError(f"--train-data for {task}: labels must be integers (class indices)") from None
    if any(v < 0 for v in values):
        raise UsageError(f"--train-data for {task}: labels must be class indices ≥ 0")
    return max(values) + 1 if values and max(values) >= 1 else None


def _history_json(history: list[float], args: Any) -> str:
    import json

    settings = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "distill", "temperature", "alpha", "seed")}
    return json.dumps({"settings": settings, "loss": history}, indent=1) + "\n"

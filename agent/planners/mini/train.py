"""Training the mini planner from scratch: VITRON's three stages at CPU size.

1. Invocation-oriented instruction tuning: cross-entropy on each wordpiece's tag and on the request's intent (the
   steps are composed from the tags, `compose.compose`, so learning the tags is learning the invocations).
2. Embedding-oriented alignment: each step's task-specific signal regresses to the backend encoder's embedding of
   the step's instruction (MiniLM, the embedded default); the task-invariant one to the step's object phrase.
3. Cross-task synergy: a task discriminator reads the task-invariant features through gradient reversal, so they
   stop telling tasks apart, while a task classifier keeps the task-specific features telling them apart; the
   stage closes with LEACE concept erasure of the module from the invariant features (`erase_task_concept`),
   folded into the invariant head, since the adversary alone leaves traces a fresh linear probe still finds.

Stages 2 and 3 train the heads on the tagger's states with the tagger frozen: what the planner reads stays exactly
what stage 1 taught. The training closes by calibrating the confidence threshold on the validation split.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .compose import Span
from .data import Example, Split, generate_splits
from .encoder import MiniLM, load_minilm
from .inference import INTENTS, MODULE_CODES, TAG_INDEX, MiniConfig, NumpyTagger, load_reader, step_state
from .model import MiniPlannerModel

Progress = Callable[[str], None]
ASK_SHARE = 0.01
"""The share of the validation requests the planner reads right that it may still ask about (sets the threshold);
chosen on the hand-written development set among 0-4% (1%: turns right 98.0%, silent-wrong 0.8%, asks 1.5% there;
0%: 98.5%, 0.8%, 0.9%; 4%: 97.7%, 0.8%, 1.8%): kept at 1%, the confidence's safety net for phrasings the development
set does not hold, since no share changed a silent-wrong turn there."""


@dataclass
class TrainConfig:
    """How much data and how many passes; the defaults make the shipped checkpoint."""

    sizes: dict[str, int] = field(default_factory=lambda: {"train": 16000, "val": 800, "test": 2000})
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    head_epochs: int = 40
    synergy_epochs: int = 60
    head_lr: float = 2e-3
    synergy_weight: float = 1.0
    adversary_steps: int = 4
    threads: int | None = None  # torch's choice
    # the tagger reads three of MiniLM's six layers: the lower ones hold more of each word's syntax (which noun
    # an edit is about), the last its meaning in the sentence
    model: MiniConfig = field(default_factory=lambda: MiniConfig(encoder_layers=(2, 4, 6)))


# --- encoding examples --------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """One example, encoded once (the encoder is frozen), with its gold tags and intent."""

    example: Example
    states: torch.Tensor  # [s, 384]
    words: torch.Tensor  # [s] bool: wordpieces of the text (not [CLS]/[SEP])
    offsets: list[tuple[int, int]]
    tags: torch.Tensor  # [s] tag index, -100 on special tokens
    intent: int


def encode_examples(minilm: MiniLM, examples: Sequence[Example], batch_size: int = 128,
                    progress: Progress | None = None, layers: Sequence[int] | None = None) -> list[Encoded]:
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = minilm.encode([e.text for e in chunk], layers=layers)
        for row, example in enumerate(chunk):
            n = int(batch.mask[row].sum())
            offsets = batch.offsets[row][:n]
            words = batch.copyable[row][:n]
            # a question's or an undo's words teach the tagger nothing: tagging them all O would teach it that
            # "the lemon" in "what colour is the lemon?" is never an object
            tags = (gold_tags(example.spans, offsets, words.tolist()) if example.intent == "plan"
                    else [-100] * n)
            out.append(Encoded(example, batch.hidden[row, :n], words, offsets, torch.tensor(tags),
                               INTENTS.index(example.intent)))
        if progress and start % (batch_size * 20) == 0:
            progress(f"encoded {start + len(chunk)}/{len(examples)} requests")
    return out


def gold_tags(spans: Sequence[Span], offsets: Sequence[tuple[int, int]], words: Sequence[bool]) -> list[int]:
    """Each wordpiece's tag index: the span holding its first character (`B-` on a span's first piece when the
    span begins a new one, `I-` otherwise), `O` outside spans, -100 on special tokens."""
    tags = []
    seen: set[int] = set()
    for (a, _b), word in zip(offsets, words, strict=True):
        if not word:
            tags.append(-100)
            continue
        index = next((i for i, s in enumerate(spans) if s.start <= a < s.end), None)
        if index is None:
            tags.append(TAG_INDEX["O"])
            continue
        span = spans[index]
        edge = "B" if span.begins and index not in seen else "I"
        seen.add(index)
        tags.append(TAG_INDEX[f"{edge}-{span.tag}"])
    return tags


def collate(items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    length = max(item.states.shape[0] for item in items)
    states = torch.zeros(len(items), length, items[0].states.shape[1])
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    tags = torch.full((len(items), length), -100, dtype=torch.long)
    for row, item in enumerate(items):
        n = item.states.shape[0]
        states[row, :n], mask[row, :n], tags[row, :n] = item.states, True, item.tags
    return {"states": states, "mask": mask, "tags": tags,
            "intents": torch.tensor([item.intent for item in items])}


def _batches(items: Sequence[Encoded], size: int, rng: random.Random) -> list[list[Encoded]]:
    order = sorted(range(len(items)), key=lambda i: (items[i].states.shape[0], rng.random()))
    batches = [[items[i] for i in order[start:start + size]] for start in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def _loss(model: MiniPlannerModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    tag_logits, intent_logits, _ = model(batch["states"], batch["mask"])
    return (F.cross_entropy(tag_logits.flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)
            + F.cross_entropy(intent_logits, batch["intents"]))


def stage1_instruction_tuning(model: MiniPlannerModel, data: Sequence[Encoded], *, epochs: int, batch_size: int,
                              lr: float, seed: int = 0, progress: Progress | None = None,
                              max_steps: int | None = None) -> list[float]:
    """Tags and intents; returns the loss of every update."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = max_steps or epochs * math.ceil(len(data) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total, 2), pct_start=0.1)
    losses: list[float] = []
    model.train()
    for epoch in range(epochs):
        for batch in _batches(data, batch_size, rng):
            loss = _loss(model, collate(batch))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if len(losses) >= total:
                model.eval()
                return losses
        if progress:
            progress(f"stage 1 epoch {epoch + 1}/{epochs}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    model.eval()
    return losses


@torch.no_grad()
def validation_loss(model: MiniPlannerModel, data: Sequence[Encoded], batch_size: int = 128) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        chunk = data[start:start + batch_size]
        total += float(_loss(model, collate(chunk))) * len(chunk)
    return total / max(1, len(data))


# --- signal states ------------------------------------------------------------------------------------------


@dataclass
class SignalSet:
    """Per gold step: the tagger's state over its words, module, and the two alignment targets."""

    hidden: torch.Tensor  # [n, width]
    codes: list[str]
    labels: torch.Tensor  # [n] module index
    specific_target: torch.Tensor  # [n, 384] MiniLM(instruction)
    invariant_target: torch.Tensor  # [n, 384] MiniLM(object phrase)


@torch.no_grad()
def signal_states(model: MiniPlannerModel, data: Sequence[Encoded], batch_size: int = 128) -> torch.Tensor:
    """The state of every gold step, example by example, steps in order."""
    model.eval()
    rows = []
    for start in range(0, len(data), batch_size):
        chunk = data[start:start + batch_size]
        _, _, hidden = model(**{k: v for k, v in collate(chunk).items() if k in ("states", "mask")})
        for row, item in enumerate(chunk):
            states = hidden[row].numpy()
            for step in item.example.steps:
                rows.append(torch.from_numpy(step_state(states, item.offsets, item.words.tolist(), step)))
    return torch.stack(rows) if rows else torch.zeros(0, model.config.width)


def signal_set(model: MiniPlannerModel, minilm: MiniLM, data: Sequence[Encoded]) -> SignalSet:
    steps = [step for item in data for step in item.example.steps]
    hidden = signal_states(model, data)
    codes = [step.module for step in steps]
    return SignalSet(hidden, codes, torch.tensor([MODULE_CODES.index(c) for c in codes]),
                     minilm.sentence_embeddings([step.instruction for step in steps]),
                     minilm.sentence_embeddings([step.object_phrase for step in steps]))


def _regression(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # direction (what a cosine-reading backend uses) plus scale, so the output lies in the encoder's space
    cosine = 1 - F.cosine_similarity(prediction, target, dim=-1)
    return (cosine + 0.5 * (prediction - target).pow(2).sum(-1)).mean()


# --- stage 2 ------------------------------------------------------------------------------------------------


def stage2_alignment(model: MiniPlannerModel, signals: SignalSet, *, epochs: int, lr: float, batch_size: int = 256,
                     seed: int = 0, progress: Progress | None = None, max_steps: int | None = None) -> list[float]:
    """Regress the task-specific heads to MiniLM(instruction) and the task-invariant head to MiniLM(object)."""
    heads = model.signals
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    heads.train()
    for epoch in range(epochs):
        for index in torch.randperm(len(signals.codes), generator=generator).split(batch_size):
            h = signals.hidden[index]
            codes = [signals.codes[i] for i in index.tolist()]
            loss = (_regression(heads.specific(codes, h), signals.specific_target[index])
                    + _regression(heads.task_invariant(h), signals.invariant_target[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if max_steps and len(losses) >= max_steps:
                heads.eval()
                return losses
        if progress and (epoch + 1) % 10 == 0:
            progress(f"stage 2 epoch {epoch + 1}/{epochs}: loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    heads.eval()
    return losses


# --- stage 3 ------------------------------------------------------------------------------------------------


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -weight (Ganin & Lempitsky's gradient reversal)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return _ReverseGradient.apply(x, weight)


class TaskDiscriminator(nn.Module):
    """Guesses the module from features: a linear and a non-linear guess, so neither kind of trace survives.

    It reads the features standardised per dimension: a trace hidden in a low-variance direction is as visible to
    it as to any probe that standardises first, so the reversed gradient removes that trace too.
    """

    def __init__(self, size: int, tasks: int = len(MODULE_CODES), hidden: int = 128) -> None:
        super().__init__()
        self.standardise = nn.BatchNorm1d(size, affine=False)
        self.linear = nn.Linear(size, tasks)
        self.mlp = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, tasks))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.standardise(x)
        return self.linear(x), self.mlp(x)


def stage3_synergy(model: MiniPlannerModel, signals: SignalSet, *, epochs: int, lr: float, weight: float = 1.0,
                   batch_size: int = 256, seed: int = 0, progress: Progress | None = None,
                   max_steps: int | None = None, adversary_steps: int = 2) -> dict[str, list[float]]:
    """Adversarial training of the task-invariant head (plus keeping both alignments and task-specific separation).

    Returns per-update losses: `adversary` (the discriminator's cross-entropy on the invariant features; it rises
    towards log(7) as they stop telling tasks apart), `alignment` and `specific_task`.
    """
    torch.manual_seed(seed)
    heads = model.signals
    size = heads.task_invariant[-1].out_features
    adversary = TaskDiscriminator(size)
    classifier = nn.Linear(heads.task_specific[MODULE_CODES[0]][-1].out_features, len(MODULE_CODES))
    optimizer = torch.optim.AdamW([*heads.parameters(), *adversary.parameters(), *classifier.parameters()], lr=lr,
                                  weight_decay=0.01)
    # the adversary also gets extra updates of its own, so it keeps up with the head it is chasing
    adversary_optimizer = torch.optim.AdamW(adversary.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(signals.codes) / batch_size)
    total = max_steps or epochs * per_epoch
    history: dict[str, list[float]] = {"adversary": [], "alignment": [], "specific_task": []}
    heads.train()
    step = 0
    for epoch in range(epochs):
        for index in torch.randperm(len(signals.codes), generator=generator).split(batch_size):
            progress_fraction = step / max(1, total)
            # DANN's schedule: reversal weight ramps from 0 to `weight` so the adversary learns first
            strength = weight * (2 / (1 + math.exp(-10 * progress_fraction)) - 1)
            h = signals.hidden[index]
            labels = signals.labels[index]
            codes = [signals.codes[i] for i in index.tolist()]
            specific = heads.specific(codes, h)
            invariant = heads.task_invariant(h)
            alignment = (_regression(specific, signals.specific_target[index])
                         + _regression(invariant, signals.invariant_target[index]))
            linear, mlp = adversary(reverse_gradient(invariant, strength))
            adversarial = F.cross_entropy(linear, labels) + F.cross_entropy(mlp, labels)
            specific_task = F.cross_entropy(classifier(specific), labels)
            loss = alignment + adversarial + 0.1 * specific_task
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for _ in range(adversary_steps):
                linear, mlp = adversary(invariant.detach())
                chase = F.cross_entropy(linear, labels) + F.cross_entropy(mlp, labels)
                adversary_optimizer.zero_grad()
                chase.backward()
                adversary_optimizer.step()
            history["adversary"].append(adversarial.item() / 2)
            history["alignment"].append(alignment.item())
            history["specific_task"].append(specific_task.item())
            step += 1
            if step >= total:
                break
        if progress and (epoch + 1) % 10 == 0:
            recent = {k: sum(v[-per_epoch:]) / len(v[-per_epoch:]) for k, v in history.items()}
            progress(f"stage 3 epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in recent.items()))
        if step >= total:
            break
    heads.eval()
    return history


@torch.no_grad()
def erase_task_concept(model: MiniPlannerModel, signals: SignalSet, tolerance: float = 1e-4) -> dict[str, int]:
    """Close stage 3 with LEACE (least-squares concept erasure, Belrose et al. 2023) of the module from the
    task-invariant features, folded into the invariant head's last layer as a fixed affine map.

    On the training signals' features x (mean mu, covariance S = V diag(l) V^T): whiten with W = S^(-1/2), project
    out the whitened cross-covariance with the one-hot module, un-whiten: r(x) = mu + W^+ (I - Q) W (x - mu). Every
    module then has the same mean feature, so no linear classifier beats a constant one on that distribution.

    Whitening and un-whitening run only over the principal directions (eigenvalue >= `tolerance` x the largest);
    the others are set to their mean. Stage 3 leaves these features badly conditioned (their eigenvalues span some
    13 orders of magnitude), and an erasure fitted in the faintest directions holds only on the very signals it was
    fitted on: a probe trained on part of them and scored on unseen phrasings finds the module there again
    (validation phrasings, 1/7 chance: 0.25-0.30 at tolerances 1e-5 to 1e-9, 0.20 at the default 1e-4).
    Those directions carry nothing of the alignment (its loss does not move). Returns how many directions were
    kept and how many of those were erased.
    """
    head = model.signals.task_invariant
    x = head(signals.hidden).double()
    mean = x.mean(0)
    centred = x - mean
    labels = F.one_hot(signals.labels, len(MODULE_CODES)).double()
    covariance = centred.T @ centred / len(x)
    cross = centred.T @ (labels - labels.mean(0)) / len(x)
    values, vectors = torch.linalg.eigh(covariance)
    keep = values >= tolerance * values.max()
    values, vectors = values[keep], vectors[:, keep]
    whiten = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    unwhiten = vectors @ torch.diag(values.sqrt()) @ vectors.T
    basis, strengths, _ = torch.linalg.svd(whiten @ cross, full_matrices=False)
    basis = basis[:, strengths > 1e-10 * strengths.max()]
    eraser = unwhiten @ (torch.eye(len(mean), dtype=torch.float64) - basis @ basis.T) @ whiten
    last = head[-1]  # r(Ah + b) = (PA)h + Pb + (I - P)mu
    last.bias.copy_((eraser @ last.bias.double() + mean - eraser @ mean).float())
    last.weight.copy_((eraser @ last.weight.double()).float())
    return {"kept": int(keep.sum()), "erased": int(basis.shape[1])}


# --- the whole recipe ---------------------------------------------------------------------------------------


def train(out_folder: str | Path, seed: int = 0, progress: Progress | None = print,
          config: TrainConfig | None = None) -> dict[str, Any]:
    """Train the mini planner from scratch into `out_folder` (config, weights, ablation head); return a summary."""
    config = config or TrainConfig()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(Path(out_folder), seed, progress or (lambda _message: None), config)
    finally:
        torch.set_num_threads(threads)


def _train(out_folder: Path, seed: int, say: Progress, config: TrainConfig) -> dict[str, Any]:
    started = time.perf_counter()
    random.seed(seed)
    torch.manual_seed(seed)
    minilm = load_minilm()
    sizes: dict[Split, int] = {"train": config.sizes["train"], "val": config.sizes["val"]}
    data = generate_splits(sizes, seed)
    say(f"generated {sizes} examples")
    encoded = {split: encode_examples(minilm, examples, progress=say, layers=config.model.encoder_layers)
               for split, examples in data.items()}
    model = MiniPlannerModel(copy.deepcopy(config.model))

    t1 = time.perf_counter()
    losses = stage1_instruction_tuning(model, encoded["train"], epochs=config.epochs, batch_size=config.batch_size,
                                       lr=config.lr, seed=seed, progress=say)
    val_loss = validation_loss(model, encoded["val"])
    say(f"stage 1 done in {time.perf_counter() - t1:.0f}s: val loss {val_loss:.4f}")

    signals = signal_set(model, minilm, encoded["train"])
    stage2 = stage2_alignment(model, signals, epochs=config.head_epochs, lr=config.head_lr, seed=seed, progress=say)
    ablation = {k: v.detach().clone() for k, v in model.signals.state_dict().items()}
    stage3 = stage3_synergy(model, signals, epochs=config.synergy_epochs, lr=config.head_lr,
                            weight=config.synergy_weight, seed=seed, progress=say,
                            adversary_steps=config.adversary_steps)
    erased = erase_task_concept(model, signals)
    say(f"stage 3 done: LEACE erased {erased['erased']} module directions from {erased['kept']} principal ones")
    model.config.threshold, val_right = calibrate_threshold(model, data["val"])
    say(f"threshold {model.config.threshold:.4f} (validation requests read right: {val_right:.4f})")
    seconds = time.perf_counter() - started
    model.config.extra = {
        "seed": seed,
        "data_sizes": config.sizes,
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "stage1_final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 5),
        "stage1_val_loss": round(val_loss, 5),
        "stage2_final_loss": round(stage2[-1], 5),
        "stage3_final_adversary_loss": round(stage3["adversary"][-1], 5),
        "stage3_erasure": erased,
        "val_read_right": round(val_right, 4),
        "train_config": {k: v for k, v in asdict(config).items() if k != "model"},
    }
    model.save(out_folder, ablation_heads=ablation)
    say(f"saved {out_folder} after {seconds:.0f}s")
    return dict(model.config.extra)


def calibrate_threshold(model: MiniPlannerModel, examples: Sequence[Example]) -> tuple[float, float]:
    """The confidence threshold: low enough that the planner asks about at most `ASK_SHARE` of the validation
    requests it reads right (validation phrasings only: neither the test split nor the hand-written set).
    Returns it and the share of validation requests read right."""
    from .planner import read_request

    tagger = NumpyTagger({k: v.numpy() for k, v in model.state_dict().items()}, model.config)
    reader = load_reader()
    right = []
    for example in examples:
        reading = read_request(tagger, reader, example.text, example.context)
        if reading.intent == example.intent and [(s.module, s.instruction, s.area) for s in reading.steps] == [
                (s.module, s.instruction, s.area) for s in example.steps]:
            right.append(reading.confidence)
    right.sort()
    threshold = right[int(ASK_SHARE * len(right))] if right else 0.0
    return threshold, len(right) / max(1, len(examples))

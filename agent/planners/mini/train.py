"""Training the mini planner from scratch: VITRON's three stages at CPU size.

1. Invocation-oriented instruction tuning: teacher-forced cross-entropy on the grammar (copy or generate).
2. Embedding-oriented alignment: each step's task-specific signal regresses to the backend encoder's embedding of
   the step's instruction (MiniLM, the embedded default); the task-invariant one to the step's object phrase.
3. Cross-task synergy: a task discriminator reads the task-invariant features through gradient reversal, so they
   stop telling tasks apart, while a task classifier keeps the task-specific features telling them apart; the
   stage closes with LEACE concept erasure of the module from the invariant features (`erase_task_concept`),
   folded into the invariant head, since the adversary alone leaves traces a fresh linear probe still finds.

Stages 2 and 3 train the heads on the decoder's signal states with the planner frozen: the plan text the planner
writes stays exactly what stage 1 taught. With a real LLM the same loops run on its hidden states (LoRA-tuned in
stage 1); only the feature extraction changes.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import Example, Split, generate_splits
from .encoder import MiniLM, load_minilm
from .model import (
    ALIAS,
    END_INSTRUCTION,
    EOS,
    MODULE_CODES,
    MODULE_IDS,
    N_FIXED,
    PAD,
    SIGNAL,
    STEP_REF_IDS,
    MiniConfig,
    MiniPlannerModel,
)

Progress = Callable[[str], None]


@dataclass
class TrainConfig:
    """How much data and how many passes; the defaults make the shipped checkpoint."""

    sizes: dict[str, int] = field(default_factory=lambda: {"train": 6000, "val": 400, "test": 1500})
    epochs: int = 8
    batch_size: int = 48
    lr: float = 1.5e-3
    head_epochs: int = 40
    synergy_epochs: int = 60
    head_lr: float = 2e-3
    synergy_weight: float = 1.0
    adversary_steps: int = 4
    threads: int | None = 1  # on a small shared CPU one thread beats two (no spin-waiting); None: torch's choice
    model: MiniConfig = field(default_factory=MiniConfig)


# --- encoding examples --------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """One example, encoded once (the encoder is frozen), with its gold output tokens."""

    example: Example
    states: torch.Tensor  # [s, 384]
    copyable: torch.Tensor  # [s] bool
    target: list[int]  # output tokens ending in EOS; copies are N_FIXED + source position


def encode_examples(minilm: MiniLM, examples: Sequence[Example], batch_size: int = 64,
                    progress: Progress | None = None) -> list[Encoded]:
    """Run the frozen encoder once over every example (batched by length) and build the gold token sequences."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text) + len(examples[i].context))
    out: list[Encoded | None] = [None] * len(examples)
    for n, start in enumerate(range(0, len(order), batch_size)):
        chunk = [examples[i] for i in order[start:start + batch_size]]
        batch = minilm.encode([e.text for e in chunk], [e.context for e in chunk])
        for row, (index, example) in enumerate(zip(order[start:start + batch_size], chunk, strict=True)):
            length = int(batch.mask[row].sum())
            target = gold_tokens(example, batch.offsets[row][:length], batch.segments[row][:length])
            out[index] = Encoded(example, batch.hidden[row, :length].clone(), batch.copyable[row, :length].clone(),
                                 target)
        if progress and n % 40 == 0:
            progress(f"encoded {min(start + batch_size, len(order))}/{len(order)} examples")
    return [e for e in out if e is not None]


def gold_tokens(example: Example, offsets: Sequence[Sequence[int]], segments: Sequence[int]) -> list[int]:
    """The output tokens that write `example`'s plan: module, copied words, `</instruction>`, inputs, signal."""
    def positions(segment: int, a: int, b: int) -> list[int]:
        return [i for i, ((s, e), seg) in enumerate(zip(offsets, segments, strict=True))
                if seg == segment and s < b and e > a and e > s]

    tokens: list[int] = []
    for step in example.steps:
        tokens.append(MODULE_IDS[step.module])
        for a, b in step.spans:
            tokens += [N_FIXED + i for i in positions(0, a, b)]
        tokens.append(END_INSTRUCTION)
        for ref in step.inputs:
            name = ref[1:]
            if name.isdigit():
                tokens.append(STEP_REF_IDS[int(name)])
                continue
            # an alias is copied from where the user wrote it, else from the context line
            found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", example.text, re.IGNORECASE)
            where = positions(0, *found.span()) if found else []
            if not where:
                found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", example.context)
                where = positions(1, *found.span()) if found else []
            tokens += [ALIAS, *(N_FIXED + i for i in where)]
        tokens.append(SIGNAL)
    tokens.append(EOS)
    return tokens


def collate(items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    """Pad a batch: encoder states, masks, decoder inputs ([BOS] + target[:-1]) and targets."""
    s = max(item.states.shape[0] for item in items)
    t = max(len(item.target) for item in items)
    states = torch.zeros(len(items), s, items[0].states.shape[1])
    mask = torch.zeros(len(items), s, dtype=torch.bool)
    copyable = torch.zeros(len(items), s, dtype=torch.bool)
    inputs = torch.full((len(items), t), PAD, dtype=torch.long)
    targets = torch.full((len(items), t), -100, dtype=torch.long)
    for row, item in enumerate(items):
        n = item.states.shape[0]
        states[row, :n], mask[row, :n], copyable[row, :n] = item.states, True, item.copyable
        target = torch.tensor(item.target)
        inputs[row, 0] = 1  # [BOS]
        inputs[row, 1:len(item.target)] = target[:-1]
        targets[row, :len(item.target)] = target
    return {"states": states, "mask": mask, "copyable": copyable, "inputs": inputs, "targets": targets}


def _batches(items: Sequence[Encoded], size: int, rng: random.Random) -> list[list[Encoded]]:
    # similar lengths together (less padding), batches in random order
    order = sorted(range(len(items)), key=lambda i: (items[i].states.shape[0] + rng.random() * 8))
    batches = [[items[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


# --- stage 1 ------------------------------------------------------------------------------------------------


def stage1_instruction_tuning(model: MiniPlannerModel, data: Sequence[Encoded], *, epochs: int, batch_size: int,
                              lr: float, seed: int = 0, progress: Progress | None = None,
                              max_steps: int | None = None) -> list[float]:
    """Teacher-forced cross-entropy on the grammar tokens; returns the loss of every update."""
    rng = random.Random(seed)
    heads = set(model.signals.parameters())
    parameters = [p for p in model.parameters() if p not in heads]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    total = max_steps or epochs * math.ceil(len(data) / batch_size)
    warmup = max(1, min(100, total // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * k / total))))
    model.train()
    losses: list[float] = []
    for epoch in range(epochs):
        for batch in _batches(data, batch_size, rng):
            b = collate(batch)
            logits, _ = model(b["states"], b["mask"], b["copyable"], b["inputs"])
            loss = F.cross_entropy(logits.flatten(0, 1), b["targets"].flatten(), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if progress and len(losses) % 50 == 0:
                recent = sum(losses[-50:]) / 50
                progress(f"stage 1 epoch {epoch + 1}/{epochs} step {len(losses)}/{total}: loss {recent:.4f}")
            if len(losses) >= total:
                break
        if len(losses) >= total:
            break
    model.eval()
    return losses


# --- signal states and their targets ------------------------------------------------------------------------


@dataclass
class SignalSet:
    """Per gold step: the decoder state at its signal token, module, and the two alignment targets."""

    hidden: torch.Tensor  # [n, width]
    codes: list[str]
    labels: torch.Tensor  # [n] module index
    specific_target: torch.Tensor  # [n, 384] MiniLM(instruction)
    invariant_target: torch.Tensor  # [n, 384] MiniLM(object phrase)


@torch.no_grad()
def signal_states(model: MiniPlannerModel, data: Sequence[Encoded], batch_size: int = 64) -> torch.Tensor:
    """Teacher-forced decoder states at each gold `<signal/>` (the state that emits it), example by example."""
    model.eval()
    rows = []
    for start in range(0, len(data), batch_size):
        b = collate(data[start:start + batch_size])
        _, hidden = model(b["states"], b["mask"], b["copyable"], b["inputs"])
        rows.append(hidden[b["targets"] == SIGNAL])  # row-major: examples in order, steps in order
    return torch.cat(rows) if rows else torch.zeros(0, model.config.width)


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
    encoded = {split: encode_examples(minilm, examples, progress=say) for split, examples in data.items()}
    model_config = copy.deepcopy(config.model)
    model = MiniPlannerModel(model_config)

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
        "train_config": {k: v for k, v in asdict(config).items() if k != "model"},
    }
    model.save(out_folder, ablation_heads=ablation)
    say(f"saved {out_folder} after {seconds:.0f}s")
    return dict(model.config.extra)


@torch.no_grad()
def validation_loss(model: MiniPlannerModel, data: Sequence[Encoded], batch_size: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        b = collate(data[start:start + batch_size])
        logits, _ = model(b["states"], b["mask"], b["copyable"], b["inputs"])
        total += float(F.cross_entropy(logits.flatten(0, 1), b["targets"].flatten(), ignore_index=-100,
                                       reduction="sum"))
        count += int((b["targets"] != -100).sum())
    return total / max(1, count)

"""Fine-tuning a real VITRON planner: LoRA on a vision-language (LLaVA, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL) or
plain causal LM through VITRON's three stages.

1. Invocation-oriented instruction tuning: the LM's loss on the reply (the words, the blocks of the grammar, each
   block's `[SIG]` tokens), through LoRA adapters on every linear layer of the language model's decoder layers (found
   by the model's attributes, `vitron_families`); the rows of the grammar's new tokens are trained too (peft
   `trainable_token_indices`); the vision tower (`vision_tower`, `visual`, …) stays frozen.
2. Embedding-oriented alignment: the signal heads regress the hidden state that emits each `[SIG]` to the configured
   backend's own conditioning of the step's instruction (`tools.real.targets.conditioning_targets`, the targets of
   `vitron planner align`), so the trained signals fit the real backends with no adapter. A module whose backend is
   not configured keeps its head as it was, and the summary says so. The task-invariant head regresses to MiniLM's
   embedding of the step's task-free words, as in vitron-mini.
3. Cross-task synergy: a task discriminator reads the task-invariant features through gradient reversal, so they stop
   telling the modules apart (vitron-mini's `reverse_gradient` and `TaskDiscriminator`).

Stages 2 and 3 train the heads on the hidden states with the LM frozen, as vitron-mini does with its tagger.

Data: vitron-mini's generator (one source for both planners): each request with its context (the session's aliases,
this turn's upload, a drawn region) in the prompt the planner writes at run time, a picture where the request has an
upload (scikit-image's photos when installed, else a drawn scene), and the gold reply in the grammar.

A run is resumable: every `save_every` optimizer steps the adapter, heads, optimizers and position are written to
`OUT/resume/`; the same command goes on from there. The result in OUT: the LoRA adapter (`adapter_config.json`,
`adapter_model.safetensors`), the signal heads, the tokenizer (and processor) with the grammar's tokens, and
`vitron_planner.json` naming the base; `VitronModel.load(OUT)` reads it (`VITRON_PLANNER_MODEL=OUT`), and
`merge` writes one folder with the adapter folded in.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from schemas import InvalidInput, ModelsFile, VitronSettings, resolve_module

from .grammar import escape_instruction
from .vitron_families import embedding_names, lora_targets, text_hidden_size, vision_tower
from .vitron_model import (
    HEADS_CONFIG,
    MODULE_CODES,
    PLANNER_CONFIG,
    SIGNAL_TOKEN,
    SPECIAL_TOKENS,
    SignalHeads,
    VitronModel,
)

if TYPE_CHECKING:
    from memory import ArtifactStore
    from schemas import ArtifactRef

    from .base import PlanRequest
    from .mini.data import Example

Progress = Callable[[str], None]
STAGES = (1, 2, 3)
RESUME = "resume"
MINILM_WIDTH = 384
"""The task-invariant width: MiniLM's sentence embedding, the target of the task-free words."""


@dataclass
class VitronTrainConfig:
    """How to train (the command line's options)."""

    stages: tuple[int, ...] = STAGES
    lora_rank: int = 16
    lora_alpha: int = 32
    steps: int = 200  # optimizer steps of stage 1; stages 2 and 3 run `head_steps` each
    head_steps: int = 200
    batch: int = 4  # requests per forward pass group (each request is one forward; their losses are averaged)
    accumulate: int = 1  # batches per optimizer step
    lr: float = 2e-4
    head_lr: float = 1e-3
    requests: int = 2000  # generated requests to train on
    save_every: int = 50
    seed: int = 0
    device: str = "cpu"
    max_signal_tokens: int = 3  # `[SIG]` tokens a block may hold (the backend's tokens, capped)

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise InvalidInput(f"unknown stages {bad or '(none)'}", field="stages", fix="name some of 1, 2, 3")
        for name in ("lora_rank", "steps", "batch", "accumulate", "requests", "save_every"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}", field=name)


# --- data -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingTurn:
    """One request as the planner sees it, and the reply it should write."""

    prompt: str
    reply: str
    images: list[np.ndarray]
    steps: list[tuple[str, str, str, int]]  # per block: module letter, instruction, task-free words, [SIG] tokens


def training_turns(count: int, seed: int, signal_tokens: dict[str, int], multimodal: bool,
                   max_signal_tokens: int = 3, video_frames: int = 4) -> list[TrainingTurn]:
    """`count` generated requests with their gold replies (questions to H, vague ones answered with a question; undo
    and show, which this planner does not do, and elliptical follow-ups, whose earlier turn is not written, left out),
    each in the prompt the planner writes for it at run time (`vitron.planner_prompt`) on a session holding the
    request's context: its artifact table as session memory describes it (a follow-up's earlier results made by their
    modules), this turn's upload, a drawn region, and the pictures the planner would show (the upload, a video's
    frames, else the session's newest image)."""
    from memory import ArtifactStore

    from .mini.data import generate
    from .vitron import planner_prompt

    rng = random.Random(f"vitron-{seed}")
    turns = []
    with tempfile.TemporaryDirectory() as folder:
        store = ArtifactStore(folder)
        media = _media(store)
        for example in generate("train", count, seed):
            if example.intent in ("undo", "show") or (example.intent == "plan" and not example.steps):
                continue  # a plan with no steps: "now the one on the left too" repeats a turn the prompt lacks
            prompt = planner_prompt(_request(example, store, media, rng), multimodal=multimodal,
                                    video_frames=video_frames)
            steps: list[tuple[str, str, str, int]] = []
            if example.intent == "plan":
                blocks = []
                for step in example.steps:
                    k = min(signal_tokens.get(step.module, 1), max_signal_tokens)
                    inputs = "".join(f'<input name="{name}">{ref}</input>' for name, ref in step.inputs.items())
                    blocks.append(f"<module>{step.module}</module><instruction>{escape_instruction(step.instruction)}"
                                  f"</instruction>{inputs}{SIGNAL_TOKEN * k}")
                    steps.append((step.module, step.instruction, step.object_phrase or step.instruction, k))
                reply = "Sure. " + "".join(blocks)
            elif example.intent == "question":
                reply = f"Let me look. <module>H</module><instruction>{escape_instruction(example.text)}</instruction>"
            else:
                reply = "What would you like me to do with it?"
            turns.append(TrainingTurn(prompt.text, reply, prompt.images, steps))
    return turns


_MADE_BY = {"image": ("image_editing", "image"), "video": ("video_editing", "video"),
            "mask": ("image_segmentation", "image"), "masks": ("video_segmentation", "video")}
"""What made a follow-up's earlier result of each kind, and the kind of what it was made from."""
_REGION = (8, 8, 40, 30)


def _request(example: Example, store: ArtifactStore, media: dict[str, list[ArtifactRef]],
             rng: random.Random) -> PlanRequest:
    """The planning request of a generated example: its session's artifact table (oldest first; the first picture
    of a kind an upload, later ones made from the one before), this turn's upload as its input, its drawn region."""
    from memory import ArtifactEntry, History
    from schemas import ArtifactRef, BoxRegion

    from .base import PlanRequest

    context = example.context
    upload = next((a for a in reversed(context.memory) if _kind(a) == context.upload), None) if context.upload else None
    entries: list[ArtifactEntry] = []
    for number, alias in enumerate(context.memory):
        kind = _kind(alias)
        made_by, source = _MADE_BY.get(kind, ("upload", kind))
        parent = next((e for e in reversed(entries) if e.ref.kind == source), None)
        if alias == upload or (parent is None and kind in ("image", "video")):
            made_by, parent = "upload", None
        if kind in media:
            ref = rng.choice(media[kind]).model_copy(update={"alias": alias})
        else:  # a mask or a video's masks: the prompt shows only its line
            height, width = media["image"][0].shape[:2]
            shape, media_type = ((height, width), "image/png") if kind == "mask" else \
                ((8, height, width), "video/x-matroska")
            ref = ArtifactRef(sha256=f"{number + 1:064x}", kind=kind, media_type=media_type, shape=shape, alias=alias)
        entries.append(ArtifactEntry(ref, made_by, (parent.alias,) if parent else (), turn_seq=2 * number + 1))
    inputs = {upload: next(e.ref for e in entries if e.alias == upload)} if upload else {}
    region = BoxRegion(box=_REGION) if context.region else None
    return PlanRequest(text=example.text, history=History("training", (), 0, 0), artifacts=tuple(entries),
                       inputs=inputs, region=region, store=store)


def _media(store: ArtifactStore) -> dict[str, list[ArtifactRef]]:
    """The pictures the sessions hold, stored once: the photos and scenes, and short clips panning across some."""
    photos = _photos()
    clips = [[np.roll(photo, 4 * i, axis=1) for i in range(8)] for photo in photos[::3]]
    return {"image": [store.put_image(p) for p in photos], "video": [store.put_video(c, fps=8.0) for c in clips]}


def _kind(alias: str) -> str:
    from .mini.compose import kind_of

    return kind_of(alias) or "image"


def _photos() -> list[np.ndarray]:
    """Real photos (scikit-image's, when installed) and scenes rendered on them (coloured shapes on the photos'
    texture, as the tests' scenes), small: what the vision tower reads."""
    from PIL import Image

    backgrounds = []
    try:
        from skimage import data as photos

        backgrounds = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    small = [np.asarray(Image.fromarray(p).convert("RGB").resize((64, 48))) for p in backgrounds]
    yy, xx = np.ogrid[:48, :64]
    scenes = []
    for number in range(4):
        scene = small[number].copy() if small else np.full((48, 64, 3), rng.integers(40, 200, 3), np.uint8)
        for _ in range(2):
            y, x, size = rng.integers(0, 32), rng.integers(0, 48), rng.integers(10, 18)
            if rng.random() < 0.5:  # a disc
                inside = (yy - y - size / 2) ** 2 + (xx - x - size / 2) ** 2 <= (size / 2) ** 2
            else:  # a square
                inside = (yy >= y) & (yy < y + size) & (xx >= x) & (xx < x + size)
            scene[inside] = rng.integers(0, 256, 3)
        scenes.append(scene)
    return small + scenes


# --- the model ------------------------------------------------------------------------------------------------------


def _with_lora(vitron: VitronModel, config: VitronTrainConfig, resume: Path | None) -> Any:
    """The LM with LoRA adapters (a resumed run's, else new ones) and the grammar's token rows trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model

    tower = vision_tower(vitron.model)
    if tower is not None:
        tower.requires_grad_(False)  # peft freezes what it does not adapt; said here, as the recipe says it
    if resume is not None and (resume / "adapter_config.json").is_file():
        lm = PeftModel.from_pretrained(vitron.model, resume, is_trainable=True)
    else:
        vocab = vitron.tokenizer.get_vocab()
        ids = [vocab[t] for t in SPECIAL_TOKENS]
        # the grammar's tokens: their input rows and, unless tied to them, their output rows (else the LM cannot learn
        # to write them: a new token's output row is as untrained as its input one)
        inputs, outputs = embedding_names(vitron.model)
        tokens = ids if outputs is None else {inputs: ids, outputs: ids}
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                          target_modules=lora_targets(vitron.model), trainable_token_indices=tokens)
        lm = get_peft_model(vitron.model, lora)
    if tower is not None and any(p.requires_grad for p in tower.parameters()):
        raise InvalidInput("the LoRA adapter reaches into the vision tower", field="lora",
                           fix="train from a fresh --out folder (its resume/ adapter targets the vision tower)")
    return lm


def _encoded(vitron: VitronModel, turn: TrainingTurn) -> dict[str, torch.Tensor]:
    """Prompt and reply as one sequence, the loss only on the reply (and its end)."""
    inputs = vitron.encode(turn.prompt, turn.images or None)
    reply = vitron.tokenizer.encode(" " + turn.reply, add_special_tokens=False)
    if vitron.eos_token_id is not None:
        reply = [*reply, vitron.eos_token_id]
    reply_ids = torch.tensor([reply], device=vitron.device)
    out = vitron.extend(inputs, reply_ids)
    out["labels"] = torch.cat([torch.full_like(inputs["input_ids"], -100), reply_ids], dim=1)
    return {k: v for k, v in out.items() if k != "token_type_ids"}


# --- training -------------------------------------------------------------------------------------------------------


def train_vitron(base: str | Path, out: str | Path, config: VitronTrainConfig | None = None, *,
                 settings: VitronSettings | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Train a VITRON planner from the model folder `base` into `out`; return a summary (losses per stage,
    tokens per second, what was aligned). A run stopped part way goes on from `out/resume/` when started again."""
    config = config or VitronTrainConfig()
    say = progress or (lambda _message: None)
    settings = settings or VitronSettings()
    base, out = Path(base).expanduser().resolve(), Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    resume = out / RESUME
    state = _read_state(resume)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    models = ModelsFile.load(settings.models_path)

    vitron = VitronModel.load(base, device=config.device, heads=_base_heads(base, models))
    if (resume / HEADS_CONFIG).is_file():
        vitron.heads.load_state_dict(SignalHeads.load(resume).state_dict())
    tokens_per_block = _signal_tokens(models)
    turns = training_turns(config.requests, config.seed, tokens_per_block, vitron.is_multimodal,
                           config.max_signal_tokens)
    say(f"{len(turns)} training requests from the generator")
    summary: dict[str, Any] = {"base": str(base), "config": {**asdict(config), "stages": list(config.stages)},
                               "stages": state.get("stages", {})}
    lm = _with_lora(vitron, config, resume if state else None)
    vitron.model = lm
    if 1 in config.stages:  # a finished stage 1 (a resumed run) gives its summary from the saved losses
        summary["stages"]["1"] = _stage1(vitron, lm, turns, config, state, resume, say)
    vitron.model.eval()
    if {2, 3} & set(config.stages):
        states = _signal_states(vitron, turns, say)
        if 2 in config.stages and not state.get("stage2_done"):
            started = time.perf_counter()
            summary["stages"]["2"] = {**_stage2(vitron, states, models, settings, config, say),
                                      "signal_states": len(states.codes),
                                      "tokens_per_second": states.tokens_per_second,
                                      "seconds": round(time.perf_counter() - started, 2)}
            state["stage2_done"] = True
            state["stages"] = summary["stages"]
            _save_resume(resume, lm, vitron, state)
        if 3 in config.stages and not state.get("stage3_done"):
            started = time.perf_counter()
            summary["stages"]["3"] = {**_stage3(vitron, states, config, say),
                                      "seconds": round(time.perf_counter() - started, 2)}
            state["stage3_done"] = True
            state["stages"] = summary["stages"]
            _save_resume(resume, lm, vitron, state)
    _save_result(out, base, lm, vitron, summary)
    say(f"saved the planner to {out}")
    return summary


def _base_heads(base: Path, models: ModelsFile) -> SignalHeads:
    """The base's heads when it has some whose widths fit the configured backends; else new ones that do."""
    import transformers

    widths = None
    try:
        from .vitron_model import backend_widths

        widths = backend_widths(models)
        if (base / HEADS_CONFIG).is_file():
            heads = SignalHeads.load(base)
            if heads.task_specific_sizes == widths and heads.task_invariant_size == MINILM_WIDTH:
                return heads
    except InvalidInput:
        pass
    config = transformers.AutoConfig.from_pretrained(base, local_files_only=True)
    return SignalHeads(text_hidden_size(config), widths, task_invariant_size=MINILM_WIDTH)


def _signal_tokens(models: ModelsFile) -> dict[str, int]:
    """How many `[SIG]` tokens each module's block holds: the number of prompt tokens its configured backend reads
    (SAM: a box is two), else one."""
    from tools.real.targets import signal_tokens_of

    return {resolve_module(name).code: signal_tokens_of(spec, name) for name, spec in models.modules.items()
            if resolve_module(name).code in MODULE_CODES}


def _stage1(vitron: VitronModel, lm: Any, turns: Sequence[TrainingTurn], config: VitronTrainConfig,
            state: dict[str, Any], resume: Path, say: Progress) -> dict[str, Any]:
    from tqdm.auto import tqdm

    lm.train()
    params = [p for p in lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    if (resume / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(resume / "optimizer.pt", map_location=config.device))
    autocast = _autocast(config.device)
    step = state.get("stage1_step", 0)
    losses: list[float] = state.get("stage1_losses", [])
    order = random.Random(f"{config.seed}-order").sample(range(len(turns)), len(turns))
    cursor = step * config.batch * config.accumulate
    started, tokens = time.perf_counter(), 0
    bar = tqdm(total=config.steps, initial=step, desc="stage 1: instruction tuning", disable=None)
    while step < config.steps:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.accumulate):
            for _ in range(config.batch):
                turn = turns[order[cursor % len(order)]]
                cursor += 1
                batch = _encoded(vitron, turn)
                with autocast:
                    loss = lm(**batch).loss / (config.batch * config.accumulate)
                loss.backward()
                total += loss.item()
                tokens += int(batch["input_ids"].numel())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        losses.append(round(total, 5))
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        if step % 10 == 0 or step == config.steps:
            say(f"stage 1 step {step}/{config.steps}: loss {total:.4f}")
        if step % config.save_every == 0 or step == config.steps:
            state.update(stage1_step=step, stage1_losses=losses)
            _save_resume(resume, lm, vitron, state, optimizer)
    bar.close()
    seconds = time.perf_counter() - started
    return {"steps": step, "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "losses": losses, "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None}


def _autocast(device: str) -> Any:
    """bf16 (fp16 where bf16 is missing) autocast on CUDA; fp32 on the CPU."""
    if torch.device(device).type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class SignalStates:
    """The hidden state that emitted each `[SIG]` of the gold replies, with its step's module, instruction, task-free
    words and the index of the token within its block."""

    hidden: torch.Tensor
    codes: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    token_index: list[int] = field(default_factory=list)
    tokens_per_second: float = 0.0  # of the forward passes that read them


@torch.no_grad()
def _signal_states(vitron: VitronModel, turns: Sequence[TrainingTurn], say: Progress) -> SignalStates:
    rows, out = [], SignalStates(torch.zeros(0))
    started, tokens = time.perf_counter(), 0
    for number, turn in enumerate(t for t in turns if t.steps):
        batch = _encoded(vitron, turn)
        # where the reply starts: the [SIG] in the system prompt's example is no step's
        reply_starts = int((batch.pop("labels")[0] == -100).sum())
        hidden = vitron.model(**batch, output_hidden_states=True).hidden_states[-1][0]
        tokens += int(batch["input_ids"].numel())
        positions = (batch["input_ids"][0] == vitron.signal_token_id).nonzero().flatten().tolist()
        positions = [p for p in positions if p >= reply_starts]
        blocks = [(code, text, phrase, i) for code, text, phrase, k in turn.steps for i in range(k)]
        if len(positions) != len(blocks):  # a tokenizer that splits [SIG]: nothing to learn from this one
            continue
        for position, (code, text, phrase, index) in zip(positions, blocks, strict=True):
            rows.append(hidden[position - 1].float())  # the state that emitted the token (as at generation)
            out.codes.append(code)
            out.instructions.append(text)
            out.phrases.append(phrase)
            out.token_index.append(index)
        if number % 200 == 199:
            say(f"signal states of {number + 1} requests")
    out.hidden = torch.stack(rows) if rows else torch.zeros(0, vitron.hidden_size)
    out.tokens_per_second = round(tokens / max(time.perf_counter() - started, 1e-9), 1)
    say(f"{len(out.codes)} signal states ({out.tokens_per_second:.0f} tokens/s)")
    return out


def _stage2(vitron: VitronModel, states: SignalStates, models: ModelsFile, settings: VitronSettings,
            config: VitronTrainConfig, say: Progress) -> dict[str, Any]:
    """Task-specific heads to the configured backends' conditioning; the task-invariant head to MiniLM's
    embedding of the task-free words."""
    from memory import ArtifactStore
    from tools import ToolContext
    from tools.real.targets import conditioning_targets

    from .mini.encoder import load_minilm

    heads = vitron.heads
    targets: dict[str, tuple[torch.Tensor, list[int]]] = {}
    skipped = []
    ctx = ToolContext(ArtifactStore.from_settings(settings), settings, models_file=models)
    for code in MODULE_CODES:
        rows = [i for i, c in enumerate(states.codes) if c == code]
        name = resolve_module(code).name
        if not rows:
            continue
        if models.spec(name) is None:
            skipped.append(name)
            continue
        unique = sorted({states.instructions[i] for i in rows})
        made = conditioning_targets(ctx, name, "main", unique)
        index = {text: n for n, text in enumerate(unique)}
        values = torch.as_tensor(made.values, dtype=torch.float32).reshape(len(unique), made.tokens, made.width)
        wanted = torch.stack([values[index[states.instructions[i]], min(states.token_index[i], made.tokens - 1)]
                              for i in rows])
        targets[code] = (wanted, rows)
        say(f"stage 2: {name} aligns to {models.spec(name).backend}'s conditioning of {len(unique)} instructions")
    invariant_target = load_minilm().sentence_embeddings(states.phrases) if states.phrases else None
    params = [p for p in heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.head_lr)
    heads.train()
    losses = []
    for step in range(config.head_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros(())
        for code, (wanted, rows) in targets.items():
            specific, _ = heads(code, states.hidden[rows])
            loss = loss + _regression(specific, wanted)
        if invariant_target is not None and heads.task_invariant_size == invariant_target.shape[1]:
            loss = loss + _regression(heads.task_invariant(states.hidden), invariant_target)
        if not loss.requires_grad:
            break
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 5))
        if step % 50 == 0 or step == config.head_steps - 1:
            say(f"stage 2 step {step + 1}/{config.head_steps}: loss {losses[-1]:.4f}")
    heads.eval()
    return {"aligned": [resolve_module(c).name for c in targets], "not_configured": skipped,
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "losses": losses}


def _stage3(vitron: VitronModel, states: SignalStates, config: VitronTrainConfig, say: Progress) -> dict[str, Any]:
    """The task-invariant head against a task discriminator through gradient reversal."""
    from .mini.train import TaskDiscriminator, reverse_gradient

    heads = vitron.heads
    labels = torch.tensor([MODULE_CODES.index(c) for c in states.codes])
    if len(set(labels.tolist())) < 2:
        return {"skipped": "the requests trained on hold fewer than two modules"}
    adversary = TaskDiscriminator(heads.task_invariant_size)
    optimizer = torch.optim.AdamW([*heads.task_invariant.parameters(), *adversary.parameters()], lr=config.head_lr)
    heads.train()
    history = []
    for step in range(config.head_steps):
        strength = 2 / (1 + math.exp(-10 * step / max(1, config.head_steps))) - 1  # DANN's ramp
        linear, mlp = adversary(reverse_gradient(heads.task_invariant(states.hidden), strength))
        loss = F.cross_entropy(linear, labels) + F.cross_entropy(mlp, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(round(loss.item() / 2, 5))
        if step % 50 == 0 or step == config.head_steps - 1:
            say(f"stage 3 step {step + 1}/{config.head_steps}: discriminator loss {history[-1]:.4f}")
    heads.eval()
    return {"adversary_losses": history, "chance": round(math.log(len(set(labels.tolist()))), 4)}


def _regression(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    cosine = 1 - F.cosine_similarity(prediction, target, dim=-1)
    return (cosine + 0.5 * (prediction - target).pow(2).mean(-1)).mean()


# --- saving and resuming --------------------------------------------------------------------------------------------


def _read_state(resume: Path) -> dict[str, Any]:
    path = resume / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_resume(resume: Path, lm: Any, vitron: VitronModel, state: dict[str, Any],
                 optimizer: torch.optim.Optimizer | None = None) -> None:
    """Written next to the old one, then moved in its place: a run killed while saving resumes from the last."""
    import shutil

    partial = resume.with_name(RESUME + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    lm.save_pretrained(partial)
    vitron.heads.save(partial)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    elif (resume / "optimizer.pt").is_file():
        shutil.copy(resume / "optimizer.pt", partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps(state))
    old = resume.with_name(RESUME + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if resume.exists():
        resume.rename(old)
    partial.rename(resume)
    shutil.rmtree(old, ignore_errors=True)


def _save_result(out: Path, base: Path, lm: Any, vitron: VitronModel, summary: dict[str, Any]) -> None:
    lm.save_pretrained(out)
    vitron.heads.save(out)
    (vitron.processor or vitron.tokenizer).save_pretrained(out)
    (out / PLANNER_CONFIG).write_text(json.dumps({"base": str(base), "summary": summary}, indent=1))


def merge(folder: str | Path, out: str | Path) -> Path:
    """One model folder with the adapter folded into the weights (`VITRON_PLANNER_MODEL` reads either)."""
    vitron = VitronModel.load(Path(folder))
    out = Path(out)
    vitron.model.save_pretrained(out)
    (vitron.processor or vitron.tokenizer).save_pretrained(out)
    vitron.heads.save(out)
    return out


__all__ = ["TrainingTurn", "VitronTrainConfig", "merge", "train_vitron", "training_turns"]

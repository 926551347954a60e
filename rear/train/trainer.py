"""The training loop: one process, or one per device under torchrun (DDP).

Each optimizer step draws one deterministic global batch (rear.train.batches), corrupts its context
and drops labels, splits it over ranks and micro-batches, synchronises gradients once (on the last
micro-batch), clips, steps AdamW, and updates the optional EMA.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from rear import precision
from rear.config import TrainConfig
from rear.data.store import TokenStore
from rear.checkpoint import load_generator
from rear.distributed import World, launched_rank, setup, teardown
from rear.generator import Generator, build_generator
from rear.images import save_grid
from rear.lock import locked
from rear.optim import learning_rate, make_optimizer
from rear.progress import bar as progress_bar
from rear.tokenizer.load import load_tokenizer, read_codebook
from rear.train.batches import global_batch, regularize
from rear.train.cca import cca_losses, contrast_labels
from rear.train.plots import plot_losses
from rear.train.state import check_recipe, load_training, save_training
from rear.weights import load_state, recover_dir, state_fingerprint

CHECKPOINT, LOG, SAMPLES, PLOT, BOARD = "checkpoint", "log.jsonl", "samples", "loss.png", "tensorboard"


def sized_from_store(config: TrainConfig) -> TrainConfig:
    """The config with the generator's codebook size, token count, class count and code size of its store."""
    m = TokenStore(config.store).manifest
    g = config.generator
    generator = dataclasses.replace(g, codebook_size=m["codebook_size"], num_tokens=m["num_tokens"],
                                    num_classes=m["num_classes"], align=dataclasses.replace(g.align, code_dim=m["code_dim"]))
    if launched_rank() == 0:
        print(f"generator sizes from {config.store}: {m['codebook_size']} codes, {m['num_tokens']} tokens, "
              f"{m['num_classes']} classes, {m['code_dim']}-dim code vectors")
    return dataclasses.replace(config, generator=generator)


def check_store(store: TokenStore, config: TrainConfig) -> None:
    """Refuse a store whose codes, grid, classes or code vectors do not fit the generator config."""
    g, m = config.generator, store.manifest
    pairs = [("codebook_size", m["codebook_size"], g.codebook_size), ("num_tokens", m["num_tokens"], g.num_tokens),
             ("num_classes", m["num_classes"], g.num_classes)]
    if g.align.enabled:
        pairs.append(("align.code_dim", m["code_dim"], g.align.code_dim))
    for name, have, want in pairs:
        if have != want:
            raise ValueError(f"store {store.folder} has {name}={have} but the config says generator.{name}={want}")
    if len(store) and int(store.codes.max()) >= g.codebook_size:
        raise ValueError(f"{store.folder / 'codes.npy'} holds code {int(store.codes.max())}, beyond the "
                         f"{g.codebook_size} codes of its manifest; pretokenize the store again")
    if len(store) and not 0 <= int(store.labels.min()) <= int(store.labels.max()) < g.num_classes:
        raise ValueError(f"{store.folder / 'labels.npy'} holds labels in [{int(store.labels.min())}, "
                         f"{int(store.labels.max())}], outside the {g.num_classes} classes 0..{g.num_classes - 1} "
                         f"(label {g.num_classes} is the null class); pretokenize the store again")


Losses = Callable[[slice], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def accumulate_gradients(net: torch.nn.Module, rows: int, accum: int, autocast, losses: Losses,
                         device: torch.device) -> torch.Tensor:
    """Backward over `accum` micro-batches of this rank's `rows` rows, syncing DDP gradients only on the
    last; `losses(part)` runs `net` on the rows `part` and gives (the main loss, the alignment loss, the
    total to backpropagate). Returns their means [3]. Both kinds of run use it: reAR (`rear_losses`) and
    the CCA fine-tune (rear.train.cca.cca_losses)."""
    micro = rows // accum
    sums = torch.zeros(3, device=device)
    for m in range(accum):
        part = slice(m * micro, (m + 1) * micro)
        sync = m == accum - 1 or not isinstance(net, torch.nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if sync else net.no_sync():
            with autocast():
                main, align, total = losses(part)
            (total / accum).backward()
        sums += torch.stack([main, align, total]).detach().float() / accum
    return sums


def rear_losses(net: torch.nn.Module, tokens: torch.Tensor, context: torch.Tensor, corrupted: torch.Tensor,
                labels: torch.Tensor, codebook: torch.Tensor) -> Losses:
    """(ce, align, total) of the rows `part` of a reAR batch: clean targets read through `context`."""

    def losses(part: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the ids were range-checked once, where the store was opened (check_store): no sync here
        out = net(tokens[part], labels[part], F.embedding(tokens[part], codebook), context[part], corrupted[part],
                  checked=True)
        return out["ce"], out["align"], out["total"]

    return losses


class StopRequest:
    """SIGINT (Ctrl-C) or SIGTERM while training: the step in progress finishes, the loop saves it and stops
    (`requested` says which signal). A second signal acts at once, as the default would. Under torchrun
    every rank catches it (a Ctrl-C reaches them all; the launcher forwards SIGTERM) and the ranks agree on
    the step through the per-step collective (`agreement`, read a step later: `Pending`)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self.handle)

    def handle(self, number: int, frame: Any) -> None:
        self.requested = "interrupted" if number == signal.SIGINT else "terminated"
        signal.signal(number, self.previous[number])  # the next one stops at once

    def release(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()


def ema_update(ema: Generator, model: Generator, decay: float, taken: torch.Tensor) -> None:
    """Move the EMA toward the model by 1 - decay where the step was `taken` (a device 0-d 1.0 or 0.0: a
    skipped step leaves the EMA as it was, without reading the flag back)."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, (1 - decay) * taken.to(e.dtype))


def gather_rng(world: World) -> list[torch.Tensor]:
    """Every rank's CPU RNG state (dropout draws), for an exact resume."""
    state = torch.get_rng_state()
    if world.size == 1:
        return [state]
    states = [torch.empty_like(state) for _ in range(world.size)]
    dist.all_gather(states, state.to(world.device) if world.device.type == "cuda" else state)
    return [s.cpu() for s in states]


class Logger:
    """JSONL always, TensorBoard when installed; only the main rank writes."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled, self.path, self.board = enabled, out / LOG, None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(out / BOARD))
            except ImportError:
                pass

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if key != "step":
                    self.board.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def sample_grid(model: Generator, tokenizer, config: TrainConfig, path: Path) -> Path:
    """A class-by-class grid: one row per class, fixed seed so grids compare across steps."""
    classes = min(config.sample_classes, model.config.num_classes)
    labels = torch.arange(classes, device=next(model.parameters()).device).repeat_interleave(config.samples_per_class)
    tokens = model.generate(labels, config.sample, rng=torch.Generator(labels.device).manual_seed(config.seed))
    return save_grid(tokenizer.decode(tokens).float().cpu(), path, columns=config.samples_per_class)


def all_finite(world: World, *values: torch.Tensor) -> bool:
    """Whether every value is finite on every rank (one decision for all of them), read now."""
    return bool(agreement(world, False, *values)[0])


def agreement(world: World, stop: bool, *values: torch.Tensor) -> torch.Tensor:
    """[2] on the device: (every value finite on every rank, no stop requested on any rank), one collective
    for both and no host read (the step uses the first on the device; the host reads them later: Pending)."""
    finite = torch.stack([torch.isfinite(v).all() for v in values]).all()
    go_on = finite.new_zeros(()) if stop else finite.new_ones(())  # filled on the device: no transfer
    flags = torch.stack([finite, go_on]).float()  # [2]
    if world.size > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return flags


class Pending:
    """A finished step's agreement on its way to the host: copied without blocking (and an event recorded
    on a GPU), read by `finite_and_stop` a step later, once the device has the next step's work queued:
    no step waits for the device to drain."""

    def __init__(self, done: int, flags: torch.Tensor, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.done, self.loss, self.grad_norm = done, loss, grad_norm
        self.host = flags.to("cpu", non_blocking=True)
        self.event = None
        if flags.device.type == "cuda":
            self.event = torch.cuda.Event()
            self.event.record()

    def finite_and_stop(self) -> tuple[bool, bool]:
        if self.event is not None:
            self.event.synchronize()  # this copy only, not the work queued after it
        finite_all, go_on = self.host.tolist()
        return bool(finite_all), not go_on


def previous_run(out: Path) -> list[str]:
    """What a run leaves in its folder besides the checkpoint: logs, loss plot, sample grids."""
    return [name for name in (LOG, PLOT, BOARD, SAMPLES) if (out / name).exists()]


def truncate_log(path: Path, step: int) -> None:
    """Drop the records past `step` (logged after the checkpoint a resumed run restarts from)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)


@locked(lambda config, **_: config.out_dir)
def train(config: TrainConfig, resume: bool = False, progress: bool = True, until: int | None = None,
          overwrite: bool = False) -> Path:
    """Run (or resume) a training run up to `until` optimizer steps (default: all of them) and save it
    there; the schedule is always that of `config.steps`, so stopping at `until` and resuming is the
    same run. `overwrite` lets a fresh run replace the logs of an earlier run that left no checkpoint.
    Returns the checkpoint folder."""
    world, threads = setup(), torch.get_num_threads()
    try:
        config = sized_from_store(config) if config.sizes_from_store else config
        return _train(config.validate(), world, resume, progress, config.steps if until is None else until, overwrite)
    finally:
        teardown()
        torch.set_num_threads(threads)  # config.threads holds for this run only


def _train(config: TrainConfig, world: World, resume: bool, progress: bool, until: int, overwrite: bool) -> Path:
    if not 0 < until <= config.steps:
        raise ValueError(f"cannot stop at step {until}: the run has {config.steps} steps")
    if config.threads:
        torch.set_num_threads(config.threads)
    B, accum = config.batch_size, config.grad_accumulation
    if B % (world.size * accum):
        raise ValueError(f"batch_size {B} is not divisible by {world.size} ranks x {accum} micro-batches")
    per_rank = B // world.size
    store = TokenStore(config.store)
    codebook, fingerprint = read_codebook(config.tokenizer)
    store.check_tokenizer(fingerprint)
    inputs = {"store": store.digest, "tokenizer": fingerprint}  # by content: a resume refuses others
    check_store(store, config)
    if B > len(store):
        raise ValueError(f"batch_size {B} exceeds the {len(store)} items of {store.folder}; lower batch_size")
    codebook = codebook.to(world.device)
    out, device = Path(config.out_dir), world.device
    checkpoint = out / CHECKPOINT

    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = build_generator(config.generator).to(device)
    reference = None
    if config.cca.init is not None:  # a CCA fine-tune: start from `init`, contrast against a frozen copy of it
        reference = load_generator(config.cca.init, device).eval().requires_grad_(False)
        load_state(model, reference.state_dict(), f"cca.init {config.cca.init}")
        inputs["cca.init"] = state_fingerprint(reference.state_dict())
    ema = copy.deepcopy(model).requires_grad_(False) if config.ema_decay else None
    optimizer = make_optimizer(model, config.optim)
    torch.manual_seed(config.seed + 1 + world.rank)  # per-rank dropout stream
    start, skipped = 0, 0
    if world.main:
        recover_dir(checkpoint)  # a save killed between its two renames left the previous one aside
    if world.size > 1:
        dist.barrier()
    if resume:
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"nothing to resume: {checkpoint} does not exist")
        check_recipe(checkpoint, config, inputs)
        start, rng, skipped = load_training(checkpoint, model, ema, optimizer)
        if len(rng) != world.size:
            raise ValueError(f"{checkpoint} was written by {len(rng)} ranks; resume it with as many")
        if start > until:
            raise ValueError(f"{checkpoint} is at step {start}, past the requested stop at step {until}")
        torch.set_rng_state(rng[world.rank])
        if world.main:
            truncate_log(out / LOG, start)
    elif checkpoint.exists():
        raise FileExistsError(f"{checkpoint} exists; pass --resume to continue it, or choose another out_dir")
    elif previous_run(out) and not overwrite:
        raise FileExistsError(f"{out} holds another run's {', '.join(previous_run(out))} but no checkpoint; "
                              "pass --overwrite to replace them, or choose another out_dir")
    elif world.main:
        for name in previous_run(out):
            (shutil.rmtree if (out / name).is_dir() else Path.unlink)(out / name)
    if config.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

        blocks = set(model.blocks)
        apply_activation_checkpointing(model, check_fn=lambda module: module in blocks)
    net = torch.compile(model) if config.compile else model  # shares model's parameters: saves stay unprefixed
    net = torch.nn.parallel.DistributedDataParallel(net) if world.size > 1 else net
    autocast = lambda: precision.autocast(device, config.bf16)  # noqa: E731
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / SAMPLES).mkdir(exist_ok=True)
    logger = Logger(out, world.main)
    tokenizer = None

    saved = start if resume else None

    def save(step: int) -> None:
        nonlocal saved
        if not all_finite(world, *model.parameters()):
            raise FloatingPointError(f"the weights at step {step} are not finite; nothing was saved: "
                                     f"{last_good()}. Lower optim.learning_rate")
        rng = gather_rng(world)
        if world.main:
            save_training(checkpoint, model, ema, optimizer, step, rng, config, skipped,
                          store.manifest["class_names"], store.manifest, inputs)
        saved = step
        if world.size > 1:
            dist.barrier()

    def last_good() -> str:
        if saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint {checkpoint} (step {saved}) is untouched"

    def settle(finished: Pending) -> bool:
        """Read a finished step's agreement: count it if it was skipped (stop past the limit); return whether
        the ranks agreed to stop after it."""
        nonlocal skipped
        finite, stopping = finished.finite_and_stop()
        if not finite:
            skipped += 1
            problem = (f"step {finished.done}: the loss ({finished.loss.item():g}) or gradient norm "
                       f"({finished.grad_norm.item():g}) is not finite")
            if skipped > config.skip_nonfinite:
                raise FloatingPointError(f"{problem}; stopped without saving: {last_good()}. Lower "
                                         f"optim.learning_rate, or set skip_nonfinite=N to skip up to N such steps")
            tqdm.write(f"{problem}: step skipped ({skipped} of at most {config.skip_nonfinite})")
        return stopping

    def halt(done: int) -> None:
        if saved != done:
            save(done)
        raise KeyboardInterrupt(f"{stop.requested or 'stopped by another rank'}: saved step {done} to "
                                f"{checkpoint}; continue with --resume")

    stop = StopRequest()
    pending: Pending | None = None  # the last step's agreement, not read yet
    try:
        bar = progress_bar(total=until, initial=start, enabled=progress and world.main, unit="step", desc="train")
        model.train()
        for step in range(start, until):
            began = time.perf_counter()
            lr = learning_rate(step, config.steps, config.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tokens, labels = global_batch(store, step, B, config.seed)
            mine = slice(world.rank * per_rank, (world.rank + 1) * per_rank)
            rng = torch.get_rng_state()
            try:
                if reference is None:
                    context, corrupted, labels, ratio = regularize(tokens, labels, step, config.seed, config.noise,
                                                                   config.label_dropout, config.generator.codebook_size,
                                                                   model.null_label)
                    tokens, context, corrupted, labels = (t[mine].to(device) for t in (tokens, context, corrupted, labels))
                    losses = rear_losses(net, tokens, context, corrupted, labels, codebook)
                else:
                    drawn = torch.Generator().manual_seed(config.seed * 100_003 + step + 11)
                    labels, negatives, uncond = contrast_labels(labels, config.generator.num_classes,
                                                                config.cca.uncond_fraction, drawn)
                    tokens, labels, negatives, uncond = (t[mine].to(device) for t in (tokens, labels, negatives, uncond))
                    ratio = 0.0
                    losses = cca_losses(net, reference, tokens, labels, negatives, uncond, codebook, config.cca,
                                        config.generator.align.weight if config.generator.align.enabled else 0.0)
                sums = accumulate_gradients(net, per_rank, accum, autocast, losses, device)  # [3]: ce or cca, align, total
            except KeyboardInterrupt:
                if world.size > 1 or step == start:
                    raise KeyboardInterrupt(f"interrupted at step {step}: {last_good()}") from None
                if pending is not None:
                    settle(pending)  # the skip count of the step before, as the checkpoint records it
                torch.set_rng_state(rng)  # as it was when step `step` began: the resume is exact
                optimizer.zero_grad(set_to_none=True)
                save(step)
                raise KeyboardInterrupt(f"interrupted: saved step {step} to {checkpoint}; continue with --resume") from None
            if pending is not None:  # read with this step's work queued: the device never waits for the host
                stopped, pending = settle(pending), None
                if stopped:  # the ranks agreed to stop after the last step (a Ctrl-C on one of them): keep it
                    torch.set_rng_state(rng)  # this step never happened: the resume is exact
                    optimizer.zero_grad(set_to_none=True)
                    halt(step)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            done = step + 1
            flags = agreement(world, stop.requested is not None, sums[2], grad_norm)  # [2] on the device
            optimizer.found_inf = 1 - flags[0]  # fused AdamW leaves weights and moments as they were when 1
            optimizer.step()
            if ema is not None:
                ema_update(ema, model, config.ema_decay, flags[0])
            optimizer.zero_grad(set_to_none=True)
            pending = Pending(done, flags, sums[2], grad_norm)

            logged = done % config.log_every == 0 or done == config.steps
            due = done == config.steps or (config.sample_every and done % config.sample_every == 0)
            saving = done % config.checkpoint_every == 0 and done != until  # the last step saves after the loop
            stopping = False
            if (logged or due or saving or done == until
                    or (world.size == 1 and stop.requested is not None)):  # a boundary: read the agreement now
                stopping, pending = settle(pending), None
            if logged:
                if world.size > 1:
                    dist.all_reduce(sums)
                    sums /= world.size
                seconds = time.perf_counter() - began
                main_loss = "ce" if reference is None else "cca"
                record = {"step": done, main_loss: sums[0].item(), "align": sums[1].item(), "loss": sums[2].item(),
                          "lr": lr, "noise_ratio": ratio, "grad_norm": grad_norm.item(),
                          "tokens_per_s": B * config.generator.num_tokens / seconds}
                logger.log(record)
                bar.set_postfix(**{main_loss: f"{record[main_loss]:.3f}"}, align=f"{record['align']:.3f}",
                                lr=f"{lr:.2e}", r=f"{ratio:.2f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
            if saving:
                save(done)
            if world.main and config.samples_per_class and due:
                if tokenizer is None:
                    with torch.random.fork_rng(devices=[]):  # building it draws init weights: keep the run's RNG
                        tokenizer = load_tokenizer(config.tokenizer, device)
                sample_grid(ema or model, tokenizer, config, out / SAMPLES / f"step_{done:07d}.png")
            stopping = stopping or (world.size == 1 and stop.requested is not None)  # one process: no need to agree
            if stopping and done != until:  # Ctrl-C or SIGTERM (on any rank) during this step: it is complete, keep it
                halt(done)
        bar.close()
        if start < until:
            save(until)
    finally:
        stop.release()
        logger.close()  # also on errors: the TensorBoard writer holds files open
    if world.main and (out / LOG).is_file():
        plot_losses(out / LOG, out / PLOT)
    return checkpoint

"""The generator interface: what the trainer, sampler, evaluation and CLI may call on any backbone.

A backbone reads the sequence [prefix, t_0 .. t_{n-1}]: `prefix_length` positions of its own (a
class token, a learned cls vector) before the first image token; the output at position
p >= prefix_length - 1 predicts t_{p - prefix_length + 1}. A backbone implements `forward_context`
(teacher forcing, with the outputs of chosen blocks) and the three cached-decoding steps
`setup_caches`, `prefill` and `decode_step` (gpt-fast's names); the losses, the input checks and the
alignment heads live here, once.
Shapes: B batch, R decoding rows, n context tokens, N tokens per image, T positions, D width,
K codebook size, Z code dimension.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rear.config import GeneratorConfig, SampleConfig
from rear.hub import CardInfo
from rear.regularizers import alignment_loss, projection_head


class Generator(nn.Module):
    """Class-conditional next-token transformer over raster VQ tokens, with reAR training heads."""

    prefix_length: int  # positions before t_0
    blocks: nn.ModuleList

    def __init__(self, config: GeneratorConfig) -> None:
        if type(self) is Generator:
            raise TypeError("Generator is the interface of the backbones and has none of its own; build a model "
                            "with rear.build_generator(config), which builds config.backbone")
        super().__init__()
        self.config = config.validate()
        # what a checkpoint carried besides weights (rear.checkpoint: generation_config.json, card.json);
        # saving again writes them unless told otherwise
        self.generation: Any = None  # rear.checkpoint.Generation | None
        self.card_info = CardInfo()

    def alignment_heads(self) -> None:
        """Build the training-only projection heads the config asks for (call after the trunk)."""
        D, a = self.config.width, self.config.align
        self.encode_align_mlp = projection_head(D, a.projection_dim, a.code_dim) if a.encode else None
        self.decode_align_mlp = projection_head(D, a.projection_dim, a.code_dim) if a.decode else None

    # ---------------------------------------------------------------- what a backbone implements
    def forward_context(
        self, context: torch.Tensor, labels: torch.Tensor, capture: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """context [B, n], labels [B] -> logits [B, n+1, K] of t_0 .. t_n, and the outputs
        [B, prefix_length + n, D] of the blocks in `capture`."""
        raise NotImplementedError

    def setup_caches(self, labels: torch.Tensor, static: bool = False) -> Any:
        """Allocate the decoding state (static KV cache) for rows with `labels` [R]; `static`: every
        shape fixed by R alone (a compiled, graph-captured decode step)."""
        raise NotImplementedError

    def prefill(self, state: Any) -> torch.Tensor:
        """Run the prefix positions; return the logits of t_0 [R, K]."""
        raise NotImplementedError

    def decode_step(self, state: Any, tokens: torch.Tensor, index: int | torch.Tensor,
                    span: int | None = None) -> torch.Tensor:
        """Feed t_index = tokens [R]; return the logits of t_{index+1} [R, K]. An int index reads only
        the filled cache (eager); a tensor [1] keeps every shape fixed (a compiled step), attending the
        first `span` cache positions (rear.generator.cache.span_for; None: the whole cache)."""
        raise NotImplementedError

    def step_positions(self, index: int | torch.Tensor) -> slice | torch.Tensor:
        """The sequence position holding t_index: a slice for an int, a tensor [1] for a tensor."""
        if isinstance(index, torch.Tensor):
            return index.view(1) + self.prefix_length
        return slice(index + self.prefix_length, index + self.prefix_length + 1)

    # ---------------------------------------------------------------- sharing
    @classmethod
    def from_pretrained(cls, name: str | Path, device: str | torch.device = "cpu") -> "Generator":
        """A generator from a checkpoint folder (save_pretrained, rear train, rear convert) or a Hugging
        Face repo id (downloaded with the `hub` extra)."""
        from rear.checkpoint import load_generator

        return load_generator(name, device)

    def save_pretrained(self, folder: str | Path, sample: SampleConfig | None = None,
                        class_names: Sequence[str] | None = None, training: dict | None = None,
                        metrics: dict | None = None) -> Path:
        """Write a checkpoint folder: weights, config, sampling settings and class names, and a model card
        (README.md, card.json) with what is known of its training and metrics; what is not given is what
        the model was loaded with."""
        from rear.checkpoint import save_generator

        return save_generator(self, folder, sample, class_names, training, metrics)

    def push_to_hub(self, repo_id: str, private: bool = False, sample: SampleConfig | None = None,
                    class_names: Sequence[str] | None = None, training: dict | None = None,
                    metrics: dict | None = None) -> str:
        """save_pretrained into a temporary folder and upload it to a Hugging Face model repo (created if
        missing; extra `hub`, a token from `huggingface-cli login` or $HF_TOKEN); returns its URL."""
        import tempfile

        from rear.hub import push_folder

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(Path(folder) / "model", sample, class_names, training, metrics)
            return push_folder(Path(folder) / "model", repo_id, private)

    # ---------------------------------------------------------------- ids and checks
    @property
    def mask_id(self) -> int:
        """Token id of the mask token (the "mask" corruption mode)."""
        return self.config.codebook_size

    @property
    def null_label(self) -> int:
        """Label value meaning "no class" (classifier-free guidance, label dropout)."""
        return self.config.num_classes

    def num_parameters(self, heads: bool = False) -> int:
        """Parameter count, without the training-only alignment heads unless `heads`."""
        return sum(
            p.numel() for n, p in self.named_parameters() if heads or "_align_mlp." not in n
        )

    def check_inputs(self, labels: torch.Tensor, tokens: torch.Tensor | None = None, values: bool = True) -> None:
        """Raise ValueError on labels outside [0, C] or tokens [B, n] outside [0, K] / n > N. The shapes
        are checked always; the values (a device sync on a GPU) only with `values`: the API boundary
        checks them, the trainer does not, its store having been checked once where it was opened."""
        c = self.config
        if labels.dim() != 1 or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor [B], got {labels.dtype} {tuple(labels.shape)}")
        if values and labels.numel() and (labels.min() < 0 or labels.max() > c.num_classes):
            raise ValueError(
                f"labels must lie in [0, {c.num_classes}] ({c.num_classes} = null class), "
                f"got range [{labels.min().item()}, {labels.max().item()}]"
            )
        if tokens is None:
            return
        if tokens.dim() != 2 or tokens.dtype.is_floating_point or tokens.shape[0] != labels.shape[0]:
            raise ValueError(
                f"tokens must be an integer tensor [B={labels.shape[0]}, n], got {tokens.dtype} {tuple(tokens.shape)}"
            )
        if tokens.shape[1] > c.num_tokens:
            raise ValueError(f"got {tokens.shape[1]} tokens per image; this model takes {c.num_tokens}")
        if values and tokens.numel() and (tokens.min() < 0 or tokens.max() > self.mask_id):
            raise ValueError(
                f"token ids must lie in [0, {c.codebook_size - 1}] (or {self.mask_id} = mask), "
                f"got range [{tokens.min().item()}, {tokens.max().item()}]; "
                "was the data tokenized with a tokenizer of another codebook size?"
            )

    # ---------------------------------------------------------------- teacher forcing
    def logits(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits [B, N, K]: row i predicts tokens[:, i]."""
        self.check_inputs(labels, tokens)
        return self.forward_context(tokens[:, :-1], labels)[0]

    def predicting_states(self, captured: torch.Tensor, n: int) -> torch.Tensor:
        """Block outputs [B, T, D] at the positions whose logits predict t_0 .. t_{n-1} -> [B, n, D]."""
        first = self.prefix_length - 1
        return captured[:, first : first + n]

    def holding_states(self, captured: torch.Tensor, n: int) -> torch.Tensor:
        """Block outputs [B, T, D] at the positions that hold t_0 .. t_{n-1} -> [B, n, D]."""
        return captured[:, self.prefix_length : self.prefix_length + n]

    def training_losses(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        code_vectors: torch.Tensor,
        context: torch.Tensor | None = None,
        corrupted: torch.Tensor | None = None,
        checked: bool = False,
        sequence_logp: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The reAR loss {"ce", "align", "total"} of clean `tokens` [B, N] read through `context`.

        code_vectors [B, N, Z] are the frozen codebook vectors of the clean tokens; `corrupted` [B, N]
        marks the context positions the noise drew (their encode-alignment term is zeroed), including
        a switch that drew the true code; without it, positions where context != tokens count.
        `checked`: the caller has range-checked the ids where they entered (the trainer: its store), so
        no value is read back from the device here. `sequence_logp`: also "logp" [B], each image's
        log-likelihood sum_i log p(t_i | t_<i, label) (the CCA fine-tune's r, rear.train.cca).
        """
        c = self.config
        context = tokens if context is None else context
        corrupted = context != tokens if corrupted is None else corrupted  # [B, N]
        self.check_inputs(labels, context, values=not checked)
        self.check_inputs(labels, tokens, values=not checked)
        N = c.num_tokens
        if tokens.shape[1] != N or context.shape != tokens.shape or corrupted.shape != tokens.shape:
            raise ValueError(
                f"tokens, context and corrupted must all be [B, {N}], "
                f"got {tuple(tokens.shape)}, {tuple(context.shape)} and {tuple(corrupted.shape)}"
            )
        if not checked and tokens.numel() and tokens.max() >= c.codebook_size:
            raise ValueError(f"target tokens must lie in [0, {c.codebook_size - 1}], got {tokens.max().item()} "
                             f"({c.codebook_size} is the mask id: only a context may hold it)")
        layers = (c.align.encode_layer, c.align.decode_layer) if c.align.enabled else ()
        logits, captured = self.forward_context(context, labels, capture=layers)  # [B, N+1, K]
        ce = F.cross_entropy(logits[:, :N].flatten(0, 1).float(), tokens.flatten())
        extra = {}
        if sequence_logp:
            picked = logits[:, :N].float().log_softmax(-1).gather(-1, tokens[..., None])[..., 0]  # [B, N]
            extra["logp"] = picked.sum(1)  # [B]
        if not c.align.enabled:
            return {"ce": ce, "align": ce.new_zeros(()), "total": ce, **extra}
        if code_vectors.shape != (*tokens.shape, c.align.code_dim):
            raise ValueError(f"code_vectors must be [B, N, Z={c.align.code_dim}], got {tuple(code_vectors.shape)}")
        encode = decode = None
        if self.encode_align_mlp is not None:  # state at the position holding t_i
            # every position (alignment_loss zeroes the corrupted ones' terms): selecting the clean ones first
            # would make the shape data-dependent, a device sync on a GPU and a graph break when compiled
            encode = self.encode_align_mlp(self.holding_states(captured[c.align.encode_layer], N))  # [B, N, Z]
        if self.decode_align_mlp is not None:  # state at the position predicting t_i
            decode = self.decode_align_mlp(self.predicting_states(captured[c.align.decode_layer], N))
        align = alignment_loss(encode, decode, code_vectors, corrupted)
        return {"ce": ce, "align": align, "total": ce + c.align.weight * align, **extra}

    def forward(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        code_vectors: torch.Tensor,
        context: torch.Tensor | None = None,
        corrupted: torch.Tensor | None = None,
        checked: bool = False,
        sequence_logp: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The training losses: the step DistributedDataParallel wraps."""
        return self.training_losses(tokens, labels, code_vectors, context, corrupted, checked, sequence_logp)

    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        sample: SampleConfig | None = None,
        *,
        rng: torch.Generator | None = None,
        compiled: bool = False,
        on_token: Callable[[int, torch.Tensor], None] | None = None,
        **settings: Any,
    ) -> torch.Tensor:
        """Sample token grids [B, N] for `labels` [B] with the power-cosine CFG schedule: the one way to
        sample (rear sample, reproduce, diagnose, serve, the study and the trainer's grids call it).

        `sample`: the settings; None takes those the checkpoint was saved with (generation_config.json),
        else SampleConfig's defaults; a keyword (cfg_scale=4.0, top_k=...) replaces one field of them.
        `rng` draws the tokens; `compiled` runs the one-token step through torch.compile
        (rear.generator.sampling.compile_pays); `on_token(n, tokens [B, n])` sees each step's tokens.
        """
        from rear.generator.sampling import generate

        if sample is None:
            saved = self.generation.sample if self.generation is not None else None
            sample = saved if saved is not None else SampleConfig()
        if settings:
            known = {f.name for f in dataclasses.fields(SampleConfig)}
            if set(settings) - known:
                raise TypeError(f"generate() has no setting {sorted(set(settings) - known)}; the settings are "
                                f"SampleConfig's: {', '.join(sorted(known))}")
            sample = dataclasses.replace(sample, **settings)
        return generate(self, labels, sample, rng=rng, compiled=compiled, on_token=on_token)

"""Evidence maps: where in time and frequency a model found a tag.

Two methods, both computed on a private copy of the network so the copy can carry hooks while
the serving model runs untouched (the normal forward has no hook, no branch and no extra work):

- ``attention`` (Query2Label only): the decoder's cross-attention of the tag's label query onto
  the audio tokens, recomputed from each layer's own projection weights, averaged over heads and
  decoder layers, and multiplied by the window's probability for the tag (softmax makes every
  window's attention sum to one, so without the score a window where the tag is absent would
  look as full of evidence as one where it is present). One value per token: H frequency rows ×
  W time steps per window (4 × 8 for the paper's geometry, read from the actual grid).
- ``gradient`` (every model with a log-mel front end: q2l, rescnn, musicnn): gradient × input
  of the tag's logit on the normalised log-mel, summed over cells of ``gradient_bands`` mel
  bands × W time steps and clipped at zero (evidence for the tag, not against it), then, like
  the attention map, scaled to sum to one in each window and multiplied by the window's
  probability (measured better in time than the raw product: docs/explanations.md).

Both are hints about what the network reacted to, not proof of what it "heard": attention says
which tokens a query read, and the encoder has already mixed information between tokens.

Shapes (N windows, K requested tags, F frequency bands, W steps per window):
    windows (N, T) -> scores (N, n_classes), maps (N, K, F, W)
Track level: `stitch` lays the windows' steps on one time axis, `pool_time` bounds its length.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.base import TaggingModel
from model.config import MelConfig
from model.frontend import MelFrontEnd

Method = Literal["attention", "gradient"]
METHODS: tuple[Method, ...] = ("attention", "gradient")
GRADIENT_BANDS = 16
GRADIENT_STEPS = 8  # time steps per window for models without a token grid


class ExplainUnsupportedError(ValueError):
    """The model cannot produce this kind of map (no label queries, or no log-mel input)."""


def supported_methods(model: TaggingModel) -> tuple[Method, ...]:
    """The methods `Explainer` offers for this network, best first."""
    methods: list[Method] = []
    if _is_q2l(model):
        methods.append("attention")
    if isinstance(getattr(model, "frontend", None), MelFrontEnd):
        methods.append("gradient")
    return tuple(methods)


def _is_q2l(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("decoder", "query_embed", "input_proj"))


def attention_probabilities(attention: nn.MultiheadAttention, query: Tensor, key: Tensor) -> Tensor:
    """The softmax weights `attention` applies, recomputed from its projections (eval mode).

    Shapes:
        query (B, Lq, d), key (B, Lk, d) -> (B, heads, Lq, Lk), rows summing to one
    """
    if not (attention.batch_first and attention._qkv_same_embed_dim):
        raise ValueError("expected a batch-first attention with one packed in-projection")
    d, heads = attention.embed_dim, attention.num_heads
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    q = F.linear(query, weight[:d], None if bias is None else bias[:d])
    k = F.linear(key, weight[d : 2 * d], None if bias is None else bias[d : 2 * d])
    batch, lq, lk = q.shape[0], q.shape[1], k.shape[1]
    q = q.view(batch, lq, heads, d // heads).transpose(1, 2)  # (B, h, Lq, d_head)
    k = k.view(batch, lk, heads, d // heads).transpose(1, 2)  # (B, h, Lk, d_head)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)


@dataclass(frozen=True)
class WindowEvidence:
    """Evidence of a batch of windows.

    Attributes:
        scores: (N, n_classes) probabilities from the same forward pass (fp32).
        maps: method -> (N, K, F, W) non-negative evidence for the K requested tags.
    """

    scores: Tensor
    maps: dict[Method, Tensor]


class Explainer:
    """Computes evidence maps on its own fp32 copy of `model` (the original is not touched).

    Args:
        model: Any zoo network; `supported_methods(model)` says what it can explain.
        gradient_bands: Mel bands of the gradient map.
    """

    def __init__(self, model: TaggingModel, *, gradient_bands: int = GRADIENT_BANDS) -> None:
        self.methods = supported_methods(model)
        self.gradient_bands = gradient_bands
        self.model: TaggingModel = copy.deepcopy(model).float().eval()
        self.model.to(memory_format=torch.contiguous_format)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._captured: dict[str, Any] = {}
        self._lock = threading.Lock()  # the hooks share `_captured`: one explanation at a time
        # musicnn and its vgg keep the TF layout: their mel is (B, 1, T, mels)
        self._time_major = self.model.architecture in ("musicnn", "musicnn-vgg")
        frontend = getattr(self.model, "frontend", None)
        if "gradient" in self.methods and isinstance(frontend, MelFrontEnd):
            frontend.bn.register_forward_hook(self._capture_mel)
        if "attention" in self.methods:
            model_any: Any = self.model
            model_any.input_proj.register_forward_hook(self._capture_grid)
            for layer in model_any.decoder:
                layer.cross_attn.register_forward_hook(self._capture_attention, with_kwargs=True)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def mel(self) -> MelConfig:
        mel: MelConfig = self.model.config.mel  # type: ignore[attr-defined]
        return mel

    # ----- hooks (on the private copy only) ---------------------------------------------------

    def _capture_mel(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if not self._captured.get("want_gradient"):
            return output
        leaf = output.detach().requires_grad_(True)
        self._captured["mel"] = leaf
        return leaf

    def _capture_grid(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._captured["grid"] = tuple(output.shape[-2:])

    def _capture_attention(
        self, module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any
    ) -> None:
        assert isinstance(module, nn.MultiheadAttention)
        query: Tensor = kwargs["query"] if "query" in kwargs else args[0]
        key: Tensor = kwargs["key"] if "key" in kwargs else args[1]
        with torch.no_grad():
            probs = attention_probabilities(module, query.detach(), key.detach())
        self._captured.setdefault("attention", []).append(probs)

    # ----- maps ---------------------------------------------------------------------------

    def check(self, methods: Sequence[Method]) -> None:
        for method in methods:
            if method not in self.methods:
                offered = ", ".join(self.methods) or "none"
                raise ExplainUnsupportedError(
                    f"a {self.model.architecture} model cannot give a {method} map "
                    f"(it offers: {offered})"
                )

    def explain(
        self, windows: Tensor, tag_indices: Sequence[int], methods: Sequence[Method]
    ) -> WindowEvidence:
        """Scores and maps of `windows` (N, T) for the tags at `tag_indices`."""
        with self._lock:
            return self._explain(windows, tag_indices, methods)

    def _explain(
        self, windows: Tensor, tag_indices: Sequence[int], methods: Sequence[Method]
    ) -> WindowEvidence:
        self.check(methods)
        if windows.dim() != 2 or windows.shape[0] == 0:
            raise ValueError(f"expected windows (N, samples), got {tuple(windows.shape)}")
        if not tag_indices:
            raise ValueError("name at least one tag to explain")
        index = torch.tensor(list(tag_indices), dtype=torch.long)
        want_gradient = "gradient" in methods
        self._captured = {"want_gradient": want_gradient}
        batch = windows.to(self.device, dtype=torch.float32)
        with torch.enable_grad() if want_gradient else torch.no_grad():
            logits = self.model(batch)  # (N, n_classes)
            maps: dict[Method, Tensor] = {}
            if want_gradient:
                maps["gradient"] = self._gradient_maps(logits, index)
        scores = torch.sigmoid(logits.detach().float()).cpu()
        if "attention" in methods:
            maps["attention"] = self._attention_maps(scores, index)
        self._captured = {}
        return WindowEvidence(scores=scores, maps=maps)

    def _steps(self) -> int:
        grid = self._captured.get("grid")
        return int(grid[1]) if grid else GRADIENT_STEPS

    def _gradient_maps(self, logits: Tensor, index: Tensor) -> Tensor:
        mel: Tensor = self._captured["mel"]  # (N, 1, mels, frames), or (N, 1, frames, mels)
        steps = self._steps()
        maps = []
        for k in index.tolist():
            (grad,) = torch.autograd.grad(logits[:, k].sum(), mel, retain_graph=True)
            product = (grad * mel.detach())[:, 0]  # (N, mels, frames) or (N, frames, mels)
            if self._time_major:
                product = product.transpose(1, 2)
            # Sum over each cell (mean × cell size keeps the scale independent of pooling).
            cells = F.adaptive_avg_pool2d(product, (self.gradient_bands, steps))
            maps.append(cells.clamp(min=0.0) * (product.shape[1] * product.shape[2]))
        positive = torch.stack(maps, dim=1).detach()  # (N, K, bands, steps)
        share = positive / positive.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)
        probability = torch.sigmoid(logits.detach().float())[:, index, None, None]
        return (share * probability).cpu()

    def _attention_maps(self, scores: Tensor, index: Tensor) -> Tensor:
        height, width = self._captured["grid"]
        layers = torch.stack(self._captured["attention"])  # (layers, N, heads, C, H·W)
        mean = layers.mean(dim=(0, 2))[:, index]  # (N, K, H·W): tokens are frequency-major
        weighted = mean * scores[:, index, None].to(mean.device)
        return weighted.reshape(*weighted.shape[:2], height, width).cpu()  # (N, K, H, W)


# ----- axes and track layout -----------------------------------------------------------------


def _hz_to_mel(hz: Tensor, scale: str) -> Tensor:
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_hz / f_sp + torch.log(hz.clamp(min=1e-9) / min_log_hz) / logstep
    return torch.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: Tensor, scale: str) -> Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(
        mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def mel_centres_hz(mel: MelConfig) -> Tensor:
    """Centre frequency of each of the `n_mels` filters, Hz (n_mels,)."""
    low, high = _hz_to_mel(torch.tensor([mel.f_min, mel.f_max], dtype=torch.float64), mel.mel_scale)
    points = torch.linspace(float(low), float(high), mel.n_mels + 2, dtype=torch.float64)
    return _mel_to_hz(points[1:-1], mel.mel_scale)


def band_edges_hz(mel: MelConfig, n_bands: int) -> list[float]:
    """Edges (n_bands + 1) of `n_bands` equal groups of mel filters, Hz.

    Inner edges lie halfway (in mel) between the last filter centre of one group and the first
    of the next; the outer edges are f_min and f_max.
    """
    if n_bands <= 0:
        raise ValueError(f"n_bands must be positive, got {n_bands}")
    low, high = _hz_to_mel(torch.tensor([mel.f_min, mel.f_max], dtype=torch.float64), mel.mel_scale)
    step = (float(high) - float(low)) / (mel.n_mels + 1)
    inner = [float(low) + step * (0.5 + mel.n_mels * b / n_bands) for b in range(1, n_bands)]
    hz = _mel_to_hz(torch.tensor(inner, dtype=torch.float64), mel.mel_scale).tolist()
    return [mel.f_min, *[round(x, 1) for x in hz], mel.f_max]


def stitch(maps: Tensor, starts: Sequence[int], window_samples: int, n_samples: int) -> Tensor:
    """Lay per-window maps on one time axis of steps `window_samples / W` samples long.

    Each window's step j lands in the track column nearest to its start; overlapping steps (the
    last window is aligned to the track's end) are averaged.

    Shapes:
        maps (N, K, F, W) -> (K, F, columns), columns = ceil(max(n_samples, window) / step)
    """
    n, k, f, w = maps.shape
    if n != len(starts):
        raise ValueError(f"{n} window maps for {len(starts)} window starts")
    step = window_samples / w
    columns = max(1, math.ceil(max(n_samples, window_samples) / step - 1e-6))
    total = torch.zeros(k, f, columns, dtype=torch.float32)
    count = torch.zeros(columns, dtype=torch.float32)
    for window, start in zip(maps, starts, strict=True):
        first = min(round(start / step), columns - w)
        total[..., first : first + w] += window.float()
        count[first : first + w] += 1
    return total / count.clamp(min=1)


def pool_time(track: Tensor, max_columns: int) -> tuple[Tensor, int]:
    """Average groups of consecutive columns so at most `max_columns` remain.

    Returns:
        (K, F, ≤ max_columns) and the group size (columns merged into one).
    """
    if max_columns <= 0:
        raise ValueError(f"max_columns must be positive, got {max_columns}")
    columns = track.shape[-1]
    factor = max(1, math.ceil(columns / max_columns))
    if factor == 1:
        return track, 1
    pad = (-columns) % factor
    padded = F.pad(track, (0, pad))
    weight = F.pad(torch.ones(columns), (0, pad))
    sums = padded.reshape(*track.shape[:-1], -1, factor).sum(-1)
    counts = weight.reshape(-1, factor).sum(-1)
    return sums / counts, factor

"""Figures of the encoder's tensors: matplotlib ``Figure`` objects drawn with the Agg backend.

Every function takes tensors or arrays and token lists (never a model), checks them, and returns a
``Figure`` whose pixel size is ``figsize * DPI`` exactly. Figures are built with the object API (no
pyplot), so nothing is registered globally: ``render_png`` writes one to disk and clears it, and the
garbage collector frees it like any other object.

Long inputs stay readable: at most ``MAX_TICK_LABELS`` token labels per axis (the others are thinned
out), labels are shortened to ``MAX_LABEL_CHARS`` characters, and big attention mosaics are averaged
down to a bounded number of pixels per tile.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
MAX_TICK_LABELS = 40
MAX_LABEL_CHARS = 14
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"
ATTENTION = "Blues"

# Default figure sizes in inches; at DPI = 100 the PNG is 100 times as many pixels.
SIZE_SQUARE = (8.0, 7.0)
SIZE_WIDE = (11.0, 5.5)
SIZE_MOSAIC = (10.0, 8.0)
SIZE_STEP = (11.0, 6.0)
SIZE_TRIPLE = (13.0, 5.0)

# Fonts for token labels beyond Latin, Greek, Cyrillic and Hebrew (DejaVu's range): used when installed.
_FALLBACK_FAMILIES = ("Noto Sans CJK JP", "Noto Sans CJK SC", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Color Emoji")


def _font_families() -> list[str]:
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(family for family in _FALLBACK_FAMILIES if family in installed)]


_STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": _font_families(),
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.constrained_layout.use": False,
    "figure.autolayout": False,
    "image.interpolation": "nearest",
}


@contextmanager
def _quiet_glyphs():
    """Characters no installed font has (emoji, CJK without a CJK font) draw as boxes; don't warn about each one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        yield


# matplotlib's settings and Python's warning filters are process-wide: one figure is built or rendered at a
# time, so that a server drawing for two users at once cannot mix their settings up.
_DRAWING = threading.RLock()


def _styled(function):
    """Build the figure under this module's style, whatever the global matplotlib settings are."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        with _DRAWING, matplotlib.rc_context(_STYLE), _quiet_glyphs():
            return function(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------- helpers


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure of ``figsize`` inches at ``DPI`` with an Agg canvas attached (no pyplot, no global state)."""
    if len(figsize) != 2 or not all(0 < side <= 40 for side in figsize):
        raise ValueError(f"figsize must be two sizes in inches between 0 and 40, got {figsize!r}")
    figure = Figure(figsize=figsize, dpi=DPI, layout=None)
    FigureCanvasAgg(figure)
    return figure


def render_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG of exactly ``figsize * DPI`` pixels, then clear it so its memory can be freed."""
    path = Path(path)
    try:
        with _DRAWING, matplotlib.rc_context(_STYLE), _quiet_glyphs():
            figure.savefig(path, format="png", dpi=DPI)
    finally:
        figure.clear()
    return path


def render_bytes(figure: Figure, fmt: str = "png") -> bytes:
    """``figure`` as PNG or SVG bytes (for downloads), rendered under this module's style; the figure is cleared."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"format must be 'png' or 'svg', not {fmt!r}")
    buffer = io.BytesIO()
    try:
        with _DRAWING, matplotlib.rc_context({**_STYLE, "svg.fonttype": "path"}), _quiet_glyphs():
            figure.savefig(buffer, format=fmt, dpi=DPI)
    finally:
        figure.clear()
    return buffer.getvalue()


def pixel_size(figure: Figure) -> tuple[int, int]:
    """(width, height) in pixels of the PNG that ``render_png`` writes."""
    width, height = figure.get_size_inches()
    return round(width * DPI), round(height * DPI)


def as_array(values, ndim: int | tuple[int, ...], name: str) -> np.ndarray:
    """A float64 NumPy copy of a tensor or array, with its number of dimensions checked."""
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or needing grad
        values = values.detach().float().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric (a tensor or array), got {type(values).__name__}: {err}") from None
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        wanted = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{name} must be {wanted}, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}): there is nothing to draw")
    return array


def check_labels(labels: Sequence[str] | None, length: int, name: str) -> list[str] | None:
    """Labels as a list of strings whose count matches the axis they label (``None`` passes through)."""
    if labels is None:
        return None
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"{name} must be a sequence of strings (one per row or column)")
    labels = list(labels)
    if len(labels) != length:
        raise ValueError(f"{name} has {len(labels)} labels but the axis has {length} entries")
    return labels


def thinned_ticks(n: int, max_labels: int = MAX_TICK_LABELS) -> list[int]:
    """At most ``max_labels`` evenly spaced indices out of ``range(n)``, always starting at 0."""
    if n <= 0:
        return []
    stride = max(1, math.ceil(n / max_labels))
    return list(range(0, n, stride))


def short_label(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    """A label cut to ``limit`` characters, with control characters made visible."""
    visible = "".join(chr(0x2400 + ord(c)) if ord(c) < 32 else c for c in label)
    return visible if len(visible) <= limit else visible[: limit - 1] + "…"


def _label_axis(axis, labels: list[str] | None, which: str, rotate: bool = False) -> None:
    """Put thinned token labels on the x or y axis of ``axis`` (rows and columns at integer positions)."""
    if labels is None:
        return
    ticks = thinned_ticks(len(labels))
    texts = [short_label(labels[i]) for i in ticks]
    size = 8 if len(ticks) <= 24 else 7
    if which == "x":
        axis.set_xticks(ticks, texts, rotation=90 if rotate else 0, fontsize=size)
    else:
        axis.set_yticks(ticks, texts, fontsize=size)


def _margin(labels: list[str] | None, figure_inches: float, minimum: float, maximum: float = 0.3) -> float:
    """The figure fraction a column of token labels needs (about 0.07 inch per character at 7-8 pt)."""
    if not labels:
        return minimum
    widest = max(len(short_label(label)) for label in labels)
    return float(np.clip((0.25 + 0.07 * widest) / figure_inches, minimum, maximum))


def robust_limit(array: np.ndarray, percentile: float = 99.0) -> float:
    """A symmetric colour limit that ignores the few outliers (BERT has a handful of huge dimensions)."""
    finite = np.abs(array[np.isfinite(array)])
    if finite.size == 0:
        return 1.0
    limit = float(np.percentile(finite, percentile))
    return limit if limit > 0 else float(finite.max()) or 1.0


def _draw_separators(axis, boundaries: Sequence[int], rows: bool = True, columns: bool = True) -> None:
    """Thin lines between segments (e.g. after the first [SEP] of a text pair)."""
    for boundary in boundaries:
        if rows:
            axis.axhline(boundary - 0.5, color="black", linewidth=0.8, alpha=0.6)
        if columns:
            axis.axvline(boundary - 0.5, color="black", linewidth=0.8, alpha=0.6)


def _colorbar(figure: Figure, image, axis, label: str) -> None:
    bar = figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
    bar.set_label(label)
    bar.ax.tick_params(labelsize=7)


def _bars(axis, centres: np.ndarray, heights: np.ndarray, width: float, bottoms: np.ndarray | float = 0.0,
          color: str = "#4c72b0", label: str | None = None, horizontal: bool = False) -> None:
    """Bars as ONE collection (hundreds of separate bar artists take a second to draw); ``horizontal`` for barh."""
    heights = np.asarray(heights, dtype=float)
    bottoms = np.broadcast_to(np.asarray(bottoms, dtype=float), heights.shape)
    left, right = centres - width / 2, centres + width / 2
    corners = np.stack([  # (N, 4, 2): the four corners of each bar
        np.stack([left, bottoms], -1), np.stack([right, bottoms], -1),
        np.stack([right, bottoms + heights], -1), np.stack([left, bottoms + heights], -1),
    ], axis=1)
    if horizontal:
        corners = corners[..., ::-1]  # (N, 4, 2): (value, position) instead of (position, value)
    axis.add_collection(PolyCollection(corners, facecolors=color, edgecolors="none", label=label))
    axis.update_datalim(corners.reshape(-1, 2))
    axis.autoscale_view()


# ------------------------------------------------------------------------------------------ matrices


@_styled
def matrix_heatmap(
    values,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
    signed: bool = False,
    limits: tuple[float, float] | None = None,
    cmap: str | None = None,
    boundaries: Sequence[int] = (),
    figsize: tuple[float, float] = SIZE_SQUARE,
) -> Figure:
    """A (rows, columns) matrix as one heatmap with (thinned) labels on both axes.

    ``signed`` uses a diverging map centred on 0 with robust symmetric limits; otherwise a sequential map.
    """
    matrix = as_array(values, 2, "values")
    rows, columns = matrix.shape
    row_labels = check_labels(row_labels, rows, "row_labels")
    column_labels = check_labels(column_labels, columns, "column_labels")
    if limits is None:
        limit = robust_limit(matrix) if signed else None
        limits = (-limit, limit) if signed else (np.nanmin(matrix), np.nanmax(matrix))
    figure = new_figure(figsize)
    left = _margin(row_labels, figsize[0], 0.08)
    bottom = _margin(column_labels, figsize[1], 0.1, 0.35)
    axis = figure.add_axes((left, bottom, 0.9 - left, 0.9 - bottom))
    image = axis.imshow(
        matrix, cmap=cmap or (DIVERGING if signed else SEQUENTIAL), vmin=limits[0], vmax=limits[1], aspect="auto"
    )
    _label_axis(axis, row_labels, "y")
    _label_axis(axis, column_labels, "x", rotate=True)
    _draw_separators(axis, boundaries)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    _colorbar(figure, image, axis, colorbar_label)
    return figure


def attention_head(pattern, tokens: Sequence[str], *, title: str = "", boundaries: Sequence[int] = ()) -> Figure:
    """One head's (query, key) attention weights with the tokens on both axes."""
    matrix = as_array(pattern, 2, "pattern")
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"an attention pattern is square (query x key), got shape {matrix.shape}")
    return matrix_heatmap(
        matrix, tokens, tokens, title=title, xlabel="key: the token attended to", ylabel="query: the token attending",
        colorbar_label="attention weight (each row sums to 1)", limits=(0.0, max(float(np.nanmax(matrix)), 1e-6)),
        cmap=ATTENTION, boundaries=boundaries,
    )


def cosine_matrix(vectors, tokens: Sequence[str], *, title: str = "", boundaries: Sequence[int] = ()) -> Figure:
    """Cosine similarity of every pair of rows of ``vectors`` (T, d), tokens on both axes."""
    matrix = as_array(vectors, 2, "vectors")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (T, 1)
    unit = matrix / np.maximum(norms, 1e-12)
    return matrix_heatmap(
        unit @ unit.T, tokens, tokens, title=title, colorbar_label="cosine similarity",
        limits=(-1.0, 1.0), cmap=DIVERGING, boundaries=boundaries,
    )


@_styled
def token_matrices(
    matrices: Sequence,
    tokens: Sequence[str],
    titles: Sequence[str],
    *,
    colorbar_labels: Sequence[str] | None = None,
    boundaries: Sequence[int] = (),
    figsize: tuple[float, float] = SIZE_WIDE,
) -> Figure:
    """Two or three (T, T) token-by-token matrices side by side, each with its own colour scale from 0."""
    arrays = [as_array(matrix, 2, f"matrices[{i}]") for i, matrix in enumerate(matrices)]
    if not 1 <= len(arrays) <= 3:
        raise ValueError(f"draw 1 to 3 matrices side by side, got {len(arrays)}")
    n_tokens = len(tokens)
    for index, array in enumerate(arrays):
        if array.shape != (n_tokens, n_tokens):
            raise ValueError(f"matrices[{index}] has shape {array.shape}, expected ({n_tokens}, {n_tokens}) for {n_tokens} tokens")
    tokens = check_labels(tokens, n_tokens, "tokens")
    titles = list(titles)
    labels = list(colorbar_labels or [""] * len(arrays))
    if len(titles) != len(arrays) or len(labels) != len(arrays):
        raise ValueError("give one title (and colour-bar label) per matrix")
    figure = new_figure(figsize)
    left_margin = _margin(tokens, figsize[0], 0.06, 0.15)
    bottom = _margin(tokens, figsize[1], 0.12, 0.3)
    slot = (0.98 - left_margin) / len(arrays)
    for index, (array, title, label) in enumerate(zip(arrays, titles, labels)):
        axis = figure.add_axes((left_margin + index * slot, bottom, slot * 0.78, 0.9 - bottom))
        image = axis.imshow(array, cmap=ATTENTION, vmin=0.0, vmax=max(float(np.nanmax(array)), 1e-12), aspect="auto")
        _label_axis(axis, tokens if index == 0 else None, "y")
        if index:
            axis.set_yticks([])
        _label_axis(axis, tokens, "x", rotate=True)
        _draw_separators(axis, boundaries)
        axis.set_title(title)
        bar = figure.colorbar(image, cax=figure.add_axes((left_margin + index * slot + slot * 0.8, bottom, 0.012, 0.9 - bottom)))
        bar.set_label(label)
        bar.ax.tick_params(labelsize=7)
    return figure


# ------------------------------------------------------------------------------------------- mosaics


def shrink_tiles(tiles: np.ndarray, max_side: int) -> np.ndarray:
    """Average (N, R, C) tiles down by whole blocks so neither side exceeds ``max_side`` (NaN-padded edges)."""
    n, rows, columns = tiles.shape
    factor = max(1, math.ceil(max(rows, columns) / max_side))
    if factor == 1:
        return tiles
    padded_rows, padded_columns = math.ceil(rows / factor) * factor, math.ceil(columns / factor) * factor
    padded = np.full((n, padded_rows, padded_columns), np.nan)
    padded[:, :rows, :columns] = tiles
    blocks = padded.reshape(n, padded_rows // factor, factor, padded_columns // factor, factor)  # (N, r, f, c, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks beyond the edge stay NaN
        return np.nanmean(blocks, axis=(2, 4))


def mosaic(tiles: np.ndarray, n_columns: int, gap: int = 1) -> np.ndarray:
    """Lay (N, R, C) tiles out row by row in a grid with NaN gaps, as one 2-D array for a single imshow."""
    n, rows, columns = tiles.shape
    n_rows = math.ceil(n / n_columns)
    canvas = np.full((n_rows * (rows + gap) - gap, n_columns * (columns + gap) - gap), np.nan)
    for index in range(n):
        top, left = (index // n_columns) * (rows + gap), (index % n_columns) * (columns + gap)
        canvas[top : top + rows, left : left + columns] = tiles[index]
    return canvas


def _gap_for(side: int) -> int:
    return max(1, side // 16)


@_styled
def head_grid(
    values,
    *,
    title: str = "",
    signed: bool = False,
    colorbar_label: str = "",
    max_tile: int = 128,
    figsize: tuple[float, float] = SIZE_MOSAIC,
) -> Figure:
    """All heads of a layer, (H, R, C), as a grid of tiles drawn with ONE imshow; each tile is labelled H0, H1, ..."""
    heads = as_array(values, 3, "values")
    tiles = shrink_tiles(heads, max_tile)
    n_heads, rows, columns = tiles.shape
    n_columns = math.ceil(math.sqrt(n_heads * rows / columns * figsize[0] / figsize[1]))
    n_columns = int(np.clip(n_columns, 1, n_heads))
    gap = _gap_for(max(rows, columns))
    canvas = mosaic(tiles, n_columns, gap)
    figure = new_figure(figsize)
    axis = figure.add_axes((0.02, 0.03, 0.86, 0.9))
    limit = robust_limit(canvas) if signed else None
    cmap = matplotlib.colormaps[DIVERGING if signed else ATTENTION].with_extremes(bad="white")
    image = axis.imshow(
        canvas, cmap=cmap, vmin=-limit if signed else 0.0, vmax=limit if signed else np.nanmax(canvas),
        aspect="equal" if rows * 4 >= columns and columns * 4 >= rows else "auto",
    )
    for head in range(n_heads):
        top, left = (head // n_columns) * (rows + gap), (head % n_columns) * (columns + gap)
        axis.text(left + 0.5, top + 0.5, f"H{head}", fontsize=8, color="black", va="top", ha="left",
                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0})
    axis.set_axis_off()
    axis.set_title(title)
    _colorbar(figure, image, axis, colorbar_label)
    return figure


@_styled
def attention_overview(attentions, *, title: str = "", max_tile: int = 48, figsize: tuple[float, float] = SIZE_MOSAIC) -> Figure:
    """Every head of every layer, (L, H, T, T), as one mosaic: a row per layer, a column per head, one imshow."""
    stack = as_array(attentions, 4, "attentions")
    n_layers, n_heads, queries, keys = stack.shape
    if queries != keys:
        raise ValueError(f"attention patterns are square (query x key), got {queries} x {keys}")
    tiles = shrink_tiles(stack.reshape(n_layers * n_heads, queries, keys), max_tile)  # (L*H, t, t)
    side = tiles.shape[1]
    gap = _gap_for(side)
    canvas = mosaic(tiles, n_heads, gap)
    figure = new_figure(figsize)
    axis = figure.add_axes((0.08, 0.04, 0.8, 0.86))
    cmap = matplotlib.colormaps[ATTENTION].with_extremes(bad="white")
    # Each tile keeps its own contrast: a head that spreads its weight thinly would otherwise look empty.
    peak = np.nanmax(tiles, axis=(1, 2), keepdims=True)  # (L*H, 1, 1)
    normalised = mosaic(tiles / np.maximum(peak, 1e-12), n_heads, gap)
    image = axis.imshow(normalised, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    centres = [(i * (side + gap)) + (side - 1) / 2 for i in range(max(n_layers, n_heads))]
    axis.set_yticks(centres[:n_layers], [f"layer {i}" for i in range(n_layers)])
    axis.set_xticks(centres[:n_heads], [f"H{i}" for i in range(n_heads)])
    axis.xaxis.tick_top()
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    axis.set_title(title, pad=18)
    _colorbar(figure, image, axis, "attention / the tile's own maximum")
    del canvas
    return figure


# --------------------------------------------------------------------------------------------- steps


@_styled
def token_matrix(
    values,
    tokens: Sequence[str],
    *,
    title: str = "",
    feature_label: str = "feature",
    column_groups: int = 1,
    group_name: str = "head",
    figsize: tuple[float, float] = SIZE_STEP,
) -> Figure:
    """A (token, feature) matrix as a diverging heatmap, tokens down the side, with each token's L2 norm beside it.

    ``column_groups`` > 1 marks equal groups of columns (the heads' slices of the model width).
    """
    matrix = as_array(values, 2, "values")
    n_tokens, n_features = matrix.shape
    tokens = check_labels(tokens, n_tokens, "tokens")
    if column_groups < 1 or n_features % column_groups:
        raise ValueError(f"column_groups={column_groups} must divide the {n_features} columns evenly")
    figure = new_figure(figsize)
    left = _margin(tokens, figsize[0], 0.07)
    heat = figure.add_axes((left, 0.1, 0.71 - left, 0.8))
    bars = figure.add_axes((0.73, 0.1, 0.13, 0.8), sharey=heat)
    limit = robust_limit(matrix)
    image = heat.imshow(matrix, cmap=DIVERGING, vmin=-limit, vmax=limit, aspect="auto")
    _label_axis(heat, tokens, "y")
    heat.set_xlabel(feature_label)
    heat.set_title(title)
    if column_groups > 1:
        width = n_features // column_groups
        for group in range(1, column_groups):
            heat.axvline(group * width - 0.5, color="black", linewidth=0.6, alpha=0.7)
        labelled = thinned_ticks(column_groups, 16)
        heat.set_xticks([g * width + (width - 1) / 2 for g in labelled], [f"{group_name} {g}" for g in labelled],
                        rotation=90 if column_groups > 8 else 0)
    norms = np.linalg.norm(np.nan_to_num(matrix), axis=1)  # (T,)
    _bars(bars, np.arange(n_tokens, dtype=float), norms, 0.8, horizontal=True)
    bars.set_xlim(0, float(norms.max()) * 1.05 or 1.0)
    heat.set_ylim(n_tokens - 0.5, -0.5)  # the shared axis: first token at the top, as imshow draws it
    bars.set_xlabel("L2 norm")
    bars.tick_params(axis="y", labelleft=False)
    bars.grid(axis="x", alpha=0.3)
    bar = figure.colorbar(image, cax=figure.add_axes((0.885, 0.1, 0.015, 0.8)))
    bar.set_label(f"value (colour clipped at ±{limit:.3g})")
    bar.ax.tick_params(labelsize=7)
    return figure


def step_figure(values, axes: Sequence[str], tokens: Sequence[str], *, title: str = "", head: int | None = None) -> Figure:
    """Draw one recorded step by its axis names: (token, feature), (head, token, d_head) or (head, query, key).

    ``head`` picks one head of a 3-D step (drawn with token labels); ``None`` shows all heads.
    """
    array = as_array(values, (2, 3), "values")
    axes = tuple(axes)
    if len(axes) != array.ndim:
        raise ValueError(f"axes {axes} do not match the {array.ndim}-D values of shape {array.shape}")
    if array.ndim == 2:
        return token_matrix(array, tokens, title=title, feature_label=f"{axes[1]} (feature index)")
    n_heads = array.shape[0]
    if head is not None and not 0 <= head < n_heads:
        raise ValueError(f"head must be between 0 and {n_heads - 1}, got {head}")
    square = axes[1:] == ("query", "key")
    if square:
        signed = bool(np.nanmin(array) < 0)
        if head is not None:
            if signed:
                return matrix_heatmap(array[head], tokens, tokens, title=title, xlabel="key", ylabel="query",
                                      colorbar_label="score", signed=True)
            return attention_head(array[head], tokens, title=title)
        return head_grid(array, title=title, signed=signed, colorbar_label="score" if signed else "attention weight")
    if head is not None:
        return token_matrix(array[head], tokens, title=title, feature_label=f"{axes[2]} (feature index)")
    heads, n_tokens, width = array.shape
    side_by_side = array.transpose(1, 0, 2).reshape(n_tokens, heads * width)  # (T, H * d_head): heads in a row
    return token_matrix(side_by_side, tokens, title=title, feature_label=f"heads side by side, {width} features each",
                        column_groups=heads)


# ------------------------------------------------------------------------------------------ positions


@_styled
def sinusoid(table, *, curve_dimensions: Sequence[int] | None = None, figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """The sinusoidal table (P, d) as a heatmap, and a few of its dimensions as curves over the position."""
    matrix = as_array(table, 2, "table")
    n_positions, width = matrix.shape
    if curve_dimensions is None:  # a fast, a medium and two slow waves (even: sine; one odd: its cosine partner)
        curve_dimensions = sorted({min(width - 1, 2 * round(width * f / 2)) for f in (0.04, 0.16, 0.32, 0.6)}
                                  | {min(width - 1, 2 * round(width * 0.16 / 2) + 1)})
    bad = [d for d in curve_dimensions if not 0 <= d < width]
    if bad:
        raise ValueError(f"curve dimensions {bad} are outside 0..{width - 1}")
    figure = new_figure(figsize)
    heat = figure.add_axes((0.06, 0.12, 0.4, 0.78))
    image = heat.imshow(matrix, cmap=DIVERGING, vmin=-1, vmax=1, aspect="auto")
    heat.set_xlabel("dimension i (even: sine, odd: cosine)")
    heat.set_ylabel("position p")
    heat.set_title(f"PE[p, i] for {n_positions} positions, width {width}")
    _colorbar(figure, image, heat, "value")
    curves = figure.add_axes((0.58, 0.12, 0.39, 0.78))
    positions = np.arange(n_positions)
    for dimension in curve_dimensions:
        kind = "sin" if dimension % 2 == 0 else "cos"
        curves.plot(positions, matrix[:, dimension], linewidth=1.4, label=f"i = {dimension} ({kind})")
    curves.set_xlabel("position p")
    curves.set_ylabel("PE[p, i]")
    curves.set_ylim(-1.15, 1.45)
    curves.set_title("low dimensions turn fast, high dimensions slowly")
    curves.legend(loc="upper right", fontsize=7, ncols=3, frameon=False)
    curves.grid(alpha=0.3)
    return figure


def _cosine(matrix: np.ndarray) -> np.ndarray:
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)  # (P, d) rows of length 1
    return unit @ unit.T


@_styled
def position_similarity(sinusoidal, learned=None, *, learned_title: str = "learned",
                        missing_note: str = "this model has no learned\nposition table",
                        figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """Position-by-position cosine similarity of the sinusoidal table and (if given) the model's own table, side by side.

    ``missing_note`` fills the right panel when there is no second table.
    """
    tables = [("sinusoidal (Vaswani et al.)", as_array(sinusoidal, 2, "sinusoidal"))]
    if learned is not None:
        tables.append((learned_title, as_array(learned, 2, "learned")))
    figure = new_figure(figsize)
    image = None
    for index in range(2):
        axis = figure.add_axes((0.06 + index * 0.45, 0.12, 0.36, 0.76))
        if index >= len(tables):
            axis.set_axis_off()
            axis.text(0.5, 0.5, missing_note, ha="center", va="center", fontsize=11, wrap=True)
            continue
        name, table = tables[index]
        image = axis.imshow(_cosine(table), cmap=DIVERGING, vmin=-1, vmax=1, aspect="equal")
        axis.set_title(f"{name}\n{table.shape[0]} positions x {table.shape[1]} dimensions")
        axis.set_xlabel("position")
        axis.set_ylabel("position")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    bar = figure.colorbar(image, cax=figure.add_axes((0.93, 0.12, 0.015, 0.76)))
    bar.set_label("cosine similarity")
    return figure


@_styled
def input_composition(token, position, segment, tokens: Sequence[str], *, note: str = "",
                      figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """How each token's input vector e = token + position + segment is made up.

    Top: the L2 norm of each part. Bottom: each part's share of e, its projection on e divided by |e|^2; the
    three shares add up to exactly 1, so they show which part dominates the direction of e. ``segment`` may
    be ``None`` for models without segment embeddings. The parts may be of any width, as long as all three
    share it (factorised embeddings are narrower than the model). ``note`` is a line under the title.
    """
    named = [("token", token), ("position", position)] + ([("segment", segment)] if segment is not None else [])
    parts = [as_array(part, 2, name) for name, part in named]
    if len({part.shape for part in parts}) != 1:
        raise ValueError(f"token, position and segment vectors must have one shape, got {[p.shape for p in parts]}")
    n_tokens = parts[0].shape[0]
    tokens = check_labels(tokens, n_tokens, "tokens")
    total = sum(parts)  # (T, d)
    total_norm = np.linalg.norm(total, axis=1)  # (T,)
    norms = [np.linalg.norm(part, axis=1) for part in parts]
    shares = [np.einsum("td,td->t", part, total) / np.maximum(total_norm, 1e-12) ** 2 for part in parts]
    names = [name for name, _ in named]
    colours = ("#4c72b0", "#dd8452", "#55a868")[: len(parts)]
    figure = new_figure(figsize)
    top = figure.add_axes((0.07, 0.58, 0.78, 0.34))
    bottom = figure.add_axes((0.07, 0.2, 0.78, 0.34), sharex=top)
    x = np.arange(n_tokens, dtype=float)
    width = 0.8 / len(parts)
    for index, (name, colour) in enumerate(zip(names, colours)):
        _bars(top, x + (index - (len(parts) - 1) / 2) * width, norms[index], width, color=colour, label=f"|{name}|")
    top.plot(x, total_norm, "k.", markersize=5 if n_tokens <= 64 else 2, label="|sum|")
    top.set_ylim(0, max(float(total_norm.max()), *(float(n.max()) for n in norms)) * 1.08)
    top.set_ylabel("L2 norm")
    top.set_title("Each token's input vector = " + " + ".join(names) + " embedding" + (f"\n{note}" if note else ""))
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    top.grid(axis="y", alpha=0.3)
    top.tick_params(axis="x", labelbottom=False)
    positive, negative = np.zeros(n_tokens), np.zeros(n_tokens)
    for name, colour, share in zip(names, colours, shares):
        base = np.where(share >= 0, positive, negative)
        _bars(bottom, x, share, 0.8, bottoms=base, color=colour, label=name)
        positive, negative = positive + np.clip(share, 0, None), negative + np.clip(share, None, 0)
    bottom.axhline(1.0, color="black", linewidth=0.6, linestyle="--")
    bottom.axhline(0.0, color="black", linewidth=0.6)
    bottom.set_ylim(min(0.0, float(negative.min())) - 0.05, max(1.0, float(positive.max())) + 0.05)
    bottom.set_ylabel("share of the sum\n(projection / |sum|²)")
    bottom.grid(axis="y", alpha=0.3)
    _label_axis(bottom, tokens, "x", rotate=True)
    bottom.set_xlim(-0.6, n_tokens - 0.4)
    return figure


# -------------------------------------------------------------------------------------------- output


@_styled
def embedding_strips(vectors, labels: Sequence[str], *, title: str = "", figsize: tuple[float, float] | None = None) -> Figure:
    """Sentence embeddings (N, d) as bar charts, one row per text, with each vector's norm in its title."""
    matrix = as_array(vectors, 2, "vectors")
    n_vectors, width = matrix.shape
    labels = check_labels(labels, n_vectors, "labels")
    if n_vectors > 4:
        raise ValueError(f"draw at most 4 embeddings at once, got {n_vectors}")
    figure = new_figure(figsize or (11.0, 1.2 + 1.8 * n_vectors))
    limit = float(np.abs(matrix).max()) * 1.05 or 1.0
    height = 0.8 / n_vectors
    for row in range(n_vectors):
        axis = figure.add_axes((0.07, 0.9 - (row + 1) * height + 0.04, 0.9, height - 0.1))
        values = matrix[row]
        dimensions = np.arange(width, dtype=float)
        _bars(axis, dimensions, np.clip(values, 0, None), 1.0, color="#c44e52")
        _bars(axis, dimensions, np.clip(values, None, 0), 1.0, color="#4c72b0")
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(-limit, limit)
        axis.axhline(0, color="black", linewidth=0.5)
        axis.set_title(f"{labels[row]}: {width} dimensions, L2 norm {np.linalg.norm(values):.4f}", fontsize=9, loc="left")
        if row < n_vectors - 1:
            axis.tick_params(axis="x", labelbottom=False)
    figure.axes[-1].set_xlabel("dimension")
    figure.suptitle(title, y=0.98)
    return figure


# ---------------------------------------------------------------------------------------- masked words


MAX_PANELS = 4  # masks drawn side by side at most (the tables list them all)
MAX_LENS_COLUMNS = 10  # top words written into the logit-lens grid at most


def _check_words(words: Sequence[Sequence[str]], shape: tuple[int, int], name: str) -> list[list[str]]:
    rows = [check_labels(row, shape[1], f"{name}[{i}]") for i, row in enumerate(words)]
    if len(rows) != shape[0]:
        raise ValueError(f"{name} has {len(rows)} rows of words but the values have {shape[0]}")
    return rows


@_styled
def prediction_bars(
    probabilities,
    words: Sequence[Sequence[str]],
    titles: Sequence[str],
    *,
    compare=None,
    series: tuple[str, str] = ("before", "after"),
    figsize: tuple[float, float] = SIZE_WIDE,
) -> Figure:
    """The top words at each mask (M, k) as horizontal bar charts, one panel per mask, best word on top.

    ``compare`` (M, k): a second probability for the same words (e.g. after switching heads off), drawn as
    a thinner bar beside each, with ``series`` naming the two.
    """
    values = as_array(probabilities, 2, "probabilities")
    n_masks, top_k = values.shape
    if not 1 <= n_masks <= MAX_PANELS:
        raise ValueError(f"draw 1 to {MAX_PANELS} masks side by side, got {n_masks}")
    words = _check_words(words, values.shape, "words")
    titles = check_labels(titles, n_masks, "titles")
    other = None
    if compare is not None:
        other = as_array(compare, 2, "compare")
        if other.shape != values.shape:
            raise ValueError(f"compare has shape {other.shape}, expected {values.shape} like probabilities")
    figure = new_figure(figsize)
    slot = 0.94 / max(n_masks, 2)  # one mask takes half the width: a full-width bar chart of 5 words is hard to read
    label_room = min(0.5, _margin(sum(words, []), figsize[0] * slot, 0.06, 0.5))
    positions = np.arange(top_k, dtype=float)
    start = 0.04 + (0.94 - n_masks * slot) / 2  # centred
    for index in range(n_masks):
        left = start + index * slot + label_room * slot
        axis = figure.add_axes((left, 0.12, slot * (0.92 - label_room), 0.76))
        height = 0.8 if other is None else 0.42
        offset = 0.0 if other is None else -0.21
        _bars(axis, positions + offset, values[index], height, horizontal=True, label=series[0] if other is not None else None)
        if other is not None:
            _bars(axis, positions + 0.21, other[index], height, color="#dd8452", horizontal=True, label=series[1])
        peak = float(np.nanmax(values[index])) if other is None else float(max(np.nanmax(values[index]), np.nanmax(other[index])))
        axis.set_xlim(0, min(1.0, peak * 1.25) or 1.0)
        axis.set_ylim(top_k - 0.5, -0.5)  # best word at the top
        axis.set_yticks(positions, [short_label(word, 16) for word in words[index]], fontsize=8 if top_k <= 20 else 6)
        for rank in range(min(top_k, 20)):
            axis.text(values[index, rank], rank + offset, f" {values[index, rank]:.3f}", va="center", fontsize=7)
        axis.set_xlabel("probability")
        axis.set_title(titles[index])
        axis.grid(axis="x", alpha=0.3)
        if other is not None and index == 0:
            axis.legend(loc="lower right", fontsize=8, frameon=False)
    return figure


@_styled
def logit_lens(
    probabilities,
    words: Sequence[Sequence[str]],
    row_labels: Sequence[str],
    answer_probabilities,
    answer_ranks,
    *,
    answer: str,
    title: str = "",
    figsize: tuple[float, float] = SIZE_WIDE,
) -> Figure:
    """The logit lens at one position: left, each row's top words (R, k) written over their probabilities;
    right, the final answer's probability and rank after the embeddings and after every layer."""
    values = as_array(probabilities, 2, "probabilities")
    n_rows, top_k = values.shape
    words = _check_words(words, values.shape, "words")
    row_labels = check_labels(row_labels, n_rows, "row_labels")
    answer_p = as_array(answer_probabilities, 1, "answer_probabilities")
    ranks = as_array(answer_ranks, 1, "answer_ranks")
    if answer_p.shape != (n_rows,) or ranks.shape != (n_rows,):
        raise ValueError(f"the answer's probabilities and ranks need one value per row ({n_rows})")
    shown = min(top_k, MAX_LENS_COLUMNS)
    figure = new_figure(figsize)
    grid = figure.add_axes((0.09, 0.1, 0.5, 0.72))
    image = grid.imshow(values[:, :shown], cmap=ATTENTION, vmin=0.0, vmax=1.0, aspect="auto")
    size = 8 if shown <= 5 else 7 if shown <= 8 else 6
    for row in range(n_rows):
        for column in range(shown):
            colour = "white" if values[row, column] > 0.6 else "black"
            grid.text(column, row, short_label(words[row][column], 12), ha="center", va="center", fontsize=size, color=colour)
    grid.set_yticks(range(n_rows), row_labels)
    grid.set_xticks(range(shown), [f"#{i + 1}" for i in range(shown)])
    grid.set_xlabel("rank of the word in that row")
    grid.set_title("top words, read out after each layer")
    bar = figure.colorbar(image, ax=grid, fraction=0.04, pad=0.02)
    bar.set_label("probability")
    bar.ax.tick_params(labelsize=7)
    curve = figure.add_axes((0.7, 0.1, 0.27, 0.72))
    rows = np.arange(n_rows)
    curve.plot(answer_p, rows, "o-", color="#4c72b0", label="probability")
    curve.set_xlim(-0.02, 1.02)
    curve.set_xlabel(f"probability of “{short_label(answer, 16)}”", color="#4c72b0")
    curve.set_ylim(n_rows - 0.5, -0.5)
    curve.set_yticks(rows, [])
    curve.grid(alpha=0.3)
    rank_axis = curve.twiny()
    rank_axis.plot(ranks, rows, "s--", color="#c44e52", markersize=4, label="rank")
    rank_axis.set_xscale("log")
    rank_axis.set_xlim(max(float(ranks.max()) * 1.5, 10.0), 0.8)  # rank 1 on the right, next to probability 1
    rank_axis.set_xlabel("its rank (1 = top, log scale)", color="#c44e52")
    figure.suptitle(title, y=0.975)
    return figure


# -------------------------------------------------------------------------------------- comparisons


@_styled
def token_bars(values, tokens: Sequence[str], *, title: str = "", ylabel: str = "", boundaries: Sequence[int] = (),
               figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """One non-negative value per token (T,) as a bar chart, tokens along the bottom."""
    heights = as_array(values, 1, "values")
    n_tokens = heights.shape[0]
    tokens = check_labels(tokens, n_tokens, "tokens")
    figure = new_figure(figsize)
    bottom = _margin(tokens, figsize[1], 0.12, 0.35)
    axis = figure.add_axes((0.07, bottom, 0.9, 0.88 - bottom))
    _bars(axis, np.arange(n_tokens, dtype=float), heights, 0.8, color="#c44e52")
    axis.set_xlim(-0.6, n_tokens - 0.4)
    axis.set_ylim(min(0.0, float(np.nanmin(heights))), max(float(np.nanmax(heights)) * 1.1, 1e-6))
    _label_axis(axis, tokens, "x", rotate=True)
    for boundary in boundaries:
        axis.axvline(boundary - 0.5, color="black", linewidth=0.8, alpha=0.6)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    return figure


@_styled
def layer_curve(values, labels: Sequence[str], *, title: str = "", ylabel: str = "", limits: tuple[float, float] | None = None,
                figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """One value after the embeddings and after each layer (L + 1,), as a line with its values written on it."""
    curve = as_array(values, 1, "values")
    labels = check_labels(labels, curve.shape[0], "labels")
    figure = new_figure(figsize)
    axis = figure.add_axes((0.08, 0.2, 0.88, 0.7))
    steps = np.arange(curve.shape[0])
    axis.plot(steps, curve, "o-", color="#4c72b0", linewidth=1.6)
    for step, value in zip(steps, curve):
        axis.annotate(f"{value:.3f}", (step, value), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    axis.set_xticks(steps, labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
    if limits is not None:
        axis.set_ylim(*limits)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    return figure


@_styled
def layer_head_maps(matrices: Sequence, titles: Sequence[str], *, colorbar_labels: Sequence[str] | None = None,
                    title: str = "", figsize: tuple[float, float] = SIZE_WIDE) -> Figure:
    """One to three signed (layer, head) matrices side by side, each diverging around 0 with its own scale."""
    arrays = [as_array(matrix, 2, f"matrices[{i}]") for i, matrix in enumerate(matrices)]
    if not 1 <= len(arrays) <= 3:
        raise ValueError(f"draw 1 to 3 matrices side by side, got {len(arrays)}")
    if len({array.shape for array in arrays}) != 1:
        raise ValueError(f"the matrices must share one (layer, head) shape, got {[a.shape for a in arrays]}")
    titles = list(titles)
    labels = list(colorbar_labels or [""] * len(arrays))
    if len(titles) != len(arrays) or len(labels) != len(arrays):
        raise ValueError("give one title (and colour-bar label) per matrix")
    n_layers, n_heads = arrays[0].shape
    figure = new_figure(figsize)
    slot = 0.92 / len(arrays)
    annotate = n_layers * n_heads <= 96
    for index, (array, name, label) in enumerate(zip(arrays, titles, labels)):
        axis = figure.add_axes((0.07 + index * slot, 0.12, slot * 0.72, 0.74))
        limit = float(np.nanmax(np.abs(array))) or 1e-6
        image = axis.imshow(array, cmap=DIVERGING, vmin=-limit, vmax=limit, aspect="auto")
        if annotate:
            for (row, column), value in np.ndenumerate(array):
                axis.text(column, row, f"{value:+.2f}", ha="center", va="center", fontsize=6,
                          color="white" if abs(value) > 0.6 * limit else "black")
        axis.set_yticks(range(n_layers), [f"layer {i}" for i in range(n_layers)] if index == 0 else [""] * n_layers)
        head_ticks = thinned_ticks(n_heads, 16)
        axis.set_xticks(head_ticks, [f"H{h}" for h in head_ticks])
        axis.set_xlabel("head")
        axis.set_title(name)
        bar = figure.colorbar(image, cax=figure.add_axes((0.07 + index * slot + slot * 0.74, 0.12, 0.01, 0.74)))
        bar.set_label(label)
        bar.ax.tick_params(labelsize=7)
    figure.suptitle(title, y=0.98)
    return figure

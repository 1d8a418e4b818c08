"""The plot functions on small tensors: Figures of the documented size, clear errors, bounded tick labels."""

from __future__ import annotations

import gc
import io
import weakref

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from transformer import plots

TOKENS = ["[CLS]", "the", "river", "bank", "[SEP]"]
PROBABILITIES = torch.tensor([[0.5, 0.2, 0.1], [0.7, 0.05, 0.01]])  # (mask, rank)
WORDS = [["flooded", "muddy", "dry"], ["loan", "bank", "money"]]


def softmax_rows(n_heads: int, n_tokens: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_heads, n_tokens, n_tokens, generator=generator).softmax(-1)  # (H, T, T)


def tick_labels(axis, which: str = "y") -> list[str]:
    ticks = axis.get_yticklabels() if which == "y" else axis.get_xticklabels()
    return [tick.get_text() for tick in ticks]


def test_figures_are_agg_figures_of_the_documented_pixel_size(tmp_path):
    figure = plots.attention_head(softmax_rows(1, 5)[0], TOKENS, title="head")
    assert isinstance(figure, Figure)
    assert isinstance(figure.canvas, matplotlib.backends.backend_agg.FigureCanvasAgg)
    assert plots.pixel_size(figure) == (800, 700)  # SIZE_SQUARE at DPI 100
    path = plots.render_png(figure, tmp_path / "head.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 700)
    assert not figure.axes, "render_png clears the figure so its memory can be freed"


def test_rendered_figures_are_freed(tmp_path):
    figure = plots.head_grid(softmax_rows(4, 6))
    reference = weakref.ref(figure)
    plots.render_png(figure, tmp_path / "grid.png")
    del figure
    gc.collect()
    assert reference() is None, "no global registry (pyplot) may keep a figure alive"


def test_every_plot_function_returns_a_figure(tmp_path):
    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(5, 8, generator=generator)
    figures = {
        "matrix": plots.matrix_heatmap(vectors, TOKENS, None, signed=True),
        "cosine": plots.cosine_matrix(vectors, TOKENS, boundaries=[3]),
        "grid": plots.head_grid(softmax_rows(3, 5)),
        "overview": plots.attention_overview(torch.stack([softmax_rows(3, 5, s) for s in range(2)])),
        "step_2d": plots.step_figure(vectors, ("token", "d_model"), TOKENS),
        "step_heads": plots.step_figure(torch.randn(2, 5, 4, generator=generator), ("head", "token", "d_head"), TOKENS),
        "step_one_head": plots.step_figure(softmax_rows(2, 5), ("head", "query", "key"), TOKENS, head=1),
        "step_scores": plots.step_figure(torch.randn(2, 5, 5, generator=generator), ("head", "query", "key"), TOKENS),
        "sinusoid": plots.sinusoid(np.sin(np.arange(40 * 16).reshape(40, 16))),
        "positions": plots.position_similarity(torch.randn(10, 8), torch.randn(10, 8)),
        "positions_without_learned": plots.position_similarity(torch.randn(10, 8), None),
        "composition": plots.input_composition(vectors, vectors * 0.5, vectors * 0.1, TOKENS),
        "composition_no_segments": plots.input_composition(vectors, vectors * 0.5, None, TOKENS),
        "embeddings": plots.embedding_strips(torch.randn(2, 8), ["a", "b"]),
        "token_matrices": plots.token_matrices([softmax_rows(1, 5)[0]] * 3, TOKENS, ["a", "b", "c"], boundaries=[3]),
        "composition_narrow": plots.input_composition(torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3), TOKENS,
                                                      note="3-wide embeddings, projected to 8"),
        "predictions": plots.prediction_bars(PROBABILITIES, WORDS, ["mask 1", "mask 2"]),
        "predictions_compared": plots.prediction_bars(PROBABILITIES, WORDS, ["a", "b"], compare=PROBABILITIES.flip(-1)),
        "lens": plots.logit_lens(softmax_rows(1, 3)[0], [["x", "y", "z"]] * 3, ["embeddings", "layer 1", "layer 2"],
                                 torch.tensor([0.1, 0.5, 0.9]), torch.tensor([40, 3, 1]), answer="z"),
        "token_bars": plots.token_bars(torch.rand(5), TOKENS, boundaries=[3]),
        "layer_curve": plots.layer_curve(torch.rand(4), ["embeddings", "layer 1", "layer 2", "layer 3"]),
        "layer_head_maps": plots.layer_head_maps([torch.randn(3, 4), torch.randn(3, 4)], ["a", "b"]),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure), name
        width, height = plots.pixel_size(figure)
        path = plots.render_png(figure, tmp_path / f"{name}.png")
        with Image.open(path) as image:
            assert image.size == (width, height), name


def test_mosaics_are_one_image_not_one_axis_per_head():
    figure = plots.head_grid(softmax_rows(12, 7))
    images = [image for axis in figure.axes for image in axis.get_images()]
    assert len(images) == 1
    rows, columns = images[0].get_array().shape
    assert rows * columns >= 12 * 7 * 7, "every head's tile is in the one mosaic"
    overview = plots.attention_overview(torch.stack([softmax_rows(12, 7, s) for s in range(6)]))
    assert sum(len(axis.get_images()) for axis in overview.axes) == 1


def test_long_inputs_keep_tick_labels_bounded():
    n = 300
    tokens = [f"tok{i}" for i in range(n)]
    figure = plots.attention_head(softmax_rows(1, n)[0], tokens)
    axis = figure.axes[0]
    assert 1 <= len(tick_labels(axis, "y")) <= plots.MAX_TICK_LABELS
    assert 1 <= len(tick_labels(axis, "x")) <= plots.MAX_TICK_LABELS
    assert tick_labels(axis, "y")[0] == "tok0"
    step = plots.step_figure(torch.randn(n, 16), ("token", "d_model"), tokens)
    assert len(tick_labels(step.axes[0], "y")) <= plots.MAX_TICK_LABELS
    composition = plots.input_composition(torch.randn(n, 4), torch.randn(n, 4), torch.randn(n, 4), tokens)
    assert len(tick_labels(composition.axes[1], "x")) <= plots.MAX_TICK_LABELS


def test_thinned_ticks_and_short_labels():
    assert plots.thinned_ticks(10) == list(range(10))
    ticks = plots.thinned_ticks(512)
    assert len(ticks) <= plots.MAX_TICK_LABELS and ticks[0] == 0 and ticks == sorted(set(ticks))
    assert plots.thinned_ticks(0) == []
    assert plots.short_label("x" * 50).endswith("…") and len(plots.short_label("x" * 50)) == plots.MAX_LABEL_CHARS
    assert plots.short_label("a\x07b") == "a\u2407b", "control characters are made visible"


def test_large_tiles_are_averaged_down():
    tiles = np.ones((2, 300, 300))
    tiles[0, :150] = 3.0
    small = plots.shrink_tiles(tiles, 100)
    assert small.shape == (2, 100, 100)
    assert small[0, 0, 0] == pytest.approx(3.0) and small[1].mean() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plots.attention_head(torch.rand(3, 4), ["a", "b", "c"]), "square"),
        (lambda: plots.attention_head(torch.rand(3, 3), ["a", "b"]), "has 2 labels but the axis has 3"),
        (lambda: plots.head_grid(torch.rand(4, 4)), "must be 3-D"),
        (lambda: plots.attention_overview(torch.rand(2, 3, 4)), "must be 4-D"),
        (lambda: plots.matrix_heatmap(torch.rand(0, 3)), "empty"),
        (lambda: plots.matrix_heatmap("not numbers"), "numeric"),
        (lambda: plots.step_figure(torch.rand(2, 3), ("token",), ["a", "b"]), "do not match"),
        (lambda: plots.step_figure(torch.rand(2, 3, 3), ("head", "query", "key"), ["a", "b", "c"], head=5), "head must be"),
        (lambda: plots.input_composition(torch.rand(3, 4), torch.rand(3, 5), torch.rand(3, 4), ["a", "b", "c"]), "one shape"),
        (lambda: plots.sinusoid(torch.rand(5, 4), curve_dimensions=[9]), "outside"),
        (lambda: plots.token_matrix(torch.rand(2, 6), ["a", "b"], column_groups=4), "divide"),
        (lambda: plots.embedding_strips(torch.rand(5, 3), list("abcde")), "at most 4"),
        (lambda: plots.matrix_heatmap(torch.rand(2, 2), "ab"), "sequence of strings"),
        (lambda: plots.new_figure((0, 3)), "figsize"),
        (lambda: plots.token_matrices([torch.rand(3, 3)], ["a", "b"], ["t"]), r"expected \(2, 2\)"),
        (lambda: plots.token_matrices([torch.rand(2, 2)] * 4, ["a", "b"], list("abcd")), "1 to 3"),
        (lambda: plots.token_matrices([torch.rand(2, 2)], ["a", "b"], ["x", "y"]), "one title"),
        (lambda: plots.prediction_bars(PROBABILITIES, WORDS[:1], ["a", "b"]), "1 rows of words"),
        (lambda: plots.prediction_bars(PROBABILITIES, [["a", "b"], ["c", "d"]], ["a", "b"]), "has 2 labels but the axis has 3"),
        (lambda: plots.prediction_bars(torch.rand(5, 2), [["a", "b"]] * 5, list("abcde")), "1 to 4 masks"),
        (lambda: plots.prediction_bars(PROBABILITIES, WORDS, ["a", "b"], compare=torch.rand(2, 2)), "compare has shape"),
        (lambda: plots.logit_lens(torch.rand(2, 2), [["a", "b"]] * 2, ["e", "l1"], torch.rand(3), torch.rand(2), answer="a"),
         "one value per row"),
        (lambda: plots.token_bars(torch.rand(3), ["a", "b"]), "has 2 labels but the axis has 3"),
        (lambda: plots.layer_head_maps([torch.rand(2, 3), torch.rand(3, 2)], ["a", "b"]), "share one"),
        (lambda: plots.render_bytes(plots.token_bars(torch.rand(2), ["a", "b"]), "gif"), "png' or 'svg"),
    ],
)
def test_bad_inputs_are_rejected_with_a_clear_message(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_tensors_on_any_dtype_are_accepted():
    half = softmax_rows(1, 4)[0].to(torch.float16)
    figure = plots.attention_head(half, ["a", "b", "c", "d"])
    image = figure.axes[0].get_images()[0]
    assert np.allclose(image.get_array(), half.float().numpy(), atol=1e-3)


def test_positional_similarity_of_the_sinusoid_is_one_on_the_diagonal():
    from transformer import sinusoidal_table

    figure = plots.position_similarity(sinusoidal_table(20, 16), None)
    matrix = np.asarray(figure.axes[0].get_images()[0].get_array())
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-6)
    assert matrix[0, 1] > matrix[0, 10], "nearby positions are more alike than distant ones"


def test_new_plots_draw_exactly_the_values_they_are_given():
    lens = plots.logit_lens(PROBABILITIES, WORDS, ["embeddings", "layer 1"], torch.tensor([0.2, 0.7]),
                            torch.tensor([12, 1]), answer="flooded")
    grid, curve, ranks = lens.axes[0], lens.axes[2], lens.axes[3]
    assert np.allclose(grid.get_images()[0].get_array(), PROBABILITIES.numpy())
    assert {text.get_text() for text in grid.texts} == {word for row in WORDS for word in row}
    assert np.allclose(curve.lines[0].get_xdata(), [0.2, 0.7]) and np.allclose(ranks.lines[0].get_xdata(), [12, 1])
    bars = plots.token_bars(torch.tensor([0.5, 2.0, 1.0]), ["a", "b", "c"])
    boxes = bars.axes[0].collections[0].get_paths()
    assert [round(path.vertices[:, 1].max(), 6) for path in boxes] == [0.5, 2.0, 1.0]
    curve = plots.layer_curve(torch.tensor([1.0, 0.8, 0.6]), ["embeddings", "layer 1", "layer 2"])
    assert np.allclose(curve.axes[0].lines[0].get_ydata(), [1.0, 0.8, 0.6])
    maps = plots.layer_head_maps([torch.ones(2, 3), -torch.ones(2, 3)], ["a", "b"])
    assert [float(axis.get_images()[0].get_array().sum()) for axis in maps.axes if axis.get_images()] == [6.0, -6.0]
    compared = plots.prediction_bars(PROBABILITIES, WORDS, ["a", "b"], compare=PROBABILITIES / 2)
    first = compared.axes[0]
    assert [tick.get_text() for tick in first.get_yticklabels()] == WORDS[0]
    widths = [path.vertices[:, 0].max() for collection in first.collections for path in collection.get_paths()]
    assert np.allclose(widths, [0.5, 0.2, 0.1, 0.25, 0.1, 0.05])


def test_svg_downloads_are_svg_documents_of_the_figure_size():
    import xml.etree.ElementTree as ElementTree

    svg = plots.render_bytes(plots.attention_head(softmax_rows(1, 4)[0], ["a", "b", "c", "d"]), "svg")
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == f"{plots.SIZE_SQUARE[0] * 72:g}pt"
    png = plots.render_bytes(plots.attention_head(softmax_rows(1, 4)[0], ["a", "b", "c", "d"]), "png")
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (800, 700)


def test_a_sinusoidal_models_own_table_is_named_and_the_empty_panel_says_why():
    from transformer import sinusoidal_table

    figure = plots.position_similarity(sinusoidal_table(10, 8), None, missing_note="its own table is the one on the left")
    assert any("its own table is the one on the left" in text.get_text() for axis in figure.axes for text in axis.texts)
    figure = plots.position_similarity(sinusoidal_table(10, 8), sinusoidal_table(10, 8), learned_title="this model's own")
    assert figure.axes[1].get_title().startswith("this model's own")

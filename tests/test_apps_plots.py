"""The figures of the notebooks and the benchmark report draw what they say, on real data."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trillsson_tf.apps import plots  # noqa: E402
from trillsson_tf.errors import ParameterError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_log_mel_chunks_marks_every_chunk_border(librispeech_clips, fsdd_clips):
    long_clip = librispeech_clips[0]  # > 4 s: two or more chunks
    ax = plots.log_mel_chunks(long_clip)
    chunks = (1 + (len(long_clip) - 400) // 160) // 195
    borders = [line for line in ax.lines if line.get_color() == "cyan"]
    assert len(borders) == chunks + 1 and chunks >= 2
    assert ax.images[0].get_array().shape[0] == 80  # mel bins on the y axis
    short = plots.log_mel_chunks(fsdd_clips[0])  # under 2 s: mirror-padded to one chunk
    assert "1 chunk(s)" in short.get_title()
    assert "mirror padding starts" in [text.get_text() for text in short.get_legend().get_texts()]


def test_loss_curves_and_size_vs_fidelity():
    ax = plots.loss_curves({"loss_history": [[1, 4.0], [2, 2.0], [3, 1.0]], "validation_history": [[3, 1.5]]})
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    ax = plots.size_vs_fidelity(
        [
            {"label": "float32", "size_bytes": 400_000, "fidelity": 1.0},
            {"label": "int8", "size_bytes": 120_000, "fidelity": 0.999},
        ]
    )
    assert [t.get_text() for t in ax.texts] == ["float32", "int8"]
    with pytest.raises(ParameterError, match="no loss_history"):
        plots.loss_curves({})


def test_projection_separates_two_clusters():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0, 0.1, (20, 8)) + 3, rng.normal(0, 0.1, (20, 8)) - 3])
    ax = plots.projection(vectors, ["a"] * 20 + ["b"] * 20)
    first, second = (collection.get_offsets()[:, 0] for collection in ax.collections)
    assert first.min() > second.max() or second.min() > first.max()  # PC1 splits the clusters
    assert ax.get_xlabel() == "PC1 (100%)"  # the cluster offset is nearly all the variance


def test_roc_det_marks_the_equal_error_rate():
    from trillsson_tf.metrics import eer

    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(200), np.zeros(200)].astype(int)
    scores = np.r_[rng.normal(1, 1, 200), rng.normal(-1, 1, 200)]
    for kind in ("det", "roc"):
        ax = plots.roc_det(scores, labels, kind=kind, label="system")
        assert f"EER {eer(scores, labels):.1%}" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ParameterError, match="Unknown curve kind"):
        plots.roc_det(scores, labels, kind="pr")


def test_latency_bars_and_scores_scatter():
    rows = [
        {"label": fmt, "clip_s": s, "median_ms": m, "p90_ms": m * 1.2}
        for fmt, m in (("keras", 20.0), ("int8", 2.0))
        for s in (1, 8)
    ]
    ax = plots.latency_bars(rows)
    assert len(ax.patches) == 4 and ax.get_yscale() == "log"
    rng = np.random.default_rng(2)
    targets = rng.normal(size=(50, 3))
    axes = plots.scores_scatter(targets + rng.normal(0, 0.1, (50, 3)), targets, names=["a", "b", "c"])
    assert len(axes) == 3 and all(ax.get_title().split("CCC ")[1] > "0.9" for ax in axes)

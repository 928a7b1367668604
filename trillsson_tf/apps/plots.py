"""Figures for the notebooks and the benchmark report (matplotlib, from the ``notebooks`` extra).

Each function draws on a given matplotlib ``Axes`` (or a new one) and returns it, so a
notebook can lay several out side by side and a script can save them. matplotlib is imported
on first use: ``pip install 'trillsson-tf[notebooks]'``.
"""

import numpy as np

from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.frontend import DEFAULT_FRONTEND

__all__ = [
    "log_mel_chunks",
    "loss_curves",
    "size_vs_fidelity",
    "projection",
    "roc_det",
    "latency_bars",
    "scores_scatter",
]


def _axes(ax, figsize=(7, 3.5)):
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise TrillssonError("Plots need matplotlib: pip install 'trillsson-tf[notebooks]'.") from None
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def log_mel_chunks(audio, *, frontend=DEFAULT_FRONTEND, ax=None, title=None):
    """The model's log-mel input with the borders of the 195-frame chunks it is cut into.

    Args:
        audio: float32 ``[samples]`` at ``frontend.sample_rate_hz``, in [-1, 1].
        frontend: :class:`trillsson_tf.frontend.FrontendConfig` (the TRILLsson numbers).
        ax: Axes to draw on (new figure when ``None``).
        title: Axes title (default: duration and chunk count).

    Returns:
        The Axes. Clips under 2 s are drawn after the mirror padding the model applies (its
        start is marked); frames after the last whole chunk, which the model drops, are shaded.
    """
    from trillsson_tf.frontend import numpy_ops

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or not len(audio):
        raise ParameterError(f"log_mel_chunks needs one clip, float32 [samples]; got shape {audio.shape}.")
    ax = _axes(ax, figsize=(9, 3))
    padded = numpy_ops.mirror_pad(audio[np.newaxis], frontend.min_samples)
    log_mel = numpy_ops.log_mel(padded, frontend)[0]  # [frames, mels]
    hop_s = frontend.hop_samples / frontend.sample_rate_hz
    frames = log_mel.shape[0]
    ax.imshow(log_mel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, frames * hop_s, 0, log_mel.shape[1]))
    chunks = frames // frontend.chunk_frames
    for k in range(chunks + 1):
        ax.axvline(k * frontend.chunk_frames * hop_s, color="cyan", linewidth=1.5)
    if chunks * frontend.chunk_frames < frames:
        ax.axvspan(
            chunks * frontend.chunk_frames * hop_s, frames * hop_s, color="white", alpha=0.35, label="dropped tail"
        )
    if len(audio) < frontend.min_samples:
        ax.axvline(len(audio) / frontend.sample_rate_hz, color="white", linestyle="--", label="mirror padding starts")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_title(
        title or f"{len(audio) / frontend.sample_rate_hz:.2f} s -> {chunks} chunk(s) of {frontend.chunk_frames} frames"
    )
    return ax


def loss_curves(record, *, ax=None, title=None):
    """Training (and validation) loss of a distillation run.

    Args:
        record: A run record (``distill``, ``distill_layers``, ``finetune``, or their ``run.json``):
            ``loss_history`` and ``validation_history`` as ``[[step, loss, ...], ...]`` (entries
            after the loss, such as per-layer losses, are ignored).
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        The Axes (log-scale loss).
    """
    ax = _axes(ax)
    history = np.asarray([row[:2] for row in record.get("loss_history") or []], dtype=np.float64).reshape(-1, 2)
    if not len(history):
        raise ParameterError("The run record has no loss_history to plot.")
    ax.plot(history[:, 0], history[:, 1], label="training")
    validation = np.asarray([row[:2] for row in record.get("validation_history") or []], dtype=np.float64).reshape(
        -1, 2
    )
    if len(validation):
        ax.plot(validation[:, 0], validation[:, 1], "o-", label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(title or "distillation loss")
    return ax


def size_vs_fidelity(
    rows, *, ax=None, title=None, fidelity_label="mean cosine to the float model", distance: bool = False
):
    """File size against fidelity, one labelled point per model variant.

    Args:
        rows: Iterable of ``{'label', 'size_bytes', 'fidelity'}``, optionally with ``'group'``
            (for example the model): one colour and legend entry per group.
        ax: Axes to draw on.
        title: Axes title.
        fidelity_label: y-axis label.
        distance: Plot ``1 - fidelity`` on a log axis (lower is better), which spreads cosines
            of 0.999 and 0.99999 apart.

    Returns:
        The Axes (log-scale size in KB).
    """
    ax = _axes(ax, figsize=(7, 4))
    rows = list(rows)
    if not rows:
        raise ParameterError("size_vs_fidelity needs at least one row.")
    colours = {}
    for row in rows:
        group = row.get("group")
        first_of_group = group is not None and group not in colours
        if first_of_group:
            colours[group] = f"C{len(colours) % 10}"
        y = max(1.0 - row["fidelity"], 1e-7) if distance else row["fidelity"]  # a perfect copy stays on the log axis
        ax.scatter(row["size_bytes"] / 1024, y, s=40, color=colours.get(group), label=group if first_of_group else None)
        ax.annotate(
            row["label"], (row["size_bytes"] / 1024, y), textcoords="offset points", xytext=(5, 4), fontsize="small"
        )
    ax.set_xscale("log")
    if distance:
        ax.set_yscale("log")
        ax.set_ylabel(f"1 - {fidelity_label} (lower is better)")
    else:
        ax.ticklabel_format(axis="y", useOffset=False)  # cosines near 1 would otherwise read as "1e-5 + 0.9999"
        ax.set_ylabel(fidelity_label)
    if colours:
        ax.legend(fontsize="small")
    ax.set_xlabel("file size (KB)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "size vs fidelity")
    return ax


def projection(vectors, labels, *, ax=None, title=None):
    """A 2-D PCA projection of embeddings, coloured by label (for example the speaker).

    Args:
        vectors: float ``[n, D]`` clip embeddings.
        labels: ``[n]`` labels to colour by.
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        The Axes; the share of variance the two axes keep is in the axis labels.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    labels = np.asarray(labels)
    if vectors.ndim != 2 or len(vectors) != len(labels) or len(vectors) < 3:
        raise ParameterError(
            f"projection needs [n, D] vectors (n >= 3) and [n] labels; got {vectors.shape} and {labels.shape}."
        )
    ax = _axes(ax, figsize=(5, 4.5))
    centred = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    variance = singular**2 / max(np.sum(singular**2), 1e-300)
    for label in sorted(set(labels.tolist()), key=str):
        keep = labels == label
        ax.scatter(points[keep, 0], points[keep, 1], s=18, label=str(label))
    ax.set_xlabel(f"PC1 ({variance[0]:.0%})")
    ax.set_ylabel(f"PC2 ({variance[1]:.0%})" if len(variance) > 1 else "PC2")
    ax.legend(fontsize="x-small", markerscale=0.8, ncol=2)
    ax.set_title(title or "PCA of clip embeddings")
    return ax


def roc_det(scores, labels, *, kind: str = "det", ax=None, label=None, title=None):
    """ROC or DET curve of verification trials, with the equal error rate marked.

    Args:
        scores: float ``[n]`` trial scores (higher = same speaker).
        labels: ``[n]`` 1 for target trials, 0 otherwise.
        kind: ``'det'`` (miss vs false-alarm rate on normal-deviate axes) or ``'roc'``.
        ax: Axes to draw on (call again with the same Axes to overlay systems).
        label: Legend label; the EER is appended.
        title: Axes title.

    Returns:
        The Axes.
    """
    from scipy.stats import norm
    from sklearn.metrics import roc_curve

    from trillsson_tf.metrics import eer

    if kind not in ("det", "roc"):
        raise ParameterError(f"Unknown curve kind {kind!r}. Expected one of: ['det', 'roc'].")
    ax = _axes(ax, figsize=(5, 4.5))
    rate = eer(scores, labels)
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores, dtype=np.float64))
    text = f"{label + ', ' if label else ''}EER {rate:.1%}"
    if kind == "roc":
        (line,) = ax.plot(fpr, tpr, label=text)
        ax.plot([rate], [1 - rate], "o", color=line.get_color())
        ax.plot([0, 1], [1, 0], ":", color="grey", linewidth=0.8)
        ax.set_xlabel("false-accept rate")
        ax.set_ylabel("true-accept rate")
    else:
        clip = lambda p: norm.ppf(np.clip(p, 1e-4, 1 - 1e-4))  # noqa: E731 - probit axes, finite at 0 and 1
        (line,) = ax.plot(clip(fpr), clip(1 - tpr), label=text)
        ax.plot([clip(rate)], [clip(rate)], "o", color=line.get_color())
        ticks = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
        ax.set_xticks(clip(ticks), [f"{t:.0%}" for t in ticks])
        ax.set_yticks(clip(ticks), [f"{t:.0%}" for t in ticks])
        ax.set_xlabel("false-accept rate")
        ax.set_ylabel("false-reject rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or kind.upper())
    return ax


def latency_bars(rows, *, ax=None, title=None):
    """Median latency (with the p90 as an error bar) per variant and clip length.

    Args:
        rows: Iterable of ``{'label', 'clip_s', 'median_ms', 'p90_ms'}``.
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        The Axes (log-scale milliseconds).
    """
    rows = list(rows)
    if not rows:
        raise ParameterError("latency_bars needs at least one row.")
    ax = _axes(ax, figsize=(9, 4))
    labels = list(dict.fromkeys(row["label"] for row in rows))
    lengths = sorted({row["clip_s"] for row in rows})
    width = 0.8 / len(lengths)
    for i, clip_s in enumerate(lengths):
        by_label = {row["label"]: row for row in rows if row["clip_s"] == clip_s}
        x = [j + i * width for j, name in enumerate(labels) if name in by_label]
        median = [by_label[name]["median_ms"] for name in labels if name in by_label]
        p90 = [by_label[name]["p90_ms"] for name in labels if name in by_label]
        ax.bar(
            x,
            median,
            width,
            yerr=[np.zeros(len(median)), np.subtract(p90, median)],
            capsize=2,
            label=f"{clip_s:g} s clip",
        )
    ax.set_xticks(
        [j + width * (len(lengths) - 1) / 2 for j in range(len(labels))],
        labels,
        rotation=30,
        ha="right",
        fontsize="small",
    )
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter())  # "40", not "4 x 10^1"
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("ms per clip (median, p90 bar)")
    ax.legend()
    ax.set_title(title or "latency, 1 thread")
    return ax


def scores_scatter(predictions, targets, *, names=None, axes=None, title=None):
    """Predicted against target scores, one panel per score, with each panel's CCC.

    Args:
        predictions: float ``[n, k]`` model scores.
        targets: float ``[n, k]`` teacher scores.
        names: ``k`` score names.
        axes: ``k`` Axes to draw on (a new row of panels when ``None``).
        title: Figure title.

    Returns:
        The list of Axes.
    """
    from trillsson_tf.metrics import ccc

    predictions, targets = np.asarray(predictions, np.float64), np.asarray(targets, np.float64)
    if predictions.shape != targets.shape or predictions.ndim != 2:
        raise ParameterError(
            f"scores_scatter needs two [n, k] arrays of one shape; got {predictions.shape} and {targets.shape}."
        )
    k = predictions.shape[1]
    names = list(names) if names is not None else [f"score {i}" for i in range(k)]
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.4), layout="constrained", squeeze=False)
        axes = list(axes[0])
    values = np.atleast_1d(ccc(predictions, targets))
    for i, ax in enumerate(axes):
        ax.scatter(targets[:, i], predictions[:, i], s=10, alpha=0.7)
        low, high = (
            float(min(targets[:, i].min(), predictions[:, i].min())),
            float(max(targets[:, i].max(), predictions[:, i].max())),
        )
        ax.plot([low, high], [low, high], ":", color="grey")
        ax.set_xlabel(f"teacher {names[i]}")
        ax.set_ylabel("student")
        ax.set_title(f"{names[i]}: CCC {values[i]:.3f}")
    if title:
        axes[0].figure.suptitle(title)
    return axes

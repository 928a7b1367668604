"""Live streams through a :class:`~trillsson_tf.runtime.TFLiteModel`: blocks in, the chunks they complete out."""

import numpy as np

from trillsson_tf.audio import check_sample_rate
from trillsson_tf.errors import ParameterError, deprecated, renamed_attribute
from trillsson_tf.runtime.inputs import check_block

__all__ = ["ChunkStream", "iterate", "refuse_chunk_stream"]


class ChunkStream:
    """A live stream through a :class:`~trillsson_tf.runtime.TFLiteModel`: blocks in, the chunks they complete out.

    Chunk ``k`` reads samples ``[k hop, k hop + 31440)`` of the stream at the model rate, the
    chunks of :meth:`TFLiteModel.chunk_vectors` (with ``hop_s=None``: the non-overlapping
    chunks of the clip call); it is run as soon as its last sample arrives. Made by
    :meth:`TFLiteModel.open_stream`. A refused block (NaN/Inf, stereo, another rate) raises and
    leaves the stream as it was.

    Attributes:
        chunks: The :class:`~trillsson_tf.frontend.ChunkGrid` of the stream.
        sample_rate_hz: Rate of the blocks (``None`` until the first block sets it).
        emitted: Chunks given so far.
    """

    def __init__(self, model, chunks, *, sample_rate=None):
        self._model, self._feeder, self.chunks = model, model.feeder, chunks
        self.sample_rate_hz = None if sample_rate is None else check_sample_rate(sample_rate)
        self._resampler = None
        self._buffer = np.zeros(0, np.float32)  # stream samples from chunk `emitted`'s start on
        self._head = np.zeros(0, np.float32)  # the first 2 s, for a stream shorter than that (close)
        self.emitted = 0
        self._received = 0

    @property
    def windows(self):
        """Deprecated name of :attr:`chunks` (for one release)."""
        deprecated("trillsson_tf.runtime.FrameStream.windows", "trillsson_tf.runtime.ChunkStream.chunks")
        return self.chunks

    def _empty(self):
        width = sum(int(self._model.pool.outputs[key]["shape_signature"][-1]) for key in self._model.output_keys)
        return np.zeros(0, np.float32), np.zeros((0, width), np.float32)

    def feed(self, block, *, sample_rate=None) -> tuple:
        """Push one block; return ``(start_s float32 [k], vectors float32 [k, D])`` of the chunks it completes.

        A model with several outputs (a several-teacher student) gives them side by side in
        ``output_keys`` order; :meth:`TFLiteModel.split` splits them.

        Args:
            block: Mono float32 ``[samples]`` in [-1, 1] (int16 PCM is scaled), any size.
            sample_rate: Rate of the block in Hz; default the stream's (set by its first block or
                :meth:`TFLiteModel.open_stream`), else the model's.

        Raises:
            ParameterError: NaN/Inf, a block that is not mono ``[samples]``, a rate other than
                the stream's; nothing of the block is kept.
        """
        rate = (
            check_sample_rate(sample_rate)
            if sample_rate is not None
            else (self.sample_rate_hz or self._model.sample_rate_hz)
        )
        if self.sample_rate_hz not in (None, rate):
            raise ParameterError(
                f"Stream started at {self.sample_rate_hz} Hz, got a block at {rate} Hz; call reset() first."
            )
        block = np.asarray(block)
        if block.ndim != 1:
            raise ParameterError(f"Stream blocks must be mono [samples], got shape {block.shape}.")
        if block.size:
            block = check_block(block, rate)
        self.sample_rate_hz = rate  # only once the block is accepted
        if not block.size:
            return self._empty()
        self._append(block, last=False)
        return self._drain()

    def close(self) -> tuple:
        """End the stream: the chunks still due, as ``(start_s, vectors)`` (see :meth:`feed`).

        The resampler's last samples are flushed; a stream shorter than 2 s gives the chunks of
        its mirror-padded audio that the offline call has and the stream has not given.
        """
        if self._resampler is not None:
            self._append(np.zeros(0, np.float32), last=True)
        starts, vectors = self._drain()
        min_samples = self._model.frontend.min_samples
        if 0 < self._received < min_samples:
            padded = self._feeder.chunk_vectors(self._head[np.newaxis], self.chunks)[0]
            late = padded[self.emitted :]
            starts = np.concatenate([starts, self.chunks.starts_s(len(padded))[self.emitted :]])
            vectors = np.concatenate([vectors, late])
            self.emitted = len(padded)
        return starts, vectors

    def _append(self, block: np.ndarray, *, last: bool) -> None:
        if self.sample_rate_hz not in (None, self._model.sample_rate_hz):
            if self._resampler is None:
                import soxr

                self._resampler = soxr.ResampleStream(
                    self.sample_rate_hz, self._model.sample_rate_hz, 1, dtype="float32"
                )
            block = self._resampler.resample_chunk(block, last=last)
        block = block.astype(np.float32, copy=False)
        min_samples = self._model.frontend.min_samples
        if self._received < min_samples:
            self._head = np.concatenate([self._head, block[: min_samples - self._received]])
        self._received += len(block)
        self._buffer = np.concatenate([self._buffer, block])

    def _drain(self) -> tuple:
        span, hop = self.chunks.span_samples, self.chunks.hop_samples
        count = 0 if len(self._buffer) < span else 1 + (len(self._buffer) - span) // hop
        if not count:
            return self._empty()
        segments = np.lib.stride_tricks.sliding_window_view(self._buffer, span)[: count * hop : hop]
        vectors = self._feeder.embed_chunks(segments)
        starts = self.chunks.starts_s(self.emitted + count)[self.emitted :]
        self._buffer = self._buffer[count * hop :]
        self.emitted += count
        return starts, vectors


def iterate(stream: ChunkStream, blocks, *, with_times: bool):
    """Feed ``blocks`` to ``stream`` and close it, yielding ``(start_s, vector)`` (``with_times``) or vectors."""
    for block in blocks:
        yield from _pairs(*stream.feed(block), with_times=with_times)
    yield from _pairs(*stream.close(), with_times=with_times)


def _pairs(starts, vectors, *, with_times):
    return zip(starts.tolist(), vectors) if with_times else iter(vectors)


def refuse_chunk_stream(model, name: str) -> None:
    """Raise for a file without 195-frame chunks (whole-clip models) or without chunk vectors (``name``: the file's)."""
    refusal = model.chunk_vectors_refusal()
    if refusal:
        raise ParameterError(f"{name!r} does not stream: {refusal}")
    if model.kind.whole_clips:
        raise ParameterError(
            f"{name!r} is a whole-clip model (Wav2Small): its clip vector is no mean of "
            "chunks, so it does not stream the clip call's chunks; stream chunk vectors with hop_s=...."
        )


_RENAMED = {"FrameStream": "ChunkStream"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)

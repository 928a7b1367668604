"""The zoo at a glance: parameters, float32 size and per-chunk cost of each student."""

from trillsson_tf import models
from trillsson_tf.kinds import CHUNK

__all__ = ["models_table"]

_BYTES_PER_FLOAT32 = 4


def models_table(names=None, *, flops: bool = True) -> list:
    """One row per student: name, parameters, float32 size, GFLOPs per chunk, provenance.

    Args:
        names: Students to describe (default: all registered).
        flops: Count per-chunk GFLOPs (slower for the big models).

    Returns:
        List of dicts with keys ``name, parameters, published_parameters, float32_mb,
        gflops_per_chunk, description, verified, assumed``; for whole-clip students (Wav2Small,
        the layer students) ``gflops_per_chunk`` is per second of audio (they have no chunks).
    """
    rows = []
    for name in names or models.available():
        preset = models.get_preset(name)
        model = models.build(name)
        parameters = int(model.count_params())
        rows.append(
            {
                "name": name,
                "parameters": parameters,
                "published_parameters": preset.published_params,
                "float32_mb": parameters * _BYTES_PER_FLOAT32 / 1e6,
                "gflops_per_chunk": _gflops(model) if flops else None,
                "description": preset.description,
                "verified": preset.verified,
                "assumed": preset.assumed,
            }
        )
    return rows


def _gflops(model) -> float:
    """GFLOPs per 195x80 chunk, or per second of audio for a whole-clip student (Wav2Small, layer students)."""
    if model.family == CHUNK:
        return models.chunk_gflops(model.chunk_network)
    return models.clip_gflops(model, model.sample_rate_hz)

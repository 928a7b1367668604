"""Pipelines that outgrow one machine: teacher targets on Apache Beam (extra ``[beam]``).

Importing this package does not import Apache Beam; :func:`build_targets` does, and names
the package to install when it is missing.
"""

from trillsson_tf.pipelines.beam_targets import BEAM_PACKAGE, build_targets, match_audio

__all__ = ["BEAM_PACKAGE", "build_targets", "match_audio"]

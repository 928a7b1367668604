"""Training: audio folders, augmentation, teacher targets and the tf.data pipeline, the one training engine,
and the three workflows on top of it.

- :mod:`~trillsson_tf.train.data` (audio folders, manifests, crops), :mod:`~trillsson_tf.train.augment`
  (training views), :mod:`~trillsson_tf.train.targets` (target shards), :mod:`~trillsson_tf.train.input_pipeline`
  (tf.data batches streamed from the shards);
- :mod:`~trillsson_tf.train.engine` (run folder, checkpoints, step loop), :mod:`~trillsson_tf.train.distribute`
  (tf.distribute strategies);
- :mod:`~trillsson_tf.train.distill`, :mod:`~trillsson_tf.train.distill_layers`, :mod:`~trillsson_tf.train.finetune`.

Importing this package imports none of them (nor TensorFlow).
"""

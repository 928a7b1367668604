"""Audio Spectrogram Transformer (AST) students: a ViT over overlapping log-mel patches.

Follows Gong et al. 2021: 16x16 patches with stride 10, a class and a distillation token,
learned position embeddings, pre-norm transformer blocks, output the mean of the two tokens.
The input is normalised as AST does, ``(x + 4.27) / (2 * 4.57)`` (AudioSet statistics).
"""

from trillsson_tf._keras import keras, tf
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._common import StudentPreset, patch_input, projection_head

layers = keras.layers


@keras.saving.register_keras_serializable(package="trillsson_tf")
class TokensAndPositions(layers.Layer):
    """Prepend the class and distillation tokens, add learned position embeddings."""

    def build(self, input_shape):
        num_patches, width = input_shape[1], input_shape[2]
        self.tokens = self.add_weight(
            name="tokens", shape=(1, 2, width), initializer=keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.positions = self.add_weight(
            name="positions",
            shape=(1, num_patches + 2, width),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )

    def call(self, patches):
        tokens = tf.tile(self.tokens, [tf.shape(patches)[0], 1, 1])
        return tf.concat([tokens, patches], axis=1) + self.positions


def _block(x, width, heads, mlp_dim, name):
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(heads, width // heads, name=f"{name}_attention")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    y = layers.Dense(mlp_dim, activation="gelu", name=f"{name}_mlp1")(y)
    y = layers.Dense(width, name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def build_ast(
    *,
    width: int = 768,
    depth: int = 12,
    heads: int = 12,
    mlp_dim: int = 3072,
    patch_size: int = 16,
    patch_stride: int = 10,
    embedding_dim: int = 1024,
):
    """AST per-chunk network.

    Args:
        width: Token width.
        depth: Transformer blocks.
        heads: Attention heads (``width`` must divide by it).
        mlp_dim: Hidden width of each block's MLP.
        patch_size: Square patch side, in frames and mel bins.
        patch_stride: Patch stride (overlapping when smaller than ``patch_size``).
        embedding_dim: Output width D.

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    inputs = patch_input()
    x = layers.Rescaling(1.0 / (2 * 4.57), offset=4.27 / (2 * 4.57), name="ast_normalize")(inputs)
    x = layers.Conv2D(width, patch_size, strides=patch_stride, name="patch_embedding")(x)
    x = layers.Reshape((-1, width), name="patch_sequence")(x)
    x = TokensAndPositions(name="tokens_and_positions")(x)
    for index in range(depth):
        x = _block(x, width, heads, mlp_dim, f"block{index + 1}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    pooled = layers.Average(name="token_mean")([x[:, 0], x[:, 1]])
    return keras.Model(inputs, projection_head(pooled, embedding_dim))


PRESETS = {
    "trillsson5": StudentPreset(
        name="trillsson5",
        family=CHUNK,
        build=build_ast,
        config={
            "width": 768,
            "depth": 12,
            "heads": 12,
            "mlp_dim": 3072,
            "patch_size": 16,
            "patch_stride": 10,
            "embedding_dim": 1024,
        },
        description="TRILLsson 5: Audio Spectrogram Transformer (ViT-Base, 16x16/10 patches) + Dense(1024)",
        published_params=88_600_000,
        verified="Published as an Audio Spectrogram Transformer, ~88.6 M parameters (unverified).",
        assumed="ViT-Base sizes and AST patching/normalisation taken from the AST paper.",
    ),
    "ast_tiny": StudentPreset(
        name="ast_tiny",
        family=CHUNK,
        build=build_ast,
        config={
            "width": 192,
            "depth": 4,
            "heads": 3,
            "mlp_dim": 768,
            "patch_size": 16,
            "patch_stride": 10,
            "embedding_dim": 1024,
        },
        description="Small AST (width 192, 4 blocks) + Dense(D)",
    ),
}

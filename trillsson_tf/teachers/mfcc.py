"""The ``mfcc`` baseline: MFCC mean and standard deviation per clip, no network (what any model must beat)."""

import numpy as np

from trillsson_tf.teachers.base import Teacher

__all__ = ["MFCC", "MfccTeacher"]

MFCC = "mfcc"


class MfccTeacher(Teacher):
    """20 MFCCs (librosa's defaults at 16 kHz: 2048-point FFT, hop 512, 128 mel bands), their mean and std over time: 40-d."""

    min_samples = 2048

    def __init__(self, *, coefficients: int = 20):
        super().__init__(MFCC)
        self.coefficients = int(coefficients)
        self.parameters = 0
        self.identity = f"{MFCC}:librosa:{self.coefficients}"
        self._finish_init()

    def _embed(self, audio):
        import librosa

        mfcc = librosa.feature.mfcc(
            y=np.asarray(audio, np.float32), sr=16000, n_mfcc=self.coefficients
        )  # [batch, n, frames]
        return np.concatenate([mfcc.mean(axis=-1), mfcc.std(axis=-1)], axis=-1).astype(np.float32)
